"""Chapter 7: a small, readable training loop with the paper's recipe in miniature.

    from mobilevit_edu.train import TrainConfig, fit, History, save_checkpoint, load_checkpoint
    history = fit(model, train_set, val_set, config, *, loss_fn=None, metric=None, device="cpu", progress=True)

- `train_set` / `val_set`: TensorDataset-like, images (N, C, H, W) float in [0, 1] and targets that are
  (N,) long labels or (N, H, W) long masks. With `config.resolutions`, the multi-scale sampler picks a
  resolution per batch: images are resized bilinearly, masks with nearest-neighbour.
- `loss_fn(outputs, targets) -> scalar`; default: cross-entropy with `config.label_smoothing`
  (works for (B, K) vs (B,) and for (B, K, H, W) vs (B, H, W)).
- `metric`: a zero-argument factory of an object with `update(outputs, targets)` and
  `compute() -> float`; default `Accuracy` (top-1, also per pixel for masks). Evaluated on `val_set`
  after every epoch, on the EMA weights when `config.ema_momentum` is set.

The recipe (Mehta & Rastegari 2022, sec. 4.1; ml-cvnets' configs): AdamW, learning rate warmed up
linearly from `warmup_lr` to `lr`, then cosine down to `min_lr`; label smoothing; an optional
exponential moving average (EMA) of the weights; the multi-scale batch sampler (`MultiScaleBatchSampler`,
ml-cvnets' VariableBatchSampler): a resolution per batch, the batch size scaled so that pixels per batch
stay (at most) constant.

Checkpoints: `save_checkpoint(path, model, train_config=..., metrics=...)` writes the state dict and the
MobileViTConfig as plain data (`torch.load(path, weights_only=True)` reads it); `load_checkpoint(path)`
returns `(model, checkpoint_dict)`, the model rebuilt in eval mode. `checkpoint_path("mobilevit_mini")` /
`checkpoint_path("cnn_mini")` locate the two that the package ships (chapter 7, seed 0).

Beyond one CPU (`python -m mobilevit_edu.train --help`, the command in mobilevit_edu/cli.py): the same `fit`
trains on an image folder (mobilevit_edu/folder.py), on a GPU with mixed precision, and under
`torchrun --nproc_per_node N` as N processes with DistributedDataParallel; it writes resumable checkpoints
atomically (`out=`, `resume=`). `PAPER_IMAGENET_RECIPE` is the paper's ImageNet recipe.

No hidden global state: the sampler draws from its own `torch.Generator`, and `fit` runs inside
`torch.random.fork_rng` seeded with `config.seed` (dropout draws), so the caller's random state is
left as it was. Build the model reproducibly with `build_model(config, seed=...)`.
"""

import contextlib
import copy
import csv
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .models import MobileViT, MobileViTConfig, StageConfig
from .models_v2 import MobileViTv2, MobileViTv2Config

__all__ = [
    "TrainConfig", "History", "Accuracy", "MultiScaleBatchSampler", "fit", "evaluate", "lr_at", "lr_schedule",
    "batch_size_for", "BATCH_RULES", "smooth_targets", "build_model", "save_checkpoint", "load_checkpoint", "read_checkpoint",
    "checkpoint_path", "resolve_device", "rank_share", "CHAPTER7_RECIPE", "PAPER_IMAGENET_RECIPE", "CHAPTER7_DATA", "CHAPTER7_SEEDS",
]

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT_FORMAT = "mobilevit_edu.checkpoint/1"


# ---------------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class TrainConfig:
    """Everything `fit` needs besides the model and the data. Defaults: the paper's recipe where it
    fits a short CPU run (lr 0.002 -> 0.0002, weight decay 0.01, label smoothing 0.1)."""

    epochs: int = 10
    batch_size: int = 64  # images per batch at base_resolution (the sampler scales it per resolution)
    lr: float = 2e-3  # peak learning rate, reached at the end of the warm-up
    min_lr: float = 2e-4  # the cosine ends here on the last step
    warmup_steps: int = 0  # linear warm-up from warmup_lr to lr over this many optimiser steps
    warmup_lr: float = 2e-4  # learning rate of step 0 when warmup_steps > 0
    weight_decay: float = 0.01  # AdamW's decoupled weight decay
    betas: Tuple[float, float] = (0.9, 0.999)
    label_smoothing: float = 0.1
    ema_momentum: Optional[float] = None  # e.g. 0.0005 in the paper; None: no EMA
    resolutions: Optional[Tuple[int, ...]] = None  # multi-scale sampler; None: the data's own size
    base_resolution: Optional[int] = None  # where batch_size holds; None: the data's own size
    grad_clip: Optional[float] = None  # clip the gradient norm to this; None: no clipping
    eval_batch_size: int = 256
    seed: int = 0  # sampler order and resolutions, dropout

    def __post_init__(self):
        _positive_int(self.epochs, "epochs")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.eval_batch_size, "eval_batch_size")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name in ("lr", "min_lr", "warmup_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr}): the cosine decays from lr to min_lr")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ema_momentum is not None and not 0 < self.ema_momentum <= 1:
            raise ValueError(f"ema_momentum must be in (0, 1] or None, got {self.ema_momentum}")
        if self.resolutions is not None:
            if not isinstance(self.resolutions, (tuple, list)) or not self.resolutions:
                raise ValueError(f"resolutions must be a non-empty tuple of ints or None, got {self.resolutions!r}")
            for r in self.resolutions:
                _positive_int(r, "each of resolutions")
            object.__setattr__(self, "resolutions", tuple(self.resolutions))
        if self.base_resolution is not None:
            _positive_int(self.base_resolution, "base_resolution")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        object.__setattr__(self, "betas", tuple(self.betas))


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


# The paper's recipe in miniature (chapter 7): 2 epochs of AdamW, 10 warm-up steps from 0.0002 to 0.002, cosine
# to 0.0002, label smoothing 0.1, the multi-scale sampler at 32 and 40 px with 32 images per batch at 32 px.
CHAPTER7_RECIPE = TrainConfig(
    epochs=2, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_steps=10, warmup_lr=2e-4, weight_decay=0.01,
    label_smoothing=0.1, resolutions=(32, 40), base_resolution=32,
)


# The run of chapter 7, which scripts/make_checkpoint.py repeats (seed 0) to write the shipped checkpoints:
# matching_marks_splits(**CHAPTER7_DATA), then fit(model, train, val, CHAPTER7_RECIPE with seed=s).
CHAPTER7_DATA = {"num_train": 1200, "num_val": 500, "resolution": 40, "seed": 0}
CHAPTER7_SEEDS = (0, 1, 2)


# The paper's ImageNet recipe (sec. 4.1 and appendix B; ml-cvnets v0.1 config/classification/mobilevit_*.yaml):
# 300 epochs; effective batch 1,024 at 256 x 256 (8 GPUs x 128); AdamW, betas 0.9/0.999, weight decay 0.01;
# lr warmed up linearly from 0.0002 to 0.002 over 3,000 iterations, then cosine to 0.0002; label smoothing
# 0.1; EMA momentum 0.0005; the multi-scale sampler at 160, 192, 256, 288 and 320 px (ml-cvnets' 5 scales
# from 160 to 320, rounded to multiples of 32, and the base 256). Two differences, both stated where used:
# ml-cvnets v0.1 steps its cosine once per epoch (`is_iteration_based: false`), fit once per step; and its
# batch size per resolution is max(base, ...) per GPU (the ch. 7 note on batch_size_for). The model side
# of the recipe (classifier dropout 0.1; transformer dropout 0.1, 0.05 for XXS) is not a TrainConfig field:
# `python -m mobilevit_edu.train --preset paper-imagenet` sets the classifier's; the package's transformer
# layers have no dropout.
PAPER_IMAGENET_RECIPE = TrainConfig(
    epochs=300, batch_size=1024, lr=2e-3, min_lr=2e-4, warmup_steps=3000, warmup_lr=2e-4, weight_decay=0.01,
    betas=(0.9, 0.999), label_smoothing=0.1, ema_momentum=0.0005, resolutions=(160, 192, 256, 288, 320),
    base_resolution=256, eval_batch_size=100,
)


# -------------------------------------------------------------------------------- the recipe's pieces
def lr_at(step, total_steps, lr, min_lr, warmup_steps=0, warmup_lr=None):
    """The learning rate of optimiser step `step` (0-based) out of `total_steps`.

    Steps 0 .. warmup_steps-1 rise linearly from `warmup_lr` (step 0) towards `lr`, which step
    `warmup_steps` reaches exactly: warmup_lr + step * (lr - warmup_lr) / warmup_steps. From there a
    half cosine falls from `lr` to `min_lr`, which the last step (total_steps - 1) uses exactly.
    (ml-cvnets divides by total_steps - warmup_steps + 1, a slightly longer period: its last step stays
    slightly above min_lr.)
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, total_steps) = [0, {total_steps}), got {step}")
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be smaller than total_steps ({total_steps})")
    if step < warmup_steps:
        start = min_lr if warmup_lr is None else warmup_lr
        return start + step * (lr - start) / warmup_steps
    decay_steps = total_steps - 1 - warmup_steps  # steps after the peak
    progress = (step - warmup_steps) / decay_steps if decay_steps > 0 else 0.0  # 0 at the peak, 1 at the end
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def lr_schedule(config, total_steps):
    """The learning rate of every step of a run of `total_steps` with `config` (a TrainConfig): a list."""
    return [
        lr_at(t, total_steps, config.lr, config.min_lr, config.warmup_steps, config.warmup_lr)
        for t in range(total_steps)
    ]


BATCH_RULES = ("pixels", "paper", "cvnets-v0.1")


def batch_size_for(resolution, base_resolution, base_batch_size, rule="pixels"):
    """The batch size at `resolution` for a base batch of `base_batch_size` images at `base_resolution`
    (square images). Three rules, all with the ratio q = base_batch_size * base^2 / resolution^2:

    - "pixels" (the default; later ml-cvnets, `max(1, int(round(q, 2)))`): floor(q), at least 1. Pixels per
      batch stay at most those of the base batch at every resolution, above the base too.
    - "paper" (Mehta & Rastegari 2022, sec. 3.2): the same floor(q), but the paper defines the base batch at
      the *largest* resolution, so a resolution above `base_resolution` is refused (ValueError). Only here is
      the base batch the most memory-hungry one (attention's memory grows with the square of the patches
      per image), so a base batch that fits means every batch fits.
    - "cvnets-v0.1" (the code of the paper's runs, ml-cvnets v0.1 `data/sampler/utils.py`, base at 256):
      `max(base_batch_size, int(round(q, 2)))`, then made divisible by the number of GPUs (one here): above
      the base resolution the batch stays at the base batch, so those batches hold *more* pixels.

    ml-cvnets' int(round(q, 2)) differs from floor(q) only when q's fraction is 0.995 or more."""
    if rule not in BATCH_RULES:
        raise ValueError(f"rule must be one of {BATCH_RULES}, got {rule!r}")
    if rule == "paper" and resolution > base_resolution:
        raise ValueError(
            f"rule='paper' defines the base batch at the largest resolution, so resolution ({resolution}) must"
            f" not exceed base_resolution ({base_resolution})"
        )
    fitted = (base_batch_size * base_resolution**2) // (resolution**2)
    return max(base_batch_size if rule == "cvnets-v0.1" else 1, fitted)


def smooth_targets(targets, num_classes, smoothing):
    """Label smoothing as a target distribution: (B,) labels -> (B, num_classes), each row summing to 1:
    1 - smoothing + smoothing / K on the true class and smoothing / K on every other class
    (what F.cross_entropy(..., label_smoothing=smoothing) uses)."""
    one_hot = F.one_hot(targets, num_classes).float()
    return one_hot * (1 - smoothing) + smoothing / num_classes


class MultiScaleBatchSampler:
    """Batches of (resolution, indices): ml-cvnets' VariableBatchSampler in a few lines.

    Each epoch shuffles the `num_samples` indices; each batch draws one of `resolutions` at random and
    takes the next `batch_size_for(resolution, base_resolution, batch_size)` indices (the "pixels" rule of
    later ml-cvnets), so that pixels per batch stay (at most) those of the base batch: small images come in
    large batches. `base_resolution` defaults to the largest resolution, which makes it the paper's rule. The last batch of an epoch is
    filled up from the epoch's first indices, as ml-cvnets does, so every batch has its full size.
    Deterministic: epoch `e` of seed `s` always gives the same batches (its own torch.Generator).
    """

    def __init__(self, num_samples, batch_size, resolutions, base_resolution=None, seed=0):
        _positive_int(num_samples, "num_samples (the data set is empty?)")
        _positive_int(batch_size, "batch_size")
        if not resolutions:
            raise ValueError(f"resolutions must be a non-empty sequence of ints, got {resolutions!r}")
        for r in resolutions:
            _positive_int(r, "each of resolutions")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.resolutions = tuple(resolutions)
        self.base_resolution = base_resolution if base_resolution is not None else max(self.resolutions)
        self.seed = seed
        self.batch_sizes = {r: batch_size_for(r, self.base_resolution, batch_size) for r in self.resolutions}
        too_big = {r: b for r, b in self.batch_sizes.items() if b > num_samples}
        if too_big:
            raise ValueError(
                f"batch sizes {too_big} (resolution: batch) are larger than the data set ({num_samples} images):"
                " lower batch_size or raise base_resolution"
            )
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def batches(self, epoch):
        """The list of (resolution, indices) batches of `epoch`; indices is a (b,) long tensor."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        batches, start = [], 0
        while start < self.num_samples:
            choice = int(torch.randint(len(self.resolutions), (1,), generator=generator))
            resolution = self.resolutions[choice]
            b = self.batch_sizes[resolution]
            indices = order[start:start + b]
            if len(indices) < b:  # top up from the start of the epoch's order (ml-cvnets does the same)
                indices = torch.cat([indices, order[: b - len(indices)]])
            batches.append((resolution, indices))
            start += b
        return batches

    def __iter__(self):
        return iter(self.batches(self.epoch))

    def __len__(self):
        return len(self.batches(self.epoch))


# ---------------------------------------------------------------------------------- metric and loss
class Accuracy:
    """Top-1 accuracy: `update(outputs, targets)` with (B, K) logits and (B,) labels, or per pixel with
    (B, K, H, W) and (B, H, W); `compute()` -> float in [0, 1]."""

    def __init__(self):
        self.correct = 0
        self.total = 0

    def update(self, outputs, targets):
        self.correct += int((outputs.argmax(dim=1) == targets).sum())
        self.total += targets.numel()

    def compute(self):
        if self.total == 0:
            raise ValueError("Accuracy.compute() before any update(): no predictions to score")
        return self.correct / self.total


# --------------------------------------------------------------------------------------- the history
@dataclass
class History:
    """What `fit` measured. Per optimiser step: lr, loss, resolution, batch size. Per epoch: mean training
    loss and the validation metric (on the EMA weights if EMA is on). Wall time (s) of the whole run, of
    the training steps alone, and training images per second (over the training steps)."""

    step_lr: List[float] = field(default_factory=list)
    step_loss: List[float] = field(default_factory=list)
    step_resolution: List[int] = field(default_factory=list)
    step_batch_size: List[int] = field(default_factory=list)
    epoch_train_loss: List[float] = field(default_factory=list)
    epoch_val_metric: List[float] = field(default_factory=list)
    epoch_lr: List[float] = field(default_factory=list)  # the learning rate of each epoch's last step
    epoch_train_time: List[float] = field(default_factory=list)  # seconds of training steps per epoch
    wall_time: float = 0.0
    train_time: float = 0.0
    images_seen: int = 0
    images_per_second: float = 0.0

    @property
    def final_val_metric(self):
        return self.epoch_val_metric[-1] if self.epoch_val_metric else float("nan")

    def to_dict(self):
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------- helpers
def build_model(config, seed=0, **changes):
    """`MobileViT(config)` with its weights initialised from `seed`, without touching the global RNG.
    `changes` replace config fields (e.g. num_classes=2)."""
    if changes:
        config = dataclasses.replace(config, **changes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MobileViT(config)


def _tensors(dataset, name):
    """(images, targets) of a TensorDataset-like data set: `.tensors`, or every item stacked."""
    if dataset is None:
        raise ValueError(f"{name} is None; expected a data set of (image, target) pairs")
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty: it has no images to train or evaluate on")
    if hasattr(dataset, "tensors") and len(dataset.tensors) == 2:
        images, targets = dataset.tensors
    else:  # any map-style data set: stack its items once
        items = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([torch.as_tensor(x) for x, _ in items])
        targets = torch.stack([torch.as_tensor(y) for _, y in items])
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"{name}'s images must be a float tensor (N, C, H, W) in [0, 1], got dtype {images.dtype}"
            f" and shape {tuple(images.shape)}"
        )
    if targets.dim() not in (1, 3) or targets.shape[0] != images.shape[0] or targets.is_floating_point():
        raise ValueError(
            f"{name}'s targets must be (N,) long labels or (N, H, W) long masks for {images.shape[0]} images,"
            f" got dtype {targets.dtype} and shape {tuple(targets.shape)}"
        )
    return images, targets.long()


def _resize(images, targets, resolution):
    """Resize a batch to resolution x resolution: images bilinearly, masks (3-D targets) nearest."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images, targets
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    if targets.dim() == 3:
        targets = F.interpolate(targets[:, None].float(), size=(resolution, resolution), mode="nearest")[:, 0].long()
    return images, targets


@torch.no_grad()
def _update_ema(ema, model, momentum):
    """ema <- (1 - momentum) * ema + momentum * model, for parameters; buffers (BN statistics) copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), momentum)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@torch.no_grad()
def evaluate(model, dataset, metric=None, batch_size=256, device="cpu", num_workers=0):
    """The metric (default: top-1 accuracy) of `model` in eval mode on `dataset`, at its own resolution.
    `dataset`: tensors (TensorDataset-like) or an image folder's validation split (mobilevit_edu.folder),
    read by a DataLoader with `num_workers` worker processes. Under torchrun, each rank scores its share
    of the images and the ranks' accuracy counts are summed (other metrics: every rank scores all)."""
    device = resolve_device(device)
    score = (metric or Accuracy)()
    rank, world_size = _rank_and_world()
    if world_size > 1 and not isinstance(score, Accuracy):
        rank, world_size = 0, 1  # a custom metric cannot be summed across ranks: each rank scores everything
    was_training = model.training
    model.eval()
    try:
        for x, y in _eval_batches(dataset, batch_size, rank, world_size, num_workers):
            score.update(model(x.to(device)), y.to(device))
    finally:
        model.train(was_training)
    if world_size > 1:  # Accuracy: sum the ranks' counts
        counts = torch.tensor([score.correct, score.total], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(counts)
        score.correct, score.total = int(counts[0]), int(counts[1])
    return float(score.compute())


def _eval_batches(dataset, batch_size, rank, world_size, num_workers):
    """(images, targets) batches of this rank's share of `dataset` (every world_size-th image)."""
    if _is_folder(dataset):
        share = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
        return torch.utils.data.DataLoader(share, batch_size=batch_size, num_workers=num_workers,
                                           generator=torch.Generator().manual_seed(0))
    images, targets = _tensors(dataset, "dataset")
    images, targets = images[rank::world_size], targets[rank::world_size]
    return ((images[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, len(images), batch_size))


def resolve_device(device="auto"):
    """A torch.device from "cpu", "cuda", "cuda:N", "auto" (CUDA when present, else the CPU) or a torch.device.
    Asking for CUDA where there is none raises one ValueError that says so."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device, got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this machine has no CUDA GPU: use device='cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from error


# ------------------------------------------------- beyond one CPU: ranks, mixed precision, image folders
# Under `torchrun --nproc_per_node N`, N copies of the same program run, one per GPU (or CPU process),
# each with a rank 0..N-1. Every rank builds the same global batches (same seed, same resolutions), takes
# its share of each, and DistributedDataParallel averages the ranks' gradients during backward, so every
# rank takes the same optimiser step. One process is the case N = 1: the loop below is the same.
def _rank_and_world():
    """(rank, world size): (0, 1) in one process; under torchrun, this process's rank and the process count."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def rank_share(indices, rank, world_size):
    """This rank's part of a global batch: every world_size-th index from position `rank`.

    The parts are disjoint, together they are the global batch, and all have its resolution. It is what
    ml-cvnets v0.1's VariableBatchSamplerDDP does: it deals the epoch's shuffled indices to the ranks
    (`img_indices[rank::num_replicas]`) and every rank draws the same resolutions (the same seed), so
    step t of rank r takes these same images."""
    return indices[rank::world_size]


def _share_of_global_batch(local_size, global_size, world_size):
    """The weight of a rank's mean loss that makes DDP's average of the ranks' gradients the gradient of the
    mean loss over the global batch, however it is split: local_size / global_size * world_size."""
    return local_size * world_size / global_size


def _global_mean(local_mean, local_size, global_size):
    """The mean over the global batch of a value averaged on each rank (one all-reduce under torchrun)."""
    if _rank_and_world()[1] == 1:
        return local_mean.item()
    total = local_mean.detach().float() * local_size
    torch.distributed.all_reduce(total)
    return total.item() / global_size


def _wrap_for_ranks(model, device, world_size, sync_bn):
    """Under torchrun: the model in DistributedDataParallel, with its BatchNorm layers synchronised across
    the ranks if `sync_bn` (statistics over the global batch; PyTorch runs SyncBatchNorm on GPUs only).
    In one process: the model itself."""
    if sync_bn and device.type != "cuda":
        raise ValueError("sync_bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU")
    if world_size == 1:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _mixed_precision(device, precision):
    """(autocast context, GradScaler or None). On a GPU, "auto" is bf16 where the GPU has it, else fp16 with
    a GradScaler (fp16's small range needs the loss scaled up); "fp32" turns it off. The CPU runs fp32."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise ValueError(f"precision {precision!r} is for GPUs; on the CPU fit trains in fp32 (precision='auto')")
        return contextlib.nullcontext, None
    if precision == "fp32":
        return contextlib.nullcontext, None
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _is_folder(dataset):
    """An image folder (mobilevit_edu.folder): read from files by a DataLoader, not held as tensors."""
    return getattr(dataset, "loads_files", False)


def _sample_seed(seed, epoch, index):
    """The seed of one image's random crop and flip in one epoch: the same whichever worker or rank loads it."""
    return (seed * 1_000_003 + epoch) * 100_000_007 + index


def _rank_batches(data, plan, epoch, seed, rank, world_size, num_workers, device):
    """This rank's (images, targets) for each (resolution, global indices) of `plan`: slices of the tensors,
    resized; or a DataLoader whose worker processes read, decode and augment the image files."""
    shares = [(resolution, rank_share(indices, rank, world_size)) for resolution, indices in plan]
    if not _is_folder(data):
        images, targets = data
        return (_resize(images[share], targets[share], resolution) for resolution, share in shares)
    keys = [[(resolution, int(i), _sample_seed(seed, epoch, int(i))) for i in share] for resolution, share in shares]
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=keys, num_workers=num_workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # leaves the global RNG (dropout's) alone
    )
    return iter(loader)


def _backward_and_step(loss, optimizer, scaler, model, grad_clip):
    """loss.backward() (DDP averages the ranks' gradients here), optional gradient clipping, optimizer.step();
    with fp16 through the GradScaler, which scales the loss up and the gradients back before clipping."""
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)  # skips the step if the scaled gradients overflowed
        scaler.update()


def _to_device(x, y, device):
    if device.type == "cuda" and x.dim() == 4:  # channels-last: NHWC convolutions, faster on GPUs
        return x.to(device, memory_format=torch.channels_last, non_blocking=True), y.to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ---------------------------------------------------------------------------------------- the loop
def fit(model, train_set, val_set, config, *, loss_fn=None, metric=None, device="cpu", progress=True,
        out=None, resume=None, checkpoint_every=None, stop_after=None, num_workers=0, precision="auto",
        sync_bn=False):
    """Train `model` on `train_set` with `config` (a TrainConfig); evaluate on `val_set` after every epoch.
    `device`: "cpu", "cuda", "cuda:N" or "auto" (CUDA when present, else the CPU).

    Returns a History. The model is trained in place (and left on `device`, in eval mode); with EMA,
    the EMA weights are copied into it at the end, since they are what was evaluated.

    Beyond one CPU (`python -m mobilevit_edu.train` calls this function):
    - `train_set` / `val_set` may be an image folder's splits (mobilevit_edu.folder), read by a DataLoader
      with `num_workers` worker processes;
    - under torchrun, the model runs in DistributedDataParallel and each rank takes its share of every
      global batch (`rank_share`; config.batch_size is the global batch); `sync_bn`: SyncBatchNorm (GPUs);
    - on a GPU: mixed precision (`precision`, see _mixed_precision), cudnn.benchmark, channels-last;
    - `out`: a folder for last.pt (everything needed to resume; written atomically at the end of every
      epoch and every `checkpoint_every` steps), model.pt (the final model, as save_checkpoint writes it),
      history.csv (per epoch) and history.json (per step); only rank 0 writes and prints;
    - `resume`: a last.pt to continue from: model, EMA, optimiser, grad scaler, step (the schedule's and
      the sampler's position), RNG states and history are restored;
    - `stop_after`: stop after this many optimiser steps of the run, having written last.pt (a run cut
      short, which `resume` continues; the schedule still spans all epochs).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a mobilevit_edu.train.TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (out is not None or resume is not None) and not isinstance(model, MobileViT):
        raise TypeError(f"out= and resume= write/read mobilevit_edu checkpoints of a MobileViT, got {type(model).__name__}")
    device = resolve_device(device)
    rank, world_size = _rank_and_world()
    if _is_folder(train_set):
        data, num_images, native = train_set, len(train_set), train_set.image_size
    else:
        data = _tensors(train_set, "train_set")
        num_images, native = len(data[0]), data[0].shape[-1]
    if not _is_folder(val_set):
        _tensors(val_set, "val_set")
    resolutions = config.resolutions or (native,)
    base = config.base_resolution or native
    if config.resolutions is None and config.batch_size > num_images:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than train_set ({num_images} images): lower it")
    sampler = MultiScaleBatchSampler(num_images, config.batch_size, resolutions, base, seed=config.seed)
    steps_per_epoch = [len(sampler.batches(epoch)) for epoch in range(config.epochs)]  # plans are rebuilt per epoch
    total_steps = sum(steps_per_epoch)
    if config.warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps ({config.warmup_steps}) must be smaller than the run's {total_steps} optimiser steps"
        )
    if min(sampler.batch_sizes.values()) < world_size:
        raise ValueError(f"batch sizes {sampler.batch_sizes} must be at least the {world_size} processes: raise batch_size")
    schedule = lr_schedule(config, total_steps)
    loss_fn = loss_fn or (lambda outputs, y: F.cross_entropy(outputs, y, label_smoothing=config.label_smoothing))

    model.to(device)
    autocast, scaler = _mixed_precision(device, precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # pick the fastest convolution kernels per input shape
        model.to(memory_format=torch.channels_last)
    trained = _wrap_for_ranks(model, device, world_size, sync_bn)  # DDP under torchrun, else the model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=schedule[0], betas=config.betas, weight_decay=config.weight_decay
    )
    ema = copy.deepcopy(model).eval() if config.ema_momentum is not None else None
    history = History()
    step, rng_states = 0, None
    if resume is not None:
        step, rng_states = _restore(resume, model, ema, optimizer, scaler, history, config, num_images)
    writes = rank == 0  # only rank 0 prints and writes files
    bar = _progress_bar(total_steps, progress and writes, initial=step)
    start_run = time.perf_counter()
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):  # dropout draws from here; the caller's RNG is left alone
        torch.manual_seed(config.seed + 10_000 * rank)
        if rng_states is not None:
            _set_rng_state(rng_states, rank, world_size, device)
        first_step = 0  # of the epoch
        for epoch in range(config.epochs):
            if step >= first_step + steps_per_epoch[epoch]:  # done before the run was resumed
                first_step += steps_per_epoch[epoch]
                continue
            plan = sampler.batches(epoch)  # [(resolution, global indices)] of every step; the same on every rank
            model.train()
            start_epoch, skip = time.perf_counter(), step - first_step
            batches = _rank_batches(data, plan[skip:], epoch, config.seed, rank, world_size, num_workers, device)
            for (resolution, indices), (x, y) in zip(plan[skip:], batches):
                x, y = _to_device(x, y, device)
                for group in optimizer.param_groups:
                    group["lr"] = schedule[step]
                with autocast():
                    loss = loss_fn(trained(x), y)
                optimizer.zero_grad(set_to_none=True)
                weighted = loss * _share_of_global_batch(len(y), len(indices), world_size)
                _backward_and_step(weighted, optimizer, scaler, model, config.grad_clip)
                if ema is not None:
                    _update_ema(ema, model, config.ema_momentum)
                history.step_lr.append(schedule[step])
                history.step_loss.append(_global_mean(loss, len(y), len(indices)))
                history.step_resolution.append(resolution)
                history.step_batch_size.append(len(indices))
                history.images_seen += len(indices)
                step += 1
                if bar is not None:
                    seconds = history.train_time + time.perf_counter() - start_epoch
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{history.step_loss[-1]:.3f}", lr=f"{schedule[step - 1]:.2e}",
                                    img_s=f"{history.images_seen / seconds:.0f}", refresh=False)
                stopping = stop_after is not None and step >= stop_after
                if out is not None and step < first_step + len(plan) and (
                        stopping or (checkpoint_every and step % checkpoint_every == 0)):
                    _save_last(out, model, ema, optimizer, scaler, history, config, step, num_images, device)
                if stopping:
                    break
            history.train_time += time.perf_counter() - start_epoch
            if step < first_step + len(plan):  # stopped inside the epoch
                return _stopped(bar, history, step, total_steps, out, writes and progress)
            history.epoch_train_time.append(time.perf_counter() - start_epoch)
            history.epoch_lr.append(schedule[step - 1])
            history.epoch_train_loss.append(sum(history.step_loss[first_step:]) / len(plan))
            scored = ema if ema is not None else model
            history.epoch_val_metric.append(
                evaluate(scored, val_set, metric, config.eval_batch_size, device, num_workers)
            )
            first_step += len(plan)
            if writes and progress:
                _print_epoch(bar, epoch, config.epochs, history, plan[skip:])
            if out is not None:
                _save_last(out, model, ema, optimizer, scaler, history, config, step, num_images, device)
            if stop_after is not None and stop_after <= step < total_steps:  # stopped at the end of an epoch
                return _stopped(bar, history, step, total_steps, out, writes and progress)
    if bar is not None:
        bar.close()
    if ema is not None:
        model.load_state_dict(ema.state_dict())
    model.eval()
    history.wall_time = time.perf_counter() - start_run
    history.images_per_second = history.images_seen / history.train_time if history.train_time > 0 else 0.0
    if out is not None and writes:
        name = "val_accuracy" if metric is None else "val_metric"
        _atomic_save(_checkpoint_dict(model, config, {name: history.final_val_metric}), Path(out) / "model.pt")
        _write_history(out, history)
    return history


def _progress_bar(total, progress, initial=0):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="training", unit="step", leave=True)


def _stopped(bar, history, step, total_steps, out, talk):
    """End a run cut short by stop_after: the history so far (last.pt holds the rest)."""
    if bar is not None:
        bar.close()
    if talk:
        print(f"stopped after step {step} of {total_steps}" + (f"; continue with resume={Path(out) / 'last.pt'}" if out else ""))
    return history


def _print_epoch(bar, epoch, epochs, history, plan):
    """One line per epoch (rank 0): mean training loss, validation metric, last lr, images/s, seconds."""
    images = sum(len(indices) for _, indices in plan)
    seconds = history.epoch_train_time[-1]
    line = (f"epoch {epoch + 1}/{epochs}: train loss {history.epoch_train_loss[-1]:.4f},"
            f" val {history.epoch_val_metric[-1]:.4f}, lr {history.step_lr[-1]:.2e},"
            f" {images / seconds:.0f} images/s, {seconds:.1f} s")
    if bar is not None:
        bar.write(line)
    else:
        print(line)


# -------------------------------------------------------------------------------------- checkpoints
def _config_to_data(config):
    """A MobileViTConfig as plain dicts/lists/numbers (what torch.load(weights_only=True) accepts)."""
    data = dataclasses.asdict(config)
    data["stages"] = [dict(stage) for stage in data["stages"]]
    return data


def _config_from_data(data):
    data = dict(data)
    data["stages"] = tuple(StageConfig(**stage) for stage in data["stages"])
    if "width_multiplier" in data:  # a MobileViTv2
        return MobileViTv2Config(**data)
    return MobileViTConfig(**data)


def _cpu(state_dict):
    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in state_dict.items()}


def _checkpoint_dict(model, train_config=None, metrics=None, note="", training=None):
    """The checkpoint as plain data and tensors. `training` (fit's last.pt only): what resuming needs."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": _config_to_data(model.config),
        "state_dict": _cpu(model.state_dict()),
        "train_config": dataclasses.asdict(train_config) if train_config is not None else None,
        "metrics": dict(metrics or {}),
        "note": str(note),
    }
    if training is not None:
        checkpoint["training"] = training
    return checkpoint


def _atomic_save(obj, path):
    """torch.save to a temporary file in the same folder, flushed to disk, then os.replace: whoever reads
    `path` (or a run that crashes halfway through writing) sees the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    finally:
        if temporary.exists():  # the write failed: leave no debris
            temporary.unlink()
    return path


def save_checkpoint(path, model, *, train_config=None, metrics=None, note=""):
    """Write `model`'s state dict and its MobileViTConfig (as plain data) to `path`, with the TrainConfig
    and a dict of metrics (numbers) if given, atomically (see _atomic_save). `torch.load(path,
    weights_only=True)` reads it back; `load_checkpoint(path)` rebuilds the model. Returns the path."""
    if not isinstance(model, MobileViT):
        raise TypeError(f"model must be a mobilevit_edu.MobileViT (its config is saved with it), got {type(model).__name__}")
    return _atomic_save(_checkpoint_dict(model, train_config, metrics, note), path)


def _rng_states(device):
    """Every rank's random-number-generator states (dropout's), gathered to all ranks: a list by rank."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    rank, world_size = _rank_and_world()
    if world_size == 1:
        return [state]
    states = [None] * world_size
    torch.distributed.all_gather_object(states, state)
    return states


def _set_rng_state(states, rank, world_size, device):
    if len(states) != world_size:
        warnings.warn(f"the checkpoint was written by {len(states)} processes, this run has {world_size}:"
                      " dropout draws start afresh (the batches, schedule and weights continue exactly)")
        return
    torch.set_rng_state(states[rank]["cpu"])
    if device.type == "cuda" and "cuda" in states[rank]:
        torch.cuda.set_rng_state(states[rank]["cuda"], device)


def _save_last(out, model, ema, optimizer, scaler, history, config, step, num_images, device):
    """last.pt: the model checkpoint plus everything `fit(resume=...)` needs; and the history files.
    Every rank calls it (the RNG states are gathered); rank 0 writes."""
    rng = _rng_states(device)
    if _rank_and_world()[0] != 0:
        return
    training = {
        "step": step,  # optimiser steps done: the schedule's and the sampler's position
        "num_train_images": num_images,
        "optimizer": optimizer.state_dict(),
        "ema": _cpu(ema.state_dict()) if ema is not None else None,
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng,
        "history": history.to_dict(),
    }
    metrics = {"val_metric": history.final_val_metric} if history.epoch_val_metric else {}
    _atomic_save(_checkpoint_dict(model, config, metrics, note=f"step {step}", training=training), Path(out) / "last.pt")
    _write_history(out, history)


def _write_history(out, history):
    """history.csv (one row per epoch: epoch, train_loss, val_metric, lr, train_seconds) and history.json
    (everything History holds, per step too), each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = zip(history.epoch_train_loss, history.epoch_val_metric, history.epoch_lr, history.epoch_train_time)
    for name in ("history.csv", "history.json"):
        temporary = out / f".{name}.tmp"
        with open(temporary, "w", newline="") as f:
            if name.endswith(".json"):
                json.dump(history.to_dict(), f, indent=1)
            else:
                writer = csv.writer(f)
                writer.writerow(["epoch", "train_loss", "val_metric", "lr", "train_seconds"])
                for epoch, (loss, val, lr, seconds) in enumerate(rows, start=1):
                    writer.writerow([epoch, f"{loss:.6f}", f"{val:.6f}", f"{lr:.6g}", f"{seconds:.2f}"])
        os.replace(temporary, out / name)


def _restore(path, model, ema, optimizer, scaler, history, config, num_images):
    """Load fit's last.pt at `path` into the run: returns (step, RNG states). Raises one ValueError when the
    file is not a resumable checkpoint of this model, these settings and this data."""
    checkpoint = read_checkpoint(path)
    training = checkpoint.get("training")
    if training is None:
        raise ValueError(f"{path} holds a model but no training state: resume from the last.pt that fit(out=...) writes")
    saved, now = checkpoint["model_config"], _config_to_data(model.config)
    if saved != now:
        differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ValueError(
            f"{path} is a checkpoint of {saved.get('name')!r}, but the model being trained is {now['name']!r}"
            f" (configs differ in {differ}): its weights do not fit this model"
        )
    saved, now = checkpoint["train_config"] or {}, dataclasses.asdict(config)
    differ = {k: (saved.get(k), now[k]) for k in now if k != "eval_batch_size" and saved.get(k) != now[k]}
    if differ:
        raise ValueError(f"{path} was written with other training settings, {differ} (checkpoint, now): resume with the same")
    if training["num_train_images"] != num_images:
        raise ValueError(f"{path} was trained on {training['num_train_images']} images, this data has {num_images}:"
                         " the sampler's position would point at other images")
    model.load_state_dict(checkpoint["state_dict"])
    if ema is not None:
        ema.load_state_dict(training["ema"])
    optimizer.load_state_dict(training["optimizer"])
    if scaler is not None and training["grad_scaler"] is not None:
        scaler.load_state_dict(training["grad_scaler"])
    for name, value in training["history"].items():
        setattr(history, name, value)
    return training["step"], training["rng"]


def read_checkpoint(path):
    """The checkpoint at `path` as a dict (format, model_config, state_dict, train_config, metrics, note),
    loaded with torch.load(weights_only=True): plain data and tensors only, no code runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a mobilevit_edu checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return checkpoint


def load_checkpoint(path, device="cpu"):
    """Rebuild the MobileViT saved at `path` (config + weights), in eval mode on `device`.
    Returns (model, checkpoint), the second the dict of `read_checkpoint` (metrics, train_config, ...)."""
    checkpoint = read_checkpoint(path)
    config = _config_from_data(checkpoint["model_config"])
    model = (MobileViTv2 if isinstance(config, MobileViTv2Config) else MobileViT)(config)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint


def checkpoint_path(name="mobilevit_mini"):
    """Path of a checkpoint the package ships in mobilevit_edu/assets/ (chapter 7 trains and writes them):
    "mobilevit_mini" (the small MobileViT) or "cnn_mini" (its equal-size CNN baseline)."""
    path = ASSETS / f"{name}.pt"
    if not path.is_file():
        available = sorted(p.stem for p in ASSETS.glob("*.pt"))
        raise FileNotFoundError(f"no checkpoint {name!r} in {ASSETS}; available: {available}")
    return path


if __name__ == "__main__":  # python -m mobilevit_edu.train: the training command (mobilevit_edu/cli.py)
    from mobilevit_edu.cli import main

    main()
