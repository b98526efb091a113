"""Checks for chapters 4 to 6: MobileViT's patches, the MobileViT block, the networks' configs.

- `check_unfold_patches(fn)`: your `unfold_patches(x, patch_size)`, (B, C, H, W) -> (B, P, N, C).
- `check_fold_patches(fn)`: your `fold_patches(patches, output_size, patch_size)`, its exact inverse.
- `check_mobilevit_block(cls)`: your `MobileViTBlock` class (only `forward` is yours) against the
  package's, with the same weights, on sizes that are and are not multiples of the patch size.
- `check_mobilevit_config(cfg)`: your XXS `MobileViTConfig` (or a function returning it) against the
  package's `XXS`, field by field, then the parameter count of `MobileViT(cfg)` (1,272,024).
- `check_mobilevit_forward(cls)`: your `MobileViT.forward` (stem -> stages -> 1x1 conv -> pool -> head).
"""

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..block import MobileViTBlock
from ..models import XXS, MobileViT, MobileViTConfig, StageConfig
from ..patches import fold_patches, unfold_patches
from ..profile import count_parameters
from ._common import CheckFailed, call, expect_close, load_reference_weights, randomize_batchnorm, run_check

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


# ------------------------------------------------------------------------------------------- chapter 5
# (description, channels, transformer_dim, depth, x shape)
BLOCK_CASES = [
    ("batch 2, 8x8 map (a multiple of the 2x2 patch)", 16, 24, 2, (2, 16, 8, 8)),
    ("batch 1, non-square 6x10 map", 16, 24, 2, (1, 16, 6, 10)),
    ("batch 1, 7x9 map: not a multiple of the patch size", 16, 24, 2, (1, 16, 7, 9)),
    ("batch 2, 5x4 map, one transformer layer, 8 channels", 8, 12, 1, (2, 8, 5, 4)),
]


def _global_rep_variant(block, y, layout="patches", final_norm=True, mode="bilinear"):
    """The block's global representation, or a typical wrong version of it, from its own submodules."""
    B, d, H, W = y.shape
    ph, pw = block.patch_size
    Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
    resize = {"mode": mode} if mode == "nearest" else {"mode": mode, "align_corners": False}
    if (Hp, Wp) != (H, W):
        y = F.interpolate(y, size=(Hp, Wp), **resize)
    patches = unfold_patches(y, block.patch_size)  # (B, P, N, d)
    P, N = patches.shape[1:3]
    if layout == "patches":  # right: attention across the N patches, one sequence per position p
        tokens = rearrange(patches, "b p n d -> (b p) n d")
    else:  # wrong: attention across the P pixels of each patch
        tokens = rearrange(patches, "b p n d -> (b n) p d")
    tokens = block.transformer(tokens)
    if final_norm:
        tokens = block.norm(tokens)
    if layout == "patches":
        patches = rearrange(tokens, "(b p) n d -> b p n d", p=P)
    else:
        patches = rearrange(tokens, "(b n) p d -> b p n d", n=N)
    y = fold_patches(patches, (Hp, Wp), block.patch_size)
    if (Hp, Wp) != (H, W):
        y = F.interpolate(y, size=(H, W), **resize)
    return y


def _block_variants(block, x):
    """Outputs of the typical wrong forwards, computed from the reference block's submodules."""
    y = block.local_rep(x)
    right = block.conv_proj(_global_rep_variant(block, y))
    variants = {
        "concat_order": block.fusion(torch.cat([right, x], dim=1)),
        "no_final_norm": block.fusion(torch.cat([x, block.conv_proj(_global_rep_variant(block, y, final_norm=False))], 1)),
        "across_pixels": block.fusion(torch.cat([x, block.conv_proj(_global_rep_variant(block, y, layout="pixels"))], 1)),
        "residual": x + block.fusion(torch.cat([x, right], dim=1)),
    }
    if tuple(x.shape[-2:]) != tuple(math.ceil(s / p) * p for s, p in zip(x.shape[-2:], block.patch_size)):
        variants["nearest"] = block.fusion(
            torch.cat([x, block.conv_proj(_global_rep_variant(block, y, mode="nearest"))], 1)
        )
    return variants


BLOCK_HINTS = {
    "concat_order": "you concatenate [y, x]; the fusion's weights expect the block's input first: torch.cat([x, y], dim=1)",
    "no_final_norm": "you forgot the LayerNorm after the transformer layers: tokens = self.norm(self.transformer(tokens))",
    "across_pixels": "your attention runs across the P pixels of each patch, (B*N, P, d); MobileViT's runs across"
    " the N patches, separately for each pixel position: (B*P, N, d)",
    "residual": "the MobileViT block has no residual add of its own: return the fusion's output as it is",
    "nearest": "resize with mode='bilinear' (align_corners=False), as timm and ml-cvnets do, not 'nearest'",
}


def _explain_block_crash(error, C, d, H, W, patch_size):
    """A crash in the student's forward, with the hint for the typical mistake behind it."""
    text = str(error)
    ph, pw = patch_size
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
    and run in eval mode."""

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
                expected = reference(x)
                try:
                    actual = call(student, x.clone(), case=case)
                except CheckFailed as error:
                    hint = _explain_block_crash(error.__cause__ or error, C, d, *x_shape[-2:], reference.patch_size)
                    if hint:
                        raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hint}") from error.__cause__
                    raise
                variants = _block_variants(reference, x)
            hints = [
                (lambda a, e, v=variants[name]: torch.allclose(a, v, atol=1e-5, rtol=1e-4), BLOCK_HINTS[name])
                for name in BLOCK_HINTS
                if name in variants
            ]
            expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=hints)

    run_check(
        "MobileViTBlock",
        body,
        f"equals the package's block on all {len(BLOCK_CASES)} cases (incl. 7x9 and 5x4 maps)",
    )


# ------------------------------------------------------------------------------------------- chapter 6
XXS_PARAMETERS = 1_272_024  # timm's mobilevit_xxs; the paper's 1.3 M

FIELD_HINTS = {
    "channels": "the stage's output channels (the paper's table, column XXS)",
    "num_mv2": "stage 1 has one MV2 block, stage 2 three, stages 3-5 one MV2 block before the MobileViT block",
    "stride": "the first MV2 block of stage 1 keeps the size (stride 1); every later stage halves it (stride 2)",
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
            raise CheckFailed(f"stage {k + 1} (stages[{k}]) is a {type(mine).__name__}; expected a StageConfig")
        for field in dataclasses.fields(StageConfig):
            got, want = getattr(mine, field.name), getattr(ref, field.name)
            if got != want:
                raise CheckFailed(
                    f"stage {k + 1} (stages[{k}]): {field.name} is {got!r}; expected {want!r}."
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
                expected = reference(x)
                try:
                    actual = call(student, x.clone(), case=case)
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
