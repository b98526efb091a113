"""The building blocks: conv-norm-activation, the MV2 block (chapter 2), attention and the
pre-norm transformer encoder layer (chapter 3)."""

import torch.nn.functional as F
from einops import rearrange
from torch import nn


def make_divisible(value, divisor=8):
    """Round `value` to the nearest multiple of `divisor`, never more than 10% below it
    (MobileNet's rule, used by ml-cvnets and timm for every channel count)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> SiLU (optional). (B, C_in, H, W) -> (B, C_out, H/s, W/s).

    `dilation` spaces the kernel's taps (an atrous convolution, chapter 11); the padding grows with it
    so that the size stays H/s x W/s."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, act=True, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=dilation * (kernel_size // 2), dilation=dilation,
            groups=groups, bias=False,
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual (the paper's "MV2" block), with SiLU as in MobileViT.

    expand (1x1, C_in -> r*C_in, BN, SiLU; absent when r == 1)
    -> depthwise (3x3, stride s, BN, SiLU)
    -> project (1x1, linear: BN, no activation)
    -> + x, exactly when s == 1 and C_in == C_out.

    (B, C_in, H, W) -> (B, C_out, H/s, W/s)

    `dilation` dilates the depthwise 3x3 conv; a backbone at output stride 16 or 8 (chapter 11) uses it
    where a stride was removed, as ml-cvnets does.
    """

    def __init__(self, in_channels, out_channels, stride, expand_ratio, dilation=1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = make_divisible(round(in_channels * expand_ratio))
        self.expand = ConvNormAct(in_channels, hidden, 1) if expand_ratio != 1 else nn.Identity()
        hidden = hidden if expand_ratio != 1 else in_channels
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden, dilation=dilation)
        # linear bottleneck: an activation here would destroy information in the narrow space
        self.project = ConvNormAct(hidden, out_channels, 1, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused q, k, v projection.

    (B, N, d) -> (B, N, d); `num_heads` heads of size d / num_heads each.
    """

    def __init__(self, dim, num_heads=4):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x):
        """(B, N, d) -> q, k, v, each (B, heads, N, d/heads)."""
        qkv = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.num_heads)
        return qkv.unbind(0)

    def forward(self, x):
        q, k, v = self._heads(x)
        y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(e)) v, fused
        return self.proj(rearrange(y, "b h n e -> b n (h e)"))

    def attention_weights(self, x):
        """The attention matrix softmax(q k^T / sqrt(e)) the fused kernel never materialises:
        (B, N, d) -> (B, heads, N, N), each row sums to 1. For figures, not for speed."""
        q, k, _ = self._heads(x)
        return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + MHSA(LN(x)), then x + FFN(LN(x)).

    The FFN is d -> mlp_ratio*d -> d with SiLU. (B, N, d) -> (B, N, d).
    """

    def __init__(self, dim, num_heads=4, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.act = nn.SiLU()
        self.mlp.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x
