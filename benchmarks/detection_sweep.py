"""Chapter 12 over seeds: SSDLite on the small MobileViT (MINI) against the same head on the equal-size CNN
(MINI_CNN, MV2 blocks only), trained on shapes_detection with the chapter's recipe; writes a small JSON
that the chapter reads (mobilevit_edu/assets/detection_sweep.json).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/detection_sweep.py --seeds 0 1 2 --workers 2
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/detection_sweep.py --seeds 0 --kinds mobilevit --isa pinned

Each run is one process with one thread, `--workers` at a time. Seeds set the weights' initialisation and
the batches' order; the data set is the chapter's (CHAPTER12_DATA). `--isa pinned` runs on the instruction
set scripts/nbval.sh pins. Each run records its per-epoch training loss and validation mAP@[.5:.95], and
the final mAP@[.5:.95] and mAP@0.5 (pycocotools); a run measured again (same network, seed, epochs, ISA)
replaces the old one.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _isa import pinned_isa_env  # benchmarks/ is on sys.path when a script in it runs

OUT = Path(__file__).resolve().parent.parent / "mobilevit_edu" / "assets" / "detection_sweep.json"


def one_run(kind, seed, epochs, isa):
    import torch

    torch.set_num_threads(1)
    from mobilevit_edu.detection import COCOMeanAP, chapter12_data, chapter12_recipe, toy_detector
    from mobilevit_edu.models import MINI, MINI_CNN
    from mobilevit_edu.train import evaluate, fit

    detector = toy_detector({"mobilevit": MINI, "cnn": MINI_CNN}[kind], seed=seed)
    train, val = chapter12_data()
    from mobilevit_edu.detection import SSDLoss

    size = tuple(train.tensors[0].shape[-2:])
    start = time.perf_counter()
    history = fit(detector, train, val, chapter12_recipe(seed, epochs), loss_fn=SSDLoss(detector, size),
                  metric=lambda: COCOMeanAP(detector, size), progress=False)
    metric = COCOMeanAP(detector, size)
    evaluate(detector, val, lambda: metric)
    return {"kind": kind, "seed": seed, "epochs": epochs, "isa": isa,
            "parameters": sum(p.numel() for p in detector.parameters()),
            "train_loss": history.epoch_train_loss, "val_map": history.epoch_val_metric,
            "map": metric.result["map"], "map_50": metric.result["map_50"],
            "seconds": round(time.perf_counter() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=["mobilevit", "cnn"], choices=["mobilevit", "cnn"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--isa", default="native", choices=["native", "pinned"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SEED"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]), args.epochs, args.isa)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(pinned_isa_env() if args.isa == "pinned" else {})}
    jobs = [(kind, seed) for seed in args.seeds for kind in args.kinds]
    running, results = [], []
    while jobs or running:
        while jobs and len(running) < args.workers:
            kind, seed = jobs.pop(0)
            cmd = [sys.executable, __file__, "--one", kind, str(seed), "--epochs", str(args.epochs), "--isa", args.isa]
            running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        done = running.pop(0)
        out, _ = done.communicate()
        if done.returncode != 0:
            sys.exit(f"a run failed: {done.args}")
        results.append(json.loads(out.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{r['kind']:9s} seed {r['seed']} {r['isa']:6s} mAP {r['map']:.3f} mAP50 {r['map_50']:.3f} ({r['seconds']} s)", flush=True)
    old = json.loads(OUT.read_text())["runs"] if OUT.exists() else []
    key = lambda r: (r["kind"], r["seed"], r["epochs"], r["isa"])  # noqa: E731
    new_keys = {key(r) for r in results}
    runs = [r for r in old if key(r) not in new_keys] + results
    runs.sort(key=lambda r: (r["isa"], r["kind"], r["epochs"], r["seed"]))
    OUT.write_text(json.dumps({"about": "benchmarks/detection_sweep.py: chapter 12's detector over seeds",
                               "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
