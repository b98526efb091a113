"""mobilevit_edu.train: schedule, sampler, label smoothing, the loop's determinism and errors, checkpoints."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import mobilevit_edu as me
from mobilevit_edu import train as T
from mobilevit_edu.models import MINI, MINI_CNN


def tiny_data(n=24, resolution=32, classes=2, seed=0, masks=False):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, resolution, resolution, generator=g)
    if masks:
        targets = torch.randint(classes, (n, resolution, resolution), generator=g)
    else:
        targets = torch.randint(classes, (n,), generator=g)
    return TensorDataset(images, targets)


# ------------------------------------------------------------------------------------ the schedule
def test_warmup_starts_at_warmup_lr_and_reaches_lr_at_step_warmup_steps():
    lrs = [T.lr_at(t, 20, 1.0, 0.1, warmup_steps=5, warmup_lr=0.2) for t in range(20)]
    assert lrs[0] == pytest.approx(0.2)
    assert lrs[5] == pytest.approx(1.0)
    assert lrs[:6] == pytest.approx([0.2 + t * 0.8 / 5 for t in range(6)])
    assert max(lrs) == pytest.approx(1.0)


def test_cosine_ends_at_min_lr_not_zero_and_is_monotone_after_the_peak():
    lrs = [T.lr_at(t, 30, 2e-3, 2e-4, warmup_steps=3, warmup_lr=2e-4) for t in range(30)]
    assert lrs[-1] == pytest.approx(2e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    middle = 3 + (30 - 1 - 3) / 2  # halfway through the decay: the mean of lr and min_lr
    assert T.lr_at(int(middle), 30, 2e-3, 2e-4, 3, 2e-4) == pytest.approx(
        2e-4 + 0.5 * 1.8e-3 * (1 + math.cos(math.pi * (int(middle) - 3) / 26))
    )


def test_schedule_without_warmup_starts_at_the_peak():
    config = T.TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=0)
    lrs = T.lr_schedule(config, 10)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)


@pytest.mark.parametrize("step,total,warmup", [(-1, 10, 0), (10, 10, 0), (0, 5, 5)])
def test_lr_at_rejects_steps_outside_the_run(step, total, warmup):
    with pytest.raises(ValueError):
        T.lr_at(step, total, 1e-3, 1e-4, warmup)


# ------------------------------------------------------------------------------------- the sampler
def test_batch_size_keeps_pixels_per_batch_at_most_constant():
    for resolution in (16, 24, 32, 40, 48, 64):
        b = T.batch_size_for(resolution, 32, 64)
        assert b * resolution**2 <= 64 * 32**2 < (b + 1) * resolution**2
    assert T.batch_size_for(32, 32, 64) == 64
    assert T.batch_size_for(64, 32, 64) == 16
    assert T.batch_size_for(48, 32, 64) == 28  # floor(64 * 1024 / 2304) = floor(28.4)
    assert T.batch_size_for(1000, 32, 1) == 1  # never zero


def test_paper_sizes_from_the_256_base():
    # the paper's resolutions with ml-cvnets' base 256 x 256 and batch 128 per GPU
    sizes = {r: T.batch_size_for(r, 256, 128) for r in (160, 192, 256, 288, 320)}
    assert sizes == {160: 327, 192: 227, 256: 128, 288: 101, 320: 81}


def test_sampler_batches_cover_the_data_with_constant_pixels():
    sampler = T.MultiScaleBatchSampler(100, 16, (24, 32, 40), base_resolution=32, seed=0)
    batches = sampler.batches(0)
    seen = torch.cat([indices for _, indices in batches])
    assert set(seen.tolist()) == set(range(100))  # every image at least once in an epoch
    for resolution, indices in batches:
        assert len(indices) == T.batch_size_for(resolution, 32, 16)
        assert len(indices) * resolution**2 <= 16 * 32**2
    assert {r for r, _ in batches} == {24, 32, 40}
    assert len(sampler) == len(batches)


def test_sampler_is_deterministic_per_seed_and_epoch():
    a = T.MultiScaleBatchSampler(50, 8, (32, 48), seed=1)
    b = T.MultiScaleBatchSampler(50, 8, (32, 48), seed=1)
    same = lambda x, y: all(r1 == r2 and torch.equal(i1, i2) for (r1, i1), (r2, i2) in zip(x, y))
    assert same(a.batches(3), b.batches(3))
    assert not same(a.batches(3), a.batches(4))
    a.set_epoch(3)
    assert same(list(a), b.batches(3))


def test_sampler_rejects_batches_larger_than_the_data():
    with pytest.raises(ValueError, match="larger than the data set"):
        T.MultiScaleBatchSampler(10, 8, (16, 32), base_resolution=32)


# -------------------------------------------------------------------------------- label smoothing
def test_smooth_targets_rows_and_cross_entropy_agree():
    targets = torch.tensor([0, 2])
    q = T.smooth_targets(targets, 4, 0.1)
    assert torch.allclose(q.sum(1), torch.ones(2))
    assert q[0, 0].item() == pytest.approx(0.925) and q[0, 1].item() == pytest.approx(0.025)
    logits = torch.randn(2, 4)
    manual = -(q * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(manual, F.cross_entropy(logits, targets, label_smoothing=0.1))


# -------------------------------------------------------------------------------------- the loop
def small_config(**changes):
    base = dict(epochs=2, batch_size=8, lr=2e-3, min_lr=2e-4, warmup_steps=1, seed=0)
    base.update(changes)
    return T.TrainConfig(**base)


def test_fit_is_deterministic_for_a_seed():
    train, val = tiny_data(24), tiny_data(8, seed=1)
    weights = []
    for _ in range(2):
        model = T.build_model(MINI, seed=0, num_classes=2)
        history = T.fit(model, train, val, small_config(resolutions=(32, 40), ema_momentum=0.5), progress=False)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert len(history.step_lr) == len(history.step_loss) == len(history.step_resolution)
    assert len(history.epoch_val_metric) == 2 and 0 <= history.final_val_metric <= 1
    assert history.images_per_second > 0 and history.wall_time >= history.train_time > 0


def test_fit_leaves_the_global_rng_alone():
    train, val = tiny_data(16), tiny_data(8, seed=1)
    model = T.build_model(MINI, seed=0, num_classes=2)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    T.fit(model, train, val, small_config(epochs=1), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_fit_follows_the_schedule_and_the_sampler():
    train, val = tiny_data(32), tiny_data(8, seed=1)
    config = small_config(resolutions=(32, 48), base_resolution=32, warmup_steps=2)
    history = T.fit(T.build_model(MINI, seed=0, num_classes=2), train, val, config, progress=False)
    total = len(history.step_lr)
    assert history.step_lr == pytest.approx(T.lr_schedule(config, total))
    for resolution, b in zip(history.step_resolution, history.step_batch_size):
        assert b == T.batch_size_for(resolution, 32, 8)


def test_fit_trains_segmentation_masks_with_nearest_resizing():
    train, val = tiny_data(40, masks=True, classes=3), tiny_data(4, masks=True, classes=3, seed=1)

    class PerPixel(torch.nn.Module):  # a 1x1 conv "segmenter": (B, 3, H, W) -> (B, 3 classes, H, W)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    history = T.fit(PerPixel(), train, val, small_config(resolutions=(16, 32), base_resolution=32), progress=False)
    assert set(history.step_resolution) <= {16, 32} and 0 <= history.final_val_metric <= 1


def test_fit_learns_an_easy_task():
    # brightness decides the class; a linear model on the mean colour (no BatchNorm, whose running
    # statistics would lag after a few steps) must learn it in a few steps
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(2, (64,), generator=g)
    images = (labels.view(-1, 1, 1, 1) * 0.6 + 0.2 + 0.05 * torch.rand(64, 3, 8, 8, generator=g)).clamp(0, 1)
    ds = TensorDataset(images, labels)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    history = T.fit(model, ds, ds, small_config(epochs=5, batch_size=16, lr=0.1, min_lr=0.01), progress=False)
    assert history.final_val_metric >= 0.9
    assert history.epoch_train_loss[-1] < history.epoch_train_loss[0]


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"lr": -1e-3}, "lr must be a positive number"),
        ({"min_lr": 1e-2}, "min_lr"),
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"ema_momentum": 0.0}, "ema_momentum"),
        ({"resolutions": ()}, "resolutions"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_train_config_rejects_bad_values(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        small_config(**changes)


def test_fit_rejects_an_empty_data_set():
    empty = TensorDataset(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    model = T.build_model(MINI, seed=0, num_classes=2)
    with pytest.raises(ValueError, match="train_set is empty"):
        T.fit(model, empty, tiny_data(4), small_config(), progress=False)
    with pytest.raises(ValueError, match="val_set is empty"):
        T.fit(model, tiny_data(16), empty, small_config(), progress=False)


def test_fit_rejects_a_batch_larger_than_the_data():
    model = T.build_model(MINI, seed=0, num_classes=2)
    with pytest.raises(ValueError, match=r"batch_size \(32\) is larger than train_set \(16 images\)"):
        T.fit(model, tiny_data(16), tiny_data(4), small_config(batch_size=32), progress=False)


def test_fit_rejects_warmup_longer_than_the_run():
    model = T.build_model(MINI, seed=0, num_classes=2)
    with pytest.raises(ValueError, match="warmup_steps"):
        T.fit(model, tiny_data(16), tiny_data(4), small_config(epochs=1, warmup_steps=2), progress=False)


def test_fit_rejects_float_labels_and_a_wrong_config_type():
    model = T.build_model(MINI, seed=0, num_classes=2)
    bad = TensorDataset(torch.rand(8, 3, 32, 32), torch.rand(8))
    with pytest.raises(ValueError, match="long labels"):
        T.fit(model, bad, tiny_data(4), small_config(), progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        T.fit(model, tiny_data(16), tiny_data(4), {"epochs": 1}, progress=False)


def test_custom_loss_and_metric_are_used():
    calls = []

    class Count:
        def __init__(self):
            self.n = 0

        def update(self, outputs, targets):
            self.n += len(targets)

        def compute(self):
            return float(self.n)

    def loss_fn(outputs, targets):
        calls.append(outputs.shape)
        return F.cross_entropy(outputs, targets)

    history = T.fit(T.build_model(MINI, seed=0, num_classes=2), tiny_data(16), tiny_data(6), small_config(epochs=1),
                    loss_fn=loss_fn, metric=Count, progress=False)
    assert calls and history.epoch_val_metric == [6.0]


# ------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = T.build_model(MINI, seed=3, num_classes=2)
    config = small_config()
    path = T.save_checkpoint(tmp_path / "m.pt", model, train_config=config, metrics={"val_accuracy": 0.75})
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert raw["model_config"]["name"] == MINI.name and raw["metrics"] == {"val_accuracy": 0.75}
    loaded, info = T.load_checkpoint(path)
    assert loaded.config == dataclasses.replace(MINI, num_classes=2)
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert info["train_config"]["lr"] == config.lr


def test_read_checkpoint_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a mobilevit_edu checkpoint"):
        T.read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        T.read_checkpoint(tmp_path / "missing.pt")


def test_the_shipped_checkpoints_load_and_are_small():
    for name in ("mobilevit_mini", "cnn_mini"):
        path = T.checkpoint_path(name)
        assert path.stat().st_size <= 2 * 1024 * 1024
        model, info = T.load_checkpoint(path)
        assert me.count_parameters(model) > 0 and 0.5 <= info["metrics"]["val_accuracy"] <= 1.0


def test_build_model_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    a = T.build_model(MINI, seed=1)
    assert torch.equal(torch.rand(2), expected)
    b = T.build_model(MINI, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_device_auto_picks_cuda_when_present_else_the_cpu_and_cuda_without_a_gpu_is_one_clear_error():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert T.resolve_device("auto").type == expected
    assert T.resolve_device(torch.device("cpu")).type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        T.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            T.fit(T.build_model(MINI, seed=0, num_classes=2), tiny_data(16), tiny_data(4), small_config(epochs=1),
                  device="cuda", progress=False)
    history = T.fit(T.build_model(MINI, seed=0, num_classes=2), tiny_data(16), tiny_data(4), small_config(epochs=1),
                    device="auto", progress=False)
    assert len(history.epoch_val_metric) == 1
