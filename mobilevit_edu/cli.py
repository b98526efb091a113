"""The training command: chapter 7's `fit` on an image folder, on a CPU, a GPU or many of them.

    python -m mobilevit_edu.train --data DIR --model xxs --epochs 30 --out runs/xxs
    torchrun --nproc_per_node 8 -m mobilevit_edu.train --data /imagenet --model s --preset paper-imagenet

`python -m mobilevit_edu.train --help` lists the options. This module only turns options into the
arguments of `mobilevit_edu.train.fit` (the loop itself lives there, once) and, under torchrun, joins
the process group: NCCL between GPUs, gloo between CPU processes.
"""

import argparse
import dataclasses
import importlib
import os
import sys
from pathlib import Path

import torch

from . import train as T
from .folder import image_folder_splits
from .models import CONFIGS, MINI, MINI_CNN
from .models_v2 import CONFIGS_V2

__all__ = ["main", "MODELS", "PRESETS", "scaled_resolutions", "build_parser", "missing_train_extra"]

# --model: short names for the paper's networks, their full names, the chapter-7 minis and the v2 widths
MODELS = {"mini": MINI, "cnn_mini": MINI_CNN, "xxs": CONFIGS["mobilevit_xxs"], "xs": CONFIGS["mobilevit_xs"],
          "s": CONFIGS["mobilevit_s"], **CONFIGS, **CONFIGS_V2}

# --preset: the recipe's defaults; every option given on the command line wins over its preset value.
# "course": chapter 7's recipe (AdamW 0.002 -> 0.0002, label smoothing 0.1) with the paper's EMA and the
#           paper's resolutions scaled to --image-size; the warm-up is 10 % of the run, at most 3,000 steps.
# "paper-imagenet": the paper's ImageNet recipe, train.PAPER_IMAGENET_RECIPE, and classifier dropout 0.1.
PRESETS = {
    "course": {"epochs": 10, "batch_size": 128, "image_size": 256, "lr": 2e-3, "min_lr": 2e-4, "warmup_lr": 2e-4,
               "weight_decay": 0.01, "label_smoothing": 0.1, "ema_momentum": 0.0005, "drop_rate": 0.0},
    "paper-imagenet": {"epochs": 300, "batch_size": 1024, "image_size": 256, "lr": 2e-3, "min_lr": 2e-4,
                       "warmup_lr": 2e-4, "warmup_steps": 3000, "weight_decay": 0.01, "label_smoothing": 0.1,
                       "ema_momentum": 0.0005, "resolutions": [160, 192, 256, 288, 320], "drop_rate": 0.1},
}
PAPER_SCALES = (160, 192, 256, 288, 320)  # the paper's resolutions for its base 256

# What the command imports beyond the package's own dependencies, as pyproject.toml's `train` extra installs
# them: the image folder (torchvision's ImageFolder and transforms, folder.py), PIL to decode the files, and
# tqdm for the progress bar (train.fit).
TRAIN_EXTRA = {"torchvision": "torchvision", "PIL": "Pillow", "tqdm": "tqdm"}  # module: its package


def missing_train_extra():
    """The packages of the `train` extra that cannot be imported here; [] when the command has all it needs."""
    missing = []
    for module, package in TRAIN_EXTRA.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def scaled_resolutions(image_size):
    """The paper's resolutions {160, 192, 256, 288, 320} for base 256, scaled to `image_size` and rounded to
    multiples of 8 (at least 32, the networks' smallest input): 256 -> the paper's, 32 -> (32, 40)."""
    return tuple(sorted({max(32, 8 * int(image_size * r / 256 / 8 + 0.5)) for r in PAPER_SCALES}))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mobilevit_edu.train",
        description="Train a MobileViT on an image folder with chapter 7's fit: AdamW, warm-up + cosine, label"
        " smoothing, EMA, the multi-scale sampler, random-resized crop + flip. Under `torchrun --nproc_per_node N`"
        " it runs N processes with DistributedDataParallel (NCCL on GPUs, gloo on CPUs); --batch-size is then the"
        " global batch, split across the processes.",
        epilog="Examples:\n"
        "  python -m mobilevit_edu.train --data cifar10 --model xxs --image-size 64 --batch-size 256 --epochs 30\n"
        "  torchrun --nproc_per_node 8 -m mobilevit_edu.train --data /imagenet --model s --preset paper-imagenet"
        " --out runs/s\n"
        "  python -m mobilevit_edu.train --data DIR --model xxs --resume runs/xxs/last.pt   (the same options)\n"
        "Outputs in --out: last.pt (resumable, rewritten atomically every epoch), model.pt (the final model; EMA"
        " weights if EMA is on), history.csv (per epoch: loss, val metric, lr, seconds), history.json (per step).\n"
        "An image that cannot be read stops the run with an error naming the file; last.pt stays intact.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--data", required=True, metavar="DIR", help="image folder: DIR/train/<class>/* and DIR/val/<class>/*")
    add("--model", default="xxs", metavar="NAME",
        help=f"network config (default xxs): {', '.join(MODELS)}")
    add("--preset", default="course", choices=sorted(PRESETS), help="recipe defaults (default: course)")
    add("--epochs", type=int, help="epochs (course: 10, paper-imagenet: 300)")
    add("--batch-size", type=int, help="global batch at --image-size, over all processes (course: 128; paper: 1024)")
    add("--image-size", type=int, help="the sampler's base resolution and the validation size (default 256)")
    add("--resolutions", type=int, nargs="+", metavar="PX",
        help="the multi-scale sampler's resolutions (default: the paper's 160..320 scaled to --image-size)")
    add("--lr", type=float, help="peak learning rate after the warm-up (default 0.002)")
    add("--min-lr", type=float, help="learning rate of the last step (default 0.0002)")
    add("--warmup-steps", type=int, help="linear warm-up steps (course: 10 %% of the run, at most 3000; paper: 3000)")
    add("--ema-momentum", type=float, help="EMA momentum, 0 for no EMA (default 0.0005)")
    add("--out", metavar="DIR", help="checkpoints and history (default: runs/<model>, or the folder of --resume)")
    add("--resume", metavar="PATH", help="continue the run saved in PATH (a last.pt), with the same options")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when present")
    add("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
        help="GPUs: auto = bf16 where supported, else fp16 with a grad scaler; the CPU runs fp32")
    add("--sync-bn", action="store_true", help="synchronise BatchNorm statistics across GPUs (torchrun)")
    add("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader worker processes per process")
    add("--checkpoint-every", type=int, metavar="STEPS", help="also write last.pt every STEPS optimiser steps")
    add("--stop-after", type=int, metavar="STEPS",
        help="stop after STEPS steps of the run, having written last.pt (a time-limited session; --resume continues)")
    add("--seed", type=int, default=0, help="weights, sampler order and resolutions, augmentation, dropout")
    add("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    return parser


def _model_config(name, num_classes, drop_rate):
    if name not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}; got {name!r}")
    return dataclasses.replace(MODELS[name], num_classes=num_classes, drop_rate=drop_rate)


def _train_config(args, preset, num_images):
    """The TrainConfig of the options (each option not given takes its preset value)."""
    pick = lambda name: getattr(args, name) if getattr(args, name, None) is not None else preset.get(name)
    image_size = pick("image_size")
    ema = pick("ema_momentum")
    config = T.TrainConfig(
        epochs=pick("epochs"), batch_size=pick("batch_size"), lr=pick("lr"), min_lr=pick("min_lr"),
        warmup_lr=preset["warmup_lr"], weight_decay=preset["weight_decay"], label_smoothing=preset["label_smoothing"],
        ema_momentum=ema if ema else None, resolutions=tuple(pick("resolutions") or scaled_resolutions(image_size)),
        base_resolution=image_size, seed=args.seed,
    )
    warmup = pick("warmup_steps")
    if warmup is None:  # 10 % of the run, at most the paper's 3,000
        sampler = T.MultiScaleBatchSampler(num_images, config.batch_size, config.resolutions, image_size, config.seed)
        total = sum(len(sampler.batches(epoch)) for epoch in range(config.epochs))
        warmup = min(3000, total // 10)
    return dataclasses.replace(config, warmup_steps=warmup)


def _join_process_group(device):
    """Under torchrun (it sets LOCAL_RANK, RANK, WORLD_SIZE): join the process group, one GPU per process
    (NCCL) or CPU processes (gloo). Returns the device of this process."""
    if "LOCAL_RANK" not in os.environ:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def run(args):
    """Train as `args` (the parsed options) say; returns the History (rank 0 prints and writes)."""
    preset = PRESETS[args.preset]
    device = _join_process_group(T.resolve_device(args.device))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    image_size = args.image_size or preset["image_size"]
    train_set, val_set = image_folder_splits(args.data, image_size)
    config = _train_config(args, preset, len(train_set))
    model = T.build_model(_model_config(args.model, len(train_set.classes), preset["drop_rate"]), seed=args.seed)
    out = Path(args.out) if args.out else (Path(args.resume).parent if args.resume else Path("runs") / args.model)
    if rank == 0 and not args.no_progress:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        print(f"{model.config.name}: {sum(p.numel() for p in model.parameters()):,} parameters,"
              f" {len(train_set):,} training / {len(val_set):,} validation images, {len(train_set.classes)} classes;"
              f" {world} process(es) on {device}; resolutions {config.resolutions}, global batch {config.batch_size}"
              f" at {config.base_resolution} px; out: {out}")
    history = T.fit(
        model, train_set, val_set, config, device=device, progress=not args.no_progress, out=out,
        resume=args.resume, checkpoint_every=args.checkpoint_every, stop_after=args.stop_after,
        num_workers=args.workers, precision=args.precision, sync_bn=args.sync_bn,
    )
    if rank == 0 and not args.no_progress and len(history.epoch_val_metric) == config.epochs:
        print(f"done: validation accuracy {history.final_val_metric:.4f}; {out / 'model.pt'}")
    return history


def _one_line(error):
    """The error's message; for one raised in a DataLoader worker, its last line (not the worker's traceback)."""
    lines = str(error).strip().splitlines()
    return lines[-1] if "Original Traceback" in str(error) and lines else str(error)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = missing_train_extra()
    if missing:
        parser.exit(2, f"{parser.prog}: error: the training command needs {' and '.join(missing)}, which the"
                       f' extra installs: pip install "mobilevit_edu[train]"\n')
    try:
        run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog}: error: {_one_line(error)}\n")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
