"""Checks for the experiment tasks of exercises 10 and 11.

- `check_context_error(fn)`: exercise 10, the best context vector of separable attention for a fixed
  gate (least squares, channel by channel) and its relative error on a target.
- `check_flag_reading(train)`: exercise 11, a segmentation network trained on `data.flag_shapes` that
  reads the far-away flag: the flag-swap test of chapter 11 on the chapter's validation set.
"""

import math

import torch

from ..data import SEGMENTATION_CLASSES, flag_shapes
from ..segmentation import MeanIoU, flag_flip_share
from ._common import CheckFailed, call, run_check


def _best_context(gate, target):
    c = (gate * target).sum(0) / (gate * gate).sum(0)  # (dv,): least squares per channel
    return gate * c


def _relative(y, target):
    return ((y - target).norm() / target.norm()).item()


def _as_float(value, case):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CheckFailed(f"{case}: return one number (the relative error), got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckFailed(f"{case}: return one number (a Python float), got {type(value).__name__}")
    return float(value)


def _context_cases():
    g = torch.Generator().manual_seed(10)
    values = torch.rand(8, 16, generator=g) + 0.1
    target = values.roll(-1, dims=0)
    cases = [
        ("the chapter's shift, gate ReLU(v) = v", values, target),
        ("the chapter's shift, gate 1", torch.ones(8, 16), target),
        ("5 tokens x 3 channels, random positive gate", torch.rand(5, 3, generator=g) + 0.2, torch.randn(5, 3, generator=g)),
        ("1 channel, 12 tokens", torch.rand(12, 1, generator=g) + 0.5, torch.randn(12, 1, generator=g)),
    ]
    return cases


def check_context_error(context_error):
    """`context_error(gate, target)`: gate and target (n, dv); the best context vector c (dv,) for that
    gate, c_k = sum_i gate_ik target_ik / sum_i gate_ik², and the relative error
    ||gate ⊙ c - target|| / ||target|| as a Python float."""

    def body():
        for description, gate, target in _context_cases():
            case = f"case '{description}' (gate and target of shape {tuple(gate.shape)})"
            actual = _as_float(call(context_error, gate.clone(), target.clone(), case=case), case)
            expected = _relative(_best_context(gate, target), target)
            if math.isclose(actual, expected, rel_tol=1e-4, abs_tol=1e-6):
                continue
            variants = [
                ((_best_context(gate, target) - target).norm().item(),
                 "that is the absolute error ||gate ⊙ c - target||; divide it by ||target||"),
                (_relative(gate * target.mean(0), target),
                 "you used c = the mean of the target over the tokens, which is the best c only when the gate is 1;"
                 " minimise ||gate ⊙ c - target||² per channel: c = Σ gate·target / Σ gate²"),
                (_relative(gate * ((gate * target).sum(0) / gate.sum(0)), target),
                 "divide by Σ gate² (least squares), not Σ gate"),
                (_relative(gate * ((gate * target).sum(1, keepdim=True) / (gate * gate).sum(1, keepdim=True)), target),
                 "you summed over the channels (dim 1): c has one number per channel, summed over the tokens (dim 0)"),
            ]
            message = f"{case}: your relative error is {actual:.4f}; expected {expected:.4f}"
            hints = {sentence for value, sentence in variants
                     if math.isclose(actual, value, rel_tol=1e-4, abs_tol=1e-6) and not math.isclose(value, expected, rel_tol=1e-4)}
            if len(hints) == 1:
                message += f". Hint: {hints.pop()}"
            raise CheckFailed(message)

    run_check("context_error", body, f"right on all {len(_context_cases())} cases (the chapter's two gates, and random ones)")


FLAG_VAL_SEED, FLAG_VAL_IMAGES, FLAG_SIZE = 1, 200, 64  # chapter 11's validation set
MIN_FLIP_SHARE, MIN_DISC_IOU = 0.5, 0.5


def check_flag_reading(train):
    """`train()` returns a segmentation network (images (B, 3, 64, 64) -> scores (B, 5, 64, 64)) trained on
    `flag_shapes`. It passes when, on chapter 11's validation set (200 images, seed 1), more than half of
    the disc pixels it finds change class when the flags are swapped, and both disc classes reach an IoU
    of at least 0.5: the network reads the flag."""

    def body():
        case = "your trained network"
        model = call(train, case=case)
        if not isinstance(model, torch.nn.Module):
            raise CheckFailed(f"{case}: return the trained network (a torch.nn.Module), got {type(model).__name__}")
        images, truth = flag_shapes(FLAG_VAL_IMAGES, size=FLAG_SIZE, seed=FLAG_VAL_SEED).tensors
        model = model.cpu().eval()
        with torch.no_grad():
            scores = call(model, images[:2], case=case)
        expected_shape = (2, len(SEGMENTATION_CLASSES), FLAG_SIZE, FLAG_SIZE)
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected_shape:
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise CheckFailed(f"{case}: on 2 images of 64×64 it should give scores of shape {expected_shape}, got {got}")
        metric = MeanIoU(len(SEGMENTATION_CLASSES))
        with torch.no_grad():
            metric.update(model(images), truth)
        iou = metric.per_class()
        flip = flag_flip_share(model, images, truth)
        disc = [0.0 if math.isnan(v) else float(v) for v in iou[3:5]]
        summary = (f"mean IoU {metric.compute():.2f}, disc IoUs {disc[0]:.2f} and {disc[1]:.2f},"
                   f" {flip:.0%} of the disc pixels flip with the flag")
        if flip < MIN_FLIP_SHARE:
            raise CheckFailed(
                f"{case}: {summary}. It finds discs but decides their class without the flag (a network that"
                f" reads it flips more than {MIN_FLIP_SHARE:.0%}). Train longer (more epochs), or check that the"
                " images you train on are flag_shapes(..., size=64)")
        if min(disc) < MIN_DISC_IOU:
            raise CheckFailed(f"{case}: {summary}. It reads the flag, but a disc IoU is below {MIN_DISC_IOU}: train longer")

    run_check("flag reading", body, f"the network reads the flag (more than {MIN_FLIP_SHARE:.0%} of the disc pixels flip,"
              f" both disc IoUs at least {MIN_DISC_IOU})")
