"""The training command (python -m mobilevit_edu.train, mobilevit_edu/cli.py) and what fit does beyond one
CPU: an image folder of generated PNGs, one process, two processes under torchrun (gloo), resume, atomic
checkpoints, and one clear error for each bad input."""

import contextlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mobilevit_edu import cli, folder
from mobilevit_edu import train as T

# A tiny run: MINI at 32 and 40 px, a global batch of 8 at 32 px (5 at 40 px), 24 training images -> 3-5
# steps per epoch; no EMA lag to speak of (momentum 0.5), warm-up 1 step. --workers 0: no worker processes
# (the resume test uses 2, to show that the augmentation does not depend on them).
TINY = ["--model", "mini", "--image-size", "32", "--resolutions", "32", "40", "--batch-size", "8", "--epochs", "2",
        "--ema-momentum", "0.5", "--warmup-steps", "1", "--workers", "0", "--device", "cpu", "--no-progress"]


def _write_folder(root, classes=("blue", "red"), train=12, val=4, size=(40, 48), seed=0):
    """root/{train,val}/<class>/<i>.png: noisy images whose colour is the class."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    colours = {"blue": (30, 40, 200), "red": (200, 40, 30), "green": (30, 200, 40)}
    for split, count in (("train", train), ("val", val)):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = torch.randint(0, 60, (*size, 3), generator=g)
                pixels = (torch.tensor(colours[name]) * 0.7 + noise).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return _write_folder(tmp_path_factory.mktemp("images"))  # 2 classes x (12 + 4) = 32 PNGs


@pytest.fixture(scope="module")
def whole_run(image_folder, tmp_path_factory):
    """The out folder of one uninterrupted TINY run (two tests read it)."""
    out = tmp_path_factory.mktemp("whole")
    cli.main(["--data", str(image_folder), "--out", str(out), *TINY])
    return out


def _copy(image_folder, tmp_path):
    return Path(shutil.copytree(image_folder, tmp_path / "images"))


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def _fails(argv, capsys):
    """Run the command; it must exit with status 2 and one line of error; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m mobilevit_edu.train: error: "), lines
    return lines[0]


# ---------------------------------------------------------------------------------------- the command
def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--model", "--epochs", "--batch-size", "--image-size", "--out", "--resume", "--device",
                   "--preset", "paper-imagenet", "torchrun", "last.pt", "history.csv"):
        assert option in text


def test_one_process_trains_and_writes_checkpoints_and_history(whole_run):
    out = whole_run
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert rows[0] == "epoch,train_loss,val_metric,lr,train_seconds" and len(rows) == 3  # a row per epoch
    last = torch.load(out / "last.pt", weights_only=True)  # plain data and tensors, as chapter 7's
    assert last["training"]["step"] == len(json.loads((out / "history.json").read_text())["step_lr"])
    model, info = T.load_checkpoint(out / "model.pt")
    assert model.config.name == "mobilevit_mini" and model.config.num_classes == 2
    assert 0 <= info["metrics"]["val_accuracy"] <= 1


def test_the_rank_split_gives_every_rank_its_share_at_the_same_resolution():
    sampler = T.MultiScaleBatchSampler(50, 8, (32, 40), base_resolution=32, seed=0)
    for resolution, indices in sampler.batches(0):
        shares = [T.rank_share(indices, rank, 3) for rank in range(3)]
        assert sorted(torch.cat(shares).tolist()) == sorted(indices.tolist())  # disjoint, the whole batch
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_paper_preset_matches_the_paper_and_ml_cvnets():
    r = T.PAPER_IMAGENET_RECIPE
    assert (r.epochs, r.batch_size, r.base_resolution, r.warmup_steps) == (300, 1024, 256, 3000)
    assert (r.lr, r.min_lr, r.warmup_lr, r.weight_decay, r.label_smoothing, r.ema_momentum) == (
        2e-3, 2e-4, 2e-4, 0.01, 0.1, 0.0005)
    assert r.resolutions == (160, 192, 256, 288, 320) == cli.scaled_resolutions(256)
    assert cli.scaled_resolutions(32) == (32, 40)  # chapter 7's


# ------------------------------------------------------------------------------- two processes
DDP_SCRIPT = textwrap.dedent('''
    # fit on the image folder with MINI whose BatchNorms are GroupNorm(1, C): BatchNorm would normalise each
    # rank's half batch on its own (SyncBatchNorm runs on GPUs only), GroupNorm normalises each image alone
    import sys
    import torch
    from torch import nn
    from mobilevit_edu import cli, folder, train as T
    from mobilevit_edu.models import MINI

    def group_norm_mini():
        model = T.build_model(MINI, seed=0)
        def swap(module):
            for name, child in module.named_children():
                if isinstance(child, nn.BatchNorm2d):
                    setattr(module, name, nn.GroupNorm(1, child.num_features))
                else:
                    swap(child)
        swap(model)
        return model

    CONFIG = T.TrainConfig(epochs=1, batch_size=8, warmup_steps=1, resolutions=(32, 40), base_resolution=32,
                           ema_momentum=0.5)

    if __name__ == "__main__":
        data, out = sys.argv[1:3]
        cli._join_process_group(torch.device("cpu"))
        train_set, val_set = folder.image_folder_splits(data, 32)
        T.fit(group_norm_mini(), train_set, val_set, CONFIG, out=out, progress=True)
        torch.distributed.destroy_process_group()
''')


def test_two_processes_under_torchrun_equal_one_process_with_the_same_global_batch(image_folder, tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run([*torchrun, str(script), str(image_folder), str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 1/1:") == 1  # only rank 0 prints

    sys.path.insert(0, str(tmp_path))
    try:
        import ddp_fit
    finally:
        sys.path.remove(str(tmp_path))
    train_set, val_set = folder.image_folder_splits(image_folder, 32)
    model = ddp_fit.group_norm_mini()
    one = T.fit(model, train_set, val_set, ddp_fit.CONFIG, progress=False)
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert two["step_batch_size"] == one.step_batch_size and 5 in one.step_batch_size  # 5 splits 3 + 2
    # Tolerance: the ranks sum their gradients in another order than one process (float rounding, ~1e-7 on
    # the losses); AdamW divides by sqrt(v), so where v is tiny that rounding moves a weight by up to a few
    # lr-sized steps: measured 1e-5 after these 4 steps (3e-5 after 12). An unweighted split of the 5-image
    # batches (the ranks' means of 3 and 2 images averaged as equals) measured 7e-5 on the last loss and
    # 7.5e-4 on the weights: both bounds catch it.
    assert max(abs(a - b) for a, b in zip(one.step_loss, two["step_loss"])) <= 1e-5
    assert _max_diff({k: v for k, v in model.state_dict().items()}, _weights(tmp_path / "two" / "model.pt")) <= 1e-4


# -------------------------------------------------------------------------------------- resume
def test_a_run_stopped_and_resumed_ends_equal_to_an_uninterrupted_one(image_folder, whole_run, tmp_path):
    data = ["--data", str(image_folder)]
    cli.main([*data, "--out", str(tmp_path / "cut"), *TINY, "--stop-after", "5"])  # epochs of 4 steps: inside epoch 2
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["training"]["step"] == 5
    assert not (tmp_path / "cut" / "model.pt").exists()
    cli.main([*data, "--resume", str(tmp_path / "cut" / "last.pt"), *TINY, "--workers", "2"])
    whole, cut = whole_run, tmp_path / "cut"
    # same machine, same threads: equal to the last bit (measured 0.0); 1e-6 allows for nothing but rounding
    assert _max_diff(_weights(whole / "model.pt"), _weights(cut / "model.pt")) <= 1e-6
    a, b = (json.loads((run / "history.json").read_text()) for run in (whole, cut))
    assert a["step_loss"] == pytest.approx(b["step_loss"], abs=1e-6) and a["step_resolution"] == b["step_resolution"]
    assert a["epoch_val_metric"] == pytest.approx(b["epoch_val_metric"], abs=1e-6)


def test_resume_with_other_settings_is_refused(image_folder, tmp_path, capsys):
    cli.main(["--data", str(image_folder), "--out", str(tmp_path), *TINY, "--stop-after", "1"])
    message = _fails(["--data", str(image_folder), "--resume", str(tmp_path / "last.pt"), *TINY, "--lr", "0.01"],
                     capsys)
    assert "other training settings" in message and "'lr'" in message


# ------------------------------------------------------------------------------------ atomic writes
def test_an_interrupted_checkpoint_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    model = T.build_model(cli.MODELS["mini"], seed=0)
    path = T.save_checkpoint(tmp_path / "last.pt", model, metrics={"step": 1})

    def crash_halfway(obj, f, *args, **kwargs):  # the process dies after writing a few bytes
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(path, model, metrics={"step": 2})
    monkeypatch.undo()
    assert T.read_checkpoint(path)["metrics"] == {"step": 1}  # the old checkpoint, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no half-written temporary file left


# --------------------------------------------------------------------------------------- bad input
def test_a_missing_folder_is_one_clear_error(tmp_path, capsys):
    assert "no such folder" in _fails(["--data", str(tmp_path / "nowhere"), *TINY], capsys)
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    assert "there is no val/ folder" in _fails(["--data", str(tmp_path / "only_train"), *TINY], capsys)


def test_an_empty_class_is_one_clear_error_naming_it(image_folder, tmp_path, capsys):
    root = _copy(image_folder, tmp_path)
    (root / "train" / "green").mkdir()
    (root / "val" / "green").mkdir()
    assert "green holds no images" in _fails(["--data", str(root), *TINY], capsys)


def test_mismatched_train_and_val_classes_are_one_clear_error(image_folder, tmp_path, capsys):
    root = _copy(image_folder, tmp_path)
    shutil.move(root / "val" / "red", root / "val" / "rouge")
    message = _fails(["--data", str(root), *TINY], capsys)
    assert "only in train/: ['red']" in message and "only in val/: ['rouge']" in message


def test_an_unreadable_image_stops_the_run_naming_the_file_and_last_pt_survives(image_folder, tmp_path, capsys):
    root = _copy(image_folder, tmp_path)
    cli.main(["--data", str(root), "--out", str(tmp_path / "run"), *TINY, "--stop-after", "2"])
    broken = root / "train" / "red" / "3.png"
    broken.write_bytes(b"not a png")
    message = _fails(["--data", str(root), "--resume", str(tmp_path / "run" / "last.pt"), *TINY], capsys)
    assert f"cannot read image {broken}" in message
    # nothing lost: last.pt is whole and holds the last step written before the bad image was met
    assert T.read_checkpoint(tmp_path / "run" / "last.pt")["training"]["step"] >= 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "history.json", "last.pt"]


def test_a_checkpoint_of_another_model_is_one_clear_error(image_folder, tmp_path, capsys):
    cli.main(["--data", str(image_folder), "--out", str(tmp_path), *TINY, "--stop-after", "1"])
    argv = ["--data", str(image_folder), "--resume", str(tmp_path / "last.pt"), *TINY, "--model", "cnn_mini"]
    message = _fails(argv, capsys)
    assert "checkpoint of 'mobilevit_mini'" in message and "'cnn_mini'" in message


def test_without_the_train_extra_the_command_names_it_in_one_sentence(image_folder, capsys, monkeypatch):
    assert cli.missing_train_extra() == []  # this environment has the extra
    # a Python without torchvision and Pillow: None in sys.modules makes their import fail
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert cli.missing_train_extra() == ["torchvision", "Pillow"]
    assert _fails(["--data", str(image_folder), *TINY], capsys) == (
        "python -m mobilevit_edu.train: error: the training command needs torchvision and Pillow, which the"
        ' extra installs: pip install "mobilevit_edu[train]"')


def test_the_train_extra_of_pyproject_installs_what_the_command_checks_for():
    import re
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    extra = pyproject["project"]["optional-dependencies"]["train"]
    assert sorted(re.match(r"[A-Za-z0-9_.-]+", r).group() for r in extra) == sorted(cli.TRAIN_EXTRA.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_one_clear_error(image_folder, capsys):
    assert "no CUDA GPU" in _fails(["--data", str(image_folder), *TINY, "--device", "cuda"], capsys)


# runpy warns that this process imported mobilevit_edu.train before (the other tests); a fresh `python -m` does not
@pytest.mark.filterwarnings("ignore:'mobilevit_edu.train' found in sys.modules:RuntimeWarning")
def test_an_unknown_model_through_the_module_entry_point(image_folder, capsys, monkeypatch):
    # `python -m mobilevit_edu.train ...` as a user types it (runpy runs train.py as __main__, in this process)
    argv = ["python -m mobilevit_edu.train", "--data", str(image_folder), *TINY, "--model", "xxxl"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("mobilevit_edu.train", run_name="__main__")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m mobilevit_edu.train: error: --model must be one of {', '.join(cli.MODELS)}; got 'xxxl'"
    ]


# --------------------------------------------------------------------------- the GPU paths, on the CPU
def test_the_grad_scaler_branch_takes_the_same_step_as_the_plain_one():
    # fp16 training goes through a GradScaler (this machine has no GPU: a CPU GradScaler runs the same
    # branch of _backward_and_step). Scaling by a power of two and back is exact in fp32, clipping included.
    steps = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        model = T.build_model(cli.MODELS["mini"], seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 0, 1])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        T._backward_and_step(loss, optimizer, scaler, model, grad_clip=0.5)
        steps.append(model.state_dict())
    assert _max_diff(*steps) <= 1e-7


def test_mixed_precision_is_for_gpus_and_the_cpu_stays_fp32():
    autocast, scaler = T._mixed_precision(torch.device("cpu"), "auto")
    assert scaler is None and autocast is contextlib.nullcontext  # no autocast: fp32
    with pytest.raises(ValueError, match="for GPUs"):
        T._mixed_precision(torch.device("cpu"), "bf16")
    with pytest.raises(ValueError, match="sync_bn needs GPUs"):
        T._wrap_for_ranks(torch.nn.Linear(2, 2), torch.device("cpu"), 1, sync_bn=True)
