"""Chapter 11's flag experiment over seeds: a small MobileViT against an equal-size CNN (MV2 blocks only),
both with the same ASPP head, trained on flag_shapes with the chapter's recipe; writes a small JSON that
the chapter loads and cites (mobilevit_edu/assets/flag_context.json).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/flag_context.py --seeds 0 1 2 3 4 --workers 2

Each run is one process with one thread (about 3 minutes each on this machine, two at a time). Seeds set
the weights' initialisation and the order of the batches; the data set is the chapter's (seed 0 / 1).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "mobilevit_edu" / "assets" / "flag_context.json"
EPOCHS, BATCH, LR, WARMUP, NUM_TRAIN, NUM_VAL, SIZE = 4, 8, 6e-3, 10, 1000, 200, 64


def one_run(kind, seed):
    import torch

    torch.set_num_threads(1)
    from mobilevit_edu import count_parameters
    from mobilevit_edu.data import flag_shapes
    from mobilevit_edu.segmentation import FLAG_CNN, FLAG_MOBILEVIT, MeanIoU, flag_flip_share, flag_segmenter
    from mobilevit_edu.train import TrainConfig, fit

    config = {"mobilevit": FLAG_MOBILEVIT, "cnn": FLAG_CNN}[kind]
    model = flag_segmenter(config, seed=seed)
    train_set, val_set = flag_shapes(NUM_TRAIN, size=SIZE, seed=0), flag_shapes(NUM_VAL, size=SIZE, seed=1)
    train_config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, min_lr=LR / 10, warmup_steps=WARMUP,
                               label_smoothing=0.0, seed=seed)
    history = fit(model, train_set, val_set, train_config, metric=lambda: MeanIoU(5), progress=False)
    images, truth = val_set.tensors
    metric = MeanIoU(5)
    with torch.no_grad():
        metric.update(model.eval()(images), truth)
    return {"kind": kind, "seed": seed, "backbone_parameters": count_parameters(model.backbone),
            "mean_iou": metric.compute(), "iou": metric.per_class().tolist(),
            "flip_share": flag_flip_share(model, images, truth), "val_mean_iou_per_epoch": history.epoch_val_metric}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="+", default=["mobilevit", "cnn"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]))))
        return
    jobs = [(kind, seed) for seed in args.seeds for kind in args.kinds]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    running, results, start = [], [], time.time()
    while jobs or running:
        while jobs and len(running) < args.workers:
            kind, seed = jobs.pop(0)
            cmd = [sys.executable, __file__, "--one", kind, str(seed)]
            running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
        proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a run failed: {proc.args}")
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{time.time() - start:6.0f} s  {results[-1]['kind']:9} seed {results[-1]['seed']}:"
              f" mean IoU {results[-1]['mean_iou']:.3f}, flip {results[-1]['flip_share']:.3f}", flush=True)
        write(results)  # after every run, so that an interrupted sweep keeps what it measured
    print(f"wrote {OUT}")


def write(results):
    recipe = {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "warmup_steps": WARMUP, "num_train": NUM_TRAIN,
              "num_val": NUM_VAL, "size": SIZE}
    old = json.loads(OUT.read_text())["runs"] if OUT.exists() else []
    new = {(r["kind"], r["seed"]): r for r in old + results}  # a run measured again replaces the old one
    runs = sorted(new.values(), key=lambda r: (r["kind"], r["seed"]))
    OUT.write_text(json.dumps({"recipe": recipe, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
