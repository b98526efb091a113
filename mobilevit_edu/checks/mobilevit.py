"""Checks for chapters 4 to 6: MobileViT's patches, the MobileViT block, the networks' configs.

- `check_unfold_patches(fn)`: your `unfold_patches(x, patch_size)`, (B, C, H, W) -> (B, P, N, C).
- `check_fold_patches(fn)`: your `fold_patches(patches, output_size, patch_size)`, its exact inverse.
- `check_mobilevit_block(cls)`: your `MobileViTBlock` class (only `forward` is yours) against the
  package's, with the same weights, on sizes that are and are not multiples of the patch size.
- `check_mobilevit_config(cfg)`: your XXS `MobileViTConfig` (or a function returning it) against the
  package's `XXS`, field by field, then the parameter count of `MobileViT(cfg)` (1,272,024).
- `check_mobilevit_forward(cls)`: your `MobileViT.forward` (stem -> stages -> 1x1 conv -> pool -> head).
- `check_attention_partners(fn)`, `check_mobilevit_block_macs(fn)`, `check_stage_sizes(fn)`: predictions
  (whom a pixel attends to, what a block costs, how large each stage's map is) against the package.
"""

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..block import MobileViTBlock
from ..models import XXS, MobileViT, MobileViTConfig, StageConfig
from ..patches import fold_patches, unfold_patches
from ..profile import count_macs, count_parameters
from .attention import _attention_probes
from ._common import (
    CheckFailed,
    call,
    expect_close,
    expect_number,
    expect_module_output,
    load_reference_weights,
    randomize_batchnorm,
    run_check,
    traced_call,
    with_closing_hint,
)

# ------------------------------------------------------------------------------------------- chapter 4
# (description, x shape, patch_size as the check passes it)
PATCH_CASES = [
    ("batch 1, one channel, 4x6 map, 2x2 patches", (1, 1, 4, 6), 2),
    ("batch 2, 3 channels, non-square 6x8 map, 2x2 patches", (2, 3, 6, 8), 2),
    ("batch 1, 2 channels, 4x12 map, non-square 2x3 patches", (1, 2, 4, 12), (2, 3)),
    ("batch 3, 5 channels, 6x4 map, non-square 3x2 patches", (3, 5, 6, 4), (3, 2)),
]

# Wrong layouts that look right, with what the student most likely did.
WRONG_UNFOLDS = {
    "b c (nh ph) (nw pw) -> b (nh nw) (ph pw) c": "did you swap P and N? MobileViT's layout is (B, P, N, C):"
    " the P pixel positions first, then the N patches (a row p is one sequence that attention runs along)",
    "b c (nh ph) (nw pw) -> b (ph pw) (nw nh) c": "your patches are numbered column by column (nw nh);"
    " number them row by row, n = (patch row) * (W / pw) + (patch column), i.e. (nh nw)",
    "b c (nh ph) (nw pw) -> b (pw ph) (nh nw) c": "the positions inside a patch are numbered column by column"
    " (pw ph); number them row by row, p = i * pw + j, i.e. (ph pw)",
    "b c (ph nh) (pw nw) -> b (ph pw) (nh nw) c": "your 'patches' are not contiguous blocks: (ph nh) splits H into"
    " ph strided groups. A patch is ph neighbouring rows, so H = (nh ph)",
    "b c (nh ph) (nw pw) -> b (ph pw) c (nh nw)": "the channels go last: (B, P, N, C)",
}


def _patch_case(description, shape, patch):
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    B, C, H, W = shape
    return f"case '{description}' (x of shape {shape}, patch_size={patch}: expected (B, P, N, C) = ({B}, {ph * pw}, {(H // ph) * (W // pw)}, {C}))"


def _unfold_hints(x, patch):
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    B, C, H, W = x.shape
    P, N = ph * pw, (H // ph) * (W // pw)

    def equals_layout(pattern):
        wrong = rearrange(x, pattern, ph=ph, pw=pw)
        return lambda actual, expected: actual.shape == wrong.shape and torch.equal(actual, wrong)

    hints = [(equals_layout(pattern), sentence) for pattern, sentence in WRONG_UNFOLDS.items()]
    vit = "this is ViT's flattening: one token of P*C numbers per patch. MobileViT keeps the P positions apart: (B, P, N, C)"
    hints.append((lambda actual, expected: tuple(actual.shape) in ((B, N, P * C), (B, P * C, N)), vit))
    if ph != pw:
        square = f"the patch is {ph}x{pw} (patch_size=({ph}, {pw})): use ph for the height and pw for the width, not one size for both"
        hints.append((lambda actual, expected: actual.dim() == 4 and actual.shape[1] in (ph * ph, pw * pw), square))
    return hints


def check_unfold_patches(fn):
    """Check `fn(x, patch_size)` -> (B, P, N, C) against the package's layout
    `b c (nh ph) (nw pw) -> b (ph pw) (nh nw) c` on several cases: batch 1 and more, one and several
    channels, square and non-square maps, 2x2 and non-square patches (patch_size an int or (ph, pw))."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, shape, patch in PATCH_CASES:
            case = _patch_case(description, shape, patch)
            x = torch.randn(shape, generator=generator)
            actual = call(fn, x.clone(), patch, case=case)
            expected = unfold_patches(x, patch)
            expect_close(actual, expected, case, atol=0, rtol=0, hints=_unfold_hints(x, patch))

    run_check(
        "unfold_patches",
        body,
        f"right on all {len(PATCH_CASES)} cases (batch 1 to 3, non-square maps and patches)",
    )


def check_fold_patches(fn):
    """Check `fn(patches, output_size, patch_size)` -> (B, C, H, W): it must give back exactly the map
    that `unfold_patches` cut up, on the same cases as `check_unfold_patches`."""

    def body():
        generator = torch.Generator().manual_seed(1)
        for description, shape, patch in PATCH_CASES:
            case = _patch_case(description, shape, patch).replace("expected (B, P, N, C)", "patches (B, P, N, C)")
            x = torch.randn(shape, generator=generator)
            patches = unfold_patches(x, patch)
            actual = call(fn, patches.clone(), tuple(shape[-2:]), patch, case=case)
            ph, pw = (patch, patch) if isinstance(patch, int) else patch
            nh = shape[2] // ph

            def inverse_of(pattern, **sizes):
                wrong = rearrange(patches, pattern, **sizes)
                return lambda actual, expected: actual.shape == wrong.shape and torch.equal(actual, wrong)

            hints = [
                (inverse_of("b (ph pw) (nw nh) c -> b c (nh ph) (nw pw)", ph=ph, pw=pw, nh=nh),
                 "you read the patches column by column (nw nh); unfold_patches numbers them row by row (nh nw)"),
                (inverse_of("b (pw ph) (nh nw) c -> b c (nh ph) (nw pw)", ph=ph, pw=pw, nh=nh),
                 "you read the positions inside a patch column by column (pw ph); they are row by row (ph pw)"),
                (lambda actual, expected: tuple(actual.shape) == (shape[0], shape[1], shape[3], shape[2]),
                 "your map is W x H: output_size is (H, W), and nh = H / ph patches run down the map"),
            ]
            expect_close(
                actual, x, case + ": fold_patches(unfold_patches(x)) must give x back exactly", atol=0, rtol=0, hints=hints
            )

    run_check(
        "fold_patches",
        body,
        f"fold_patches(unfold_patches(x)) == x exactly on all {len(PATCH_CASES)} cases",
    )


# (description, H, W, patch_size, pixel)
PARTNER_CASES = [
    ("8x8 map, 2x2 patches, pixel (5, 2)", 8, 8, 2, (5, 2)),
    ("6x9 map, 3x3 patches, pixel (4, 7)", 6, 9, 3, (4, 7)),
    ("4x12 map, non-square 2x3 patches, pixel (1, 5)", 4, 12, (2, 3), (1, 5)),
    ("6x4 map, 3x2 patches, the corner pixel (0, 0)", 6, 4, (3, 2), (0, 0)),
]


def _partner_variants(H, W, patch, pixel):
    """[(mask, sentence)] of the typical wrong answers."""
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    i, j = pixel
    rows, cols = torch.arange(H)[:, None], torch.arange(W)[None, :]

    def same_position(ph, pw, i, j):
        return ((rows % ph) == (i % ph)) & ((cols % pw) == (j % pw))

    right = same_position(ph, pw, i, j)
    own_patch = ((rows // ph) == (i // ph)) & ((cols // pw) == (j // pw))
    without_self = right.clone()
    without_self[i, j] = False
    variants = [
        (own_patch, "you marked the P pixels of the pixel's own patch: that is the neighbourhood a ViT token"
         " flattens. In MobileViT a pixel attends to the pixel at *its position* in every patch: N pixels,"
         " ph apart vertically and pw apart horizontally"),
        (without_self, "the pixel attends to itself too: its own patch is one of the N, so it is in the mask"),
        (same_position(pw, ph, i, j), f"the patch is {ph} rows by {pw} columns: a row index i is at position"
         f" i % {ph} of its patch, a column index j at j % {pw}"),
    ]
    if i < W and j < H:
        variants.append((same_position(ph, pw, j, i), "pixel = (i, j) is (row, column): the row is i = pixel[0]"))
    return [(v, sentence) for v, sentence in variants if v.shape == right.shape and not torch.equal(v, right)]


def check_attention_partners(fn):
    """Check `fn(H, W, patch_size, pixel)` -> an (H, W) boolean mask of the pixels that `pixel` = (i, j)
    attends to in a MobileViT block's transformer (itself included), against the layout of
    `unfold_patches` (`viz_patches.attention_partners`), on square and non-square maps and patches."""
    from ..viz_patches import attention_partners

    def body():
        for description, H, W, patch, pixel in PARTNER_CASES:
            case = f"case '{description}' (attention_partners({H}, {W}, patch_size={patch}, pixel={pixel}))"
            expected = attention_partners(H, W, patch, pixel)
            actual = call(fn, H, W, patch, pixel, case=case)
            if not isinstance(actual, torch.Tensor):
                raise CheckFailed(f"{case}: expected a boolean torch.Tensor of shape ({H}, {W}), got {type(actual).__name__}")
            if tuple(actual.shape) != (H, W):
                raise CheckFailed(f"{case}: your mask has shape {tuple(actual.shape)}; expected ({H}, {W}), one entry per pixel")
            actual = actual.bool()
            if torch.equal(actual, expected):
                continue
            message = (f"{case}: your mask marks {int(actual.sum())} pixels; expected {int(expected.sum())}"
                       f" (one per patch), e.g. {tuple(int(t) for t in (actual ^ expected).nonzero()[0])} is wrong")
            hint = next((sentence for v, sentence in _partner_variants(H, W, patch, pixel) if torch.equal(actual, v)), "")
            raise CheckFailed(message + (f". Hint: {hint}" if hint else ". Hint: no typical mistake matches; a pixel"
                                         " (i, j) is at position (i % ph, j % pw) of its patch; it attends to every pixel"
                                         " at the same position: rows i % ph, i % ph + ph, ..., columns j % pw, j % pw + pw, ..."))

    run_check(
        "attention_partners",
        body,
        f"right on all {len(PARTNER_CASES)} cases (square and non-square maps and patches)",
    )


# ------------------------------------------------------------------------------------------- chapter 5
# (description, channels, transformer_dim, depth, x shape)
BLOCK_CASES = [
    ("batch 2, 8x8 map (a multiple of the 2x2 patch)", 16, 24, 2, (2, 16, 8, 8)),
    ("batch 1, non-square 6x10 map", 16, 24, 2, (1, 16, 6, 10)),
    ("batch 1, 7x9 map: not a multiple of the patch size", 16, 24, 2, (1, 16, 7, 9)),
    ("batch 2, 5x4 map, one transformer layer, 8 channels", 8, 12, 1, (2, 8, 5, 4)),
]


def _global_rep_variant(block, y, layout="patches", final_norm=True, mode="bilinear", norm_first=False,
                        fold_order="b p", align_corners=False):
    """The block's global representation, or a typical wrong version of it, from its own submodules.

    layout: "patches" (right: (B*P, N, d)), "pixels" ((B*N, P, d): across the pixels of a patch) or
    "all" ((B, H*W, d): every pixel, ViT-style); mode: how a map that is not a multiple of the patch
    size is brought to one ("bilinear", "nearest" or "pad" with zeros, then cropped)."""
    B, d, H, W = y.shape
    if layout == "all":
        tokens = rearrange(y, "b d h w -> b (h w) d")
        tokens = block.transformer(block.norm(tokens) if norm_first else tokens)
        tokens = tokens if norm_first or not final_norm else block.norm(tokens)
        return rearrange(tokens, "b (h w) d -> b d h w", h=H)
    ph, pw = block.patch_size
    Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
    resize = {"mode": mode} if mode == "nearest" else {"mode": mode, "align_corners": align_corners}
    if (Hp, Wp) != (H, W):
        y = F.pad(y, (0, Wp - W, 0, Hp - H)) if mode == "pad" else F.interpolate(y, size=(Hp, Wp), **resize)
    patches = unfold_patches(y, block.patch_size)  # (B, P, N, d)
    P, N = patches.shape[1:3]
    if layout == "patches":  # right: attention across the N patches, one sequence per position p
        tokens = rearrange(patches, "b p n d -> (b p) n d")
    else:  # wrong: attention across the P pixels of each patch
        tokens = rearrange(patches, "b p n d -> (b n) p d")
    if norm_first:
        tokens = block.transformer(block.norm(tokens))
    else:
        tokens = block.transformer(tokens)
        if final_norm:
            tokens = block.norm(tokens)
    if layout == "patches":
        patches = rearrange(tokens, f"({fold_order}) n d -> b p n d", p=P)
    else:
        patches = rearrange(tokens, "(b n) p d -> b p n d", n=N)
    y = fold_patches(patches, (Hp, Wp), block.patch_size)
    if (Hp, Wp) != (H, W):
        y = y[:, :, :H, :W] if mode == "pad" else F.interpolate(y, size=(H, W), **resize)
    return y


def _block_variants(block, x):
    """{name: output} of the typical wrong forwards, computed from the reference block's submodules."""
    y = block.local_rep(x)

    def fused(**options):
        return block.fusion(torch.cat([x, block.conv_proj(_global_rep_variant(block, y, **options))], 1))

    right = block.conv_proj(_global_rep_variant(block, y))
    variants = {
        "concat_order": block.fusion(torch.cat([right, x], dim=1)),
        "no_final_norm": fused(final_norm=False),
        "norm_first": fused(norm_first=True),
        "across_pixels": fused(layout="pixels"),
        "all_pixels": fused(layout="all"),
        "residual": x + block.fusion(torch.cat([x, right], dim=1)),
        "no_conv_kxk": block.fusion(torch.cat([x, block.conv_proj(_global_rep_variant(block, block.local_rep.conv_1x1(x)))], 1)),
        "concat_local": block.fusion(torch.cat([block.local_rep.conv_kxk(x), right], dim=1)),
    }
    if x.shape[0] > 1:
        variants["fold_order"] = fused(fold_order="p b")
    if tuple(x.shape[-2:]) != tuple(math.ceil(s / p) * p for s, p in zip(x.shape[-2:], block.patch_size)):
        variants["nearest"] = fused(mode="nearest")
        variants["pad"] = fused(mode="pad")
        variants["align_corners"] = fused(align_corners=True)
    return variants


BLOCK_HINTS = {
    "concat_order": "you concatenate [y, x]; the fusion's weights expect the block's input first: torch.cat([x, y], dim=1)",
    "no_final_norm": "you forgot the LayerNorm after the transformer layers: tokens = self.norm(self.transformer(tokens))",
    "norm_first": "the block's LayerNorm comes *after* the transformer layers (each layer normalises its own"
    " input already): tokens = self.norm(self.transformer(tokens))",
    "across_pixels": "your attention runs across the P pixels of each patch, (B*N, P, d); MobileViT's runs across"
    " the N patches, separately for each pixel position: (B*P, N, d)",
    "all_pixels": "your transformer runs over all H*W pixels as one sequence, (B, H*W, d), as a ViT over every pixel"
    " would; MobileViT unfolds into patches first and runs across the N patches per position: (B*P, N, d)",
    "residual": "the MobileViT block has no residual add of its own: return the fusion's output as it is",
    "no_conv_kxk": "you skipped the local representation's 3x3 convolution: call the whole self.local_rep"
    " (conv_kxk, then conv_1x1)",
    "concat_local": "concatenate the block's *input* x, not the output of the local 3x3 convolution:"
    " self.fusion(torch.cat([x, y], dim=1))",
    "fold_order": "you merge the tokens as (b p) but split them back as (p b): use the same order both ways,"
    " rearrange(tokens, '(b p) n d -> b p n d', b=B)",
    "nearest": "resize with mode='bilinear' (align_corners=False), as timm and ml-cvnets do, not 'nearest'",
    "pad": "you pad the map with zeros to a multiple of the patch size; MobileViT resizes it bilinearly"
    " (F.interpolate, mode='bilinear', align_corners=False) and back, so that no token is padding",
    "align_corners": "resize with align_corners=False, as timm does (F.interpolate(..., mode='bilinear', align_corners=False))",
}

BLOCK_SECTION = "'The block, step by step' in chapter 5"
BLOCK_CLOSING_HINT = f"no typical mistake matches; re-read {BLOCK_SECTION}"


def _explain_block_crash(error, C, d, H, W, patch_size, calls=()):
    """A crash in the student's forward, with the hint for the typical mistake behind it (`calls`: the
    submodule calls recorded before the crash)."""
    text = str(error)
    ph, pw = patch_size
    ran = {c.name for c in calls}
    if f"normalized_shape=[{d}]" in text and "local_rep.conv_1x1" not in ran and "local_rep.conv_kxk.conv" in ran:
        return (f"the transformer's LayerNorm expects tokens of d = {d} channels and got C = {C}: your forward never"
                f" runs self.local_rep.conv_1x1, the 1x1 conv C -> d of the local representation")
    if f"to have {2 * C} channels, but got {C} channels" in text:
        return ("the fusion conv expects 2C channels (the concatenation of the input x and the global features y),"
                f" got C = {C}: did you add x + y? Concatenate: self.fusion(torch.cat([x, y], dim=1))")
    if f"to have {2 * C} channels, but got {C + d} channels" in text:
        return (f"the fusion conv got C + d = {C + d} channels: did you skip self.conv_proj? It projects the"
                f" transformer's d = {d} channels back to C = {C} before the concatenation")
    if H % ph or W % pw:
        Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
        return (f"{H}x{W} is not a multiple of the {ph}x{pw} patch: resize the map entering the transformer with"
                f" F.interpolate(y, size=({Hp}, {Wp}), mode='bilinear', align_corners=False) before unfolding and"
                f" back to ({H}, {W}) after folding, as timm does")
    return ""


def check_mobilevit_block(cls):
    """Check your `MobileViTBlock` class (only `forward` is yours) against the package's on several cases:
    batch 1 and 2, square and non-square maps, sizes that are not a multiple of the patch size (7x9, 5x4).

    Both blocks get the same weights (BatchNorm statistics randomised so that BN is not the identity)
    and run in eval mode. A wrong forward gets the typical mistake it equals, else the first submodule
    whose input differs from the package's and what that input is."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, C, d, depth, x_shape in BLOCK_CASES:
            case = (
                f"case '{description}' (MobileViTBlock(channels={C}, transformer_dim={d}, depth={depth},"
                f" patch_size=2), x of shape {x_shape})"
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                reference = randomize_batchnorm(MobileViTBlock(C, d, depth, patch_size=2), generator).eval()
                student = call(cls, C, d, depth, 2, case=case)
            load_reference_weights(student, reference, case)
            student.eval()
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad():
                expected, reference_calls = traced_call(reference, x, case)
                try:
                    actual, student_calls = traced_call(student, x.clone(), case)
                except CheckFailed as error:
                    hint = _explain_block_crash(error.__cause__ or error, C, d, *x_shape[-2:], reference.patch_size,
                                                getattr(error, "calls", ()))
                    if hint:
                        raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hint}") from error.__cause__
                    raise

            def block_mistakes():
                variants = _block_variants(reference, x)
                return [(variants[name], BLOCK_HINTS[name]) for name in BLOCK_HINTS if name in variants]

            with_closing_hint(
                lambda: expect_module_output(actual, expected, case, block_mistakes, student_calls, reference_calls, x,
                                             BLOCK_SECTION, probes=_attention_probes), BLOCK_CLOSING_HINT)

    run_check(
        "MobileViTBlock",
        body,
        f"equals the package's block on all {len(BLOCK_CASES)} cases (incl. 7x9 and 5x4 maps)",
    )


# (description, C, d, L, H, W, patch_size)
BLOCK_MACS_CASES = [
    ("MobileViT-XXS's stages.2 block on its 32x32 map (256x256 image)", 48, 64, 2, 32, 32, 2),
    ("C = 16, d = 24, one layer, 8x12 map", 16, 24, 1, 8, 12, 2),
    ("a 7x9 map, resized to 8x10 for the 2x2 patches: C = 16, d = 32, L = 2", 16, 32, 2, 7, 9, 2),
    ("4x4 patches on a 16x16 map: C = 8, d = 16, L = 3", 8, 16, 3, 16, 16, 4),
]


ONE_1X1 = ("you left out one of the two 1x1 convolutions, C d H W multiply-adds each: the local representation's"
           " conv_1x1 (C -> d) or conv_proj (d -> C) after the transformer")


def block_macs_variants(C, d, L, H, W, patch):
    """The multiply-adds of MobileViTBlock(C, d, L, patch_size=patch) on (1, C, H, W), then the typical
    wrong counts as (value, sentence)."""
    Hp, Wp = math.ceil(H / patch) * patch, math.ceil(W / patch) * patch
    P = patch * patch

    def macs(fusion_in=2 * C, proj=True, local_1x1=True, layers=L, size=(Hp, Wp), attention="patches"):
        h, w = size
        N = h * w // P
        linear = h * w * d * d * 8  # per layer, over all P*N = h*w tokens: qkv 3d^2 + proj d^2 + MLP 2 * 2d^2
        attn = {"patches": P * 2 * N * N * d, "all": 2 * (h * w) ** 2 * d, "pixels": N * 2 * P * P * d,
                "one_position": 2 * N * N * d}[attention]
        convs = 9 * C * C * H * W + (C * d * H * W if local_1x1 else 0) + (d * C * H * W if proj else 0)
        return convs + 9 * fusion_in * C * H * W + layers * (linear + attn)

    return macs(), [
        (macs(fusion_in=C), "the fusion convolution reads the concatenation [x, y]: 2C input channels,"
         " 9 * 2C * C * H * W"),
        # the two 1x1 convolutions cost the same, C d H W each: one sentence names both
        (macs(proj=False), ONE_1X1),
        (macs(local_1x1=False), ONE_1X1),
        (macs(layers=1) if L > 1 else None, f"the block has L = {L} transformer layers: count each"),
        (macs(attention="all"), "your attention term is 2 (HW)^2 d, one sequence over every pixel; MobileViT's"
         " runs across the N = HW / P patches, once per position: P * 2 N^2 d = 2 (HW)^2 d / P"),
        (macs(attention="pixels"), "your attention runs across the P pixels of each patch (N * 2 P^2 d);"
         " MobileViT's runs across the N patches, once per position: P * 2 N^2 d"),
        (macs(attention="one_position"), "there are P sequences of N patches (one per pixel position), each"
         " costing 2 N^2 d: multiply the attention term by P"),
        (macs(size=(H, W)) if (Hp, Wp) != (H, W) else None, f"the transformer runs on the map resized to the next"
         f" multiple of the patch size, {Hp}x{Wp}, so N = {Hp}*{Wp} / P (the convolutions stay at {H}x{W})"),
    ]


def check_mobilevit_block_macs(fn):
    """Check `fn(C, d, L, H, W, patch_size)` -> the multiply-adds of `MobileViTBlock(C, d, L, patch_size)`
    on one C x H x W map against `count_macs` (PyTorch's flop counter: convolutions and matmuls,
    attention as matmuls; BatchNorm, LayerNorm, activations, softmax and the resizing not counted), on
    XXS's stages.2 block, a map that is resized, and 4x4 patches."""

    def body():
        for description, C, d, L, H, W, patch in BLOCK_MACS_CASES:
            case = f"case '{description}' (mobilevit_block_macs(C={C}, d={d}, L={L}, H={H}, W={W}, patch_size={patch}))"
            with torch.device("meta"):  # shapes only: counting needs no numbers, and costs no time
                block, x = MobileViTBlock(C, d, L, patch_size=patch), torch.zeros(1, C, H, W)
            expected = count_macs(block, x)
            right, variants = block_macs_variants(C, d, L, H, W, patch)
            assert right == expected, (right, expected)  # the formula the hints are built on is right
            actual = call(fn, C, d, L, H, W, patch, case=case)
            expect_number(actual, expected, case, "multiply-add count", [v for v in variants if v[0] is not None])

    run_check(
        "mobilevit_block_macs",
        body,
        f"your count equals count_macs on all {len(BLOCK_MACS_CASES)} blocks",
    )


# ------------------------------------------------------------------------------------------- chapter 6
XXS_PARAMETERS = 1_272_024  # timm's mobilevit_xxs; the paper's 1.3 M

FIELD_HINTS = {
    "channels": "the stage's output channels (the paper's table, column XXS)",
    "num_mv2": "stages.0 has one MV2 block, stages.1 three, stages.2 to stages.4 one MV2 block before the MobileViT block",
    "stride": "the MV2 block of stages.0 keeps the size (stride 1); every later stage halves it (stride 2)",
    "transformer_dim": "d, the transformer width of the stage's MobileViT block (None: no MobileViT block)",
    "depth": "L, the number of transformer layers of the stage's MobileViT block (0 without one)",
    "expand_ratio": "XXS expands its MV2 blocks by 2; XS and S by 4",
    "final_channels": "the 1x1 conv before pooling: 4 x the last stage's channels (XXS 320; 640 is S's)",
    "stem_channels": "the 3x3 stride-2 stem has 16 channels in all three networks",
    "patch_size": "MobileViT uses 2x2 patches at every stage",
    "num_heads": "every transformer layer has 4 heads",
    "mlp_ratio": "the FFN is d -> 2d -> d",
}


def _compare_config(cfg):
    if not isinstance(cfg, MobileViTConfig):
        raise CheckFailed(f"expected a mobilevit_edu.MobileViTConfig, got {type(cfg).__name__}")
    if not isinstance(cfg.stages, (tuple, list)) or len(cfg.stages) != len(XXS.stages):
        n = len(cfg.stages) if isinstance(cfg.stages, (tuple, list)) else type(cfg.stages).__name__
        raise CheckFailed(f"stages: yours has {n} stages; XXS has {len(XXS.stages)} (after the stem, five stages of strides 1, 2, 2, 2, 2)")
    for k, (mine, ref) in enumerate(zip(cfg.stages, XXS.stages)):
        if not isinstance(mine, StageConfig):
            raise CheckFailed(f"stages.{k} (stages[{k}]) is a {type(mine).__name__}; expected a StageConfig")
        for field in dataclasses.fields(StageConfig):
            got, want = getattr(mine, field.name), getattr(ref, field.name)
            if got != want:
                raise CheckFailed(
                    f"stages.{k} (stages[{k}]): {field.name} is {got!r}; expected {want!r}."
                    f" Hint: {FIELD_HINTS[field.name]}"
                )
    for field in dataclasses.fields(MobileViTConfig):
        if field.name in ("name", "stages"):
            continue
        got, want = getattr(cfg, field.name), getattr(XXS, field.name)
        if got != want:
            hint = FIELD_HINTS.get(field.name, "keep the default")
            raise CheckFailed(f"{field.name} is {got!r}; expected {want!r}. Hint: {hint}")


def check_mobilevit_config(cfg):
    """Check your MobileViT-XXS configuration: `cfg` is a `MobileViTConfig` or a function returning one.

    Compares it with the package's `XXS` field by field (the message names the first wrong field and
    stage), then builds `MobileViT(cfg)` and checks its parameter count (1,272,024, as timm's) and
    that it classifies a 64x64 image."""

    def body():
        config = cfg() if callable(cfg) and not isinstance(cfg, MobileViTConfig) else cfg
        _compare_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = call(MobileViT, config, case="building MobileViT(cfg)")
        n = count_parameters(model)
        if n != XXS_PARAMETERS:
            raise CheckFailed(f"MobileViT(cfg) has {n:,} parameters; expected {XXS_PARAMETERS:,}")
        with torch.no_grad():
            out = call(model.eval(), torch.rand(1, config.in_chans, 64, 64), case="a 64x64 image through MobileViT(cfg)")
        if tuple(out.shape) != (1, config.num_classes):
            raise CheckFailed(f"MobileViT(cfg) gives shape {tuple(out.shape)} for one image; expected (1, {config.num_classes})")

    run_check(
        "MobileViT-XXS config",
        body,
        f"the paper's XXS, and MobileViT(cfg) has {XXS_PARAMETERS:,} parameters",
    )


# (description, x shape)
FORWARD_CASES = [("batch 2, 64x64 images", (2, 3, 64, 64)), ("batch 1, non-square 96x64 image", (1, 3, 96, 64))]


def check_mobilevit_forward(cls):
    """Check your `MobileViT` subclass's `forward` (stem -> five stages -> 1x1 conv -> global average
    pool -> dropout -> linear head) against the package's, with the same random weights, XXS config,
    on batch 1 and 2, square and non-square images."""

    def body():
        generator = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            reference = randomize_batchnorm(MobileViT(XXS), generator).eval()
            student = call(cls, XXS, case=f"building {getattr(cls, '__name__', cls)}(XXS)")
        load_reference_weights(student, reference, "the XXS network")
        student.eval()
        for description, shape in FORWARD_CASES:
            case = f"case '{description}' (x of shape {shape})"
            x = torch.rand(shape, generator=generator)
            with torch.no_grad():
                expected, reference_calls = traced_call(reference, x, case)
                try:
                    actual, student_calls = traced_call(student, x.clone(), case)
                except CheckFailed as error:
                    text = str(error.__cause__ or error)
                    if "mat1 and mat2 shapes cannot be multiplied" in text and f"x{XXS.stages[-1].channels}" in text:
                        hint = (f"the head gets {XXS.stages[-1].channels} features, the last stage's channels: apply"
                                f" self.final_conv (1x1 conv to {XXS.final_channels}) before pooling")
                    elif "mat1 and mat2 shapes cannot be multiplied" in text:
                        hint = "pool over the spatial dimensions before the head: x.mean(dim=(2, 3)) gives (B, C)"
                    elif "channels" in text:
                        hint = "run the stem first, then each stage of self.stages in order"
                    else:
                        hint = ""
                    if hint:
                        raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hint}") from error.__cause__
                    raise
                h = reference.final_conv(reference.features(x)[-1])
                max_pooled = reference.head(h.amax(dim=(2, 3)))
            hints = [
                (lambda a, e, v=max_pooled: torch.allclose(a, v, atol=1e-4, rtol=1e-4),
                 "MobileViT pools with the global *average*: x.mean(dim=(2, 3)), not the maximum"),
            ]
            expect_close(actual, expected, case, atol=1e-4, rtol=1e-4, hints=hints)

    run_check(
        "MobileViT.forward",
        body,
        f"equals the package's on all {len(FORWARD_CASES)} cases (batch 1 and 2, 96x64)",
    )


# (description, H, W) of the input image
SIZE_CASES = [
    ("256x256, the paper's size", 256, 256),
    ("224x224", 224, 224),
    ("250x250", 250, 250),
    ("non-square 200x264", 200, 264),
    ("odd 97x131", 97, 131),
]


def stage_size_variants(H, W):
    """The right sizes (stem, stages.0 ... stages.4) and the typical wrong ones, as (value, sentence)."""

    def sizes(halve=lambda n: (n + 1) // 2, stem=True, stage0=False):
        h, w = H, W
        out = []
        for k, stride in enumerate((2, 1, 2, 2, 2, 2)):
            if (stride == 2 and (k > 0 or stem)) or (k == 1 and stage0):
                h, w = halve(h), halve(w)
            out.append((h, w))
        return out

    return sizes(), [
        (sizes(halve=lambda n: n // 2), "a 3x3 stride-2 convolution with padding 1 gives ceil(n / 2) = (n + 1) // 2"
         " rows and columns (conv_output_size(n, 3, 2, 1)), not n // 2"),
        (sizes(stem=False), "the stem halves the image too: a 3x3 convolution with stride 2"),
        (sizes(stage0=True), "stages.0 keeps the size (its MV2 block has stride 1); stages.1 to stages.4 halve it"),
    ]


def check_stage_sizes(fn):
    """Check `fn(H, W)` -> the spatial sizes [(h, w) of the stem's output, then of stages.0 ... stages.4]
    of MobileViT for an H x W image, against the sizes of the package's network's feature maps, on
    256x256, 224x224, 250x250, 200x264 and 97x131."""

    def body():
        with torch.device("meta"):  # shapes only: the network runs on shapes, without numbers
            model = MobileViT(XXS).eval()
        for description, H, W in SIZE_CASES:
            case = f"case '{description}' (stage_sizes({H}, {W}))"
            with torch.no_grad(), torch.device("meta"):
                x = torch.zeros(1, 3, H, W)
                expected = [tuple(model.stem(x).shape[-2:])] + [tuple(f.shape[-2:]) for f in model.features(x)]
            right, variants = stage_size_variants(H, W)
            assert right == expected, (right, expected)  # the formula the hints are built on is right
            actual = call(fn, H, W, case=case)
            try:
                actual = [tuple(int(n) for n in size) for size in actual]
            except (TypeError, ValueError):
                raise CheckFailed(f"{case}: return a list of (h, w) pairs, one for the stem and one per stage; got {actual!r}") from None
            if len(actual) != len(expected):
                raise CheckFailed(f"{case}: your list has {len(actual)} sizes; expected {len(expected)}: the stem's"
                                  " output, then stages.0, stages.1, stages.2, stages.3 and stages.4")
            if actual != expected:
                k = next(i for i, (a, e) in enumerate(zip(actual, expected)) if a != e)
                where = "the stem" if k == 0 else f"stages.{k - 1}"
                message = f"{case}: your size for {where} is {actual[k]}; expected {expected[k]}"
                matches = {sentence for value, sentence in variants if value == actual and value != expected}
                raise CheckFailed(message + (f". Hint: {matches.pop()}" if len(matches) == 1 else ""))

    run_check(
        "stage_sizes",
        body,
        f"the network's feature map sizes on all {len(SIZE_CASES)} image sizes",
    )
