"""Chapter 8: what a trained MobileViT sees: feature maps, attention maps, effective receptive fields.

- `mobilevit_blocks(model)`: the MobileViT blocks of a network, as {stage index: block}.
- `local_representation(model, x, stage)`: the (B, d, H, W) map a MobileViT block hands to its transformer.
- `attention_map(block, y, pixel, layer, head)`: for one pixel of that map, the weight with which it
  attends to every pixel: non-zero only at its own position p in every patch (MobileViT attends across
  the N patches, separately for each of the P pixel positions).
- `effective_receptive_field(fn, images, pixel, channels)`: |d fn(x)[:, c, i, j] / d x|, summed over the
  input channels and averaged over images (Luo et al. 2016): which input pixels an output pixel depends on.
  `channels="sum"` differentiates the sum of the output channels (one backward pass; channels of opposite
  sign can cancel), `channels="each"` adds up |gradient| of every output channel separately (no cancelling).
- `receptive_field_summary(erf, centre)`: r_half (the radius around `centre` holding half of the gradient),
  the share beyond half the image's side, and the share in the quadrant opposite the centre's.
- `attention_entropy(block, y, layer)`: the entropy of every attention row, against log N for uniform rows.
- `uniform_attention(model)`: a context manager that replaces every attention's weights by 1/N, i.e. by a
  mean pooling over the patches, to test whether a trained network needs more than pooling.

Stages are numbered 0-based, as in the package and timm (`stages.0` ... `stages.4`). In MobileViT-XXS/XS/S
the MobileViT blocks sit in stages 2, 3 and 4; in chapter 7's `mobilevit_mini` in stages 2 and 3.
"""

import contextlib
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .block import MobileViTBlock
from .layers import MultiHeadSelfAttention
from .patches import unfold_patches


def mobilevit_blocks(model):
    """{stage index: MobileViTBlock} for every stage of `model` (a MobileViT) that ends with one."""
    blocks = {}
    for index, stage in enumerate(model.stages):
        for module in stage:
            if isinstance(module, MobileViTBlock):
                blocks[index] = module
    return blocks


def _block(model, stage):
    blocks = mobilevit_blocks(model)
    if stage not in blocks:
        raise ValueError(f"stage must be one of the stages with a MobileViT block, {sorted(blocks)}; got {stage!r}")
    return blocks[stage]


@torch.no_grad()
def local_representation(model, x, stage):
    """(B, 3, H, W) images -> (B, d, h, w): the output of stage `stage`'s MobileViT block's local
    representation (n x n conv, then 1x1 to d), i.e. what the block unfolds into patches. Captured
    with a forward hook while `model` runs on x."""
    block = _block(model, stage)
    captured = []
    handle = block.local_rep.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        model.features(x)
    finally:
        handle.remove()
    return captured[0]


def transformer_grid(block, y):
    """The size (Hp, Wp) of the map the block's transformer sees for an input y of (B, d, H, W): H x W
    itself, or the next multiples of the patch size when the block resizes it first."""
    (ph, pw), (H, W) = block.patch_size, y.shape[-2:]
    return math.ceil(H / ph) * ph, math.ceil(W / pw) * pw


@torch.no_grad()
def block_attention(block, y, layer=0):
    """The attention matrices of transformer layer `layer` of `block` for its local representation y
    (B, d, H, W): (B, P, heads, N, N), row n = how patch n (at pixel position p) attends to every patch.
    Runs the block's own modules: resize if needed -> unfold -> layers 0..layer-1 -> norm1 -> softmax(q k^T / sqrt(e))."""
    if not 0 <= layer < len(block.transformer):
        raise ValueError(f"layer must be in 0..{len(block.transformer) - 1} (the block has {len(block.transformer)} layers), got {layer!r}")
    B = y.shape[0]
    Hp, Wp = transformer_grid(block, y)
    if (Hp, Wp) != tuple(y.shape[-2:]):
        y = F.interpolate(y, size=(Hp, Wp), mode="bilinear", align_corners=False)
    tokens = rearrange(unfold_patches(y, block.patch_size), "b p n d -> (b p) n d")  # (B*P, N, d)
    for transformer_layer in block.transformer[:layer]:
        tokens = transformer_layer(tokens)
    this = block.transformer[layer]
    weights = this.attn.attention_weights(this.norm1(tokens))  # (B*P, heads, N, N)
    return rearrange(weights, "(b p) h n m -> b p h n m", b=B)


def pixel_to_patch(pixel, grid, patch_size):
    """Pixel (i, j) of an Hp x Wp map -> (p, n): its position in its patch and its patch's number,
    both row-major as in `unfold_patches`."""
    (i, j), (Hp, Wp), (ph, pw) = pixel, grid, patch_size
    if not (0 <= i < Hp and 0 <= j < Wp):
        raise ValueError(f"pixel {tuple(pixel)} is outside the {Hp}x{Wp} map the transformer sees")
    return (i % ph) * pw + (j % pw), (i // ph) * (Wp // pw) + (j // pw)


def attention_map_from_weights(weights, pixel, size, patch_size, head=None):
    """Place one row of a block's attention on the map: `weights` (P, heads, N, N) of one image (see
    `block_attention`), `pixel` (i, j) of the Hp x Wp map `size`. Returns (Hp, Wp): at the pixel at
    position p of every patch n', the weight with which `pixel` (position p, patch n) attends to patch n'
    (row n of the matrix: the pixel is the query); zero elsewhere. `head=None`: the mean over heads."""
    (Hp, Wp), (ph, pw) = size, patch_size
    P, heads, N, _ = weights.shape
    if P != ph * pw or N != (Hp // ph) * (Wp // pw):
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not fit a {Hp}x{Wp} map with {ph}x{pw} patches")
    if head is not None and not 0 <= head < heads:
        raise ValueError(f"head must be in 0..{heads - 1} or None (mean over heads), got {head!r}")
    p, n = pixel_to_patch(pixel, (Hp, Wp), (ph, pw))
    row = weights[p, :, n].mean(0) if head is None else weights[p, head, n]  # (N,): whom the pixel attends to
    table = torch.zeros(P, N, 1, dtype=weights.dtype)  # (P, N, 1): only position p is filled
    table[p, :, 0] = row
    return rearrange(table, "(ph pw) (nh nw) c -> (nh ph) (nw pw) c", ph=ph, nh=Hp // ph)[..., 0]


@torch.no_grad()
def attention_map(block, y, pixel, layer=0, head=None, image=0):
    """(Hp, Wp): how strongly `pixel` (i, j) attends to each pixel of the map in transformer layer `layer`
    (head `head`, or the mean over heads when None), for image `image` of y (B, d, H, W).

    Only the pixels at the same position p as `pixel`, one per patch, get weight; their weights sum to 1.
    (Hp, Wp) is y's size, or the next multiples of the patch size when the block resizes y.
    """
    weights = block_attention(block, y, layer)[image]  # (P, heads, N, N)
    return attention_map_from_weights(weights, pixel, transformer_grid(block, y), block.patch_size, head)


def stage_strides(model, size):
    """{stage index: the stride of its output} for an input of `size` (H, W), from running the model."""
    with torch.no_grad():
        outputs = model.features(torch.zeros(1, model.config.in_chans, *size))
    return {k: size[0] // out.shape[-2] for k, out in enumerate(outputs)}


def effective_receptive_field(fn, images, pixel=None, channels="sum"):
    """The effective receptive field of one output pixel: (H, W), the mean over images of the
    gradient's absolute value, summed over x's channels.

    `fn` maps (B, C, H, W) images to a (B, C', h, w) map (e.g. one stage of `model.features`; in eval
    mode, so images do not interact); `pixel` = (i, j) in that map, default its centre.
    `channels="sum"`: |d fn(x)[b, :, i, j].sum() / d x[b]|, one backward pass for the whole batch; output
    channels whose gradients have opposite signs cancel. `channels="each"`: sum over c of
    |d fn(x)[b, c, i, j] / d x[b]|, one backward pass per output channel; nothing cancels."""
    if channels not in ("sum", "each"):
        raise ValueError(f'channels must be "sum" or "each", got {channels!r}')
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        if out.dim() != 4:
            raise ValueError(f"fn must return a (B, C, h, w) map, got shape {tuple(out.shape)}")
        i, j = pixel if pixel is not None else (out.shape[-2] // 2, out.shape[-1] // 2)
        if channels == "sum":
            (grad,) = torch.autograd.grad(out[:, :, i, j].sum(), x)
            return grad.abs().sum(1).mean(0)  # (H, W)
        total = torch.zeros(x.shape[-2:], dtype=x.dtype)
        for c in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[:, c, i, j].sum(), x, retain_graph=c < out.shape[1] - 1)
            total += grad.abs().sum(1).mean(0)
    return total  # (H, W)


def receptive_field_summary(erf, centre):
    """Three numbers that say how far an effective receptive field `erf` (H, W) reaches from `centre`
    (row, column), the output pixel's centre in input coordinates:

    - "r_half": the smallest whole radius r (pixels) with half of the total |gradient| within distance r;
    - "beyond_half_side": the share of the gradient farther than H/2 from the centre;
    - "opposite_quadrant": the share in the image quadrant diagonally opposite the one holding the centre.

    For comparison, a uniform erf (torch.ones(H, W)) gives the values of "no preference for near pixels"."""
    erf = torch.as_tensor(erf, dtype=torch.float64)
    H, W = erf.shape
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    distance = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).sqrt()
    total = erf.sum()
    r_half = next(r for r in range(H + W) if erf[distance <= r].sum() >= 0.5 * total)
    top, left = centre[0] < H / 2, centre[1] < W / 2
    quadrant = erf[H // 2:, :] if top else erf[: H // 2, :]
    quadrant = quadrant[:, W // 2:] if left else quadrant[:, : W // 2]
    return {"r_half": r_half, "beyond_half_side": float(erf[distance > H / 2].sum() / total),
            "opposite_quadrant": float(quadrant.sum() / total)}


@torch.no_grad()
def attention_entropy(block, y, layer=0):
    """The entropy (in nats) of every row of the attention of `block`'s transformer layer `layer` for its
    local representation y (B, d, H, W): (B, P, heads, N). A uniform row has the largest entropy, log N;
    a row that puts all its weight on one patch has 0."""
    weights = block_attention(block, y, layer)  # (B, P, heads, N, N)
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1)


@contextlib.contextmanager
def uniform_attention(model):
    """Inside `with uniform_attention(model):` every multi-head attention of `model` gives every patch the
    weight 1/N: its output is the mean of the values over the N patches (a mean pooling across patches at
    each pixel position), projected as usual. Everything else, weights included, stays as trained; the
    original attention is back after the block."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadSelfAttention)]

    def pooled(self, x):
        _, _, v = self._heads(x)  # (B, heads, N, e)
        y = v.mean(dim=2, keepdim=True).expand_as(v)  # the same average for every query
        return self.proj(rearrange(y, "b h n e -> b n (h e)"))

    try:
        for layer in layers:
            layer.forward = pooled.__get__(layer)
        yield model
    finally:
        for layer in layers:
            del layer.forward
