"""Chapters 7 and 8 over more seeds and a longer budget: accuracy against epochs, and what the trained
networks look at.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/ch7_epochs_sweep.py [--seeds 0 1 2 3 4] [--epochs 8 2]
    OMP_NUM_THREADS=1 nice -n 10 python scripts/ch7_epochs_sweep.py --analyse

Training: for each network (MobileViT `MINI`, CNN `MINI_CNN`), each seed and each run length E, one
complete run of chapter 7's recipe (`T.CHAPTER7_RECIPE` with `epochs=E, seed=seed`) on chapter 7's data
(`T.CHAPTER7_DATA`). The warm-up + cosine schedule is stretched over the E epochs, so the accuracy after
epoch k of an 8-epoch run is *not* that of a finished 2-epoch run (whose learning rate has already decayed):
both are stored, the curve of every run (`val_accuracy_per_epoch`) and its final accuracy. Chapter 7 reads,
tabulates and plots `mobilevit_edu/assets/ch7_epochs.json` (the sweep takes far longer than a notebook may).
The trained weights go to --models (not committed) for the second step.

Analysis (`--analyse`, chapter 8): for every saved network, and for each network at initialisation
(the same seeds, untrained), on 16 new images at 32×32 (`data.matching_marks(16, 32, seed=1001)`):
the effective receptive field of the last stage's pixel (0, 0) (a corner) and (2, 2) (centred on the
image's centre), |gradient| summed over the output channels one by one (`channels="each"`), summarised by
`explain.receptive_field_summary`; for the MobileViT, the entropy of the `stages.2` attention rows divided by
log N (1 = uniform), and the validation accuracy with every attention replaced by a mean over the patches
(`explain.uniform_attention`) against the accuracy as trained.

Each worker process uses one thread; runs already in the output file are kept (an interrupted sweep
resumes). On a quiet two-core machine the training takes about 10 minutes with 2 workers.
"""

import argparse
import dataclasses
import json
import multiprocessing
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mobilevit_edu import data  # noqa: E402
from mobilevit_edu import explain  # noqa: E402
from mobilevit_edu import train as T  # noqa: E402
from mobilevit_edu.models import MINI, MINI_CNN  # noqa: E402

OUTPUT = ROOT / "mobilevit_edu" / "assets" / "ch7_epochs.json"
NETWORKS = {"MobileViT": MINI, "CNN": MINI_CNN}
MODELS = Path("/tmp/ch7_sweep_models")


def one_run(job):
    """Train one network for one seed and one run length; the row the JSON stores."""
    label, seed, epochs, models = job
    torch.set_num_threads(1)
    train_set, val_set = data.matching_marks_splits(**T.CHAPTER7_DATA)
    model = T.build_model(NETWORKS[label], seed=seed)
    recipe = dataclasses.replace(T.CHAPTER7_RECIPE, epochs=epochs, seed=seed)
    history = T.fit(model, train_set, val_set, recipe, progress=False)
    models.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), models / f"{label}_seed{seed}_epochs{epochs}.pt")
    print(f"{label:9} seed {seed} epochs {epochs}: {history.final_val_metric:.3f}", flush=True)
    return {"network": label, "seed": seed, "epochs": epochs,
            "val_accuracy": round(history.final_val_metric, 4),
            "val_accuracy_per_epoch": [round(a, 4) for a in history.epoch_val_metric]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, nargs="+", default=[8, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--models", type=Path, default=MODELS, help="where the trained weights are kept")
    parser.add_argument("--analyse", action="store_true", help="analyse the saved networks (chapter 8)")
    args = parser.parse_args()
    if args.analyse:
        return analyse_all(args)

    old = json.loads(args.output.read_text()) if args.output.exists() else {"runs": []}
    done = {(r["network"], r["seed"], r["epochs"]): r for r in old["runs"]}
    jobs = [(label, seed, e, args.models) for e in args.epochs  # in the order given: the most wanted first
            for seed in args.seeds for label in NETWORKS if (label, seed, e) not in done]
    print(f"{len(jobs)} runs to do, {len(done)} kept from {args.output.name}", flush=True)
    rows = list(done.values())
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap_unordered(one_run, jobs):
            rows.append(row)
            rows.sort(key=lambda r: (r["network"] != "MobileViT", r["seed"], r["epochs"]))
            result = json.loads(args.output.read_text()) if args.output.exists() else {}
            result.update({
                "what": "chapter 7: validation accuracy of complete runs of E epochs (chapter 7's recipe with"
                        " epochs=E, seed=s) on chapter 7's data; written by scripts/ch7_epochs_sweep.py",
                "data": T.CHAPTER7_DATA,
                "recipe": {k: v for k, v in dataclasses.asdict(T.CHAPTER7_RECIPE).items() if k not in ("epochs", "seed")},
                "threads_per_run": 1,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "runs": rows,
            })
            args.output.write_text(json.dumps(result, indent=1) + "\n")  # after every run: resumable


def analyse(job):
    """ERF summaries, attention entropy and the uniform-attention accuracy of one saved (or untrained) network."""
    label, seed, epochs, models = job
    torch.set_num_threads(1)
    model = T.build_model(NETWORKS[label], seed=seed)
    if epochs > 0:
        model.load_state_dict(torch.load(models / f"{label}_seed{seed}_epochs{epochs}.pt", weights_only=True))
    model.eval()
    images = data.matching_marks(16, 32, seed=1001).tensors[0]
    last = len(model.stages) - 1
    stride = explain.stage_strides(model, (32, 32))[last]
    row = {"network": label, "seed": seed, "epochs": epochs}
    for name, pixel in (("corner", (0, 0)), ("centre", (2, 2))):
        erf = explain.effective_receptive_field(lambda x: model.features(x)[last], images, pixel, channels="each")
        summary = explain.receptive_field_summary(erf, (pixel[0] * stride, pixel[1] * stride))
        row[f"erf_{name}"] = {k: round(v, 4) for k, v in summary.items()}
    if label == "MobileViT":
        block = explain.mobilevit_blocks(model)[2]
        entropy = explain.attention_entropy(block, explain.local_representation(model, images, 2))
        n_patches = 16  # an 8x8 map of 2x2 patches at 32x32
        row["attention_entropy_over_log_n"] = round(float(entropy.mean() / torch.log(torch.tensor(float(n_patches)))), 4)
        if epochs > 0:
            _, val_set = data.matching_marks_splits(**T.CHAPTER7_DATA)
            row["val_accuracy"] = round(T.evaluate(model, val_set), 4)
            with explain.uniform_attention(model):
                row["val_accuracy_uniform_attention"] = round(T.evaluate(model, val_set), 4)
    print(row, flush=True)
    return row


def analyse_all(args):
    result = json.loads(args.output.read_text())
    trained = sorted({(r["network"], r["seed"], r["epochs"]) for r in result["runs"]})
    untrained = sorted({(label, seed, 0) for label, seed, _ in trained})
    jobs = [(label, seed, e, args.models) for label, seed, e in untrained + trained
            if e == 0 or (args.models / f"{label}_seed{seed}_epochs{e}.pt").exists()]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = list(pool.imap(analyse, jobs))
    result["analysis"] = {
        "what": "chapter 8: effective receptive fields (last stage, pixel (0, 0) and (2, 2), channels='each',"
                " 16 images of data.matching_marks(16, 32, seed=1001)), attention entropy / log N in stages.2,"
                " validation accuracy with uniform attention; epochs 0 = at initialisation",
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
