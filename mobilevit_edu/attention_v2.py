"""Chapter 10: MobileViTv2's separable self-attention (Mehta & Rastegari 2022, arXiv 2206.02680) and its
pre-norm transformer layer.

Chapter 3's attention compares every query with every key: an N x N matrix, O(N^2 d). Separable
self-attention replaces the N queries by ONE set of context scores (a softmax over the N patches of a
1-channel "query"), sums the keys weighted by those scores into ONE context vector of size d, and
multiplies every patch's ReLU(value) by it: O(N d).

Layout (as timm and ml-cvnets): (B, d, P, N), channels first, P pixel positions per patch, N patches,
so that the linear maps are 1x1 convolutions and no transpose is needed.
"""

import torch.nn.functional as F
from torch import nn


def separable_self_attention(query, key, value, dim=-1):
    """ReLU(value) * sum_N(softmax_N(query) * key): every patch gets the same context vector.

    query: (..., 1, ..., N), key and value: (..., d, ..., N), with the N patches along `dim` (the last
    axis in the package's (B, d, P, N) layout; dim=-2 for chapter 3's token layout (B, N, 1) / (B, N, d)).
    Returns value's shape.
    """
    context_scores = query.softmax(dim=dim)  # (B, 1, P, N): one weight per patch, summing to 1 over N
    context_vector = (key * context_scores).sum(dim=dim, keepdim=True)  # (B, d, P, 1)
    return F.relu(value) * context_vector  # (B, d, P, N), the context broadcast over the N patches


class SeparableSelfAttention(nn.Module):
    """Separable self-attention. (B, d, P, N) -> (B, d, P, N).

    qkv_proj: 1x1 conv d -> 1 + 2d (query: 1 channel, key: d, value: d), with bias
    out_proj: 1x1 conv d -> d, with bias
    """

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, kernel_size=1)
        self.out_proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x):
        query, key, value = self.qkv_proj(x).split([1, self.dim, self.dim], dim=1)  # (B,1,P,N), (B,d,P,N) x2
        return self.out_proj(separable_self_attention(query, key, value, dim=-1))


class SeparableTransformerLayer(nn.Module):
    """MobileViTv2's pre-norm transformer layer: x + attn(norm1(x)), then x + mlp(norm2(x)).

    The norms are GroupNorm with ONE group: each sample is normalised over all its d x P x N numbers
    (with a per-channel scale and shift), not token by token as LayerNorm does in v1. The FFN is
    d -> mlp_ratio*d -> d with SiLU, as 1x1 convolutions. (B, d, P, N) -> (B, d, P, N).
    """

    def __init__(self, dim, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.attn = SeparableSelfAttention(dim)
        self.norm2 = nn.GroupNorm(1, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Conv2d(dim, hidden, kernel_size=1)
        self.mlp.act = nn.SiLU()
        self.mlp.fc2 = nn.Conv2d(hidden, dim, kernel_size=1)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x
