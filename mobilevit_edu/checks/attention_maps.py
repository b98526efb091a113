"""Checks for chapter 8: reading the attention of a MobileViT block.

- `check_attention_weights(fn)`: your `attention_weights(block, y, layer)`: the block's local
  representation y (1, d, H, W) -> the attention matrices of transformer layer `layer`, (P, heads, N, N).
- `check_attention_map(fn)`: your `attention_map(weights, pixel, size, patch_size, head)`: one row of
  those matrices placed on the (H, W) map.
- `show_attention_maps(attention_weights, attention_map, block, y, image, pixel, stride)`: your two
  functions drawn on the image, once both are written.

Both checks compare with `mobilevit_edu.explain` on several cases (non-square maps and patches, layers
after the first, every head) and name the usual mistakes: the softmax over the wrong axis or none,
patches and positions swapped, the column of the matrix instead of its row.
"""

import torch
from einops import rearrange

from .. import explain
from ..block import MobileViTBlock
from ..explain import attention_map_from_weights, block_attention, pixel_to_patch
from ..layers import MultiHeadSelfAttention
from ..patches import unfold_patches
from ._common import (
    CheckFailed,
    ForbiddenCall,
    call,
    calls_by_name,
    expect_close,
    forbid,
    randomize_batchnorm,
    run_check,
    with_closing_hint,
)
from .attention import randomize_layernorm

# (description, channels, transformer_dim, depth, num_heads, patch_size, map size (H, W), layer)
WEIGHT_CASES = [
    ("8x8 map, 2x2 patches, layer 0", 16, 24, 2, 4, 2, (8, 8), 0),
    ("non-square 6x10 map, layer 1 (after one transformer layer)", 16, 24, 2, 4, 2, (6, 10), 1),
    ("4x12 map, non-square 2x3 patches, layer 0", 8, 16, 1, 4, (2, 3), (4, 12), 0),
    ("6x4 map, 3x2 patches, 2 heads, layer 2", 8, 16, 3, 2, (3, 2), (6, 4), 2),
]


def _tokens(block, y):
    return rearrange(unfold_patches(y, block.patch_size), "b p n d -> (b p) n d")  # (P, N, d) for one image


def _heads(attn, x):
    return rearrange(attn.qkv(x), "b n (three h e) -> three b h n e", three=3, h=attn.num_heads).unbind(0)


def _wrong_weights(block, y, layer):
    """What the usual wrong answers give, from the block's own modules: {name: (P or N, heads, ., .)}."""
    variants = {}

    def scores(tokens, norm=True, skip=False, scale="head", heads=None, through=0):
        if not skip:
            for earlier in block.transformer[:layer + through]:
                tokens = earlier(tokens)
        this = block.transformer[layer]
        norm = {True: this.norm1, False: None, "norm2": this.norm2, "block": block.norm}[norm]
        x = norm(tokens) if norm is not None else tokens
        if heads is None:
            q, k, _ = _heads(this.attn, x)
        else:
            q, k, _ = rearrange(this.attn.qkv(x), "b n (three h e) -> three b h n e", three=3, h=heads).unbind(0)
        e = q.shape[-1] if scale == "head" else q.shape[-1] * this.attn.num_heads
        s = q @ k.transpose(-2, -1)
        return s if scale is None else s / e**0.5

    tokens = _tokens(block, y)
    variants["no_softmax"] = scores(tokens)
    variants["softmax_dim"] = scores(tokens).softmax(dim=-2)
    variants["no_scale"] = scores(tokens, scale=None).softmax(-1)
    variants["scale_d"] = scores(tokens, scale="d").softmax(-1)
    variants["no_norm"] = scores(tokens, norm=False).softmax(-1)
    variants["norm2"] = scores(tokens, norm="norm2").softmax(-1)
    variants["one_head"] = scores(tokens, heads=1).softmax(-1)
    variants["through_layer"] = scores(tokens, through=1).softmax(-1)
    variants["block_norm"] = scores(tokens, norm="block").softmax(-1)
    if layer > 0:
        variants["skip_layers"] = scores(tokens, skip=True).softmax(-1)
    pixels = rearrange(unfold_patches(y, block.patch_size), "b p n d -> (b n) p d")
    variants["across_pixels"] = scores(pixels).softmax(-1)
    return variants


WEIGHT_HINTS = {
    "no_softmax": "these are the scores q·kᵀ/√e: you forgot the softmax, which turns each row into weights that sum to 1",
    "softmax_dim": "the softmax runs over the wrong axis: each row (one query, all keys) must sum to 1, so softmax(dim=-1);"
    " your columns sum to 1",
    "no_scale": "you forgot the scale: divide the scores by √e before the softmax, e = d / heads the head size",
    "scale_d": "the scale uses the head size e = d / heads, not the model width d: divide by √e",
    "no_norm": "the transformer layer is pre-norm: apply the layer's norm1 to the tokens before its qkv projection",
    "norm2": "the attention reads the layer's *first* LayerNorm: this.norm1(tokens) before this.attn.qkv; norm2"
    " belongs to the MLP",
    "block_norm": "block.norm is the block's final LayerNorm, after all layers; the attention of layer `layer` reads"
    " that layer's own norm1: this.norm1(tokens) before this.attn.qkv",
    "one_head": "you computed one head over the whole width d: split q and k into num_heads heads of size"
    " e = d / heads (the layer's attn.num_heads), one (N, N) matrix per head",
    "through_layer": "you ran the tokens through layer `layer` itself too: its attention reads its *input*, the output"
    " of layers 0 .. layer-1 (block.transformer[:layer])",
    "skip_layers": "for layer > 0, first run the tokens through layers 0 .. layer-1 (block.transformer[:layer])",
    "across_pixels": "patches and positions swapped: your tokens are (N, P, d), attention across the P pixels of a patch."
    " MobileViT attends across the N patches, separately for each position: tokens (P, N, d)",
}


def _weights_case(description, C, d, depth, heads, patch, size, layer):
    return (f"case '{description}' (MobileViTBlock(channels={C}, transformer_dim={d}, depth={depth},"
            f" num_heads={heads}, patch_size={patch}), y of shape (1, {d}, {size[0]}, {size[1]}), layer={layer})")


def _case_block(C, d, depth, heads, patch, generator):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        block = MobileViTBlock(C, d, depth, patch_size=patch, num_heads=heads)
    # LayerNorms with random scales and shifts, so that reading the tokens after the wrong one shows
    return randomize_layernorm(randomize_batchnorm(block, generator), generator).eval()


# What attention_weights rebuilds: calling these is not an answer (the layer's own matrix, the package's helper)
FORBIDDEN_WEIGHTS = [(MultiHeadSelfAttention, "attention_weights"), (explain, "block_attention")]
FORBIDDEN_WEIGHTS_MESSAGE = (
    "your function calls {what}, which computes the very matrices this exercise asks for. Hint: compute them from"
    " the layer's modules: the tokens (P, N, d), layers 0 .. layer-1, norm1, attn.qkv, then softmax(q kᵀ / √e)"
)
WEIGHTS_SECTION = "'Attention maps: the red dot and its blue dots, learnt' in chapter 8"


def check_attention_weights(fn):
    """Check `fn(block, y, layer)` -> (P, heads, N, N): for the local representation y (1, d, H, W) of a
    MobileViTBlock (H, W multiples of the patch size), the attention matrices softmax(q kᵀ / √e) of
    transformer layer `layer`: tokens (P, N, d) from `unfold_patches`, layers 0..layer-1, norm1, qkv. The
    blocks' LayerNorms get random scales and shifts, so that reading the tokens after the wrong one shows;
    calling the layer's own attn.attention_weights or explain.block_attention is rejected."""

    def body():
        generator = torch.Generator().manual_seed(8)
        for description, C, d, depth, heads, patch, size, layer in WEIGHT_CASES:
            case = _weights_case(description, C, d, depth, heads, patch, size, layer)
            block = _case_block(C, d, depth, heads, patch, generator)
            y = torch.randn(1, d, *size, generator=generator)
            with torch.no_grad():
                expected = block_attention(block, y, layer)[0]
                try:
                    with forbid(FORBIDDEN_WEIGHTS, "attention_weights") as forbidden:
                        actual = call(fn, block, y.clone(), layer, case=case)
                except CheckFailed as error:
                    if forbidden or isinstance(error.__cause__, ForbiddenCall):
                        raise CheckFailed(f"{case}: " + FORBIDDEN_WEIGHTS_MESSAGE.format(
                            what="the layer's attn.attention_weights (or explain.block_attention)")) from None
                    raise
                if forbidden:  # the student's code caught our exception and went on
                    raise CheckFailed(f"{case}: " + FORBIDDEN_WEIGHTS_MESSAGE.format(what="attn.attention_weights"))
                variants = _wrong_weights(block, y, layer)
            hints = [
                (lambda a, e, v=variants[name]: a.shape == v.shape and torch.allclose(a, v, atol=1e-5, rtol=1e-4), hint)
                for name, hint in WEIGHT_HINTS.items() if name in variants
            ]
            P, N = expected.shape[0], expected.shape[-1]
            hints.append((lambda a, e: tuple(a.shape) == (1, P, heads, N, N),
                          "drop the batch dimension: y holds one image, return (P, heads, N, N)"))
            hints.append((lambda a, e: tuple(a.shape) == (P, N, N),
                          "keep the heads apart: (P, heads, N, N), one matrix per head"))
            with_closing_hint(lambda: expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=hints),
                              f"no typical mistake matches; re-read {WEIGHTS_SECTION}")
        names = calls_by_name(fn, {"attention_weights", "block_attention"})
        if names:  # a call the patch cannot see (a copy of the method taken before the check ran)
            raise CheckFailed(FORBIDDEN_WEIGHTS_MESSAGE.format(what=" and ".join(f"{n}(...)" for n in names)))

    run_check(
        "attention_weights",
        body,
        f"equals the package's attention on all {len(WEIGHT_CASES)} cases (non-square maps and patches, layers 0-2)",
    )


# (description, map size (H, W), patch_size, pixel, head)
MAP_CASES = [
    ("8x8 map, 2x2 patches, pixel (3, 5), head 0", (8, 8), 2, (3, 5), 0),
    ("non-square 6x10 map, pixel (4, 1), head 2", (6, 10), 2, (4, 1), 2),
    ("4x12 map, 2x3 patches, pixel (1, 7), head 1", (4, 12), (2, 3), (1, 7), 1),
    ("6x4 map, 3x2 patches, pixel (5, 0), head 3", (6, 4), (3, 2), (5, 0), 3),
]


def _pair(patch):
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


def _place(weights, row_of, p, size, patch):
    """A map with `row_of` (N,) placed at position p of every patch."""
    (H, W), (ph, pw) = size, patch
    table = torch.zeros(ph * pw, row_of.shape[0], 1, dtype=weights.dtype)
    table[p, :, 0] = row_of
    return rearrange(table, "(ph pw) (nh nw) c -> (nh ph) (nw pw) c", ph=ph, nh=H // ph)[..., 0]


def _wrong_maps(weights, pixel, size, patch, head):
    (H, W), (ph, pw), (i, j) = size, patch, pixel
    p, n = pixel_to_patch(pixel, size, patch)
    variants = {
        "column": _place(weights, weights[p, head, :, n], p, size, patch),
        "head_mean": _place(weights, weights[p, :, n].mean(0), p, size, patch),
        "position_0": _place(weights, weights[p, head, n], 0, size, patch),
    }
    p_cols = (j % pw) * ph + (i % ph)  # positions numbered column by column
    if p_cols != p:
        variants["p_col_major"] = _place(weights, weights[p_cols, head, n], p_cols, size, patch)
    n_cols = (j // pw) * (H // ph) + (i // ph)  # patches numbered column by column
    if n_cols != n:
        variants["n_col_major"] = _place(weights, weights[p, head, n_cols], p, size, patch)
    if p_cols != p:  # the weights read at the column-major position, placed at the right one
        variants["p_col_major_read"] = _place(weights, weights[p_cols, head, n], p, size, patch)
    whole = weights[p, head, n].reshape(H // ph, W // pw)
    variants["whole_patch"] = whole.repeat_interleave(ph, 0).repeat_interleave(pw, 1)
    if n < ph * pw and p < weights.shape[-1]:  # p and n swapped: the patch number used as the position, and back
        variants["swap_pn"] = _place(weights, weights[n, head, p], n, size, patch)
    return variants


MAP_HINTS = {
    "column": "wrong axis: you took column n of the matrix, who attends to the pixel; the pixel is the query, so its"
    " weights are row n: weights[p, head, n, :]",
    "head_mean": "you averaged the heads; take the one head asked for: weights[p, head, n]",
    "position_0": "the weights belong on the pixels at the *same position p* as the chosen pixel in every patch,"
    " (i % ph, j % pw) inside each patch, not on each patch's first pixel",
    "p_col_major": "the position inside the patch is numbered row by row: p = (i % ph) * pw + (j % pw)",
    "p_col_major_read": "the position inside the patch is numbered row by row: p = (i % ph) * pw + (j % pw);"
    " you read the weights of another position",
    "whole_patch": "you put each patch's weight on every pixel of the patch; it belongs only on the pixel at the"
    " same position p as the chosen pixel, (i % ph, j % pw) inside each patch, zero elsewhere",
    "n_col_major": "the patches are numbered row by row: n = (i // ph) * (W // pw) + (j // pw)",
    "swap_pn": "patches and positions swapped: the first axis of weights is the position p in the patch, the row"
    " index n is the patch: weights[p, head, n]",
}


FORBIDDEN_MAPS = [(explain, "attention_map_from_weights"), (explain, "attention_map")]
FORBIDDEN_MAP_MESSAGE = (
    "your function calls the package's explain.attention_map_from_weights (or explain.attention_map), which places"
    " the row for you. Hint: find the pixel's position p in its patch and its patch n, take weights[p, head, n],"
    " and place it on the map yourself"
)


def check_attention_map(fn):
    """Check `fn(weights, pixel, size, patch_size, head)` -> (H, W): weights (P, heads, N, N) of one image,
    pixel (i, j) of the H x W map `size`; the map holds, at the pixel at the same position p of every
    patch, the weight with which `pixel` attends to that patch (its row of the matrix), zero elsewhere. Calling
    explain.attention_map_from_weights (or explain.attention_map) is rejected."""

    def body():
        generator = torch.Generator().manual_seed(80)
        for description, size, patch, pixel, head in MAP_CASES:
            ph, pw = _pair(patch)
            P, N = ph * pw, (size[0] // ph) * (size[1] // pw)
            case = f"case '{description}' (weights of shape ({P}, 4, {N}, {N}), size={size}, patch_size={patch})"
            weights = torch.randn(P, 4, N, N, generator=generator).softmax(-1)
            expected = attention_map_from_weights(weights, pixel, size, (ph, pw), head)
            try:
                with forbid(FORBIDDEN_MAPS, "attention_map_from_weights") as forbidden:
                    actual = call(fn, weights.clone(), pixel, size, patch, head, case=case)
                if forbidden:
                    raise CheckFailed(f"{case}: {FORBIDDEN_MAP_MESSAGE}")
            except CheckFailed as error:
                if forbidden or isinstance(error.__cause__, ForbiddenCall):
                    raise CheckFailed(f"{case}: {FORBIDDEN_MAP_MESSAGE}") from None
                if isinstance(error.__cause__, IndexError):
                    raise CheckFailed(
                        f"{str(error).rstrip('.')}. Hint: patches and positions swapped? weights is (P, heads, N, N) ="
                        f" {tuple(weights.shape)}: index it weights[p, head, n] with p the position inside the"
                        " patch and n the patch's number"
                    ) from error.__cause__
                raise
            variants = _wrong_maps(weights, pixel, size, (ph, pw), head)
            hints = [
                (lambda a, e, v=variants[name]: a.shape == v.shape and torch.allclose(a, v, atol=1e-6), hint)
                for name, hint in MAP_HINTS.items() if name in variants
            ]
            if size[0] != size[1]:  # on a square map a W x H map cannot be told from any other wrong map
                hints.append((lambda a, e: tuple(a.shape) == (size[1], size[0]), "your map is W x H: size is (H, W)"))
            hints.append((lambda a, e: tuple(a.shape) == (N,) or tuple(a.shape) == (size[0] // ph, size[1] // pw),
                          f"this is the row of N = {N} patch weights; place each on its patch's pixel at position p"
                          f" of the full {size[0]}x{size[1]} map"))
            with_closing_hint(lambda: expect_close(actual, expected, case, atol=1e-6, rtol=1e-5, hints=hints),
                              f"no typical mistake matches; re-read {WEIGHTS_SECTION}")
        if calls_by_name(fn, {"attention_map_from_weights", "attention_map"}):
            raise CheckFailed(FORBIDDEN_MAP_MESSAGE)

    run_check(
        "attention_map",
        body,
        f"right on all {len(MAP_CASES)} cases (non-square maps and patches, every head)",
    )


def show_attention_maps(attention_weights, attention_map, block, y, image, pixel, stride, layer=0):
    """Draw your `attention_map(attention_weights(block, y, layer), pixel, ...)` for every head on the
    (3, H, W) image (red: the pixel, blue: whom it attends to). Prints "not implemented yet" while either
    function still raises NotImplementedError. Returns the figure."""
    from ..viz import plot_attention_overlays

    try:
        weights = attention_weights(block, y, layer)
        size = tuple(y.shape[-2:])
        maps = [attention_map(weights, pixel, size, block.patch_size, h) for h in range(weights.shape[1])]
    except NotImplementedError:
        print("… the figure: not implemented yet. It draws your attention maps once both functions are written.")
        return None
    maps = [m.detach() for m in maps]
    panels = [(m, pixel, stride, f"head {h}: largest weight {float(m.max()):.2f}") for h, m in enumerate(maps)]
    return plot_attention_overlays(image, panels, suptitle=f"Your attention maps, layer {layer}: whom pixel {tuple(pixel)} attends to")
