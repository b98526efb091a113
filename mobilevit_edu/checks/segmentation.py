"""Checks for chapter 11: the ASPP head's forward and mean IoU.

- `check_aspp_forward(cls)`: your `ASPP` subclass (only `forward` is yours) against the package's, with
  the same weights: small maps, non-square maps, rates larger than the map, and one case in training
  mode (where the dropout must come last, after the projection).
- `check_mean_iou(fn)`: your `mean_iou(predicted, target, num_classes)` -> float on hand-made masks,
  including a class absent from both the truth and the prediction (it must not count).
"""

import itertools
import math
import re

import torch
import torch.nn.functional as F

from ..segmentation import ASPP
from ._common import (
    CheckFailed,
    call,
    expect_close,
    forbid,
    load_reference_weights,
    randomize_batchnorm,
    recording,
    run_check,
)

# ------------------------------------------------------------------------------------------------ ASPP
# (description, in_channels, out_channels, atrous_rates, x shape, training mode)
ASPP_CASES = [
    ("batch 2, 8 channels, 6x6 map, rates (1, 2, 3)", 8, 4, (1, 2, 3), (2, 8, 6, 6), False),
    ("batch 2, non-square 5x7 map, two rates (1, 2)", 6, 5, (1, 2), (2, 6, 5, 7), False),
    ("batch 3, 4x4 map, the paper's rates (6, 12, 18): larger than the map", 8, 4, (6, 12, 18), (3, 8, 4, 4), False),
    ("batch 4, 6x5 map, in training mode (BatchNorm on batch statistics, dropout 0.5)", 8, 4, (1, 2, 3), (4, 8, 6, 5), True),
]


def _aspp_variants(aspp, x):
    """Outputs of the typical wrong forwards, computed from the reference's own submodules (eval mode)."""
    B, C, H, W = x.shape
    branches = [branch(x) for branch in aspp.branches]
    pooled = aspp.pool(x).expand(-1, -1, H, W)
    max_pooled = aspp.pool.conv(F.adaptive_max_pool2d(x, 1)).expand(-1, -1, H, W)
    outputs = branches + [pooled]
    reordered = [aspp.project(torch.cat([outputs[k] for k in order], dim=1))
                 for order in itertools.islice(itertools.permutations(range(len(outputs))), 1, None)]
    return {
        "order": reordered,
        "pool_first": aspp.project(torch.cat([pooled] + branches, dim=1)),
        "max_pool": aspp.project(torch.cat(branches + [max_pooled], dim=1)),
        "pool_not_pooled": aspp.project(torch.cat(branches + [aspp.pool.conv(x)], dim=1)),
    }


ASPP_HINTS = {
    "order": "your branches are concatenated in another order: the projection's weights expect"
    " [1x1 branch, atrous branches in the order of self.branches, image pooling] along dim 1",
    "pool_first": "your branches are concatenated in another order: the projection's weights expect"
    " [1x1 branch, atrous branches in the order of self.branches, image pooling] along dim 1",
    "max_pool": "the image-pooling branch averages the whole map (self.pool does it: AdaptiveAvgPool2d(1)"
    " then a 1x1 conv), not its maximum",
    "pool_not_pooled": "your image-pooling branch skips the pooling: run the whole of self.pool (average pool"
    " to 1x1, then the 1x1 conv) and broadcast its (B, C, 1, 1) output back to (B, C, H, W)",
}


def _missing_branches(calls, aspp):
    """The branches (by what they are) that the student's forward never ran, from the recorded calls."""
    called = {c.name.split(".")[0] + "." + c.name.split(".")[1] if c.name.startswith("branches.") else c.name.split(".")[0]
              for c in calls}
    missing = []
    for k in range(len(aspp.branches)):
        if f"branches.{k}" not in called:
            missing.append("the 1x1 branch self.branches[0]" if k == 0 else
                           f"the atrous branch self.branches[{k}] (rate {aspp.atrous_rates[k - 1]})")
    if "pool" not in called:
        missing.append("the image-pooling branch self.pool")
    return missing


def _explain_aspp_crash(error, aspp, x, calls=()):
    """A crash in the student's forward, with the hint for the typical mistake behind it, named only when the
    error's shapes and the submodules that ran (`calls`) single it out."""
    text = str(error)
    out = aspp.project.conv.out_channels
    k = len(aspp.branches) + 1  # branches + pooling
    H, W = x.shape[-2:]
    ran = {c.name for c in calls}
    if "pool.avg" in ran and "pool.conv.0" not in ran and not any(n.startswith("pool.conv") for n in ran):
        return ("your image-pooling branch skips its 1x1 conv: run the whole self.pool (average pool to 1x1, then"
                " self.pool.conv) and broadcast its (B, out, 1, 1) output back to (B, out, H, W)")
    if ("Sizes of tensors must match" in text or "Expected size" in text) and any(n.startswith("pool.") for n in ran):
        return ("the pooled branch is (B, C, 1, 1) while the others are (B, C, H, W): broadcast it back to the map's"
                " size before concatenating, e.g. pooled.expand(-1, -1, H, W) (or F.interpolate to (H, W))")
    got = re.search(r"expected input\[(\d+), (\d+), (\d+), (\d+)\]", text)
    if got and f"to have {k * out} channels" in text:
        channels, height, width = (int(v) for v in got.groups()[1:])
        if channels == out and (height, width) == (H, W):
            return (f"the projection expects the {k} branches side by side ({k} x {out} = {k * out} channels):"
                    " concatenate them along the channels, torch.cat(outputs, dim=1), do not add them")
        if channels == out and (height, width) in ((k * H, W), (H, k * W)):
            return (f"you concatenated the {k} branches along dim {2 if height != H else 3}; concatenate them along"
                    " the channels, dim=1 of (B, C, H, W)")
        if channels == (k - 1) * out:
            missing = _missing_branches(calls, aspp)
            if len(missing) == 1:
                return f"the projection expects {k} branches and got {k - 1}: your forward never runs {missing[0]}"
        return (f"the projection expects {k} x {out} = {k * out} channels and got {channels}; re-read 'Atrous"
                " convolution and the ASPP head' in chapter 11")
    return ""


NOT_WRITTEN = (
    "your class does not define forward: it inherits the package's ASPP.forward, so nothing of yours runs. Hint:"
    " write forward in your class (class MyASPP(ASPP): def forward(self, x): ...)"
)
CALLS_SUPER = (
    "your forward calls the package's ASPP.forward (super().forward), which does the whole exercise. Hint: write"
    " the forward from self.branches, self.pool, self.project and self.dropout"
)


def check_aspp_forward(cls):
    """Check your `ASPP` subclass (its `forward`) against the package's on several cases: batch 2 to 4,
    square and non-square maps, two or three rates, rates larger than the map, and training mode.

    Both modules get the same weights (BatchNorm statistics randomised so BN is not the identity); the
    training-mode case draws the dropout mask from the same seed for both. A class that writes no forward
    of its own (inheriting the package's) or calls the package's (super().forward) is rejected."""

    def body():
        if isinstance(cls, type) and issubclass(cls, ASPP) and cls.forward is ASPP.forward:
            raise CheckFailed(NOT_WRITTEN)
        generator = torch.Generator().manual_seed(0)
        for description, c_in, c_out, rates, x_shape, training in ASPP_CASES:
            dropout = 0.5 if training else 0.1
            case = (f"case '{description}' (ASPP({c_in}, {c_out}, atrous_rates={rates}, dropout={dropout}),"
                    f" x of shape {x_shape})")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                reference = randomize_batchnorm(ASPP(c_in, c_out, rates, dropout), generator)
                student = call(cls, c_in, c_out, rates, dropout, case=case)
            load_reference_weights(student, reference, case)
            reference.train(training)
            student.train(training)
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(1)
                expected = reference(x)
                torch.manual_seed(1)
                try:
                    with forbid([(ASPP, "forward")], "ASPP.forward") as forbidden, recording(student) as calls:
                        actual = call(student, x.clone(), case=case)
                    if forbidden:
                        raise CheckFailed(f"{case}: {CALLS_SUPER}")
                except CheckFailed as error:
                    if forbidden:
                        raise CheckFailed(f"{case}: {CALLS_SUPER}") from None
                    hint = _explain_aspp_crash(error.__cause__ or error, reference, x, calls)
                    if hint:
                        raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hint}") from error.__cause__
                    raise
                if training:
                    H, W = x_shape[-2:]
                    concat = torch.cat([b(x) for b in reference.branches] + [reference.pool(x).expand(-1, -1, H, W)], 1)
                    torch.manual_seed(1)  # the same dropout draws as the student's, for a dropout in the wrong place
                    dropout_first = reference.project(reference.dropout(concat))
                    hints = [
                        (lambda a, e, v=reference.project(concat): torch.allclose(a, v, atol=1e-5, rtol=1e-4),
                         "in training mode your output has no dropout: end with self.dropout(...) after self.project"),
                        (lambda a, e, v=dropout_first: torch.allclose(a, v, atol=1e-5, rtol=1e-4),
                         "your dropout acts on the concatenated branches; apply it last, to the projection's output:"
                         " self.dropout(self.project(...))"),
                    ]
                else:
                    hints = [(lambda a, e, v=v: any(a.shape == t.shape and torch.allclose(a, t, atol=1e-5, rtol=1e-4)
                                                    for t in (v if isinstance(v, list) else [v])), ASPP_HINTS[name])
                             for name, v in _aspp_variants(reference, x).items()]
            if isinstance(actual, torch.Tensor) and actual.dim() == 4 and actual.shape[1] != c_out and not training:
                concat = len(rates) + 2
                if actual.shape[1] == concat * c_out:
                    raise CheckFailed(f"{case}: your output has {actual.shape[1]} channels, the {concat} branches"
                                      f" side by side; expected {c_out}. Hint: finish with self.project (the 1x1"
                                      " conv back to out_channels), then self.dropout")
            expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=hints)

    run_check(
        "ASPP.forward",
        body,
        f"equals the package's on all {len(ASPP_CASES)} cases (non-square, rates larger than the map, training mode)",
    )


# -------------------------------------------------------------------------------------------- mean IoU
def _masks(rows):
    """A (1, H, W) long mask from a list of strings of digits, one string per row."""
    return torch.tensor([[int(c) for c in row] for row in rows]).unsqueeze(0)


# Hand-made cases: (description, predicted (B, H, W), target (B, H, W), num_classes, right mean IoU)
# 1: classes 0 and 1; IoU_0 = 4/6, IoU_1 = 2/4 -> 7/12
# 2: IoU_0 = 2/4, IoU_1 = 5/7; class 2 of 3 is absent from both the truth and the prediction, so the mean
#    is over classes 0 and 1 only
# 3: two images, 4 classes; IoU over all pixels of the batch (not the mean of each image's IoU); class 2 is in the
#    truth but never predicted and class 3 predicted but never in the truth: both have IoU 0 and count in the mean
MEAN_IOU_CASES = [
    ("one 2x4 image, 2 classes", _masks(["0011", "0001"]), _masks(["0001", "0011"]), 2, (4 / 6 + 2 / 4) / 2),
    (
        "one 3x3 image, 3 classes, class 2 absent from both the truth and the prediction",
        _masks(["001", "011", "111"]),
        _masks(["011", "011", "011"]),
        3,
        (2 / 4 + 5 / 7) / 2,
    ),
    (
        "a batch of two 2x3 images, 4 classes: class 2 never predicted, class 3 predicted but not in the truth",
        torch.cat([_masks(["013", "011"]), _masks(["000", "113"])]),
        torch.cat([_masks(["011", "012"]), _masks(["000", "221"])]),
        4,
        None,  # computed below from the confusion matrix, so the table cannot disagree with it
    ),
]


def _confusion(predicted, target, k):
    return torch.bincount(target.reshape(-1) * k + predicted.reshape(-1), minlength=k * k).reshape(k, k).double()


def _iou_variants(predicted, target, k):
    """The numbers the typical wrong answers give, keyed by the mistake."""
    c = _confusion(predicted, target, k)
    tp, fp, fn = c.diagonal(), c.sum(0) - c.diagonal(), c.sum(1) - c.diagonal()
    union = tp + fp + fn
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    variants = {
        "absent_as_zero": iou.mean().item(),
        "absent_as_one": torch.where(present, iou, torch.ones_like(iou)).mean().item(),
        "accuracy": (tp.sum() / c.sum()).item(),
        "precision": (tp[present] / (tp + fp)[present].clamp(min=1)).mean().item(),
        "dice": (2 * tp[present] / (2 * tp + fp + fn)[present]).mean().item(),
        "no_background": iou[1:][present[1:]].mean().item() if present[1:].any() else float("nan"),
        "truth_only": iou[c.sum(1) > 0].mean().item(),
        "union_twice": (tp[present] / (c.sum(0) + c.sum(1))[present]).mean().item(),
        "nonzero_only": iou[tp > 0].mean().item() if (tp > 0).any() else float("nan"),
    }
    if predicted.shape[0] > 1:
        per_image = []
        for p, t in zip(predicted, target):
            ci = _confusion(p, t, k)
            u = ci.sum(0) + ci.sum(1) - ci.diagonal()
            per_image.append((ci.diagonal()[u > 0] / u[u > 0]).mean().item())
        variants["per_image"] = sum(per_image) / len(per_image)
    return variants


MEAN_IOU_HINTS = {
    "absent_as_zero": "a class absent from both the truth and the prediction has no IoU (0/0): leave it out of"
    " the mean, do not count it as 0",
    "absent_as_one": "a class absent from both the truth and the prediction has no IoU (0/0): leave it out of"
    " the mean, do not count it as 1",
    "union_twice": "your union counts the pixels in both the prediction and the truth twice: union = predicted"
    " + true - intersection (TP + FP + FN)",
    "truth_only": "a class that is predicted but absent from the truth has IoU 0 (its union is all false"
    " positives): keep it in the mean; leave out only a class absent from both the truth and the prediction",
    "nonzero_only": "a class with IoU 0 (in the truth but never predicted right) counts as 0 in the mean: leave"
    " out only a class absent from both the truth and the prediction",
    "accuracy": "this is the pixel accuracy (correct pixels / all pixels); IoU is per class:"
    " TP / (TP + FP + FN), then the mean over the classes",
    "precision": "your denominator is TP + FP (the pixels predicted as the class): the union also holds the"
    " false negatives, TP + FP + FN",
    "dice": "this is the Dice score 2TP / (2TP + FP + FN); IoU is TP / (TP + FP + FN)",
    "no_background": "the background (class 0) is a class like any other: include it in the mean",
    "per_image": "you average the IoU of each image; count the pixels of the whole batch first, then take"
    " each class's IoU once",
}


def _right_mean_iou(predicted, target, k):
    c = _confusion(predicted, target, k)
    union = c.sum(0) + c.sum(1) - c.diagonal()
    return (c.diagonal()[union > 0] / union[union > 0]).mean().item()


def _as_number(actual, case):
    """The student's answer as a float, or CheckFailed saying what came instead."""
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        return actual.item()
    if isinstance(actual, torch.Tensor):
        raise CheckFailed(f"{case}: expected one number, got a tensor of shape {tuple(actual.shape)}."
                          " Hint: return the mean over the classes, e.g. iou[present].mean().item()")
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        raise CheckFailed(f"{case}: expected a float, got {type(actual).__name__}")
    return float(actual)


def _same(a, b):
    return not math.isnan(a) and not math.isnan(b) and abs(a - b) <= 1e-6


def check_mean_iou(fn):
    """Check `fn(predicted, target, num_classes) -> float`, the mean IoU of (B, H, W) label tensors, on
    hand-made masks: two classes; a class absent from both the truth and the prediction (left out of the
    mean); a batch of two images (pixels counted over the whole batch) with a class in the truth but never
    predicted and one predicted but not in the truth (both IoU 0, both in the mean).

    On a wrong answer, the hint names the typical mistake whose numbers your function reproduces on
    every case where that mistake changes the result (two mistakes can agree on one small case)."""

    def body():
        answers = []  # (case, actual, right, variants) of every case, for the hint
        for description, predicted, target, k, right in MEAN_IOU_CASES:
            right = _right_mean_iou(predicted, target, k) if right is None else right
            case = f"case '{description}' (predicted and target of shape {tuple(predicted.shape)}, num_classes={k})"
            actual = _as_number(call(fn, predicted.clone(), target.clone(), k, case=case), case)
            answers.append((case, actual, right, _iou_variants(predicted, target, k)))
        for case, actual, right, _ in answers:
            if not _same(actual, right):
                break
        else:
            return
        hint = ""
        for name in MEAN_IOU_HINTS:
            informative = [(a, v[name]) for _, a, r, v in answers if name in v and not _same(v[name], r)]
            explains = all(name in v and _same(a, v[name]) for _, a, r, v in answers if not _same(a, r))
            if informative and explains and all(_same(a, value) for a, value in informative):
                hint = MEAN_IOU_HINTS[name]
                break
        if math.isnan(actual) and not hint:
            hint = "NaN: a class with an empty union (0/0) must be left out of the mean, not averaged in"
        if not hint and not math.isnan(actual) and abs(actual - right) < 1e-3:
            hint = ("your value differs from the right one only after the third decimal: a rounding or a"
                    " low-precision dtype (float16) somewhere; compute the IoUs in float32 or float64, unrounded")
        raise CheckFailed(f"{case}: your mean IoU is {actual:.6g}; expected {right:.6g}" + (f". Hint: {hint}" if hint else ""))

    run_check(
        "mean_iou",
        body,
        f"right on all {len(MEAN_IOU_CASES)} hand-made cases (incl. an absent class and a batch of two images)",
    )
