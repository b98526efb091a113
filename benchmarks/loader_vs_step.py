"""Is the data loader the bottleneck? Images per second of the image-folder pipeline against the training step.

    python benchmarks/loader_vs_step.py [--threads 2] [--rounds 5] [--images 128] [--workers 2]

Two settings; in each, loader passes and training steps alternate round by round (medians of `--rounds`),
so that both see the same machine state, and neither runs while the other does:
- `imagenet-like`: JPEGs of 500 x 375 px (about ImageNet's mean size), MobileViT-XXS at 256 x 256, batch 32;
- `cifar-like`: PNGs of 32 x 32 px, chapter 7's MINI at 32 x 32, batch 128.

loader: `mobilevit_edu.folder.FolderTrainSet` read by the DataLoader exactly as `fit` reads it (keys
(resolution, index, seed): PIL decode, random-resized crop, flip, to a float tensor, collate), first in
the main process (`workers 0`: what one core delivers) and then with `--workers` worker processes.
step: forward, label-smoothed cross-entropy, backward, AdamW step, on `--threads` threads (the median of
`--rounds` steps after one warm-up step). The ratio loader / step > 1 says that one core of loading keeps
up with the step; "load share" is the fraction of the time a single process (workers 0, loading and
stepping in turn) would spend loading: step rate / (loader rate + step rate). The images are generated (smooth colour fields plus noise, so that
JPEG and PNG sizes are realistic), in a temporary folder. Denormals are flushed.
"""

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mobilevit_edu import folder
from mobilevit_edu import train as T
from mobilevit_edu.models import MINI, XXS

SETTINGS = {  # name: (image width, height, file suffix, model config, resolution, batch)
    "imagenet-like": (500, 375, ".jpg", XXS, 256, 32),
    "cifar-like": (32, 32, ".png", MINI, 32, 128),
}


def write_images(root, count, width, height, suffix, seed=0):
    """root/train/<a|b>/<i><suffix> and one val image per class: smooth colour fields with noise."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", count), ("val", 1)):
        for k in range(n):
            name = "ab"[k % 2]
            (root / split / name).mkdir(parents=True, exist_ok=True)
            ramp = torch.linspace(0, 1, width).view(1, width, 1) * torch.rand(1, 1, 3, generator=g)
            field = ramp + torch.linspace(0, 1, height).view(height, 1, 1) * torch.rand(1, 1, 3, generator=g)
            pixels = (field / 2 + 0.1 * torch.rand(height, width, 3, generator=g)).clamp(0, 1)
            Image.fromarray((pixels * 255).to(torch.uint8).numpy()).save(root / split / name / f"{k}{suffix}", quality=90)


def loader_rate(train_set, resolution, batch, workers, seed=0):
    """Images per second of one pass over train_set through the DataLoader as fit builds it."""
    sampler = T.MultiScaleBatchSampler(len(train_set), batch, (resolution,), resolution, seed=seed)
    plan = sampler.batches(0)
    start = time.perf_counter()
    images = 0
    for x, _ in T._rank_batches(train_set, plan, 0, seed, 0, 1, workers, torch.device("cpu")):
        images += len(x)
    return images / (time.perf_counter() - start)


def step_function(config, resolution, batch):
    """A closure: one training step of `config`'s model on a fixed batch; returns its images per second."""
    model = T.build_model(config, seed=0, num_classes=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 3, resolution, resolution, generator=g), torch.randint(2, (batch,), generator=g)

    def step():
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return batch / (time.perf_counter() - start)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=256, help="training images written per setting (>= the batch, 128)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads} threads for the step, "
          f"{args.images} images, loader with 0 and {args.workers} workers")
    print(f"{'setting':<14} {'loader 0 w':>10} {f'loader {args.workers} w':>10} {'step':>8}"
          f" {'loader/step':>11} {'load share':>10}   (images/s)")
    for name, (width, height, suffix, config, resolution, batch) in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_images(root, args.images, width, height, suffix)
            train_set = folder.FolderTrainSet(root, image_size=resolution)
            step = step_function(config, resolution, batch)
            step()  # warm-up
            rates = {"one": [], "many": [], "step": []}
            for _ in range(args.rounds):
                rates["one"].append(loader_rate(train_set, resolution, batch, 0))
                rates["step"].append(step())
                rates["many"].append(loader_rate(train_set, resolution, batch, args.workers))
                rates["step"].append(step())
        one, many, step = (statistics.median(rates[k]) for k in ("one", "many", "step"))
        print(f"{name:<14} {one:>10.0f} {many:>10.0f} {step:>8.0f} {one / step:>11.1f} {step / (one + step):>10.0%}")


if __name__ == "__main__":
    main()
