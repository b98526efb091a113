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

No hidden global state: the sampler draws from its own `torch.Generator`, and `fit` runs inside
`torch.random.fork_rng` seeded with `config.seed` (dropout draws), so the caller's random state is
left as it was. Build the model reproducibly with `build_model(config, seed=...)`.
"""

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .models import MobileViT, MobileViTConfig, StageConfig

__all__ = [
    "TrainConfig", "History", "Accuracy", "MultiScaleBatchSampler", "fit", "evaluate", "lr_at", "lr_schedule",
    "batch_size_for", "smooth_targets", "build_model", "save_checkpoint", "load_checkpoint", "read_checkpoint",
    "checkpoint_path", "resolve_device", "CHAPTER7_RECIPE", "CHAPTER7_DATA", "CHAPTER7_SEEDS",
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


def batch_size_for(resolution, base_resolution, base_batch_size):
    """The batch size at `resolution` that keeps pixels per batch at most those of `base_batch_size`
    images at `base_resolution` (square images): floor(base_batch_size * base^2 / resolution^2), at least 1.
    ml-cvnets' VariableBatchSampler rounds the same way (int() of the ratio)."""
    return max(1, (base_batch_size * base_resolution**2) // (resolution**2))


def smooth_targets(targets, num_classes, smoothing):
    """Label smoothing as a target distribution: (B,) labels -> (B, num_classes), each row summing to 1:
    1 - smoothing + smoothing / K on the true class and smoothing / K on every other class
    (what F.cross_entropy(..., label_smoothing=smoothing) uses)."""
    one_hot = F.one_hot(targets, num_classes).float()
    return one_hot * (1 - smoothing) + smoothing / num_classes


class MultiScaleBatchSampler:
    """Batches of (resolution, indices): ml-cvnets' VariableBatchSampler in a few lines.

    Each epoch shuffles the `num_samples` indices; each batch draws one of `resolutions` at random and
    takes the next `batch_size_for(resolution, base_resolution, batch_size)` indices, so that pixels per
    batch stay (at most) constant: small images come in large batches. The last batch of an epoch is
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
def evaluate(model, dataset, metric=None, batch_size=256, device="cpu"):
    """The metric (default: top-1 accuracy) of `model` in eval mode on `dataset`, at its own resolution."""
    device = resolve_device(device)
    images, targets = _tensors(dataset, "dataset")
    score = (metric or Accuracy)()
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            score.update(model(x), y)
    finally:
        model.train(was_training)
    return float(score.compute())


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


# ---------------------------------------------------------------------------------------- the loop
def fit(model, train_set, val_set, config, *, loss_fn=None, metric=None, device="cpu", progress=True):
    """Train `model` on `train_set` with `config` (a TrainConfig); evaluate on `val_set` after every epoch.
    `device`: "cpu", "cuda", "cuda:N" or "auto" (CUDA when present, else the CPU).

    Returns a History. The model is trained in place (and left on `device`, in eval mode); with EMA,
    the EMA weights are copied into it at the end, since they are what was evaluated.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a mobilevit_edu.train.TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = resolve_device(device)
    images, targets = _tensors(train_set, "train_set")
    _tensors(val_set, "val_set")
    native = images.shape[-1]
    resolutions = config.resolutions or (native,)
    base = config.base_resolution or native
    if config.resolutions is None and config.batch_size > len(images):
        raise ValueError(
            f"batch_size ({config.batch_size}) is larger than train_set ({len(images)} images): lower it"
        )
    sampler = MultiScaleBatchSampler(len(images), config.batch_size, resolutions, base, seed=config.seed)
    plans = [sampler.batches(epoch) for epoch in range(config.epochs)]
    total_steps = sum(len(plan) for plan in plans)
    if config.warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps ({config.warmup_steps}) must be smaller than the run's {total_steps} optimiser steps"
        )
    schedule = lr_schedule(config, total_steps)
    loss_fn = loss_fn or (lambda outputs, y: F.cross_entropy(outputs, y, label_smoothing=config.label_smoothing))

    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=schedule[0], betas=config.betas, weight_decay=config.weight_decay
    )
    ema = copy.deepcopy(model).eval() if config.ema_momentum is not None else None
    history = History()
    bar = _progress_bar(total_steps, progress)
    start_run = time.perf_counter()
    step = 0
    with torch.random.fork_rng(devices=[]):  # dropout draws from here; the caller's RNG is left alone
        torch.manual_seed(config.seed)
        for epoch, plan in enumerate(plans):
            model.train()
            start_epoch, losses = time.perf_counter(), []
            for resolution, indices in plan:
                x, y = _resize(images[indices], targets[indices], resolution)
                x, y = x.to(device), y.to(device)
                for group in optimizer.param_groups:
                    group["lr"] = schedule[step]
                loss = loss_fn(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if ema is not None:
                    _update_ema(ema, model, config.ema_momentum)
                losses.append(loss.item())
                history.step_lr.append(schedule[step])
                history.step_loss.append(losses[-1])
                history.step_resolution.append(resolution)
                history.step_batch_size.append(len(indices))
                history.images_seen += len(indices)
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", refresh=False)
            history.train_time += time.perf_counter() - start_epoch
            history.epoch_train_loss.append(sum(losses) / len(losses))
            scored = ema if ema is not None else model
            history.epoch_val_metric.append(evaluate(scored, val_set, metric, config.eval_batch_size, device))
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, val=f"{history.epoch_val_metric[-1]:.3f}", refresh=True)
    if bar is not None:
        bar.close()
    if ema is not None:
        model.load_state_dict(ema.state_dict())
    model.eval()
    history.wall_time = time.perf_counter() - start_run
    history.images_per_second = history.images_seen / history.train_time if history.train_time > 0 else 0.0
    return history


def _progress_bar(total, progress):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="step", leave=True)


# -------------------------------------------------------------------------------------- checkpoints
def _config_to_data(config):
    """A MobileViTConfig as plain dicts/lists/numbers (what torch.load(weights_only=True) accepts)."""
    data = dataclasses.asdict(config)
    data["stages"] = [dict(stage) for stage in data["stages"]]
    return data


def _config_from_data(data):
    data = dict(data)
    data["stages"] = tuple(StageConfig(**stage) for stage in data["stages"])
    return MobileViTConfig(**data)


def save_checkpoint(path, model, *, train_config=None, metrics=None, note=""):
    """Write `model`'s state dict and its MobileViTConfig (as plain data) to `path`, with the TrainConfig
    and a dict of metrics (numbers) if given. `torch.load(path, weights_only=True)` reads it back;
    `load_checkpoint(path)` rebuilds the model. Returns the path."""
    if not isinstance(model, MobileViT):
        raise TypeError(f"model must be a mobilevit_edu.MobileViT (its config is saved with it), got {type(model).__name__}")
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": _config_to_data(model.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "train_config": dataclasses.asdict(train_config) if train_config is not None else None,
        "metrics": dict(metrics or {}),
        "note": str(note),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


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
    model = MobileViT(_config_from_data(checkpoint["model_config"]))
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
