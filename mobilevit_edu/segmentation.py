"""Chapter 11: MobileViT as a backbone. DeepLabv3's ASPP head, the segmentation network, mean IoU.

- `ASPP`: atrous spatial pyramid pooling (Chen et al. 2017, arXiv:1706.05587), as ml-cvnets builds it
  for MobileViT: a 1x1 branch, three atrous 3x3 branches, an image-pooling branch, concatenated and
  projected back by a 1x1 conv, then channel dropout.
- `DeepLabV3(backbone, num_classes)`: a MobileViT's last stage -> ASPP -> 1x1 classifier -> bilinear
  upsampling to the input size. Build the backbone with `output_stride=16` as the paper does.
- `MeanIoU`: the metric, accumulated over a whole data set in a confusion matrix.
- Chapter 11's experiment: `FLAG_MOBILEVIT` and `FLAG_CNN` (two backbones of about 92 k parameters, with
  and without MobileViT blocks), `flag_segmenter(config, seed)`, and the flag-swap test `swap_flags` /
  `flag_flip_share`, which asks whether a network trained on `data.flag_shapes` reads the far-away flag.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_image_batch
from .data import FLAG_COLOURS
from .layers import ConvNormAct
from .models import MobileViT, MobileViTConfig, StageConfig


def conv_norm_relu(in_channels, out_channels, kernel_size=1, dilation=1):
    """ConvNormAct with ReLU instead of SiLU: ml-cvnets' DeepLabv3 configs give the head ReLU
    (`model.segmentation.activation: relu`) while the MobileViT backbone keeps SiLU."""
    block = ConvNormAct(in_channels, out_channels, kernel_size, dilation=dilation)
    block.act = nn.ReLU(inplace=True)
    return block


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling. (B, C_in, H, W) -> (B, out_channels, H, W).

    branches[0]:    1x1 conv (BN, ReLU)
    branches[1..]:  one 3x3 conv with dilation r (BN, ReLU) per rate r in `atrous_rates`
    pool:           global average pool -> 1x1 conv (BN, ReLU) -> broadcast back to H x W
    project:        concatenate the (len(atrous_rates) + 2) branches -> 1x1 conv (BN, ReLU)
    dropout:        element-wise Dropout, as ml-cvnets v0.1 (cvnets/modules/aspp_block.py)

    Defaults are DeepLabv3's and ml-cvnets' (rates 6/12/18, 256 channels, dropout 0.1). A 3x3 conv
    with dilation r on a map smaller than r + 1 pixels sees only zero padding beyond its centre tap:
    on small maps pick small rates. The pooling branch's BatchNorm needs more than one image per
    batch in training mode (it sees one value per channel and image).
    """

    def __init__(self, in_channels, out_channels=256, atrous_rates=(6, 12, 18), dropout=0.1):
        super().__init__()
        rates = tuple(atrous_rates)
        if not rates or not all(isinstance(r, int) and r >= 1 for r in rates):
            raise ValueError(f"atrous_rates must be a non-empty sequence of positive ints, got {atrous_rates!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.atrous_rates = rates
        self.branches = nn.ModuleList(
            [conv_norm_relu(in_channels, out_channels, 1)]
            + [conv_norm_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential()
        self.pool.avg = nn.AdaptiveAvgPool2d(1)
        self.pool.conv = conv_norm_relu(in_channels, out_channels, 1)
        self.project = conv_norm_relu((len(rates) + 2) * out_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout)  # element-wise, as ml-cvnets v0.1's ASPP (later versions: Dropout2d)

    def forward(self, x):
        check_image_batch(x, "x", self.in_channels)
        B, C, H, W = x.shape
        outputs = [branch(x) for branch in self.branches]  # each (B, out, H, W)
        pooled = self.pool(x)  # (B, out, 1, 1): one value per channel, the whole map's context
        outputs.append(pooled.expand(-1, -1, H, W))  # broadcast (= bilinear upsampling of a 1x1 map)
        y = torch.cat(outputs, dim=1)  # (B, (rates + 2) * out, H, W)
        return self.dropout(self.project(y))  # (B, out, H, W)


class DeepLabV3(nn.Module):
    """DeepLabv3 on a MobileViT backbone. (B, 3, H, W) images in [0, 1] -> (B, num_classes, H, W) logits.

    backbone.features(x)[-1] (the last stage, stride `backbone.config.output_stride`)
    -> ASPP (element-wise dropout inside) -> Dropout2d(classifier_dropout) -> 1x1 conv to num_classes
    (with bias) -> bilinear upsampling (align_corners=False) to H x W. Both dropouts are 0.1 by default,
    as in ml-cvnets v0.1's DeepLabv3 head (cvnets/models/segmentation/heads/deeplabv3.py).

    As ml-cvnets does, the backbone's classifier is removed: its `final_conv` and `head` are replaced
    by `nn.Identity()` in place (the backbone passed in is changed), so the parameters counted are
    those of the segmentation network. The ASPP reads the last stage's output, not the 1x1 expansion.
    """

    def __init__(self, backbone, num_classes, aspp_channels=256, atrous_rates=(6, 12, 18), dropout=0.1,
                 classifier_dropout=0.1):
        super().__init__()
        if not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {classifier_dropout}")
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not hasattr(backbone, "features") or not hasattr(backbone, "config"):
            raise TypeError(
                f"backbone must be a mobilevit_edu.MobileViT (with .features and .config), got {type(backbone).__name__}"
            )
        backbone.final_conv = nn.Identity()
        backbone.head = nn.Identity()
        self.backbone = backbone
        self.num_classes = num_classes
        self.aspp = ASPP(backbone.config.stages[-1].channels, aspp_channels, atrous_rates, dropout)
        self.classifier_dropout = nn.Dropout2d(classifier_dropout)  # whole channels, before the classifier
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x):
        H, W = x.shape[-2:]
        features = self.backbone.features(x)[-1]  # (B, C_5, H/os, W/os); checks x
        logits = self.classifier(self.classifier_dropout(self.aspp(features)))  # (B, num_classes, H/os, W/os)
        return F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)  # (B, K, H, W)


def confusion_matrix(predicted, target, num_classes, ignore_index=None):
    """(K, K) counts, row = true class, column = predicted class, from two label tensors of one shape."""
    if predicted.shape != target.shape:
        raise ValueError(
            f"predicted and target must have the same shape, got {tuple(predicted.shape)} and {tuple(target.shape)}"
        )
    predicted, target = predicted.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        predicted, target = predicted[keep], target[keep]
    for name, labels in (("predicted", predicted), ("target", target)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must be in 0..{num_classes - 1}, got values from {labels.min().item()}"
                f" to {labels.max().item()}"
            )
    counts = torch.bincount(target * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion):
    """IoU_k = TP / (TP + FP + FN) from a (K, K) confusion matrix, as floats.

    A class absent from both the truth and the predictions (TP + FP + FN = 0) has no IoU: NaN, and
    `mean IoU` leaves it out rather than counting it as 0 (a miss) or 1 (a success).
    """
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp  # predicted + true - both
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


class MeanIoU:
    """Mean intersection over union, accumulated over every pixel of every batch (not per image).

    `update(outputs, targets)`: outputs are (B, K, H, W) logits (argmax over K) or (B, H, W) labels,
    targets (B, H, W) labels; pixels labelled `ignore_index` do not count. `compute()` returns the
    mean over the classes present in the truth or the predictions (see `iou_per_class`).
    Fits chapter 7's `fit(..., metric=lambda: MeanIoU(K))`.
    """

    def __init__(self, num_classes, ignore_index=None):
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, outputs, targets):
        if outputs.dim() == targets.dim() + 1:  # logits (B, K, H, W)
            if outputs.shape[1] != self.num_classes:
                raise ValueError(
                    f"outputs have {outputs.shape[1]} classes (dim 1), expected num_classes = {self.num_classes}"
                )
            outputs = outputs.argmax(dim=1)
        self.confusion += confusion_matrix(outputs.detach().cpu(), targets.detach().cpu(), self.num_classes, self.ignore_index)

    def per_class(self):
        """(K,) IoU of each class, NaN for a class absent from both truth and predictions."""
        return iou_per_class(self.confusion)

    def compute(self):
        iou = self.per_class()
        present = ~iou.isnan()
        return float(iou[present].mean()) if present.any() else float("nan")


# ------------------------------------------------------------------- chapter 11's flag experiment
# Two backbones of about the same size for 64x64 flag_shapes images at output stride 8 (an 8x8 last map):
# a small MobileViT (MobileViT blocks in stages.2 and stages.3) and a CNN of MV2 blocks only, wider and
# deeper in those stages. The last stage has 48 channels in both, so their ASPP heads are identical.
FLAG_MOBILEVIT = MobileViTConfig(
    name="flag_mobilevit",
    stages=(
        StageConfig(16, num_mv2=1, stride=2),
        StageConfig(24, num_mv2=1, stride=1),
        StageConfig(24, num_mv2=1, stride=1, transformer_dim=32, depth=1),
        StageConfig(32, num_mv2=1, stride=2, transformer_dim=48, depth=1),
        StageConfig(48, num_mv2=1, stride=2),
    ),
    expand_ratio=2.0,
    final_channels=96,  # the classifier's 1x1 conv: DeepLabV3 removes it
    output_stride=8,
)
FLAG_CNN = MobileViTConfig(
    name="flag_cnn",
    stages=(
        StageConfig(16, num_mv2=1, stride=2),
        StageConfig(24, num_mv2=1, stride=1),
        StageConfig(48, num_mv2=3, stride=1),
        StageConfig(64, num_mv2=3, stride=2),
        StageConfig(48, num_mv2=1, stride=2),
    ),
    expand_ratio=2.0,
    final_channels=96,
    output_stride=8,
)


def flag_segmenter(config, num_classes=5, seed=0):
    """DeepLabV3 on MobileViT(config) with chapter 11's small head: 32 channels, rates 1/2/3 (for an 8x8
    map), dropouts 0.1. Seeded on a forked RNG: the caller's random state is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepLabV3(MobileViT(config), num_classes, aspp_channels=32, atrous_rates=(1, 2, 3))


def swap_flags(images):
    """flag_shapes images (B, 3, H, W) with every flag recoloured, red <-> blue, and nothing else changed.
    The flags are found by their exact colours (flag_shapes adds no noise to them)."""
    red = torch.tensor(FLAG_COLOURS[0]).view(3, 1, 1)
    blue = torch.tensor(FLAG_COLOURS[1]).view(3, 1, 1)
    is_red = ((images - red).abs().amax(dim=1) < 1e-6).unsqueeze(1)  # (B, 1, H, W)
    is_blue = ((images - blue).abs().amax(dim=1) < 1e-6).unsqueeze(1)
    return torch.where(is_red, blue, torch.where(is_blue, red, images))


@torch.no_grad()
def flag_flip_share(model, images, truth):
    """Share of the disc pixels (truth 3 or 4) predicted as a disc whose class flips (3 <-> 4) when the
    flags are swapped: near 1 for a network that reads the flag, near 0 for one that guesses."""
    model.eval()
    predicted = model(images).argmax(dim=1)
    predicted_swapped = model(swap_flags(images)).argmax(dim=1)
    as_disc = (predicted >= 3) & (truth >= 3)
    if not as_disc.any():
        return 0.0
    return (predicted_swapped[as_disc] == 7 - predicted[as_disc]).float().mean().item()
