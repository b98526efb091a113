"""The exercise checks of chapter 11: the reference passes, a stub is "not implemented yet", and wrong
answers that look right are rejected with a message that says what is wrong."""

import types

import pytest
import torch
import torch.nn.functional as F

from mobilevit_edu import checks
from mobilevit_edu.checks import segmentation as seg_checks
from mobilevit_edu.segmentation import ASPP, MeanIoU

from _checking import passes, rejects


# ------------------------------------------------------------------------------------------------ ASPP
class WrongASPP(ASPP):
    """ASPP.forward with one typical mistake, chosen by the class attributes below."""

    combine = "concat"  # "concat" | "add" | "pool_first" | "concat_last_dim"
    pooling = "avg"  # "avg" | "max" | "none" (no pooling branch) | "skip" (conv without pooling) | "unbroadcast"
    use_project = True
    dropout_place = "last"  # "last" | "none" | "first"

    def forward(self, x):
        B, C, H, W = x.shape
        outputs = [branch(x) for branch in self.branches]
        if self.pooling == "avg":
            outputs.append(self.pool(x).expand(-1, -1, H, W))
        elif self.pooling == "max":
            outputs.append(self.pool.conv(F.adaptive_max_pool2d(x, 1)).expand(-1, -1, H, W))
        elif self.pooling == "skip":
            outputs.append(self.pool.conv(x))
        elif self.pooling == "unbroadcast":
            outputs.append(self.pool(x))
        if self.combine == "add":
            y = sum(outputs)
        elif self.combine == "pool_first":
            y = torch.cat(outputs[-1:] + outputs[:-1], dim=1)
        else:
            y = torch.cat(outputs, dim=1)
        if self.dropout_place == "first":
            y = self.dropout(y)
        if not self.use_project:
            return y
        y = self.project(y)
        return self.dropout(y) if self.dropout_place == "last" else y


def wrong(**changes):
    return type("WrongASPP", (WrongASPP,), changes)


class StubASPP(ASPP):
    def forward(self, x):
        raise NotImplementedError("Your code here")


def test_aspp_reference_passes(capsys):
    # the package's forward, copied into a student's subclass (the package's class itself writes no forward of
    # the student's, and is rejected below)
    copied = types.FunctionType(ASPP.forward.__code__, ASPP.forward.__globals__, "forward")
    assert "all 4 cases" in passes(checks.check_aspp_forward, type("Copied", (ASPP,), {"forward": copied}), capsys)


def test_aspp_that_inherits_the_package_forward_is_rejected():
    class Inherits(ASPP):
        pass

    rejects(checks.check_aspp_forward, Inherits, "does not define forward", "inherits the package's ASPP.forward")
    rejects(checks.check_aspp_forward, ASPP, "does not define forward")


def test_aspp_that_calls_the_package_forward_is_rejected():
    class CallsSuper(ASPP):
        def forward(self, x):
            return super().forward(x)

    rejects(checks.check_aspp_forward, CallsSuper, "calls the package's ASPP.forward")


def test_aspp_written_like_the_wrong_ones_but_right_passes(capsys):
    passes(checks.check_aspp_forward, wrong(), capsys)


def test_aspp_with_interpolate_instead_of_expand_passes(capsys):
    class Interpolating(ASPP):
        def forward(self, x):
            outputs = [b(x) for b in self.branches]
            outputs.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
            return self.dropout(self.project(torch.cat(outputs, dim=1)))

    passes(checks.check_aspp_forward, Interpolating, capsys)


def test_aspp_stub_is_not_implemented_yet(capsys):
    checks.check_aspp_forward(StubASPP)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes,fragments",
    [
        ({"combine": "add"}, ["concatenate", "do not add"]),
        ({"combine": "pool_first"}, ["another order"]),
        ({"pooling": "max"}, ["averages the whole map"]),
        ({"pooling": "none"}, ["never runs the image-pooling branch self.pool"]),
        ({"pooling": "skip"}, ["skips the pooling"]),
        ({"pooling": "unbroadcast"}, ["broadcast it back"]),
        ({"use_project": False}, ["side by side", "self.project"]),
        ({"dropout_place": "none"}, ["training mode", "no dropout"]),
        ({"dropout_place": "first"}, ["dropout acts on the concatenated branches"]),
    ],
    ids=["sum", "order", "max-pool", "no-pool", "pool-skipped", "not-broadcast", "no-projection", "no-dropout",
         "dropout-first"],
)
def test_aspp_wrong_forwards_are_rejected(changes, fragments):
    rejects(checks.check_aspp_forward, wrong(**changes), *fragments)


# -------------------------------------------------------------------------------------------- mean IoU
def mean_iou_reference(predicted, target, num_classes):
    metric = MeanIoU(num_classes)
    metric.update(predicted, target)
    return metric.compute()


def confusion(predicted, target, k):
    return torch.bincount(target.reshape(-1) * k + predicted.reshape(-1), minlength=k * k).reshape(k, k).double()


def iou_with(denominator, absent=None, per_image=False, skip_background=False):
    """A mean IoU written with one typical mistake."""

    def fn(predicted, target, k):
        if per_image:
            return sum(fn_one(p[None], t[None], k) for p, t in zip(predicted, target)) / len(predicted)
        return fn_one(predicted, target, k)

    def fn_one(predicted, target, k):
        c = confusion(predicted, target, k)
        tp, fp, fn_ = c.diagonal(), c.sum(0) - c.diagonal(), c.sum(1) - c.diagonal()
        den = {"iou": tp + fp + fn_, "precision": tp + fp, "dice": (2 * tp + fp + fn_) / 2}[denominator]
        present = (tp + fp + fn_) > 0
        iou = tp / den.clamp(min=1e-12)
        if absent is not None:
            iou = torch.where(present, iou, torch.full_like(iou, absent))
            present = torch.ones_like(present)
        if skip_background:
            iou, present = iou[1:], present[1:]
        return iou[present].mean().item()

    return fn


def test_mean_iou_reference_passes(capsys):
    assert "all 3 hand-made cases" in passes(checks.check_mean_iou, mean_iou_reference, capsys)


def test_mean_iou_written_like_the_wrong_ones_but_right_passes(capsys):
    passes(checks.check_mean_iou, iou_with("iou"), capsys)


def test_mean_iou_stub_is_not_implemented_yet(capsys):
    def stub(predicted, target, num_classes):
        raise NotImplementedError

    checks.check_mean_iou(stub)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer,fragments",
    [
        (iou_with("iou", absent=0.0), ["absent from both", "not count it as 0", "class 2 absent"]),
        (iou_with("iou", absent=1.0), ["not count it as 1"]),
        (iou_with("precision"), ["TP + FP + FN"]),
        (iou_with("dice"), ["Dice"]),
        (iou_with("iou", per_image=True), ["whole batch", "batch of two"]),
        (iou_with("iou", skip_background=True), ["include it in the mean"]),
        (lambda p, t, k: (p == t).float().mean().item(), ["pixel accuracy"]),
        (lambda p, t, k: float("nan"), ["NaN", "left out of the mean"]),
        (lambda p, t, k: torch.zeros(k), ["one number", "shape (2,)"]),
    ],
    ids=["absent-as-0", "absent-as-1", "precision", "dice", "per-image", "no-background", "accuracy", "nan",
         "per-class-tensor"],
)
def test_mean_iou_wrong_answers_are_rejected(answer, fragments):
    rejects(checks.check_mean_iou, answer, *fragments)


def test_hand_made_values_agree_with_the_package():
    """The check's hand-computed answers equal what MeanIoU computes from the same masks."""
    for _, predicted, target, k, right in seg_checks.MEAN_IOU_CASES:
        if right is not None:
            assert mean_iou_reference(predicted, target, k) == pytest.approx(right, abs=1e-12)
