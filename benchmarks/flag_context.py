"""Chapter 11's flag experiment over seeds: a small MobileViT against an equal-size CNN (MV2 blocks only),
both with the same ASPP head, trained on flag_shapes with the chapter's recipe; writes a small JSON that
the chapter and exercise 11 load (mobilevit_edu/assets/flag_context.json).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/flag_context.py --epochs 8 --seeds 0 1 2 3 4 --workers 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/flag_context.py --epochs 8 --seeds 0 --isa pinned

Each run is one process with one thread (`--threads` to change it), two at a time. Seeds set the weights'
initialisation and the order of the batches; the data set is the chapter's (seed 0 / 1). `--isa pinned`
runs the kernels on the instruction set scripts/nbval.sh pins (another CPU's rounding), `native` (the
default) on this machine's best. Every run records its epochs, ISA and threads, and its validation mean IoU
and flag-flip share after every epoch; a run measured again (same network, seed, epochs, ISA, threads)
replaces the old one, all others are kept.
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _isa import pinned_isa_env  # benchmarks/ is on sys.path when a script in it runs

OUT = Path(__file__).resolve().parent.parent / "mobilevit_edu" / "assets" / "flag_context.json"
BATCH, LR, WARMUP, NUM_TRAIN, NUM_VAL, SIZE = 8, 6e-3, 10, 1000, 200, 64


def one_run(kind, seed, epochs, isa, threads):
    import torch

    torch.set_num_threads(threads)
    from mobilevit_edu import count_parameters
    from mobilevit_edu.data import flag_shapes
    from mobilevit_edu.segmentation import FLAG_CNN, FLAG_MOBILEVIT, MeanIoU, flag_flip_share, flag_segmenter
    from mobilevit_edu.train import TrainConfig, fit

    config = {"mobilevit": FLAG_MOBILEVIT, "cnn": FLAG_CNN}[kind]
    model = flag_segmenter(config, seed=seed)
    train_set, val_set = flag_shapes(NUM_TRAIN, size=SIZE, seed=0), flag_shapes(NUM_VAL, size=SIZE, seed=1)
    images, truth = val_set.tensors
    flips = []

    class IoUAndFlip(MeanIoU):
        """Mean IoU, plus the flag-flip share of the model as it is at this evaluation (no RNG is used)."""
        def compute(self):
            was_training = model.training
            flips.append(flag_flip_share(model, images, truth))
            model.train(was_training)
            return super().compute()

    train_config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, min_lr=LR / 10, warmup_steps=WARMUP,
                               label_smoothing=0.0, seed=seed)
    history = fit(model, train_set, val_set, train_config, metric=lambda: IoUAndFlip(5), progress=False)
    metric = MeanIoU(5)
    with torch.no_grad():
        metric.update(model.eval()(images), truth)
    return {"kind": kind, "seed": seed, "epochs": epochs, "isa": isa, "threads": threads,
            "backbone_parameters": count_parameters(model.backbone), "mean_iou": metric.compute(),
            "iou": metric.per_class().tolist(), "flip_share": flag_flip_share(model, images, truth),
            "val_mean_iou_per_epoch": history.epoch_val_metric, "flip_share_per_epoch": flips,
            "train_seconds": round(history.train_time, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="+", default=["mobilevit", "cnn"], choices=["mobilevit", "cnn"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--isa", nargs="+", default=["native"], choices=["native", "pinned"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", nargs="+", metavar="KIND:SEED:ISA",
                        help="these runs, in this order, instead of --kinds x --seeds x --isa (e.g. mobilevit:0:pinned)")
    parser.add_argument("--one", nargs=5, metavar=("KIND", "SEED", "EPOCHS", "ISA", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, seed, epochs, isa, threads = args.one
        print(json.dumps(one_run(kind, int(seed), int(epochs), isa, int(threads))))
        return
    jobs = [(kind, seed, isa) for seed in args.seeds for isa in args.isa for kind in args.kinds]
    if args.runs:
        jobs = [(kind, int(seed), isa) for kind, seed, isa in (run.split(":") for run in args.runs)]
    threads = str(args.threads)
    running, results, start = [], [], time.time()
    while jobs or running:
        while jobs and len(running) < args.workers:
            kind, seed, isa = jobs.pop(0)
            env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"):
                env.pop(name, None)
            if isa == "pinned":
                env.update(pinned_isa_env())
            cmd = [sys.executable, __file__, "--one", kind, str(seed), str(args.epochs), isa, threads]
            running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
        while all(proc.poll() is None for proc in running):  # wait for the first run to finish, whichever
            time.sleep(1)
        proc = next(proc for proc in running if proc.poll() is not None)
        running.remove(proc)
        out = proc.stdout.read()
        if proc.returncode != 0:
            raise SystemExit(f"a run failed: {proc.args}")
        results.append(r := json.loads(out.strip().splitlines()[-1]))
        print(f"{time.time() - start:6.0f} s  {r['kind']:9} seed {r['seed']} {r['epochs']} epochs {r['isa']:6}"
              f" {r['threads']} thread(s): mean IoU {r['mean_iou']:.3f}, flip {r['flip_share']:.3f}"
              f" (per epoch {' '.join(f'{f:.2f}' for f in r['flip_share_per_epoch'])}), {r['train_seconds']} s",
              flush=True)
        write(results)  # after every run, so that an interrupted sweep keeps what it measured
    print(f"wrote {OUT}")


def key(run):
    return run["kind"], run["epochs"], run["isa"], run["threads"], run["seed"]


def write(results):
    recipe = {"batch_size": BATCH, "lr": LR, "min_lr": LR / 10, "warmup_steps": WARMUP, "num_train": NUM_TRAIN,
              "num_val": NUM_VAL, "size": SIZE, "isa": {"native": "this machine's best", "pinned": pinned_isa_env()}}
    with open(__file__) as lock:  # two sweeps at once (each locks this script) do not lose each other's runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(OUT.read_text())["runs"] if OUT.exists() else []
        new = {key(r): r for r in old + results}  # a run measured again replaces the old one
        OUT.write_text(json.dumps({"recipe": recipe, "runs": sorted(new.values(), key=key)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
