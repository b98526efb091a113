"""Checks for chapters 1 and 2: convolution as unfold -> matmul -> fold, and the MV2 block.

- `check_conv2d_unfold(fn)`: your `conv2d_unfold(x, weight, bias, stride, padding, dilation, groups)`
  against `F.conv2d`, which it must not call.
- `check_receptive_field(fn)`: your `receptive_field(layers)`, the receptive field of a stack of
  convolutions, against the one autograd measures.
- `check_inverted_residual(cls)`: your `InvertedResidual` class (only `forward` is yours) against
  the package's, with the same weights.
- `check_mv2_cost(fn)`: your hand count `mv2_cost(...)` -> (parameters, multiply-adds) of an MV2 block
  against `count_parameters` and `count_macs`.
"""

import torch
import torch.nn.functional as F

from ..conv import conv_output_size
from ..layers import InvertedResidual, make_divisible
from ..profile import count_macs, count_parameters
from ._common import (
    CheckFailed,
    ForbiddenCall,
    call,
    calls_by_name,
    expect_close,
    expect_number,
    expect_module_output,
    forbid,
    load_reference_weights,
    randomize_batchnorm,
    run_check,
    traced_call,
    with_closing_hint,
)

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


# What conv2d_unfold replaces: calling any of these is not an answer. nn.Conv2d's forward calls F.conv2d.
FORBIDDEN_CONVS = [(F, "conv2d"), (torch, "conv2d"), (torch, "convolution"), (torch, "_convolution")]
FORBIDDEN_NAMES = {"conv2d", "Conv2d", "convolution", "_convolution"}
FORBIDDEN_MESSAGE = (
    "your conv2d_unfold calls {what}, the very convolution this exercise rebuilds: compute it with"
    " F.unfold, one matrix product (@, torch.matmul or torch.einsum) and a reshape, without F.conv2d,"
    " torch.conv2d or nn.Conv2d"
)


def check_conv2d_unfold(fn):
    """Check `fn(x, weight, bias, stride, padding, dilation, groups)` against `F.conv2d` on several cases:
    batch 1 and 3, odd and non-square sizes, stride 2, padding, dilation 2, groups 2, depthwise, bias or not.

    An answer that calls F.conv2d, torch.conv2d or nn.Conv2d (the convolution it rebuilds) is rejected:
    while it runs those functions raise, and its source is read for calls to them."""

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
                with forbid(FORBIDDEN_CONVS, "F.conv2d") as forbidden:
                    actual = call(fn, x, weight, bias, stride, padding, dilation, groups, case=case)
            except CheckFailed as error:
                if forbidden or isinstance(error.__cause__, ForbiddenCall):
                    raise CheckFailed(f"{case}: {FORBIDDEN_MESSAGE.format(what='F.conv2d (or nn.Conv2d)')}") from None
                if groups > 1:  # a crash on a grouped case is nearly always a matmul with the wrong shapes
                    raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {hints[-1][1]}") from error.__cause__
                raise
            if forbidden:  # the student's code caught our exception and went on
                raise CheckFailed(f"{case}: {FORBIDDEN_MESSAGE.format(what='F.conv2d (or nn.Conv2d)')}")
            expected = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
            expect_close(actual, expected, case, atol=1e-4, rtol=1e-4, hints=hints)
        # the fallback: a call the patch cannot see, e.g. through `from torch.nn.functional import conv2d`
        names = calls_by_name(fn, FORBIDDEN_NAMES)
        if names:
            raise CheckFailed(FORBIDDEN_MESSAGE.format(what=" and ".join(f"{n}(...)" for n in names)))

    run_check(
        "conv2d_unfold",
        body,
        f"equals F.conv2d on all {len(CONV_CASES)} cases, without calling it:\n  batch 1 and 3, odd and"
        " non-square sizes, stride, padding, dilation,\n  groups, depthwise, with and without bias",
    )


# (description, layers as (kernel_size, stride, dilation))
RF_CASES = [
    ("one 3x3 convolution", [(3, 1, 1)]),
    ("two 3x3 convolutions", [(3, 1, 1), (3, 1, 1)]),
    ("a 3x3 with dilation 2, then a 1x1", [(3, 1, 2), (1, 1, 1)]),
    ("3x3 stride 2, then two 3x3", [(3, 2, 1), (3, 1, 1), (3, 1, 1)]),
    ("3x3 stride 2, 3x3 stride 2, 5x5", [(3, 2, 1), (3, 2, 1), (5, 1, 1)]),
    ("3x3 stride 2, then 3x3 with dilation 2", [(3, 2, 1), (3, 1, 2)]),
    ("MobileViT's stem, stages.0 and stages.1 (their 3x3 convs; 1x1 convs see one pixel)",
     [(3, 2, 1), (1, 1, 1), (3, 1, 1), (1, 1, 1), (3, 2, 1), (3, 1, 1), (3, 1, 1)]),
]


def measured_receptive_field(layers, length=256):
    """The receptive field of `layers` (kernel_size, stride, dilation) along one axis, measured: a stack
    of 1-D convolutions with all-ones weights, and the input positions whose gradient reaches the
    first output position."""
    x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
    y = x
    for k, s, d in layers:
        y = F.conv1d(y, torch.ones(1, 1, k, dtype=torch.float64), stride=s, dilation=d)
    (grad,) = torch.autograd.grad(y[0, 0, 0], x)
    hit = grad[0, 0].nonzero().flatten()
    return int(hit.max() - hit.min() + 1)


def _rf_variants(layers):
    """What the typical wrong formulas give, with what to say."""

    def formula(use_dilation=True, jump="before", plus_one=True):
        size, j = 1 if plus_one else 0, 1
        for k, s, d in layers:
            d = d if use_dilation else 1
            if jump == "including":
                j *= s
            size += (k - 1) * d * (j if jump != "none" else 1)
            if jump == "before":
                j *= s
        return size

    return [
        (formula(use_dilation=False), "you ignore dilation: a k x k kernel with dilation d spans d(k - 1) + 1"
         " pixels, so each layer adds (k - 1) * d"),
        (formula(jump="none"), "a layer after a stride-s layer reads pixels s apart: multiply each layer's"
         " (k - 1) * d by the product of the strides of the layers before it (the 'jump')"),
        (formula(jump="including"), "multiply by the strides of the layers *before* a layer, not its own:"
         " its stride spaces its outputs, not the taps it reads"),
        (formula(plus_one=False), "off by one: start from 1 (a 1x1 convolution sees one pixel), then add"
         " (k - 1) * d * jump per layer"),
    ]


def check_receptive_field(fn):
    """Check `fn(layers)` -> the receptive field (in input pixels, along one axis) of one output pixel of
    a stack of convolutions, `layers` a list of (kernel_size, stride, dilation), against the one autograd
    measures through the same stack, on several stacks: dilation, strides, MobileViT's first stages."""

    def body():
        for description, layers in RF_CASES:
            case = f"case '{description}' (layers {layers})"
            actual = call(fn, [tuple(layer) for layer in layers], case=case)
            expect_number(actual, measured_receptive_field(layers), case, "receptive field", _rf_variants(layers))

    run_check(
        "receptive_field",
        body,
        f"equals the receptive field measured by autograd on all {len(RF_CASES)} stacks",
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
    """[(output, sentence)] of the typical wrong forwards, computed from the reference's own submodules.
    The one that gives the student's output is named (see matching_hint)."""
    hidden = reference.depthwise(reference.expand(x))
    y = reference.project(hidden)
    pre_bn = reference.project.conv(hidden)
    residual = reference.use_residual
    add = (lambda t: x + t) if residual else (lambda t: t)
    variants = []
    if residual:
        variants += [
            (y, "you forgot the residual: return x + y when self.use_residual is True"),
            (reference.project.norm(x + pre_bn), "you add x before the projection's BatchNorm: add it after the"
             " whole self.project (conv and BN)"),
            (F.silu(x + y), "no activation after the residual sum: return x + y as it is"),
        ]
    variants += [
        (add(F.silu(y)), "the projection is linear: no activation after self.project (its BatchNorm is the"
         " last operation before the residual)"),
        (add(F.relu6(y)), "the projection is linear: no activation (here ReLU6) after self.project"),
        (add(pre_bn), "you skipped the projection's BatchNorm: call the whole self.project (conv and BN)"),
        (add(reference.project(reference.expand(x))) if reference.depthwise.conv.stride == (1, 1) else None,
         "you skipped self.depthwise, the 3x3 convolution: expand, then depthwise, then project"),
    ]
    if not isinstance(reference.expand, torch.nn.Identity):
        variants.append((add(reference.project(reference.depthwise(reference.expand.conv(x)))),
                         "you skipped the expansion's BatchNorm and SiLU: call the whole self.expand"))
    return [(v, sentence) for v, sentence in variants if v is not None]


MV2_SECTION = "'The block' in chapter 2"
MV2_CLOSING_HINT = f"no typical mistake matches; re-read {MV2_SECTION}"


def check_inverted_residual(cls):
    """Check your `InvertedResidual` class (its `forward`) against the package's on several cases:
    with and without residual (stride 2, unequal channels), expand_ratio 1, batch 1, odd sizes.

    Both modules get the same weights (BatchNorm statistics randomised so BN is not the identity)
    and run in eval mode. A wrong output is compared with the typical wrong forwards (residual
    always or never, an activation after the projection, a skipped BatchNorm or convolution, ...),
    and the one that matches is named; otherwise the hint names the first submodule whose input
    differs from the package's and what that input is (e.g. ReLU6 of `self.expand.norm`'s output),
    from hooks on both modules (see `_common.trace_hint`)."""

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
                expected, reference_calls = traced_call(reference, x, case)

                def compare():
                    try:
                        actual, student_calls = traced_call(student, x.clone(), case)
                    except CheckFailed as error:
                        if not reference.use_residual and "size of tensor" in str(error):
                            raise CheckFailed(
                                f"{str(error).rstrip('.')}. Hint: x + y needs x and y of the same shape; here the"
                                f" block changes {'the size (stride 2)' if stride != 1 else 'the number of channels'},"
                                " so there is no residual: add x only when self.use_residual is True"
                                " (stride 1 and in_channels == out_channels)"
                            ) from error.__cause__
                        ran = {c.name.split(".")[0] for c in getattr(error, "calls", [])}
                        if reference.use_residual and "size of tensor" in str(error) and "project" not in ran \
                                and "depthwise" in ran:
                            raise CheckFailed(
                                f"{str(error).rstrip('.')}. Hint: your forward adds x before it runs self.project,"
                                " to a tensor of the hidden width; the residual adds x to the output of self.project"
                                " (C_out channels, the input's size)"
                            ) from error.__cause__
                        raise
                    if isinstance(actual, torch.Tensor) and stride != 1 and tuple(actual.shape[-2:]) == tuple(x.shape[-2:]):
                        raise CheckFailed(
                            f"{case}: your output has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}."
                            " Hint: the output keeps the input's size; the stride is in self.depthwise: did you skip it?"
                        )
                    expect_module_output(actual, expected, case, lambda: _mv2_variants(reference, x), student_calls,
                                         reference_calls, x, MV2_SECTION)

                with_closing_hint(compare, MV2_CLOSING_HINT)

    run_check(
        "InvertedResidual",
        body,
        f"your forward equals the package's on all {len(MV2_CASES)} cases:\n  with and without the residual,"
        " stride 2, unequal channels,\n  expand_ratio 1, batch 1, odd sizes",
    )


# (description, in_channels, out_channels, stride, expand_ratio, H, W of the input)
MV2_COST_CASES = [
    ("MobileViT-XXS's stages.1.0: 16 -> 24 channels, stride 2, expansion 2, 128x128 input", 16, 24, 2, 2, 128, 128),
    ("MobileViT-XS's stages.1.1: 48 -> 48, stride 1, expansion 4, 64x64", 48, 48, 1, 4, 64, 64),
    ("expansion 1 (no expand conv): 32 -> 32, stride 1, 10x6", 32, 32, 1, 1, 10, 6),
    ("stride 2 on an odd 9x7 input: 24 -> 40, expansion 4", 24, 40, 2, 4, 9, 7),
]


def mv2_cost_variants(c_in, c_out, stride, r, H, W):
    """(parameters, multiply-adds) of an MV2 block: the right count first, then the typical wrong ones
    as (value, sentence)."""

    def cost(hidden_from="in", expand_on="input", out_size="ceil", bn=2, dense_dw=False, expand_if_r1=False):
        hidden = make_divisible(round((c_in if hidden_from == "in" else c_out) * r))
        has_expand = r != 1 or expand_if_r1
        if not has_expand:
            hidden = c_in
        Ho = (H + stride - 1) // stride if out_size == "ceil" else H // stride
        Wo = (W + stride - 1) // stride if out_size == "ceil" else W // stride
        if out_size == "input":
            Ho, Wo = H, W
        expand_w = c_in * hidden if has_expand else 0
        dw_w = 9 * hidden * (hidden if dense_dw else 1)
        project_w = hidden * c_out
        params = expand_w + dw_w + project_w + bn * ((hidden if has_expand else 0) + hidden + c_out)
        eH, eW = (H, W) if expand_on == "input" else (Ho, Wo)
        macs = expand_w * eH * eW + (dw_w + project_w) * Ho * Wo
        return params, macs

    right = cost()
    return right, [
        (cost(expand_on="output"), "the 1x1 expansion runs before the stride, on the H x W input: only the"
         " depthwise conv and the projection run on the smaller output"),
        (cost(out_size="input"), "with stride 2 the depthwise conv and the projection run on the halved map"
         " (H_out x W_out from conv_output_size), not on the input's H x W"),
        (cost(out_size="floor"), "a 3x3 stride-2 conv with padding 1 gives ceil(H / 2) rows, (H + 1) // 2, not"
         " H // 2: use conv_output_size(H, 3, 2, 1)"),
        (cost(bn=0), "each BatchNorm has 2 parameters per channel (a scale and a shift): add them"),
        (cost(bn=4), "a BatchNorm's running mean and variance are buffers, not parameters: 2 per channel"),
        (cost(dense_dw=True), "the depthwise conv has one 3x3 kernel per channel: 9 * hidden weights, not"
         " 9 * hidden * hidden"),
        (cost(hidden_from="out"), "the hidden width is expand_ratio times the *input* channels"),
        (cost(expand_if_r1=True), "with expand_ratio 1 there is no expansion (self.expand is nn.Identity):"
         " no 1x1 conv and no BatchNorm before the depthwise conv"),
    ]


def check_mv2_cost(fn):
    """Check `fn(in_channels, out_channels, stride, expand_ratio, H, W)` -> (parameters, multiply-adds)
    of `InvertedResidual(in_channels, out_channels, stride, expand_ratio)` on a 1 x C x H x W input against
    `count_parameters` and `count_macs` (PyTorch's flop counter: convolutions only, BatchNorm and SiLU
    not counted), on MobileViT's blocks with stride 2, expansion 4 and 1, and an odd input."""

    def body():
        for description, c_in, c_out, stride, r, H, W in MV2_COST_CASES:
            case = f"case '{description}' (mv2_cost({c_in}, {c_out}, {stride}, {r}, {H}, {W}))"
            with torch.device("meta"):  # shapes only: counting needs no numbers, and costs no time
                block, x = InvertedResidual(c_in, c_out, stride, r), torch.zeros(1, c_in, H, W)
            expected = count_parameters(block), count_macs(block, x)
            right, variants = mv2_cost_variants(c_in, c_out, stride, r, H, W)
            assert right == expected, (right, expected)  # the formula the hints are built on is right
            actual = call(fn, c_in, c_out, stride, r, H, W, case=case)
            if not isinstance(actual, (tuple, list)) or len(actual) != 2:
                raise CheckFailed(f"{case}: return two numbers, (parameters, multiply-adds); got {actual!r}")
            for k, what in enumerate(("parameter count", "multiply-add count")):
                wrong = [(v[k], sentence) for v, sentence in variants if v[k] != expected[k]]
                expect_number(actual[k], expected[k], case, what, wrong)

    run_check(
        "mv2_cost",
        body,
        f"your hand count equals count_parameters and count_macs on all {len(MV2_COST_CASES)} blocks",
    )
