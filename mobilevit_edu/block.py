"""Chapter 5: the MobileViT block = local representation -> global representation -> fusion."""

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ._validate import check_image_batch, pair
from .layers import ConvNormAct, TransformerLayer
from .patches import fold_patches, unfold_patches


class MobileViTBlock(nn.Module):
    """The MobileViT block (Mehta & Rastegari 2022, fig. 1b). (B, C, H, W) -> (B, C, H, W).

    local_rep:  n x n conv (C -> C, BN, SiLU), then 1x1 conv C -> d (no BN, no activation)
    global_rep: unfold into (B*P, N, d) -> L transformer layers -> LayerNorm -> fold to (B, d, H, W);
                attention runs across the N patches separately for each of the P pixel positions
    conv_proj:  1x1 conv d -> C (BN, SiLU)
    fusion:     concatenate [x, conv_proj output] (2C channels) -> n x n conv 2C -> C (BN, SiLU)

    When H or W is not a multiple of the patch size, the map entering the transformer is resized
    bilinearly (align_corners=False) up to the next multiple and resized back after folding, as
    timm and ml-cvnets do. There is no residual add: the fusion concatenates.
    """

    def __init__(self, channels, transformer_dim, depth, patch_size=2, num_heads=4, mlp_ratio=2.0, kernel_size=3):
        super().__init__()
        self.channels = channels
        self.patch_size = pair(patch_size, "patch_size")
        self.local_rep = nn.Sequential()
        self.local_rep.conv_kxk = ConvNormAct(channels, channels, kernel_size)
        self.local_rep.conv_1x1 = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[TransformerLayer(transformer_dim, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(transformer_dim)
        self.conv_proj = ConvNormAct(transformer_dim, channels, 1)
        self.fusion = ConvNormAct(2 * channels, channels, kernel_size)

    def global_rep(self, x):
        """(B, d, H, W) -> (B, d, H, W): every pixel attends to the same position in every patch."""
        B, d, H, W = x.shape
        ph, pw = self.patch_size
        Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
        if (Hp, Wp) != (H, W):
            x = F.interpolate(x, size=(Hp, Wp), mode="bilinear", align_corners=False)
        tokens = self.unfold(x)  # (B*P, N, d)
        tokens = self.norm(self.transformer(tokens))
        x = self.fold(tokens, (Hp, Wp))  # (B, d, Hp, Wp)
        if (Hp, Wp) != (H, W):
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
        return x

    def unfold(self, x):
        """(B, d, H, W) -> (B*P, N, d): one sequence of N patches for each of the P pixel positions."""
        return rearrange(unfold_patches(x, self.patch_size), "b p n d -> (b p) n d")

    def fold(self, tokens, size):
        """(B*P, N, d) -> (B, d, H, W) with (H, W) = size: the exact inverse of `unfold`."""
        P = self.patch_size[0] * self.patch_size[1]
        return fold_patches(rearrange(tokens, "(b p) n d -> b p n d", p=P), size, self.patch_size)

    def forward(self, x):
        check_image_batch(x, "x", self.channels)
        y = self.local_rep(x)  # (B, d, H, W)
        y = self.global_rep(y)  # (B, d, H, W)
        y = self.conv_proj(y)  # (B, C, H, W)
        return self.fusion(torch.cat([x, y], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)
