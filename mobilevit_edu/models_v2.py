"""Chapter 10: the MobileViTv2 block and networks (width multipliers 0.5 ... 2.0), configs as data.

What changes from v1 (block.py, models.py), and what is reused as it is:
- attention: separable self-attention, linear in N (attention_v2.py), in a (B, d, P, N) layout;
- norms in the transformer: GroupNorm with one group instead of LayerNorm;
- the block: depthwise n x n conv (not a full one), no concatenating fusion, conv_proj without SiLU,
  and a map that is not a multiple of the patch size is resized (bilinear, align_corners=True) at the
  block's INPUT and is NOT resized back: the block's output is the resized size (as timm, ml-cvnets);
- the network: widths (64, 128, 256, 384, 512) x alpha, stem 32 x alpha, transformer width d = C / 2,
  MV2 expansion 2 everywhere, two MV2 blocks in stages.1, no 1x1 conv before pooling.
Reused from v1: ConvNormAct, InvertedResidual (MV2), unfold_patches / fold_patches, StageConfig,
the stem, and MobileViT's `features`, `forward` and input checks.
"""

import math
from dataclasses import dataclass, replace
from typing import Tuple

import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._validate import check_image_batch, pair
from .attention_v2 import SeparableTransformerLayer
from .layers import ConvNormAct, InvertedResidual, make_divisible
from .models import MobileViT, StageConfig
from .patches import fold_patches, unfold_patches


class MobileViTv2Block(nn.Module):
    """The MobileViTv2 block (Mehta & Rastegari 2022b, arXiv 2206.02680). (B, C, H, W) -> (B, C, H', W').

    H' x W' = H x W rounded up to multiples of the patch size (equal when they already are):
    resize:     if needed, bilinear (align_corners=True) up to the next multiples, at the input
    local_rep:  depthwise n x n conv (C -> C, BN, SiLU), then 1x1 conv C -> d (no BN, no activation)
    global_rep: unfold into (B, d, P, N) -> L separable transformer layers -> GroupNorm(1) -> fold
    conv_proj:  1x1 conv d -> C (BN, no activation). No fusion: the block ends here.
    """

    def __init__(self, channels, transformer_dim, depth, patch_size=2, mlp_ratio=2.0, kernel_size=3):
        super().__init__()
        self.channels = channels
        self.patch_size = pair(patch_size, "patch_size")
        self.local_rep = nn.Sequential()
        self.local_rep.conv_kxk = ConvNormAct(channels, channels, kernel_size, groups=channels)
        self.local_rep.conv_1x1 = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[SeparableTransformerLayer(transformer_dim, mlp_ratio) for _ in range(depth)])
        self.norm = nn.GroupNorm(1, transformer_dim)
        self.conv_proj = ConvNormAct(transformer_dim, channels, 1, act=False)

    def global_rep(self, x):
        """(B, d, H, W) -> (B, d, H, W), H and W multiples of the patch size."""
        H, W = x.shape[-2:]
        patches = rearrange(unfold_patches(x, self.patch_size), "b p n d -> b d p n")  # (B, d, P, N)
        patches = self.norm(self.transformer(patches))
        return fold_patches(rearrange(patches, "b d p n -> b p n d"), (H, W), self.patch_size)

    def forward(self, x):
        check_image_batch(x, "x", self.channels)
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
        if (Hp, Wp) != (H, W):  # v2 resizes the block's input, with align_corners=True, and keeps the size
            x = F.interpolate(x, size=(Hp, Wp), mode="bilinear", align_corners=True)
        y = self.local_rep(x)  # (B, d, Hp, Wp)
        y = self.global_rep(y)  # (B, d, Hp, Wp)
        return self.conv_proj(y)  # (B, C, Hp, Wp)


@dataclass(frozen=True)
class MobileViTv2Config:
    """A whole MobileViTv2: stem -> 5 stages -> global average pool -> linear (no 1x1 conv before it)."""

    name: str
    width_multiplier: float  # alpha: every width is alpha x the width of MobileViTv2-1.0
    stages: Tuple[StageConfig, ...]  # v1's StageConfig; transformer_dim = C / 2 in every MobileViTv2 block
    stem_channels: int  # 3x3 stride-2 stem conv: 32 x alpha
    expand_ratio: float = 2.0  # MV2 expansion r, the same in every stage
    patch_size: int = 2  # h = w of the patches
    mlp_ratio: float = 2.0  # FFN width = mlp_ratio x d
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0  # dropout before the classifier (timm: 0.0)


BASE_WIDTHS = (64, 128, 256, 384, 512)  # MobileViTv2-1.0's stage widths
BASE_LAYOUT = ((1, 1, 0), (2, 2, 0), (1, 2, 2), (1, 2, 4), (1, 2, 3))  # (MV2 blocks, stride, L) per stage
WIDTH_MULTIPLIERS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def mobilevitv2_config(width_multiplier):
    """The config of MobileViTv2-alpha: widths int(alpha x (64, 128, 256, 384, 512)), stem int(32 alpha),
    d = make_divisible(C / 2) in the three MobileViTv2 blocks (depths 2, 4, 3)."""
    alpha = width_multiplier
    stages = []
    for base, (num_mv2, stride, depth) in zip(BASE_WIDTHS, BASE_LAYOUT):
        channels = int(base * alpha)
        dim = make_divisible(channels * 0.5) if depth else None
        stages.append(StageConfig(channels, num_mv2=num_mv2, stride=stride, transformer_dim=dim, depth=depth))
    return MobileViTv2Config(
        name=f"mobilevitv2_{round(alpha * 100):03d}",
        width_multiplier=alpha,
        stages=tuple(stages),
        stem_channels=int(32 * alpha),
    )


CONFIGS_V2 = {c.name: c for c in map(mobilevitv2_config, WIDTH_MULTIPLIERS)}


def make_stage_v2(cfg, stage, in_channels):
    """The blocks of one stage as an nn.Sequential: MV2 blocks, then the MobileViTv2 block if any."""
    blocks = []
    for i in range(stage.num_mv2):
        blocks.append(InvertedResidual(in_channels, stage.channels, stage.stride if i == 0 else 1, cfg.expand_ratio))
        in_channels = stage.channels
    if stage.transformer_dim is not None:
        blocks.append(MobileViTv2Block(stage.channels, stage.transformer_dim, stage.depth, cfg.patch_size, cfg.mlp_ratio))
    return nn.Sequential(*blocks)


class MobileViTv2(MobileViT):
    """MobileViTv2. (B, in_chans, H, W) images in [0, 1] (no mean/std normalisation) -> (B, num_classes).

    A MobileViT (v1) with other stages and no 1x1 conv before pooling: `features`, `forward` and the
    input checks (H, W >= 32, a float tensor of the weights' dtype) are v1's. When a stage's map is not a
    multiple of the patch size, its MobileViTv2 block enlarges it (see MobileViTv2Block), so the last
    map can be larger than H/32 x W/32.
    """

    def __init__(self, config: MobileViTv2Config):
        nn.Module.__init__(self)  # not MobileViT.__init__: the same attributes, built from a v2 config
        self.config = config
        self.stem = ConvNormAct(config.in_chans, config.stem_channels, 3, stride=2)
        stages, channels = [], config.stem_channels
        for stage in config.stages:
            stages.append(make_stage_v2(config, stage, channels))
            channels = stage.channels
        self.stages = nn.ModuleList(stages)
        self.final_conv = nn.Identity()  # v2 pools the last stage directly
        self.dropout = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(channels, config.num_classes)


def mobilevitv2(width_multiplier=1.0, num_classes=1000, in_chans=3, **changes):
    """MobileViTv2-alpha for alpha in 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0 (timm's mobilevitv2_050 ... _200)."""
    if width_multiplier not in WIDTH_MULTIPLIERS:
        raise ValueError(f"width_multiplier must be one of {WIDTH_MULTIPLIERS}, got {width_multiplier!r}")
    config = mobilevitv2_config(width_multiplier)
    # dataclasses.replace raises TypeError on a misspelt field, so no typo passes silently
    return MobileViTv2(replace(config, num_classes=num_classes, in_chans=in_chans, **changes))
