"""Checks for chapter 12: box IoU and non-maximum suppression, by hand.

- `check_box_iou(fn)`: your `box_iou(boxes1, boxes2)` -> (N, M) IoU of corner boxes (x1, y1, x2, y2), on
  hand-made pairs (overlapping, identical, nested, disjoint, touching) and on random non-square sets.
- `check_nms(fn)`: your `nms(boxes, scores, labels, iou_threshold)` -> indices of the kept boxes, best score
  first, suppressing only within a class, on hand-made cases and against torchvision.ops.batched_nms.

On a wrong answer, the hint names the typical mistake whose numbers your function reproduces.
"""

import torch

from ..detection import box_iou as _reference_iou
from ._common import CheckFailed, call, run_check


# ----------------------------------------------------------------------------------------------- IoU
def _t(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def _random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 20
    wh = 1 + torch.rand(n, 2, generator=g) * 12
    return torch.cat([xy, xy + wh], dim=1)


IOU_CASES = [
    ("two 4x4 squares overlapping in a 2x2 corner", _t([0, 0, 4, 4]), _t([2, 2, 6, 6])),
    ("a box and itself", _t([1, 2, 7, 5]), _t([1, 2, 7, 5])),
    ("a 2x2 box inside a 6x4 box", _t([0, 0, 6, 4]), _t([1, 1, 3, 3])),
    ("two disjoint boxes, apart in x and in y", _t([0, 0, 2, 2]), _t([5, 6, 8, 9])),
    ("two boxes that only touch along an edge", _t([0, 0, 3, 3]), _t([3, 0, 5, 3])),
    ("a wide and a tall box crossing like a plus sign", _t([0, 2, 8, 4]), _t([3, 0, 5, 8])),
    ("3 against 2 random boxes (N != M: the output is (N, M))", _random_boxes(3, 1), _random_boxes(2, 2)),
    ("5 against 4 random boxes with fractional corners", _random_boxes(5, 3), _random_boxes(4, 4)),
]


def _iou_variant(boxes1, boxes2, mistake):
    """The IoU a typical mistake computes."""
    if mistake == "xywh":  # reads the boxes as (x, y, w, h)
        boxes1 = torch.cat([boxes1[:, :2], boxes1[:, :2] + boxes1[:, 2:]], dim=1)
        boxes2 = torch.cat([boxes2[:, :2], boxes2[:, :2] + boxes2[:, 2:]], dim=1)
    plus = 1.0 if mistake == "plus_one" else 0.0
    area1 = (boxes1[:, 2] - boxes1[:, 0] + plus) * (boxes1[:, 3] - boxes1[:, 1] + plus)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + plus) * (boxes2[:, 3] - boxes2[:, 1] + plus)
    pick_lt, pick_rb = (torch.min, torch.max) if mistake == "min_max_swapped" else (torch.max, torch.min)
    lt = pick_lt(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = pick_rb(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = rb - lt + plus
    if mistake != "no_clamp":
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if mistake == "union_sum":
        union = area1[:, None] + area2[None, :]
    elif mistake == "union_max":
        union = torch.maximum(area1[:, None], area2[None, :])
    elif mistake == "union_minus_twice":
        union = area1[:, None] + area2[None, :] - 2 * inter
    else:
        union = area1[:, None] + area2[None, :] - inter
    if mistake == "min_over_union":
        return torch.minimum(area1[:, None], area2[None, :]) / union
    return inter / union


IOU_HINTS = {
    "plus_one": "you add 1 to the widths and heights (x2 - x1 + 1), the old pixel-count convention; here boxes are"
                " continuous boxes with no + 1",
    "xywh": "you read the boxes as (x, y, w, h); they are corners (x1, y1, x2, y2)",
    "union_sum": "your union is area1 + area2: the overlap is counted twice, subtract the intersection once",
    "union_minus_twice": "your union subtracts the intersection twice (IoU > 1 is the sign): the overlap belongs in the union once",
    "min_max_swapped": "the intersection's top-left corner is the max of the two top-left corners and its bottom-right"
                       " the min of the bottom-right ones; you swapped min and max",
    "no_clamp": "boxes that do not overlap give a negative width or height: clamp them at 0 before multiplying",
    "min_over_union": "you divide the smaller area, not the intersection, by the union",
    "union_max": "your union is the larger of the two areas: it misses the part of the other box outside it",
}


def _name_mistake(answers, hints, same):
    """The first mistake in `hints` whose result your answer reproduces on every case you get wrong (where the
    mistake changes the result); failing that, on at least one such case (two mistakes made at once).
    `answers`: [(case, yours, right, {mistake: its result})]."""
    wrong = [(yours, variants) for _, yours, right, variants in answers if not same(yours, right)]
    for name in hints:
        if all(same(yours, variants[name]) for yours, variants in wrong):
            return hints[name]
    for name in hints:
        if any(same(yours, variants[name]) for yours, variants in wrong):
            return hints[name]
    return ""


def _same_tensor(a, b):
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-5, rtol=1e-4)


def check_box_iou(fn):
    """Check `fn(boxes1, boxes2) -> (N, M)` IoU of (N, 4) and (M, 4) corner boxes against hand-made pairs and
    random sets. The hint names the mistake your numbers reproduce (a +1 in the areas, (x, y, w, h) boxes,
    a union that counts the overlap twice or not at all, an unclamped intersection, ...)."""

    def body():
        answers = []
        for description, b1, b2 in IOU_CASES:
            case = f"case '{description}' (boxes1 {b1.tolist()}, boxes2 {b2.tolist()})" if len(b1) == 1 else f"case '{description}'"
            actual = call(fn, b1.clone(), b2.clone(), case=case)
            if not isinstance(actual, torch.Tensor):
                raise CheckFailed(f"{case}: expected a torch.Tensor of shape ({len(b1)}, {len(b2)}), got {type(actual).__name__}")
            right = _reference_iou(b1, b2)
            if actual.shape != right.shape:
                hint = " Hint: (M, N) is the transpose: rows are boxes1, columns boxes2" if actual.shape == right.T.shape else ""
                raise CheckFailed(f"{case}: your IoU has shape {tuple(actual.shape)}; expected {tuple(right.shape)}.{hint}")
            answers.append((case, actual.detach().float(), right, {m: _iou_variant(b1, b2, m) for m in IOU_HINTS}))
        wrong = [(case, a, r, v) for case, a, r, v in answers if not _same_tensor(a, r)]
        if not wrong:
            return
        case, actual, right, _ = wrong[0]
        hint = _name_mistake(answers, IOU_HINTS, _same_tensor)
        if not hint and float(actual.max()) > 1 + 1e-6:
            hint = "an IoU above 1 is impossible: your union comes out smaller than the intersection"
        elif not hint and float(actual.min()) < -1e-6:
            hint = "a negative IoU is impossible: an intersection's width or height went below 0"
        first = (actual - right).abs().argmax()
        i, j = divmod(int(first), right.shape[1])
        raise CheckFailed(
            f"{case}: your IoU[{i}, {j}] is {float(actual[i, j]):.6g}; expected {float(right[i, j]):.6g}"
            + (f". Hint: {hint}" if hint else "")
        )

    run_check("box_iou", body, f"right on all {len(IOU_CASES)} cases (nested, disjoint, touching boxes, N != M)")


# ----------------------------------------------------------------------------------------------- NMS
def _nms_variant(boxes, scores, labels, threshold, mistake):
    """Greedy NMS with one typical mistake ("right" for none); returns kept indices, best first."""
    order = scores.argsort(descending=mistake != "ascending", stable=True).tolist()
    iou = _reference_iou(boxes, boxes)
    keep, suppressed = [], set()
    for i in order:
        if i in suppressed and mistake != "suppressed_suppress":
            continue
        if i not in suppressed:
            keep.append(i)
        for j in order:
            if j == i or j in keep:
                continue
            if mistake != "across_classes" and labels[j] != labels[i]:
                continue
            over = iou[i, j] >= threshold if mistake == "greater_equal" else (
                iou[i, j] < threshold if mistake == "below" else iou[i, j] > threshold)
            if over:
                suppressed.add(j)
    if mistake == "unsorted_output":
        keep = sorted(keep)
    return torch.tensor(keep, dtype=torch.long)


NMS_HINTS = {
    "across_classes": "you suppress boxes of other classes too: NMS runs within each class (batched_nms), a cat's box"
                      " must not remove a dog's box",
    "greater_equal": "you suppress at IoU == threshold; suppress only when the IoU is strictly above it",
    "below": "you suppress the boxes that overlap LESS than the threshold; suppress those that overlap more",
    "ascending": "you start from the lowest score: take boxes from the highest score down",
    "unsorted_output": "the kept boxes are right but in index order: return them best score first",
    "suppressed_suppress": "a box that was already suppressed still suppresses others: skip it entirely",
}


def _b(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


NMS_CASES = [
    # (description, boxes, scores, labels, iou_threshold)
    ("two boxes of one class overlapping with IoU 0.6", _b([[0, 0, 10, 10], [0, 0, 10, 6]]), [0.9, 0.8], [1, 1], 0.5),
    ("the same two boxes, of two different classes", _b([[0, 0, 10, 10], [0, 0, 10, 6]]), [0.9, 0.8], [1, 2], 0.5),
    ("IoU exactly at the threshold (0.5)", _b([[0, 0, 2, 1], [0, 0, 1, 1]]), [0.7, 0.6], [3, 3], 0.5),
    ("a chain: A overlaps B, B overlaps C, A and C apart", _b([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]]),
     [0.9, 0.8, 0.7], [1, 1, 1], 0.3),
    ("scores not in index order, three classes", _b([[0, 0, 8, 8], [1, 1, 9, 9], [20, 20, 28, 28], [21, 20, 29, 28],
                                                     [0, 0, 8, 8]]), [0.3, 0.9, 0.5, 0.8, 0.6], [1, 1, 2, 2, 3], 0.5),
    ("far apart boxes: nothing suppressed", _b([[0, 0, 4, 4], [10, 10, 14, 14], [20, 0, 24, 4]]), [0.2, 0.9, 0.5],
     [1, 1, 1], 0.5),
    ("no boxes at all", _b([]), [], [], 0.5),
]


def _random_nms_case(seed, n=40):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 30
    wh = 4 + torch.rand(n, 2, generator=g) * 10
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(1, 4, (n,), generator=g)


def check_nms(fn):
    """Check `fn(boxes, scores, labels, iou_threshold) -> LongTensor` of kept indices, best score first: greedy
    non-maximum suppression within each class, a box removed when its IoU with a kept, better box of its
    class is above the threshold. Hand-made cases, then random ones against torchvision.ops.batched_nms."""
    from torchvision.ops import batched_nms

    def body():
        cases = [(d, b, torch.tensor(s, dtype=torch.float32), torch.tensor(l, dtype=torch.long), t)
                 for d, b, s, l, t in NMS_CASES]
        for seed, t in ((1, 0.5), (2, 0.3)):
            b, s, l = _random_nms_case(seed)
            cases.append((f"40 random boxes of 3 classes, threshold {t}", b, s, l, t))
        answers = []
        for description, boxes, scores, labels, t in cases:
            case = f"case '{description}'"
            if len(boxes) <= 5:
                case += f" (boxes {boxes.tolist()}, scores {scores.tolist()}, labels {labels.tolist()}, iou_threshold {t})"
            actual = call(fn, boxes.clone(), scores.clone(), labels.clone(), t, case=case)
            if isinstance(actual, list):
                actual = torch.tensor(actual, dtype=torch.long)
            if not isinstance(actual, torch.Tensor):
                raise CheckFailed(f"{case}: expected a LongTensor of kept indices, got {type(actual).__name__}")
            if actual.is_floating_point():
                raise CheckFailed(f"{case}: expected integer indices into boxes, got dtype {actual.dtype} (boxes or scores?)")
            right = batched_nms(boxes, scores, labels, t)
            variants = {m: _nms_variant(boxes, scores, labels, t, m) for m in NMS_HINTS}
            answers.append((case, actual.long().reshape(-1), right, variants))
        wrong = [(c, a, r, v) for c, a, r, v in answers if not torch.equal(a, r)]
        if not wrong:
            return
        case, actual, right, _ = wrong[0]
        hint = _name_mistake(answers, NMS_HINTS, lambda a, b: a.shape == b.shape and torch.equal(a, b))
        if not hint and sorted(actual.tolist()) == sorted(right.tolist()):
            hint = "the right boxes in the wrong order: return them best score first"
        raise CheckFailed(f"{case}: you keep {actual.tolist()}; expected {right.tolist()}" + (f". Hint: {hint}" if hint else ""))

    run_check("nms", body, f"right on all {len(NMS_CASES)} hand-made cases and 2 random ones (as torchvision's batched_nms)")
