"""Checks of the tasks of exercises 4-6 that ask for what the chapters did not hand over.

- `check_block_reach` (exercise 4): which input pixels reach one output pixel through a whole
  MobileViT block, by index arithmetic; compared with autograd through a real block.
- `check_global_rep_by_fold` (exercise 5): the global representation written as chapter 1's recipe,
  `F.unfold` -> transformer -> `F.fold`; compared with `MobileViTBlock.global_rep`.
- `check_parameters_from_config` (exercise 6): a network's parameter count from its configuration
  alone; compared with the count of the built network.
"""

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange

from ..block import MobileViTBlock
from ..layers import make_divisible
from ..models import MobileViT, MobileViTConfig, StageConfig, XS, XXS, S
from ..profile import count_parameters
from ._common import CheckFailed, call, calls_by_name, run_check


# ------------------------------------------------------------------------------------------ exercise 4
def _window(mask, n):
    """(H, W) bool: every pixel within an n x n window (centred, inside the map) of a marked pixel."""
    return F.max_pool2d(mask[None, None].float(), n, stride=1, padding=n // 2)[0, 0] > 0


def _partners(H, W, ph, pw, mask):
    """(H, W) bool: the pixels at the same position in their patch as some marked pixel."""
    rows, cols = torch.arange(H)[:, None], torch.arange(W)[None, :]
    out = torch.zeros(H, W, dtype=torch.bool)
    for a, b in mask.nonzero().tolist():
        out |= (rows % ph == a % ph) & (cols % pw == b % pw)
    return out


def reference_block_reach(H, W, patch_size, pixel, kernel_size=3):
    """(H, W) bool: the input pixels with a path to output pixel `pixel` of a MobileViT block
    (n x n conv, 1x1, transformer across patches, 1x1, concatenation with the input, n x n conv)."""
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    out = torch.zeros(H, W, dtype=torch.bool)
    out[pixel] = True
    fused = _window(out, kernel_size)  # the fusion conv reads these pixels of x and of the global features
    return _window(_partners(H, W, ph, pw, fused), kernel_size) | fused


# (description, H, W, patch size, pixel)
REACH_CASES = [
    ("8x8 map, 2x2 patches, an inner pixel", 8, 8, 2, (3, 4)),
    ("16x16 map, 4x4 patches, the corner (0, 0)", 16, 16, 4, (0, 0)),
    ("16x16 map, 4x4 patches, pixel (5, 6)", 16, 16, 4, (5, 6)),
    ("12x12 map, 3x3 patches, the corner (11, 0)", 12, 12, 3, (11, 0)),
    ("non-square 8x16 map, 2x4 patches, pixel (7, 9)", 8, 16, (2, 4), (7, 9)),
    ("16x16 map, 8x8 patches, pixel (8, 3)", 16, 16, 8, (8, 3)),
]


def _reach_variants(H, W, patch, pixel):
    """(mask, sentence) for the typical mistakes."""
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    out = torch.zeros(H, W, dtype=torch.bool)
    out[pixel] = True
    return [
        (_window(_partners(H, W, ph, pw, out), 3),
         "this is chapter 4's local-then-global path only; the block's last 3x3 convolution (the fusion) "
         "also reads the global features of the output pixel's 8 neighbours, whose positions differ"),
        (_partners(H, W, ph, pw, _window(out, 3)) | _window(out, 3),
         "you left out the 3x3 convolution before the transformer (local_rep): every pixel the "
         "transformer reads already mixed its own 3x3 neighbourhood"),
        (_partners(H, W, ph, pw, out),
         "these are only the pixels the output pixel attends to; add the two 3x3 convolutions around the transformer"),
        (torch.ones(H, W, dtype=torch.bool),
         "not every pixel reaches every other: with large patches some input pixels have no path"),
    ]


def check_block_reach(fn):
    """Check `fn(H, W, patch_size, pixel)` -> (H, W) bool: the input pixels that reach output pixel
    `pixel` through a whole MobileViT block with 3x3 convolutions, against the index arithmetic of the
    block, which the tests of this module compare with autograd through a real block."""

    def body():
        for description, H, W, patch, pixel in REACH_CASES:
            case = f"case '{description}' (block_reach({H}, {W}, patch_size={patch}, pixel={pixel}))"
            expected = reference_block_reach(H, W, patch, pixel)
            actual = call(fn, H, W, patch, pixel, case=case)
            if not isinstance(actual, torch.Tensor):
                raise CheckFailed(f"{case}: expected a boolean torch.Tensor of shape ({H}, {W}), got {type(actual).__name__}")
            if tuple(actual.shape) != (H, W):
                raise CheckFailed(f"{case}: your mask has shape {tuple(actual.shape)}; expected ({H}, {W}), one entry per input pixel")
            actual = actual.bool()
            if torch.equal(actual, expected):
                continue
            wrong = tuple(int(t) for t in (actual ^ expected).nonzero()[0])
            message = (f"{case}: your mask marks {int(actual.sum())} input pixels; expected {int(expected.sum())}"
                       f" (e.g. {wrong} is {'missing' if expected[wrong] else 'marked but has no path'})")
            hint = next((s for v, s in _reach_variants(H, W, patch, pixel) if torch.equal(actual, v)), "")
            raise CheckFailed(message + (f". Hint: {hint}" if hint else
                                         ". Hint: go backwards from the output pixel: the fusion's 3x3 window, then for each of"
                                         " its pixels the attention partners, then their 3x3 windows (local_rep)"))

    run_check("block_reach", body, f"right on all {len(REACH_CASES)} cases (corners, non-square maps and patches)")


# ------------------------------------------------------------------------------------------ exercise 5
# (description, channels, transformer_dim, depth, patch size, y shape (B, d, H, W))
FOLD_CASES = [
    ("batch 2, 8x8 map, 2x2 patches", 16, 24, 2, 2, (2, 24, 8, 8)),
    ("batch 1, non-square 6x10 map, 2x2 patches", 16, 24, 1, 2, (1, 24, 6, 10)),
    ("batch 2, 12x12 map, 3x3 patches", 8, 16, 1, 3, (2, 16, 12, 12)),
    ("batch 1, 8x12 map, non-square 2x4 patches", 8, 16, 2, (2, 4), (1, 16, 8, 12)),
]


def _fold_variants(block, y):
    """(output, sentence) for the typical mistakes."""
    B, d, H, W = y.shape
    ph, pw = block.patch_size
    cols = F.unfold(y, (ph, pw), stride=(ph, pw))  # (B, d*P, N), d the slowest
    out = []

    def back(tokens, pattern, **sizes):
        return F.fold(rearrange(tokens, pattern, b=B, **sizes), (H, W), (ph, pw), stride=(ph, pw))

    t = rearrange(cols, "b (d p) n -> (b n) p d", d=d)  # attention within each patch: the flipped axis
    out.append((back(block.norm(block.transformer(t)), "(b n) p d -> b (d p) n"),
                "your transformer attends among the P positions of each patch, as a kernel mixes a window; "
                "MobileViT's attends across the N patches, one sequence per position: tokens (B*P, N, d)"))
    t = rearrange(cols, "b (p d) n -> (b p) n d", d=d)  # channel and position swapped
    out.append((back(block.norm(block.transformer(t)), "(b p) n d -> b (p d) n"),
                "F.unfold orders each column (channel, kernel row, kernel column): the channel is the slowest, "
                "so a column splits as '(d p)', not '(p d)'"))
    t = rearrange(cols, "b (d p) n -> (b p) n d", d=d)
    out.append((back(block.transformer(t), "(b p) n d -> b (d p) n"),
                "you left out the final LayerNorm (block.norm) after the transformer layers"))
    return out


def check_global_rep_by_fold(fn):
    """Check `fn(block, y)` -> the global representation of `block` (a MobileViTBlock) on y (B, d, H, W),
    written with F.unfold and F.fold, against `block.global_rep(y)`; unfold_patches, fold_patches and
    global_rep itself are not allowed."""

    def body():
        used = calls_by_name(fn, ["unfold_patches", "fold_patches", "global_rep"])
        if used:
            raise CheckFailed(f"your function calls {', '.join(used)}; the task is to write it with F.unfold and F.fold")
        for k, (description, C, d, L, patch, shape) in enumerate(FOLD_CASES):
            torch.manual_seed(k)
            block = MobileViTBlock(C, d, L, patch_size=patch).eval()
            y = torch.randn(shape)
            case = f"case '{description}' (y {tuple(shape)})"
            with torch.no_grad():
                expected = block.global_rep(y)
                actual = call(fn, block, y, case=case)
            if not isinstance(actual, torch.Tensor):
                raise CheckFailed(f"{case}: expected a tensor of shape {tuple(expected.shape)}, got {type(actual).__name__}")
            if actual.shape != expected.shape:
                raise CheckFailed(f"{case}: your output has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}, y's shape")
            if torch.allclose(actual, expected, atol=1e-5, rtol=1e-4):
                continue
            with torch.no_grad():
                hint = next((s for v, s in _fold_variants(block, y) if torch.allclose(actual, v, atol=1e-5, rtol=1e-4)), "")
            raise CheckFailed(f"{case}: your output differs from global_rep's by up to"
                              f" {(actual - expected).abs().max().item():.3g}"
                              + (f". Hint: {hint}" if hint else ". Hint: F.unfold with kernel = stride = the patch"
                                 " size gives (B, d*P, N); make it (B*P, N, d), run block.transformer and block.norm,"
                                 " and undo each step in reverse order before F.fold"))

    run_check("global_rep_by_fold", body,
              f"equals MobileViTBlock.global_rep on all {len(FOLD_CASES)} cases (square and non-square maps and patches)")


# ------------------------------------------------------------------------------------------ exercise 6
def reference_parameters(cfg, bn=True, final_norm=True, hidden_from_output=False, divisible=True):
    """Parameters of MobileViT(cfg) from the configuration alone; the flags make the typical mistakes."""
    def conv_norm(c_in, c_out, k=1, groups=1):  # conv without bias, BatchNorm (weight, bias)
        return c_out * (c_in // groups) * k * k + (2 * c_out if bn else 0)

    def mv2(c_in, c_out):
        width = c_out if hidden_from_output else c_in
        hidden = make_divisible(round(width * cfg.expand_ratio)) if divisible else round(width * cfg.expand_ratio)
        if cfg.expand_ratio == 1:
            return conv_norm(c_in, c_in, 3, groups=c_in) + conv_norm(c_in, c_out)
        return conv_norm(c_in, hidden) + conv_norm(hidden, hidden, 3, groups=hidden) + conv_norm(hidden, c_out)

    def transformer_layer(d):
        m = int(d * cfg.mlp_ratio)
        return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * m + m) + (m * d + d)

    def mobilevit_block(C, d, L):
        return (conv_norm(C, C, 3) + C * d + L * transformer_layer(d) + (2 * d if final_norm else 0)
                + conv_norm(d, C) + conv_norm(2 * C, C, 3))

    total = conv_norm(cfg.in_chans, cfg.stem_channels, 3)
    channels = cfg.stem_channels
    for stage in cfg.stages:
        for _ in range(stage.num_mv2):
            total += mv2(channels, stage.channels)
            channels = stage.channels
        if stage.transformer_dim is not None:
            total += mobilevit_block(stage.channels, stage.transformer_dim, stage.depth)
    total += conv_norm(channels, cfg.final_channels)
    return total + cfg.final_channels * cfg.num_classes + cfg.num_classes


ODD = MobileViTConfig(  # widths whose expanded width is not a multiple of 8, 10 classes
    name="odd_mobilevit",
    stages=(
        StageConfig(12, num_mv2=2, stride=1),
        StageConfig(20, num_mv2=2, stride=2),
        StageConfig(36, num_mv2=1, stride=2, transformer_dim=40, depth=1),
        StageConfig(44, num_mv2=1, stride=2, transformer_dim=56, depth=2),
        StageConfig(52, num_mv2=1, stride=2),
    ),
    expand_ratio=3.0,
    final_channels=100,
    num_classes=10,
)
PARAMETER_CASES = [("MobileViT-XXS", XXS), ("MobileViT-XS", XS), ("MobileViT-S", S),
                   ("a made-up network: expansion 3, widths 12-52, 10 classes", ODD)]


def check_parameters_from_config(fn):
    """Check `fn(cfg)` -> the number of parameters of MobileViT(cfg), computed from the configuration,
    against the count of the built network (me.count_parameters), on XXS, XS, S and a made-up network."""

    def body():
        used = calls_by_name(fn, ["MobileViT", "count_parameters", "parameters", "numel", "mobilevit_xxs",
                                  "mobilevit_xs", "mobilevit_s", "make_stage", "MobileViTBlock", "InvertedResidual"])
        if used:
            raise CheckFailed(f"your function calls {', '.join(used)}: it builds a network or counts its tensors;"
                              " the task is to count from the configuration alone")
        for description, cfg in PARAMETER_CASES:
            case = f"case '{description}'"
            expected = count_parameters(MobileViT(cfg))
            actual = call(fn, dataclasses.replace(cfg), case=case)
            if not isinstance(actual, int) or isinstance(actual, bool):
                raise CheckFailed(f"{case}: expected an int, got {type(actual).__name__} ({actual!r})")
            if actual == expected:
                continue
            variants = [
                (dict(bn=False), "you left out BatchNorm's parameters: a scale and a shift per channel after every convolution"),
                (dict(final_norm=False), "you left out the LayerNorm after each block's transformer layers (2d parameters)"),
                (dict(hidden_from_output=True), "an MV2 block's hidden width is r times its INPUT channels, not its output channels"),
                (dict(divisible=False), "the hidden width is rounded by make_divisible (chapter 2) when r*C is not a multiple of 8"),
            ]
            hint = next((s for flags, s in variants if actual == reference_parameters(cfg, **flags)), "")
            raise CheckFailed(f"{case}: you count {actual:,} parameters; the built network has {expected:,}"
                              f" ({actual - expected:+,})" + (f". Hint: {hint}" if hint else
                              ". Hint: count part by part (stem, each MV2 block, each MobileViT block, the final"
                              " 1x1 conv, the classifier) and compare with me.count_parameters on each part"))

    run_check("parameters_from_config", body,
              f"right on all {len(PARAMETER_CASES)} networks (XXS, XS, S and one with odd widths)")
