"""Checks for the experiment tasks of exercises 10 and 11.

- `check_context_error(fn)`: exercise 10, the best context vector of separable attention for a fixed
  gate (least squares, channel by channel) and its relative error on a target.
- `check_flag_reading(train)`: exercise 11, a segmentation network trained on `data.flag_shapes` that
  reads the far-away flag: the flag-swap test of chapter 11 on the chapter's validation set.
- `check_flag_summary(flag_summary)`: exercise 11, the median flag-flip share, the seeds that read the
  flag and the epoch each seed first read it, from the runs of chapter 11's sweep (assets/flag_context.json).
"""

import copy
import importlib.resources
import json
import math
import statistics

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


# ------------------------------------------------------------------ exercise 11: summarise the seeds
READS_FLAG = 0.5  # a run reads the flag when more than this share of its disc pixels flip


def flag_sweep():
    """Chapter 11's sweep (benchmarks/flag_context.py) as the package ships it: {"recipe": ..., "runs": [...]}."""
    return json.loads((importlib.resources.files("mobilevit_edu") / "assets" / "flag_context.json").read_text())


def _first_epoch(flips, above):
    return next((epoch for epoch, flip in enumerate(flips, 1) if above(flip)), None)


def _summary(runs, median=statistics.median, above=lambda f: f > READS_FLAG, first_epoch=1):
    finals = [r["flip_share"] for r in runs]
    return {"median_flip": median(finals), "seeds_reading": sum(1 for f in finals if above(f)),
            "epochs_to_read": [None if e is None else e - 1 + first_epoch
                               for e in (_first_epoch(r["flip_share_per_epoch"], above) for r in runs)]}


def _made_up_run(seed, flips):
    return {"kind": "made-up", "seed": seed, "flip_share": flips[-1], "flip_share_per_epoch": list(flips)}


def _summary_cases():
    sweep = [r for r in flag_sweep()["runs"] if r["epochs"] == 8 and r["isa"] == "native" and r["threads"] == 1]
    cases = [(f"the sweep's {kind} runs (8 epochs, {len([r for r in sweep if r['kind'] == kind])} seeds)",
              [r for r in sweep if r["kind"] == kind]) for kind in ("mobilevit", "cnn")]
    cases.append(("4 made-up runs (an even count; one ends at exactly 0.5)", [
        _made_up_run(0, [0.0, 0.3, 0.8, 0.9]), _made_up_run(1, [0.1, 0.5, 0.5, 0.5]),
        _made_up_run(2, [0.0, 0.0, 0.01, 0.02]), _made_up_run(3, [0.6, 0.9, 0.95, 0.97])]))
    cases.append(("3 made-up runs (one reads the flag at epoch 2, then forgets it)", [
        _made_up_run(0, [0.2, 0.7, 0.4]), _made_up_run(1, [0.0, 0.1, 0.9]), _made_up_run(2, [0.05, 0.1, 0.1])]))
    return [(description, runs) for description, runs in cases if runs]


def check_flag_summary(flag_summary):
    """`flag_summary(runs)`: runs of one network from chapter 11's sweep (dicts with "flip_share", the share
    of disc pixels that flip with the flag at the end, and "flip_share_per_epoch"). Returns a dict:
    "median_flip" (statistics.median of the final shares), "seeds_reading" (runs whose final share is more
    than 0.5) and "epochs_to_read" (per run, in order: the first epoch, counted from 1, whose share is more
    than 0.5, or None)."""

    cases = _summary_cases()  # (reads the sweep's file once)

    def body():
        for description, runs in cases:
            case = f"case '{description}'"
            actual = call(flag_summary, copy.deepcopy(runs), case=case)
            expected = _summary(runs)
            if not isinstance(actual, dict) or set(actual) != set(expected):
                got = sorted(actual) if isinstance(actual, dict) else type(actual).__name__
                raise CheckFailed(f"{case}: return a dict with the keys {sorted(expected)}, got {got}")
            median = actual["median_flip"]
            if isinstance(median, torch.Tensor) and median.numel() == 1:
                median = median.item()
            if isinstance(median, bool) or not isinstance(median, (int, float)):
                raise CheckFailed(f"{case}: median_flip should be one number, got {type(median).__name__}")
            if not math.isclose(median, expected["median_flip"], rel_tol=1e-6, abs_tol=1e-9):  # float32 allowed
                finals = [r["flip_share"] for r in runs]
                hint = ""
                if math.isclose(median, statistics.fmean(finals), rel_tol=1e-6):
                    hint = " Hint: that is the mean; the median is the middle value, which one outlier seed cannot drag"
                elif math.isclose(median, statistics.median_low(finals), rel_tol=1e-6):
                    hint = (" Hint: with an even number of runs the median is the mean of the two middle values"
                            " (statistics.median), not the lower one (torch.median)")
                raise CheckFailed(f"{case}: median_flip is {median:.4f}; expected {expected['median_flip']:.4f}.{hint}")
            if actual["seeds_reading"] != expected["seeds_reading"]:
                hint = ""
                if actual["seeds_reading"] == _summary(runs, above=lambda f: f >= READS_FLAG)["seeds_reading"]:
                    hint = " Hint: a run reads the flag when MORE than half flip (> 0.5); 0.5 does not count"
                raise CheckFailed(f"{case}: seeds_reading is {actual['seeds_reading']!r};"
                                  f" expected {expected['seeds_reading']}.{hint}")
            epochs = actual["epochs_to_read"]
            epochs = list(epochs) if isinstance(epochs, (list, tuple)) else epochs
            if epochs != expected["epochs_to_read"]:
                variants = [
                    (_summary(runs, first_epoch=0)["epochs_to_read"], "epochs count from 1 (the first epoch is 1, not 0)"),
                    (_summary(runs, above=lambda f: f >= READS_FLAG)["epochs_to_read"],
                     "more than half (> 0.5); an epoch at exactly 0.5 does not count"),
                    ([e for e in expected["epochs_to_read"] if e is not None],
                     "keep one entry per run, in order: None for a run that never reads the flag"),
                ]
                hint = next((f" Hint: {sentence}" for value, sentence in variants if epochs == value), "")
                raise CheckFailed(f"{case}: epochs_to_read is {epochs!r}; expected {expected['epochs_to_read']!r}.{hint}")

    run_check("flag summary", body, f"right on all {len(cases)} cases (the sweep's two networks and made-up runs)")
