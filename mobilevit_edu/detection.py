"""Chapter 12: MobileViT as an SSDLite backbone. Anchors, matching, the multibox loss, NMS and COCO mAP.

As ml-cvnets v0.1 builds it (cvnets/models/detection/ssd.py, cvnets/modules/ssd.py,
cvnets/misc/anchor_generator.py, cvnets/misc/match_prior.py, cvnets/misc/box_utils.py,
cvnets/misc/third_party/ssd_utils.py, loss_fn/detection_loss_fns/ssd_multibox_loss.py):

- `SSDConfig`: output strides, projection channels, anchor aspect ratios, variances, thresholds; `COCO_SSD`
  is config/detection/ssd_mobilevit_*_320.yaml. `TOY_SSD` is chapter 12's head for 64x64 images.
- `SSDLite(backbone, num_classes, config)`: the backbone's stage outputs at strides <= its own, extra
  stride-2 separable convs beyond, a global-pool 1x1 conv for stride -1, and one head per map (1x1
  projection, then a separable 3x3 conv to anchors x (4 + classes)). (B, 3, H, W) ->
  (confidences (B, A, K), locations (B, A, 4)).
- `anchors(...)`: SSD's default boxes in centre form (cx, cy, w, h), normalised to [0, 1].
- `box_iou`, `match_anchors`, `encode`, `decode`: matching at IoU 0.5 with every box's best anchor forced,
  and the offsets scaled by the centre/size variances 0.1/0.2 (SSD's Eq. 2).
- `multibox_loss`: smooth-L1 on the positives + cross-entropy on positives and the 3x-as-many hardest
  negatives, divided by the number of positives. `SSDLoss` wraps matching + loss for chapter 7's `fit`.
- `detect`: softmax, decode, score threshold, per-class NMS (torchvision.ops.batched_nms), top-k.
- `COCOMeanAP`: the COCO evaluator (pycocotools' COCOeval): mAP@[.5:.95] and mAP@0.5.
- `shapes_detection`: chapter 12's generated data set, and `check_targets`, the clear errors on bad boxes.

Boxes are corners (x1, y1, x2, y2), x to the right and y down, with x1 < x2 and y1 < y2; a box covers the
continuous area [x1, x2) x [y1, y2), so its area is (x2 - x1) * (y2 - y1), with no "+ 1".
"""

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNormAct
from .models import MobileViT


# ------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SSDConfig:
    """The SSD head and its box arithmetic. Defaults: ml-cvnets v0.1's ssd_mobilevit_*_320.yaml."""

    output_strides: Tuple[int, ...] = (16, 32, 64, 128, 256, -1)  # -1: a 1x1 map from global pooling
    proj_channels: Tuple[int, ...] = (512, 256, 256, 128, 128, 64)  # per map: the head's (or extra layer's) width
    aspect_ratios: Tuple[Tuple[int, ...], ...] = ((2, 3),) * 5 + ((2,),)  # per map: 2 + 2 x len anchors per cell
    min_box_size: float = 0.1  # anchor scales: linspace(min, max, maps + 1), fractions of the image
    max_box_size: float = 1.05
    center_variance: float = 0.1
    size_variance: float = 0.2
    iou_threshold: float = 0.5  # matching: an anchor with IoU >= this to a box is a positive
    nms_iou_threshold: float = 0.5
    conf_threshold: float = 0.01  # ml-cvnets' value for COCO evaluation
    top_k: int = 200  # detections kept per class after NMS
    max_detections: int = 100  # per image, the best-scoring ones: COCO's evaluation reads at most 100
    neg_pos_ratio: int = 3  # hard-negative mining: 3 negatives per positive

    def __post_init__(self):
        n = len(self.output_strides)
        if len(self.proj_channels) != n or len(self.aspect_ratios) != n:
            raise ValueError(
                f"output_strides, proj_channels and aspect_ratios need one entry per map: got {n},"
                f" {len(self.proj_channels)} and {len(self.aspect_ratios)}"
            )
        if -1 in self.output_strides[:-1]:
            raise ValueError(f"output_strides: -1 (the global map) can only come last, got {self.output_strides}")


COCO_SSD = SSDConfig()
# Chapter 12's toy: 64x64 images and a backbone whose stages end at strides 4 and 8 (MINI): heads on the last
# stage at stride 4 (16x16) and at stride 8 (8x8), one extra separable conv (4x4) and the global map (1x1);
# narrower heads; the same aspect ratios, variances and thresholds. The stride-4 map gives each box about
# six positive anchors (three times fewer with strides 8, 16, 32, -1): the toy learns in far fewer steps.
TOY_SSD = SSDConfig(
    output_strides=(4, 8, 16, -1),
    proj_channels=(32, 64, 48, 32),
    aspect_ratios=((2, 3),) * 3 + ((2,),),
    min_box_size=0.15,
    max_box_size=0.9,
    conf_threshold=0.05,  # ml-cvnets' default outside COCO evaluation: fewer boxes for NMS on a CPU
)


# ------------------------------------------------------------------------------------------- anchors
def anchor_sizes(config):
    """[(s_k, s'_k)] per map: the small and big square anchor sides, fractions of the image (SSD §2.2,
    ml-cvnets' SSDAnchorGenerator): scales = linspace(min, max, maps + 1), s_k = scales[k],
    s'_k = sqrt(scales[k] * scales[k + 1])."""
    n = len(config.output_strides)
    scales = [config.min_box_size + (config.max_box_size - config.min_box_size) * i / n for i in range(n + 1)]
    return [(scales[k], math.sqrt(scales[k] * scales[k + 1])) for k in range(n)]


def anchors_per_cell(ratios):
    """2 squares + 2 per aspect ratio (r and 1/r), as ml-cvnets counts them (duplicates removed)."""
    return 2 + 2 * len(dict.fromkeys(ratios))


def map_anchors(height, width, small, big, ratios):
    """(height * width * anchors_per_cell, 4) anchors (cx, cy, w, h) in [0, 1] for one feature map.

    Order, as ml-cvnets: row by row, cell by cell; per cell the small square, the big square, then for each
    ratio r a wide (w * sqrt r, h / sqrt r) and a tall (w / sqrt r, h * sqrt r) box of the small one.
    Everything is clamped to [0, 1] (ml-cvnets clamps the centre form, widths included)."""
    shapes = [(small, small), (big, big)]
    for r in dict.fromkeys(ratios):
        shapes += [(small * math.sqrt(r), small / math.sqrt(r)), (small / math.sqrt(r), small * math.sqrt(r))]
    wh = torch.tensor(shapes, dtype=torch.float32)  # (a, 2)
    cy, cx = torch.meshgrid((torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width, indexing="ij")
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (h*w, 1, 2)
    a = len(shapes)
    boxes = torch.cat([centres.expand(-1, a, -1), wh.expand(height * width, -1, -1)], dim=-1)  # (h*w, a, 4)
    return boxes.reshape(-1, 4).clamp(0.0, 1.0)


def center_to_corners(boxes):
    """(..., 4) (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def corners_to_center(boxes):
    """(..., 4) (x1, y1, x2, y2) -> (cx, cy, w, h)."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


# ------------------------------------------------------------------------------------- the detector
class SeparableConv(nn.Sequential):
    """ml-cvnets' SeparableConv: depthwise k x k (no bias, BatchNorm, no activation), then pointwise 1x1
    (BatchNorm + ReLU when `norm_act`, else a bias and nothing after it: the heads' last layer)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, norm_act=True):
        super().__init__()
        self.dw_conv = ConvNormAct(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels, act=False)
        if norm_act:
            self.pw_conv = ConvNormAct(in_channels, out_channels, 1)
            self.pw_conv.act = nn.ReLU()  # the detection head's activation is ReLU (model.activation.name)
        else:
            self.pw_conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)


class SSDHead(nn.Module):
    """One map's predictions. (B, C, h, w) -> locations (B, h*w*a, 4), confidences (B, h*w*a, K).

    proj: 1x1 conv (BatchNorm, ReLU) to proj_channels when they differ from C (ml-cvnets: only for 3x3 heads);
    loc_cls: a separable 3x3 conv (a plain 1x1 conv on the global 1x1 map) to a x (4 + K) outputs, with bias."""

    def __init__(self, in_channels, proj_channels, num_anchors, num_classes, kernel_size=3):
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.proj = None
        if proj_channels != in_channels and kernel_size > 1:
            self.proj = ConvNormAct(in_channels, proj_channels, 1)
            self.proj.act = nn.ReLU()
            in_channels = proj_channels
        outputs = num_anchors * (4 + num_classes)
        if kernel_size == 1:
            self.loc_cls = nn.Conv2d(in_channels, outputs, 1, bias=True)
        else:
            self.loc_cls = SeparableConv(in_channels, outputs, kernel_size, norm_act=False)

    def forward(self, x):
        if self.proj is not None:
            x = self.proj(x)
        x = self.loc_cls(x)  # (B, a * (4 + K), h, w)
        B, _, h, w = x.shape
        x = x.permute(0, 2, 3, 1).reshape(B, h * w * self.num_anchors, 4 + self.num_classes)  # cells, then anchors
        return x[..., :4], x[..., 4:]  # (B, h*w*a, 4), (B, h*w*a, K)


class SSDLite(nn.Module):
    """SSDLite on a MobileViT backbone. (B, 3, H, W) in [0, 1] -> (confidences (B, A, K), locations (B, A, 4)).

    K = num_classes counts the background as class 0 (COCO: 80 + 1 = 81). For each output stride s of the
    config: s <= the backbone's last stride -> the last stage output at stride s; s > it -> an extra
    stride-2 separable conv (BatchNorm, ReLU) chained from the last stage; s = -1 -> global average pool
    and a 1x1 conv with ReLU (no BatchNorm, no bias: ml-cvnets ConvLayer defaults). As ml-cvnets, the backbone's `final_conv` and `head` are
    replaced by nn.Identity() in place (the backbone passed in is changed).
    """

    def __init__(self, backbone, num_classes, config=COCO_SSD):
        super().__init__()
        if not isinstance(backbone, MobileViT):
            raise TypeError(f"backbone must be a mobilevit_edu.MobileViT (with .features), got {type(backbone).__name__}")
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes must be an int >= 2 (background + at least one class), got {num_classes!r}")
        backbone.final_conv = nn.Identity()
        backbone.head = nn.Identity()
        self.backbone, self.num_classes, self.config = backbone, num_classes, config
        strides = list(backbone.stage_strides)
        channels = [stage.channels for stage in backbone.config.stages]
        last_stride, in_channels = strides[-1], channels[-1]
        self.sources = []  # per map: the stage index it reads, or "extra"
        self.extra_layers = nn.ModuleDict()
        head_inputs, expected = [], last_stride * 2
        for s, proj in zip(config.output_strides, config.proj_channels):
            if s == -1:
                self.extra_layers["os_-1"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, proj, 1, bias=False), nn.ReLU())
                self.sources.append("extra")
                head_inputs.append(proj)
                in_channels = proj
            elif s <= last_stride:
                if s not in strides:
                    raise ValueError(f"output stride {s}: no stage of {backbone.config.name} has it (stage strides {strides})")
                index = len(strides) - 1 - strides[::-1].index(s)  # the last stage at stride s
                self.sources.append(index)
                head_inputs.append(channels[index])
            else:
                if s != expected:
                    raise ValueError(f"extra output strides must double from {last_stride}: expected {expected}, got {s}")
                self.extra_layers[f"os_{s}"] = SeparableConv(in_channels, proj, 3, stride=2)
                self.sources.append("extra")
                head_inputs.append(proj)
                in_channels, expected = proj, 2 * s
        self.heads = nn.ModuleList(
            SSDHead(c, proj, anchors_per_cell(r), num_classes, kernel_size=1 if s == -1 else 3)
            for c, proj, r, s in zip(head_inputs, config.proj_channels, config.aspect_ratios, config.output_strides)
        )

    def feature_maps(self, x):
        """The maps the heads read: a list of (B, C_k, h_k, w_k), one per output stride."""
        stages = self.backbone.features(x)  # checks x
        maps, y = [], stages[-1]
        for s, source in zip(self.config.output_strides, self.sources):
            if source == "extra":
                y = self.extra_layers[f"os_{s}"](y)
                maps.append(y)
            else:
                maps.append(stages[source])
        return maps

    def forward(self, x):
        locations, confidences = zip(*(head(m) for head, m in zip(self.heads, self.feature_maps(x))))
        return torch.cat(confidences, dim=1), torch.cat(locations, dim=1)  # (B, A, K), (B, A, 4)

    def map_sizes(self, height, width):
        """[(h_k, w_k)] of the heads' maps for an input of height x width, without running the network:
        every stride-2 step (3x3 conv, padding 1) gives ceil(n / 2)."""
        sizes, h, w, stride = [], height, width, 1
        for s in self.config.output_strides:
            if s == -1:
                sizes.append((1, 1))
                continue
            while stride < s:
                h, w, stride = -(-h // 2), -(-w // 2), stride * 2
            sizes.append((h, w))
        return sizes

    def anchors(self, height, width):
        """(A, 4) anchors (cx, cy, w, h) in [0, 1] for an input of height x width, in the order of the outputs."""
        sizes = anchor_sizes(self.config)
        return torch.cat([
            map_anchors(h, w, small, big, ratios)
            for (h, w), (small, big), ratios in zip(self.map_sizes(height, width), sizes, self.config.aspect_ratios)
        ])


# ------------------------------------------------------------------------------- matching and boxes
def box_iou(boxes1, boxes2):
    """(N, 4) x (M, 4) corner boxes -> (N, M) IoU. Area = (x2 - x1) * (y2 - y1); no "+ 1", no epsilon
    (a box of zero area is invalid input: see check_targets)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap -> 0, not a negative area
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)  # union counts the overlap once


def encode(boxes, anchors, center_variance=0.1, size_variance=0.2):
    """Centre-form boxes and anchors (..., 4) -> regression targets (SSD's Eq. 2 with the variances):
    ((g_c - d_c) / d_wh / cv, log(g_wh / d_wh) / sv)."""
    centre = (boxes[..., :2] - anchors[..., :2]) / anchors[..., 2:] / center_variance
    size = torch.log(boxes[..., 2:] / anchors[..., 2:]) / size_variance
    return torch.cat([centre, size], dim=-1)


def decode(locations, anchors, center_variance=0.1, size_variance=0.2):
    """The inverse of `encode`: (..., 4) offsets -> centre-form boxes."""
    centre = locations[..., :2] * center_variance * anchors[..., 2:] + anchors[..., :2]
    size = torch.exp(locations[..., 2:] * size_variance) * anchors[..., 2:]
    return torch.cat([centre, size], dim=-1)


def match_anchors(boxes, labels, anchors, iou_threshold=0.5):
    """Assign one truth box to each anchor (ml-cvnets' assign_priors).

    boxes (M, 4) corners in [0, 1], labels (M,) in 1..K-1, anchors (A, 4) centre form ->
    matched boxes (A, 4) corners and labels (A,), 0 (background) where the best IoU is below the threshold.
    Every box also gets its best anchor, whatever the IoU (a later box wins a shared anchor).
    An image with no boxes: every anchor is background."""
    A = anchors.shape[0]
    if boxes.shape[0] == 0:
        return torch.zeros(A, 4), torch.zeros(A, dtype=torch.long)
    ious = box_iou(center_to_corners(anchors), boxes)  # (A, M)
    best_iou, best_box = ious.max(dim=1)  # per anchor
    best_anchor = ious.argmax(dim=0)  # per box
    best_box[best_anchor] = torch.arange(boxes.shape[0])  # in order: the last box wins a shared anchor
    best_iou[best_anchor] = 2.0  # above any threshold
    matched_labels = labels[best_box].clone()
    matched_labels[best_iou < iou_threshold] = 0
    return boxes[best_box], matched_labels


def hard_negative_mask(background_loss, labels, neg_pos_ratio=3):
    """(B, A) bool: the positives, and per image the neg_pos_ratio x (number of positives) negatives with
    the largest background loss -log p(background)."""
    positive = labels > 0
    num_neg = positive.sum(dim=1, keepdim=True) * neg_pos_ratio  # (B, 1)
    loss = background_loss.masked_fill(positive, -math.inf)
    rank = loss.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each anchor's loss in its image
    return positive | (rank < num_neg)


def multibox_loss(confidences, locations, labels, target_locations, neg_pos_ratio=3):
    """SSD's loss, as ml-cvnets v0.1 (its localisation weight stays 1): returns (box_loss, class_loss,
    num_positives), the two sums divided by the number of positives (at least 1).

    confidences (B, A, K), locations (B, A, 4), labels (B, A) (0 = background), target_locations (B, A, 4).
    box_loss: smooth-L1 (beta 1) on the positives' 4 offsets; class_loss: cross-entropy on the positives
    and the hardest negatives (hard_negative_mask)."""
    with torch.no_grad():
        background_loss = -F.log_softmax(confidences, dim=2)[:, :, 0]
        mask = hard_negative_mask(background_loss, labels, neg_pos_ratio)
    class_loss = F.cross_entropy(confidences[mask], labels[mask], reduction="sum")
    positive = labels > 0
    box_loss = F.smooth_l1_loss(locations[positive], target_locations[positive], reduction="sum")
    num_positives = int(positive.sum())
    n = max(num_positives, 1)  # ml-cvnets divides by num_pos; a batch without objects would give 0 / 0
    return box_loss / n, class_loss / n, num_positives


# ------------------------------------------------------------------------------ targets and errors
def check_targets(boxes, labels, image_size, num_classes=None, name="boxes"):
    """Raise a clear error unless `boxes` (M, 4) are valid corner boxes inside a `image_size` = (H, W) image,
    with `labels` (M,) integers in 1..num_classes-1. M = 0 (an image with no objects) is valid."""
    if not isinstance(boxes, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} and labels must be torch.Tensors, got {type(boxes).__name__} and {type(labels).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (M, 4) (x1, y1, x2, y2) per box, got {tuple(boxes.shape)}")
    if labels.shape != (boxes.shape[0],):
        raise ValueError(f"labels must have shape ({boxes.shape[0]},), one per box, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise TypeError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    H, W = image_size
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        if x2 < x1 or y2 < y1:
            raise ValueError(
                f"{name}[{i}] = {[x1, y1, x2, y2]}: expected corners (x1, y1, x2, y2) with x1 < x2 and y1 < y2, got"
                f" x2 < x1 or y2 < y1 (boxes given as (x, y, w, h)? convert them with x2 = x + w, y2 = y + h)"
            )
        if x2 == x1 or y2 == y1:
            raise ValueError(f"{name}[{i}] = {[x1, y1, x2, y2]} is empty (zero width or height): drop it from the target")
        if x1 < 0 or y1 < 0 or x2 > W or y2 > H:
            raise ValueError(
                f"{name}[{i}] = {[x1, y1, x2, y2]} is outside the {H}x{W} image: expected 0 <= x1 < x2 <= {W}"
                f" and 0 <= y1 < y2 <= {H} (clip it to the image)"
            )
    if labels.numel() and (labels.min() < 1 or (num_classes is not None and labels.max() >= num_classes)):
        top = "" if num_classes is None else f"..{num_classes - 1}"
        raise ValueError(
            f"labels must be object classes 1{top} (0 is the background), got values from {labels.min().item()}"
            f" to {labels.max().item()}"
        )


def unpack_targets(targets):
    """(B, M, 5) integer targets (label, x1, y1, x2, y2) per row, label -1 = padding -> [(boxes (m, 4) float,
    labels (m,))] per image. This packing lets chapter 7's `fit` batch a variable number of boxes per image."""
    if not isinstance(targets, torch.Tensor) or targets.dim() != 3 or targets.shape[-1] != 5:
        got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a (B, M, 5) tensor of rows (label, x1, y1, x2, y2), label -1 for padding, got {got}")
    out = []
    for t in targets:
        t = t[t[:, 0] >= 0]
        out.append((t[:, 1:].float(), t[:, 0].long()))
    return out


class SSDLoss:
    """Matching + multibox loss for chapter 7's `fit`: `loss(outputs, targets)` with outputs = detector(x)
    and targets (B, M, 5) in pixels (unpack_targets). Checks every image's boxes (check_targets).
    `last_parts` keeps the latest (box_loss, class_loss, num_positives)."""

    def __init__(self, detector, image_size):
        self.detector, self.image_size = detector, tuple(image_size)
        self.anchors = detector.anchors(*self.image_size)
        self.last_parts = None

    def targets(self, targets):
        """(B, M, 5) pixel targets -> labels (B, A), target locations (B, A, 4)."""
        H, W = self.image_size
        cfg = self.detector.config
        scale = torch.tensor([W, H, W, H], dtype=torch.float32)
        all_labels, all_locations = [], []
        for boxes, labels in unpack_targets(targets.cpu()):
            check_targets(boxes, labels, self.image_size, self.detector.num_classes)
            matched, matched_labels = match_anchors(boxes / scale, labels, self.anchors, cfg.iou_threshold)
            locations = encode(corners_to_center(matched), self.anchors, cfg.center_variance, cfg.size_variance)
            all_labels.append(matched_labels)
            all_locations.append(torch.where(matched_labels[:, None] > 0, locations, torch.zeros_like(locations)))
        return torch.stack(all_labels), torch.stack(all_locations)

    def __call__(self, outputs, targets):
        confidences, locations = outputs
        labels, target_locations = self.targets(targets)
        labels, target_locations = labels.to(confidences.device), target_locations.to(confidences.device)
        box_loss, class_loss, num_positives = multibox_loss(
            confidences, locations, labels, target_locations, self.detector.config.neg_pos_ratio
        )
        self.last_parts = (box_loss.detach(), class_loss.detach(), num_positives)
        return box_loss + class_loss


# --------------------------------------------------------------------------------- detection + NMS
@torch.no_grad()
def postprocess(confidences, locations, anchors, image_size, config=COCO_SSD, conf_threshold=None):
    """One image's outputs (A, K), (A, 4) -> dict(boxes (n, 4) corners in pixels, scores (n,), labels (n,)).

    softmax -> decode -> keep (anchor, class) pairs with score > conf_threshold, classes 1..K-1 ->
    torchvision.ops.batched_nms at config.nms_iou_threshold (NMS within each class, never across) ->
    at most config.top_k per class and config.max_detections in all, sorted by score."""
    from torchvision.ops import batched_nms

    threshold = config.conf_threshold if conf_threshold is None else conf_threshold
    H, W = image_size
    scores = F.softmax(confidences, dim=-1)[:, 1:]  # (A, K - 1): the background is no detection
    boxes = center_to_corners(decode(locations, anchors, config.center_variance, config.size_variance))
    boxes = boxes * torch.tensor([W, H, W, H], dtype=boxes.dtype)
    anchor_index, class_index = (scores > threshold).nonzero(as_tuple=True)
    kept_scores = scores[anchor_index, class_index]
    kept_boxes, kept_labels = boxes[anchor_index], class_index + 1
    keep = batched_nms(kept_boxes, kept_scores, kept_labels, config.nms_iou_threshold)  # sorted by score
    labels = kept_labels[keep]
    one_hot = F.one_hot(labels, confidences.shape[-1])
    rank = (one_hot.cumsum(0) * one_hot).sum(1)  # 1 for each class's best detection, 2 for its second, ...
    keep = keep[rank <= config.top_k][: config.max_detections]
    return {"boxes": kept_boxes[keep], "scores": kept_scores[keep], "labels": kept_labels[keep]}


@torch.no_grad()
def detect(detector, images, conf_threshold=None):
    """Detections of `detector` (in eval mode) on (B, 3, H, W) images: a list of B dicts (see postprocess)."""
    was_training = detector.training
    detector.eval()
    try:
        confidences, locations = detector(images)
    finally:
        detector.train(was_training)
    H, W = images.shape[-2:]
    anchors = detector.anchors(H, W)
    return [postprocess(c, l, anchors, (H, W), detector.config, conf_threshold) for c, l in zip(confidences, locations)]


# ------------------------------------------------------------------------------------ the evaluator
def coco_map(detections, truths, num_classes):
    """COCO's mAP with the official evaluator (pycocotools' COCOeval, iouType "bbox", maxDets 100).

    detections: per image a dict(boxes (n, 4) corners in pixels, scores, labels); truths: per image
    (boxes (m, 4), labels (m,)). Returns {"map": mAP@[.5:.95], "map_50": mAP@0.5} (0.0 when nothing was
    detected; pycocotools cannot load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, ((boxes, labels), found) in enumerate(zip(truths, detections), start=1):
        images.append({"id": image_id})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), score, label in zip(found["boxes"].tolist(), found["scores"].tolist(), found["labels"].tolist()):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})
    if not results:
        return {"map": 0.0, "map_50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": k} for k in range(1, num_classes)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"map": max(float(evaluation.stats[0]), 0.0), "map_50": max(float(evaluation.stats[1]), 0.0)}


class COCOMeanAP:
    """A metric for chapter 7's `fit` / `evaluate`: `update(outputs, targets)` with a detector's outputs and
    (B, M, 5) pixel targets; `compute()` -> mAP@[.5:.95] (also in `.result`, with mAP@0.5)."""

    def __init__(self, detector, image_size):
        self.detector, self.image_size = detector, tuple(image_size)
        self.anchors = detector.anchors(*self.image_size)
        self.detections, self.truths, self.result = [], [], None

    def update(self, outputs, targets):
        confidences, locations = outputs
        for c, l, truth in zip(confidences.cpu(), locations.cpu(), unpack_targets(targets.cpu())):
            self.detections.append(postprocess(c, l, self.anchors, self.image_size, self.detector.config))
            self.truths.append(truth)

    def compute(self):
        self.result = coco_map(self.detections, self.truths, self.detector.num_classes)
        return self.result["map"]


# ---------------------------------------------------------------------------------- the data set
DETECTION_CLASSES = ("background", "rectangle", "ellipse", "triangle")
SHAPE_COLOURS = ((0.9, 0.15, 0.15), (0.15, 0.7, 0.2), (0.2, 0.3, 0.95), (0.95, 0.85, 0.1))


def shapes_detection(num_images, size=64, seed=0, min_side=12, noise=0.05):
    """A generated detection set: (images (N, 3, size, size) in [0, 1], targets (N, 4, 5) long).

    The image is split in 2x2 cells; each image holds 0 to 4 objects (uniform), one per cell at most, so
    boxes never overlap: a rectangle, an ellipse or a triangle (pointing up), of a random colour (the
    colour says nothing about the class), width and height each from min_side to the cell's side, at a
    random place inside its cell, on a random grey background with Gaussian noise. Targets: one row
    (label, x1, y1, x2, y2) per cell in pixels, label -1 where the cell is empty. Vectorised and seeded."""
    g = torch.Generator().manual_seed(seed)
    cell = size // 2
    N, J = num_images, 4
    count = torch.randint(0, J + 1, (N, 1), generator=g)
    used = torch.arange(J)[None, :] < count  # (N, J): the first `count` cells in a random order
    order = torch.rand(N, J, generator=g).argsort(dim=1)  # which cell each slot goes to
    labels = torch.randint(1, len(DETECTION_CLASSES), (N, J), generator=g)
    w = torch.randint(min_side, cell + 1, (N, J), generator=g)
    h = torch.randint(min_side, cell + 1, (N, J), generator=g)
    cx0, cy0 = (order % 2) * cell, (order // 2) * cell
    x1 = cx0 + (torch.rand(N, J, generator=g) * (cell - w + 1)).long()
    y1 = cy0 + (torch.rand(N, J, generator=g) * (cell - h + 1)).long()
    x2, y2 = x1 + w, y1 + h
    colour = torch.tensor(SHAPE_COLOURS)[torch.randint(0, len(SHAPE_COLOURS), (N, J), generator=g)]  # (N, J, 3)

    ys = torch.arange(size).view(1, 1, size, 1) + 0.5  # pixel centres
    xs = torch.arange(size).view(1, 1, 1, size) + 0.5
    X1, Y1, X2, Y2 = (v[..., None, None].float() for v in (x1, y1, x2, y2))  # (N, J, 1, 1)
    inside = (xs >= X1) & (xs < X2) & (ys >= Y1) & (ys < Y2)  # (N, J, size, size): the rectangle
    u = (xs - (X1 + X2) / 2) / ((X2 - X1) / 2)  # -1..1 across the box
    v = (ys - (Y1 + Y2) / 2) / ((Y2 - Y1) / 2)
    ellipse = u**2 + v**2 <= 1
    triangle = u.abs() <= (v + 1) / 2  # apex at the top centre, base at the bottom
    L = labels[..., None, None]
    mask = inside & torch.where(L == 1, True, torch.where(L == 2, ellipse, triangle)) & used[..., None, None]

    grey = 0.3 + 0.4 * torch.rand(N, 1, 1, 1, generator=g)
    images = grey.expand(N, 3, size, size).clone()
    for j in range(J):  # cells never overlap: paint one slot after the other
        m = mask[:, j, None]  # (N, 1, size, size)
        images = torch.where(m, colour[:, j, :, None, None], images)
    images = (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)

    rows = torch.stack([labels, x1, y1, x2, y2], dim=-1)  # (N, J, 5)
    rows[~used] = torch.tensor([-1, 0, 0, 0, 0])
    return images, rows.long()


# -------------------------------------------------------------------------------- chapter 12's run
# The data and the recipe of chapter 12 and benchmarks/detection_sweep.py: 480 training and 128 held-out
# 64x64 images; AdamW as the paper (weight decay 0.01), linear warm-up then cosine, no label smoothing
# (ml-cvnets' multibox loss has none), batch 32, one thread's worth of CPU time per run.
CHAPTER12_DATA = {"num_train": 480, "num_val": 128, "size": 64, "train_seed": 0, "val_seed": 1}


def chapter12_recipe(seed=0, epochs=8):
    """Chapter 12's TrainConfig (imported here, not at the top: train.py imports the models)."""
    from .train import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=32, lr=1.5e-2, min_lr=1e-5, warmup_steps=10, warmup_lr=1e-4,
                       weight_decay=0.01, label_smoothing=0.0, seed=seed)


def chapter12_data():
    """(train, val) TensorDatasets of shapes_detection with CHAPTER12_DATA."""
    from torch.utils.data import TensorDataset

    d = CHAPTER12_DATA
    train = shapes_detection(d["num_train"], d["size"], seed=d["train_seed"])
    val = shapes_detection(d["num_val"], d["size"], seed=d["val_seed"])
    return TensorDataset(*train), TensorDataset(*val)


def toy_detector(backbone_config, seed=0, num_classes=len(DETECTION_CLASSES)):
    """SSDLite(MobileViT(backbone_config), num_classes, TOY_SSD), its weights (backbone and head) drawn from
    `seed` on a forked RNG: the caller's random state is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SSDLite(MobileViT(backbone_config), num_classes, TOY_SSD)


# ------------------------------------------------------------------------------------------ figures
def draw_boxes(ax, boxes, labels=None, colour="white", scores=None, names=DETECTION_CLASSES, linestyle="-"):
    """Draw (n, 4) corner boxes in pixels on a matplotlib axis, with their class names (and scores); what
    falls outside the image is clipped."""
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(torch.as_tensor(boxes).tolist()):
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, lw=1.5, ls=linestyle))
        if labels is not None:
            text = names[int(labels[i])] + (f" {float(scores[i]):.2f}" if scores is not None else "")
            ax.text(x1 - 0.5, y1 - 1.5, text, color=colour, fontsize=7, va="bottom", clip_on=True)


def show_image(ax, image, title=None):
    """A (3, H, W) image in [0, 1] on an axis, without ticks."""
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
