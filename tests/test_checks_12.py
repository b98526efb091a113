"""The exercise checks of chapter 12 (box IoU, NMS): the reference passes, a stub is "not implemented yet",
and the usual mistakes are named; the wrong answers of tests/wrong_answers/answers_detection.py are measured
with the other sets in tests/wrong_answers/test_wrong_answers.py, and here: no hint gives the formula away."""

import pathlib
import sys

import pytest
import torch

from mobilevit_edu import checks
from mobilevit_edu.detection import box_iou

from _checking import is_stub, passes, rejects, stub

sys.path.insert(0, str(pathlib.Path(__file__).parent / "wrong_answers"))
import answers_detection  # noqa: E402
from _measure import measure  # noqa: E402


def reference_nms(boxes, scores, labels, iou_threshold):
    from torchvision.ops import batched_nms

    return batched_nms(boxes, scores, labels, iou_threshold)


def test_box_iou_reference_passes(capsys):
    passes(checks.check_box_iou, box_iou, capsys)


def test_nms_reference_passes(capsys):
    passes(checks.check_nms, reference_nms, capsys)


@pytest.mark.parametrize("check", [checks.check_box_iou, checks.check_nms])
def test_blank_answer_is_not_implemented_yet(check, capsys):
    is_stub(check, stub, capsys)


def test_box_iou_names_the_plus_one_convention():
    def plus_one(b1, b2):
        return answers_detection._iou(plus=1.0)(b1, b2)

    rejects(checks.check_box_iou, plus_one, "+ 1")


def test_nms_across_classes_is_named():
    rejects(checks.check_nms, answers_detection._nms(across=True), "other classes")


def test_box_iou_of_xywh_boxes_is_named():
    rejects(checks.check_box_iou, answers_detection._iou(xywh=True), "(x, y, w, h)")


@pytest.mark.parametrize("check_name", list(answers_detection.SETS))
def test_wrong_answer_hints_never_give_the_formula_away(check_name):
    # that every wrong answer is rejected and most are named is tests/wrong_answers/test_wrong_answers.py's
    check, wrong, right = answers_detection.SETS[check_name]
    for _, _, message in measure(check, wrong, right)["details"]:
        assert "area1 + area2 - inter" not in message and "(x2 - x1) * (y2 - y1)" not in message, message
