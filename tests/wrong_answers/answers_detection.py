"""Chapter 12's exercise (box IoU and NMS by hand): wrong answers as students write them, and right ones
written another way. Same format as answers_functions.py: SETS = {check_name: (check, wrong, right)}.
Measured by tests/test_checks_12.py (tests/wrong_answers/test_wrong_answers.py imports only its own two sets)."""

import torch

from mobilevit_edu.checks import check_box_iou, check_nms


# ----------------------------------------------------------------------------------------------- IoU
def _iou(plus=0.0, xywh=False, clamp=True, union="right", swap=False, transpose=False, numerator="inter"):
    def box_iou(boxes1, boxes2):
        if xywh:
            boxes1 = torch.cat([boxes1[:, :2], boxes1[:, :2] + boxes1[:, 2:]], 1)
            boxes2 = torch.cat([boxes2[:, :2], boxes2[:, :2] + boxes2[:, 2:]], 1)
        a1 = (boxes1[:, 2] - boxes1[:, 0] + plus) * (boxes1[:, 3] - boxes1[:, 1] + plus)
        a2 = (boxes2[:, 2] - boxes2[:, 0] + plus) * (boxes2[:, 3] - boxes2[:, 1] + plus)
        lo, hi = (torch.min, torch.max) if swap else (torch.max, torch.min)
        lt = lo(boxes1[:, None, :2], boxes2[None, :, :2])
        rb = hi(boxes1[:, None, 2:], boxes2[None, :, 2:])
        wh = rb - lt + plus
        if clamp:
            wh = wh.clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        u = {"right": a1[:, None] + a2[None] - inter, "sum": a1[:, None] + a2[None],
             "twice": a1[:, None] + a2[None] - 2 * inter, "max": torch.maximum(a1[:, None], a2[None])}[union]
        top = inter if numerator == "inter" else torch.minimum(a1[:, None], a2[None])
        out = top / u
        return out.T if transpose else out
    return box_iou


def iou_loops(boxes1, boxes2):
    out = torch.zeros(len(boxes1), len(boxes2))
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes1.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(boxes2.tolist()):
            w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            h = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = w * h
            out[i, j] = inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)
    return out


def iou_torchvision(boxes1, boxes2):
    from torchvision.ops import box_iou
    return box_iou(boxes1, boxes2)


def iou_unbind(boxes1, boxes2):
    x1, y1, x2, y2 = boxes1[:, None].unbind(-1)
    X1, Y1, X2, Y2 = boxes2[None].unbind(-1)
    inter = (torch.minimum(x2, X2) - torch.maximum(x1, X1)).clamp(min=0) * (torch.minimum(y2, Y2) - torch.maximum(y1, Y1)).clamp(min=0)
    return inter / ((x2 - x1) * (y2 - y1) + (X2 - X1) * (Y2 - Y1) - inter)


IOU_WRONG = [
    ("+1 in every width and height", _iou(plus=1.0), ["+ 1"]),
    ("boxes read as (x, y, w, h)", _iou(xywh=True), ["(x, y, w, h)"]),
    ("union = area1 + area2", _iou(union="sum"), ["counted twice"]),
    ("union subtracts the intersection twice", _iou(union="twice"), ["subtracts the intersection twice"]),
    ("min and max swapped for the intersection", _iou(swap=True), ["swapped min and max"]),
    ("no clamp on the intersection", _iou(clamp=False), ["clamp"]),
    ("smaller area over union", _iou(numerator="min"), ["smaller area"]),
    ("transposed output", _iou(transpose=True), ["transpose"]),
    ("union = the larger area", _iou(union="max"), ["larger of the two areas"]),
    ("+1 and no clamp", _iou(plus=1.0, clamp=False), ["+ 1", "clamp"]),
    ("(x, y, w, h) and union = sum", _iou(xywh=True, union="sum"), ["(x, y, w, h)", "counted twice", "above 1"]),
]
IOU_RIGHT = [("loops", iou_loops), ("torchvision.ops.box_iou", iou_torchvision), ("unbind", iou_unbind)]


# ----------------------------------------------------------------------------------------------- NMS
def _nms(across=False, ge=False, ascending=False, index_order=False, dead_suppress=False, below=False):
    def nms(boxes, scores, labels, iou_threshold):
        iou = iou_loops(boxes, boxes) if len(boxes) else torch.zeros(0, 0)
        order = sorted(range(len(scores)), key=lambda i: float(scores[i]), reverse=not ascending)
        alive = [True] * len(order)
        keep = []
        for i in order:
            if not alive[i] and not dead_suppress:
                continue
            if alive[i]:
                keep.append(i)
            for j in order:
                if j in keep or j == i:
                    continue
                if not across and labels[j] != labels[i]:
                    continue
                v = float(iou[i, j])
                if (v < iou_threshold) if below else (v >= iou_threshold if ge else v > iou_threshold):
                    alive[j] = False
        if index_order:
            keep.sort()
        return torch.tensor(keep, dtype=torch.long)
    return nms


def nms_torchvision(boxes, scores, labels, iou_threshold):
    from torchvision.ops import batched_nms
    return batched_nms(boxes, scores, labels, iou_threshold)


def nms_per_class_loop(boxes, scores, labels, iou_threshold):
    from torchvision.ops import nms
    kept = [torch.nonzero(labels == c).flatten()[nms(boxes[labels == c], scores[labels == c], iou_threshold)]
            for c in labels.unique()]
    kept = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
    return kept[scores[kept].argsort(descending=True)]


def nms_offset_trick(boxes, scores, labels, iou_threshold):
    from torchvision.ops import nms
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long)
    shifted = boxes + labels[:, None].float() * (boxes.max() + 1)  # classes far apart: never overlap
    return nms(shifted, scores, iou_threshold)


def nms_crash(boxes, scores, labels, iou_threshold):
    return boxes[scores.argmax()]  # returns a box, not indices


NMS_WRONG = [
    ("greedy NMS across classes", _nms(across=True), ["other classes"]),
    ("suppress at IoU >= threshold", _nms(ge=True), ["IoU == threshold"]),
    ("suppress when IoU < threshold", _nms(below=True), ["LESS"]),
    ("lowest score first", _nms(ascending=True), ["lowest score"]),
    ("kept indices in index order", _nms(index_order=True), ["index order", "wrong order"]),
    ("suppressed boxes still suppress", _nms(dead_suppress=True), ["already suppressed"]),
    ("across classes and >=", _nms(across=True, ge=True), ["other classes", "IoU == threshold"]),
    ("torchvision's nms without the classes", lambda b, s, l, t: nms_torchvision(b, s, torch.zeros_like(l), t),
     ["other classes"]),
    ("returns a box", nms_crash, ["integer indices", "LongTensor", "expected"]),
    ("across classes, index order", _nms(across=True, index_order=True), ["other classes"]),
    ("keeps everything", lambda b, s, l, t: s.argsort(descending=True), ["expected"]),
]
NMS_RIGHT = [("torchvision batched_nms", nms_torchvision), ("per-class loop", nms_per_class_loop),
             ("offset trick", nms_offset_trick), ("by hand", _nms())]

SETS = {
    "check_box_iou": (check_box_iou, IOU_WRONG, IOU_RIGHT),
    "check_nms": (check_nms, NMS_WRONG, NMS_RIGHT),
}
