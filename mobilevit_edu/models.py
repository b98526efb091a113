"""Chapter 6: the complete networks, MobileViT-XXS, -XS and -S, with their configurations as data."""

from dataclasses import dataclass, replace
from typing import Optional, Tuple

from torch import nn

from ._validate import check_image_batch
from .block import MobileViTBlock
from .layers import ConvNormAct, InvertedResidual


@dataclass(frozen=True)
class StageConfig:
    """One stage: `num_mv2` MV2 blocks (the first with `stride`), then optionally a MobileViT block."""

    channels: int  # output channels of every block in the stage
    num_mv2: int  # number of MV2 blocks
    stride: int  # stride of the first MV2 block (1 or 2)
    transformer_dim: Optional[int] = None  # d of the MobileViT block; None: no MobileViT block
    depth: int = 0  # L, transformer layers in the MobileViT block


@dataclass(frozen=True)
class MobileViTConfig:
    """A whole network: stem -> 5 stages -> 1x1 conv -> global average pool -> linear."""

    name: str
    stages: Tuple[StageConfig, ...]
    expand_ratio: float  # MV2 expansion r (hidden width = r x input channels)
    final_channels: int  # width of the 1x1 conv before pooling
    stem_channels: int = 16  # 3x3 stride-2 stem conv
    patch_size: int = 2  # h = w of MobileViT's patches
    num_heads: int = 4  # attention heads in every transformer layer
    mlp_ratio: float = 2.0  # FFN width = mlp_ratio x d
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0  # dropout before the classifier (timm: 0.0; cvnets trains with 0.1)
    # chapter 11: the largest stride of the stage outputs. 32 for classification; a dense-prediction
    # backbone uses 16 (DeepLabv3 in the paper) or 8: stride-2 steps beyond it become stride 1, and the
    # later MV2 blocks are dilated instead, as ml-cvnets does. Parameters do not change.
    output_stride: int = 32

    def __post_init__(self):
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride!r}")


XXS = MobileViTConfig(
    name="mobilevit_xxs",
    stages=(
        StageConfig(16, num_mv2=1, stride=1),
        StageConfig(24, num_mv2=3, stride=2),
        StageConfig(48, num_mv2=1, stride=2, transformer_dim=64, depth=2),
        StageConfig(64, num_mv2=1, stride=2, transformer_dim=80, depth=4),
        StageConfig(80, num_mv2=1, stride=2, transformer_dim=96, depth=3),
    ),
    expand_ratio=2.0,
    final_channels=320,
)

XS = MobileViTConfig(
    name="mobilevit_xs",
    stages=(
        StageConfig(32, num_mv2=1, stride=1),
        StageConfig(48, num_mv2=3, stride=2),
        StageConfig(64, num_mv2=1, stride=2, transformer_dim=96, depth=2),
        StageConfig(80, num_mv2=1, stride=2, transformer_dim=120, depth=4),
        StageConfig(96, num_mv2=1, stride=2, transformer_dim=144, depth=3),
    ),
    expand_ratio=4.0,
    final_channels=384,
)

S = MobileViTConfig(
    name="mobilevit_s",
    stages=(
        StageConfig(32, num_mv2=1, stride=1),
        StageConfig(64, num_mv2=3, stride=2),
        StageConfig(96, num_mv2=1, stride=2, transformer_dim=144, depth=2),
        StageConfig(128, num_mv2=1, stride=2, transformer_dim=192, depth=4),
        StageConfig(160, num_mv2=1, stride=2, transformer_dim=240, depth=3),
    ),
    expand_ratio=4.0,
    final_channels=640,
)

CONFIGS = {c.name: c for c in (XXS, XS, S)}

# Chapter 7: a MobileViT for 32-64 pixel images that trains in seconds on a CPU, and a CNN with the same
# parameter budget (within 1 %) built from the same MV2 blocks: each MobileViT block is replaced by two
# more MV2 blocks (one per 3x3 convolution of the block: local_rep and fusion) and the widths are raised
# until the parameters match, so that a comparison of the two isolates what attention adds. Both keep
# the maps large for small inputs (three stride-2 steps only, in the stem, stages.0 and stages.3, so the
# last map is 1/8 of the input): at 32x32, stages.2 works at 8x8 (16 patches of 2x2) and stages.3 at 4x4.
MINI = MobileViTConfig(
    name="mobilevit_mini",
    stages=(
        StageConfig(16, num_mv2=1, stride=2),
        StageConfig(24, num_mv2=1, stride=1),
        StageConfig(24, num_mv2=1, stride=1, transformer_dim=32, depth=1),
        StageConfig(32, num_mv2=1, stride=2, transformer_dim=48, depth=1),
        StageConfig(48, num_mv2=1, stride=1),
    ),
    expand_ratio=2.0,
    final_channels=96,
    num_classes=2,
)

MINI_CNN = MobileViTConfig(
    name="cnn_mini",
    stages=(
        StageConfig(16, num_mv2=1, stride=2),
        StageConfig(24, num_mv2=1, stride=1),
        StageConfig(40, num_mv2=3, stride=1),
        StageConfig(64, num_mv2=3, stride=2),
        StageConfig(80, num_mv2=1, stride=1),
    ),
    expand_ratio=2.0,
    final_channels=96,
    num_classes=2,
)


def make_stage(cfg, stage, in_channels, dilation=1):
    """The blocks of one stage as an nn.Sequential: MV2 blocks (depthwise convs with `dilation`), then
    the MobileViT block if any."""
    blocks = []
    for i in range(stage.num_mv2):
        stride = stage.stride if i == 0 else 1
        blocks.append(InvertedResidual(in_channels, stage.channels, stride, cfg.expand_ratio, dilation))
        in_channels = stage.channels
    if stage.transformer_dim is not None:
        blocks.append(
            MobileViTBlock(
                stage.channels, stage.transformer_dim, stage.depth, cfg.patch_size, cfg.num_heads, cfg.mlp_ratio
            )
        )
    return nn.Sequential(*blocks)


class MobileViT(nn.Module):
    """MobileViT. (B, in_chans, H, W) images in [0, 1] (no mean/std normalisation) -> (B, num_classes).

    H and W must be at least 32 (the output stride); 256 x 256 is the paper's size.
    `features(x)` returns the five stage outputs (strides 2, 4, 8, 16, 32) for figures and backbones;
    with `config.output_stride` = 16 (or 8) the strides stop there (chapter 11).
    """

    min_size = 32  # five stride-2 steps

    def __init__(self, config: MobileViTConfig):
        super().__init__()
        self.config = config
        self.stem = ConvNormAct(config.in_chans, config.stem_channels, 3, stride=2)
        stages, channels = [], config.stem_channels
        stride, dilation = 2, 1  # the stem's stride; the dilation that stands in for removed strides
        strides = []
        for stage in config.stages:
            stage_dilation = dilation  # ml-cvnets: the MV2 block that loses its stride keeps the dilation so far
            if stage.stride == 2 and stride == config.output_stride:  # DeepLab: keep the size, dilate later
                stage, dilation = replace(stage, stride=1), 2 * dilation
            stride *= stage.stride
            strides.append(stride)
            stages.append(make_stage(config, stage, channels, stage_dilation))
            channels = stage.channels
        self.stages = nn.ModuleList(stages)
        self.stage_strides = tuple(strides)  # the output stride of each stage, as built (e.g. 2, 4, 8, 16, 32)
        self.final_conv = ConvNormAct(channels, config.final_channels, 1)
        self.dropout = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(config.final_channels, config.num_classes)

    def _check_input(self, x):
        check_image_batch(x, "x", self.config.in_chans)
        H, W = x.shape[-2:]
        if H < self.min_size or W < self.min_size:
            raise ValueError(
                f"x is {H}x{W}, too small for MobileViT's five stride-2 stages:"
                f" height and width must be at least {self.min_size} (the paper uses 256x256)"
            )
        weight_dtype = self.stem.conv.weight.dtype
        if x.dtype != weight_dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the model's weights are {weight_dtype}:"
                f" convert one of them (e.g. x.to({weight_dtype}) or model.to({x.dtype}))"
            )

    def features(self, x):
        """(B, C, H, W) -> list of the five stage outputs, at strides 2, 4, 8, 16 and 32 (or capped at
        config.output_stride)."""
        self._check_input(x)
        x = self.stem(x)  # (B, 16, H/2, W/2)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, x):
        x = self.features(x)[-1]  # (B, C_5, H/32, W/32)
        x = self.final_conv(x)  # (B, final_channels, H/32, W/32)
        x = x.mean(dim=(2, 3))  # global average pool: (B, final_channels)
        return self.head(self.dropout(x))  # (B, num_classes)


def _build(config, pretrained=False, weights=None, **changes):
    if pretrained or weights is not None:  # chapter 8: the ImageNet weights, downloaded or from the file `weights`
        from .pretrained import load_pretrained  # imported here: pretrained.py imports this module

        return load_pretrained(config.name, weights, **changes)
    # dataclasses.replace raises TypeError on a misspelt field, so no typo passes silently
    return MobileViT(replace(config, **changes))


def mobilevit_xxs(num_classes=1000, in_chans=3, pretrained=False, weights=None, **changes):
    """MobileViT-XXS: 1,272,024 parameters with 1000 classes (the paper's 1.3 M).
    `pretrained=True`: with the ImageNet weights (timm's cvnets_in1k, downloaded; see `mobilevit_edu.pretrained`);
    `weights="path"`: the same from a local file."""
    return _build(XXS, pretrained, weights, num_classes=num_classes, in_chans=in_chans, **changes)


def mobilevit_xs(num_classes=1000, in_chans=3, pretrained=False, weights=None, **changes):
    """MobileViT-XS: 2,317,848 parameters with 1000 classes (the paper's 2.3 M).
    `pretrained=True`: with the ImageNet weights (timm's cvnets_in1k, downloaded; see `mobilevit_edu.pretrained`);
    `weights="path"`: the same from a local file."""
    return _build(XS, pretrained, weights, num_classes=num_classes, in_chans=in_chans, **changes)


def mobilevit_s(num_classes=1000, in_chans=3, pretrained=False, weights=None, **changes):
    """MobileViT-S: 5,578,632 parameters with 1000 classes (the paper's 5.6 M).
    `pretrained=True`: with the ImageNet weights (timm's cvnets_in1k, downloaded; see `mobilevit_edu.pretrained`);
    `weights="path"`: the same from a local file."""
    return _build(S, pretrained, weights, num_classes=num_classes, in_chans=in_chans, **changes)
