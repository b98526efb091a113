"""Checks for chapters 1 and 2: convolution as unfold -> matmul -> fold, and the MV2 block.

- `check_conv2d_unfold(fn)`: your `conv2d_unfold(x, weight, bias, stride, padding, dilation, groups)`
  against `F.conv2d`.
- `check_inverted_residual(cls)`: your `InvertedResidual` class (only `forward` is yours) against
  the package's, with the same weights.
"""

import torch
import torch.nn.functional as F

from ..conv import conv_output_size
from ..layers import InvertedResidual
from ._common import CheckFailed, call, expect_close, load_reference_weights, randomize_batchnorm, run_check

# ------------------------------------------------------------------------------------------- chapter 1
# (description, x shape, weight shape, with bias, stride, padding, dilation, groups)
CONV_CASES = [
    ("batch 1, the seed example 3x10x12 -> 32x7x8", (1, 3, 10, 12), (32, 3, 4, 5), False, 1, 0, 1, 1),
    ("batch 3, odd non-square 9x7 input, with bias", (3, 4, 9, 7), (6, 4, 3, 3), True, 1, 0, 1, 1),
    ("stride 2 on an 11x8 input", (2, 3, 11, 8), (5, 3, 3, 3), True, 2, 0, 1, 1),
    ("padding 1 on a 7x10 input", (1, 3, 7, 10), (4, 3, 3, 3), False, 1, 1, 1, 1),
    ("dilation 2 (padding 2) on a 12x9 input", (2, 2, 12, 9), (3, 2, 3, 3), True, 1, 2, 2, 1),
    ("groups 2 (4 -> 6 channels)", (2, 4, 8, 6), (6, 2, 3, 3), True, 1, 1, 1, 2),
    ("depthwise (groups = 6 = channels), stride 2, padding 1", (1, 6, 9, 9), (6, 1, 3, 3), False, 2, 1, 1, 6),
    ("a 1x1 (pointwise) convolution with bias", (2, 5, 5, 7), (8, 5, 1, 1), True, 1, 0, 1, 1),
]


def _conv_hints(x, weight, bias, stride, padding, dilation, groups):
    """Sentences for the typical mistakes, each with a test on the student's output."""
    B, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape

    def shape_with(s, p, d):
        return (B, C_out, conv_output_size(H, kh, s, p, d), conv_output_size(W, kw, s, p, d))

    def has_shape(shape):
        return lambda actual, expected: tuple(actual.shape) == shape and shape != tuple(expected.shape)

    H_out, W_out = conv_output_size(H, kh, stride, padding, dilation), conv_output_size(W, kw, stride, padding, dilation)
    hints = [
        (
            has_shape((B, C_out, W_out, H_out)),
            f"your output is (B, C_out, W_out, H_out) = {(B, C_out, W_out, H_out)}: the L = H_out*W_out columns"
            " run along each row (row-major), so reshape them as (H_out, W_out), not (W_out, H_out)",
        ),
        (has_shape(shape_with(stride, padding, 1)), "that is the size without dilation: pass dilation to F.unfold"),
        (has_shape(shape_with(stride, 0, dilation)), "that is the size without padding: pass padding to F.unfold"),
        (has_shape(shape_with(1, padding, dilation)), "that is the size with stride 1: pass stride to F.unfold"),
    ]
    if bias is not None:
        hints.append(
            (
                lambda actual, expected: torch.allclose(actual + bias[:, None, None], expected, atol=1e-4, rtol=1e-4),
                "you forgot the bias: add bias[c] to every pixel of output channel c",
            )
        )
    if groups > 1:
        hints.append(
            (
                lambda actual, expected: True,
                f"with groups={groups}, output channel block g sees only input channels block g: split the"
                f" unfolded rows into {groups} groups and multiply each with its own kernels",
            )
        )
    return hints


def check_conv2d_unfold(fn):
    """Check `fn(x, weight, bias, stride, padding, dilation, groups)` against `F.conv2d` on several cases:
    batch 1 and 3, odd and non-square sizes, stride 2, padding, dilation 2, groups 2, depthwise, bias or not."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, x_shape, w_shape, with_bias, stride, padding, dilation, groups in CONV_CASES:
            x = torch.randn(x_shape, generator=generator)
            weight = torch.randn(w_shape, generator=generator)
            bias = torch.randn(w_shape[0], generator=generator) if with_bias else None
            case = (
                f"case '{description}' (x {tuple(x_shape)}, weight {tuple(w_shape)},"
                f" bias {'yes' if with_bias else 'None'}, stride={stride}, padding={padding},"
                f" dilation={dilation}, groups={groups})"
            )
            hints = _conv_hints(x, weight, bias, stride, padding, dilation, groups)
            try:
                actual = call(fn, x, weight, bias, stride, padding, dilation, groups, case=case)
            except CheckFailed as error:
                if groups > 1:  # a crash on a grouped case is nearly always a matmul with the wrong shapes
                    raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hints[-1][1]}") from error.__cause__
                raise
            expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
            expect_close(actual, expected, case, atol=1e-4, rtol=1e-4, hints=hints)

    run_check(
        "conv2d_unfold",
        body,
        f"equals F.conv2d on all {len(CONV_CASES)} cases:\n  batch 1 and 3, odd and non-square sizes, stride,"
        " padding, dilation,\n  groups, depthwise, with and without bias",
    )


# ------------------------------------------------------------------------------------------- chapter 2
# (description, in_channels, out_channels, stride, expand_ratio, x shape)
MV2_CASES = [
    ("stride 1, 16 -> 16 channels: the residual applies", 16, 16, 1, 2, (2, 16, 9, 11)),
    ("stride 2, 16 -> 24 channels: no residual", 16, 24, 2, 2, (2, 16, 11, 9)),
    ("stride 1 but 16 -> 24 channels: no residual", 16, 24, 1, 2, (1, 16, 8, 8)),
    ("stride 2 with 16 -> 16 channels: no residual", 16, 16, 2, 4, (1, 16, 10, 10)),
    ("expand_ratio 1 (no expansion: expand is Identity), residual", 24, 24, 1, 1, (1, 24, 7, 5)),
]


def _mv2_variants(reference, x):
    """Outputs of the typical wrong forwards, computed from the reference's own submodules."""
    hidden = reference.depthwise(reference.expand(x))
    y = reference.project(hidden)
    pre_bn = reference.project.conv(hidden)
    variants = {"no_residual": y, "silu_after_project": F.silu(y)}
    if reference.use_residual:
        variants["silu_after_project"] = x + F.silu(y)
        variants["residual_before_bn"] = reference.project.norm(x + pre_bn)
        variants["silu_after_residual"] = F.silu(x + y)
    return variants


def _mv2_hints(variants):
    sentences = {
        "no_residual": "you forgot the residual: return x + y when self.use_residual is True",
        "silu_after_project": "the projection is linear: no activation after self.project"
        " (its BatchNorm is the last operation before the residual)",
        "residual_before_bn": "you add x before the projection's BatchNorm: add it after the whole"
        " self.project (conv and BN)",
        "silu_after_residual": "no activation after the residual sum: return x + y as it is",
    }

    def close_to(name):
        return lambda actual, expected: torch.allclose(actual, variants[name], atol=1e-5, rtol=1e-4)

    return [(close_to(name), sentences[name]) for name in sentences if name in variants]


def check_inverted_residual(cls):
    """Check your `InvertedResidual` class (its `forward`) against the package's on several cases:
    with and without residual (stride 2, unequal channels), expand_ratio 1, batch 1, odd sizes.

    Both modules get the same weights (BatchNorm statistics randomised so BN is not the identity)
    and run in eval mode."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, c_in, c_out, stride, ratio, x_shape in MV2_CASES:
            case = (
                f"case '{description}' (InvertedResidual({c_in}, {c_out}, stride={stride},"
                f" expand_ratio={ratio}), x {tuple(x_shape)})"
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                reference = randomize_batchnorm(InvertedResidual(c_in, c_out, stride, ratio), generator).eval()
                student = call(cls, c_in, c_out, stride, ratio, case=case)
            load_reference_weights(student, reference, case)
            student.eval()
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad():
                expected = reference(x)
                try:
                    actual = call(student, x.clone(), case=case)
                except CheckFailed as error:
                    if not reference.use_residual and "size of tensor" in str(error):
                        raise CheckFailed(
                            f"{str(error).rstrip('.')}. Hint: x + y needs x and y of the same shape; here the block changes"
                            f" {'the size (stride 2)' if stride != 1 else 'the number of channels'},"
                            " so there is no residual: add x only when self.use_residual is True"
                            " (stride 1 and in_channels == out_channels)"
                        ) from error.__cause__
                    raise
                hints = _mv2_hints(_mv2_variants(reference, x))
            expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=hints)

    run_check(
        "InvertedResidual",
        body,
        f"your forward equals the package's on all {len(MV2_CASES)} cases:\n  with and without the residual,"
        " stride 2, unequal channels,\n  expand_ratio 1, batch 1, odd sizes",
    )
