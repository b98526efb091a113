"""Checks for chapter 9: folding a BatchNorm into the convolution before it.

- `check_fold_batchnorm(fn)`: your `fold_batchnorm(conv, bn) -> nn.Conv2d` against `bn(conv(x))` with
  `bn` in eval mode, on convolutions with and without a bias, depthwise and strided, and a BatchNorm
  whose eps matters (small running variances).
"""

import torch
from torch import nn

from ._common import CheckFailed, call, expect_close, run_check

# (description, Conv2d arguments, conv has a bias, BN eps, running variances drawn in [low, high), x shape)
FOLD_CASES = [
    ("3x3 conv 3 -> 8 channels, no bias (as in ConvNormAct)", dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
     False, 1e-5, (0.5, 1.5), (2, 3, 9, 11)),
    ("1x1 conv 6 -> 4 channels with its own bias", dict(in_channels=6, out_channels=4, kernel_size=1),
     True, 1e-5, (0.5, 1.5), (1, 6, 7, 5)),
    ("depthwise 3x3, stride 2, with bias; eps 1e-3 and running variances near 1e-4",
     dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=6),
     True, 1e-3, (1e-4, 1e-3), (2, 6, 10, 9)),
    ("3x3 conv 4 -> 6 in 2 groups, no bias; eps 1e-3, small running variances",
     dict(in_channels=4, out_channels=6, kernel_size=3, groups=2), False, 1e-3, (1e-4, 1e-3), (1, 4, 8, 12)),
]


def _make_case(conv_args, with_bias, eps, var_range, generator):
    conv = nn.Conv2d(**conv_args, bias=with_bias)
    bn = nn.BatchNorm2d(conv.out_channels, eps=eps)
    n = conv.out_channels
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.5)
        if with_bias:
            conv.bias.copy_(torch.randn(n, generator=generator))
        low, high = var_range
        bn.running_mean.copy_(torch.randn(n, generator=generator))
        bn.running_var.copy_(low + (high - low) * torch.rand(n, generator=generator))
        bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=generator))
    return conv.eval(), bn.eval()


def _folded_with(conv, bn, x, scale, bias):
    """The output of conv(x) scaled per output channel by `scale`, plus `bias` per channel."""
    y = nn.functional.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return y * scale[:, None, None] + bias[:, None, None]


def _fold_hints(conv, bn, x):
    """Sentences for the typical mistakes, each recognised by the output it would give on `x`."""
    gamma, beta, mu, var, eps = bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps
    b = conv.bias if conv.bias is not None else torch.zeros_like(mu)
    s = gamma / torch.sqrt(var + eps)
    s_no_eps = gamma / torch.sqrt(var)
    variants = [
        (_folded_with(conv, bn, x, s_no_eps, (b - mu) * s_no_eps + beta),
         "you forgot eps: BatchNorm divides by sqrt(running_var + eps), not sqrt(running_var);"
         " with small variances (here eps = {eps:g}) the difference is large".format(eps=eps)),
        (_folded_with(conv, bn, x, 1 / torch.sqrt(var + eps), (b - mu) / torch.sqrt(var + eps)),
         "you left out BatchNorm's own affine parameters: after normalising it multiplies by"
         " bn.weight (gamma) and adds bn.bias (beta)"),
        (_folded_with(conv, bn, x, s, (b - mu) * s),
         "you forgot beta (bn.bias) in the folded bias: b' = (b - running_mean) * scale + beta"),
        (_folded_with(conv, bn, x, s, b * s + beta),
         "you forgot to subtract the running mean in the folded bias: b' = (b - running_mean) * scale + beta"),
        (_folded_with(conv, bn, x, s, b * s),
         "you forgot the bias term: the folded conv needs the bias b' = (b - running_mean) * scale + beta"
         " (even when conv has no bias of its own, BatchNorm's shift must go somewhere)"),
        (_folded_with(conv, bn, x, s, torch.zeros_like(mu)),
         "you forgot the bias term: the folded conv needs the bias b' = (b - running_mean) * scale + beta"
         " (even when conv has no bias of its own, BatchNorm's shift must go somewhere)"),
        (_folded_with(conv, bn, x, s, beta - mu * s),
         "you dropped conv's own bias: it passes through BatchNorm too, so b' = (b - running_mean) * scale + beta"),
        (_folded_with(conv, bn, x, s, b + beta - mu * s),
         "conv's own bias must be scaled as well: b' = (b - running_mean) * scale + beta, not b + beta - running_mean * scale"),
    ]
    hints = [
        (lambda actual, expected, v=v: torch.allclose(actual, v, atol=1e-4, rtol=1e-4) and not torch.allclose(v, expected, atol=1e-4, rtol=1e-4), sentence)
        for v, sentence in variants
    ]
    return hints


def _implied_statistics_hint(student, conv, bn):
    """When the student's conv is a per-channel rescaling of `conv` (as a fold is) but not with the
    running statistics: say so (batch statistics, or statistics of something else)."""
    with torch.no_grad():
        w, w_student = conv.weight.flatten(1), student.weight.detach().flatten(1)
        if w_student.shape != w.shape:
            return ""
        scale = (w_student * w).sum(1) / (w * w).sum(1)  # least-squares scale per output channel
        if not torch.allclose(w_student, w * scale[:, None], atol=1e-5, rtol=1e-4):
            return "your weights are not conv's weights scaled per output channel: scale row c of conv.weight" \
                   " (output channel c) by bn.weight[c] / sqrt(bn.running_var[c] + bn.eps)"
        running = " in eval mode, and so in a folded conv, BatchNorm uses its running statistics" \
                  " (bn.running_mean, bn.running_var), never the statistics of a batch"
        implied_var = (bn.weight / scale) ** 2 - bn.eps
        if not torch.allclose(implied_var, bn.running_var, rtol=1e-3, atol=1e-6):
            return "your scale per channel is gamma / sqrt(v + eps) with a variance v that is not bn.running_var:" + running
        if student.bias is not None:
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            implied_mean = b - (student.bias.detach() - bn.bias) / scale
            if not torch.allclose(implied_mean, bn.running_mean, rtol=1e-3, atol=1e-4):
                return "your bias is (b - m) * scale + beta with a mean m that is not bn.running_mean:" + running
    return ""


def check_fold_batchnorm(fn):
    """Check `fn(conv, bn)`: it must return one `nn.Conv2d` equal to `bn(conv(x))` with `bn` in eval mode,
    and leave `conv` and `bn` unchanged. Cases: with and without conv bias, depthwise, stride 2, groups,
    eps 1e-5 and 1e-3 with small running variances, batch 1 and 2, non-square inputs."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, conv_args, with_bias, eps, var_range, x_shape in FOLD_CASES:
            case = f"case '{description}'"
            conv, bn = _make_case(conv_args, with_bias, eps, var_range, generator)
            before = {k: v.clone() for k, v in {**conv.state_dict(), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}.items()}
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad():
                expected = bn(conv(x))
            folded = call(fn, conv, bn, case=case)
            after = {**conv.state_dict(), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}
            changed = [k for k, v in before.items() if k not in after or not torch.equal(after[k], v)]
            if changed or bn.training or conv.training:
                what = ", ".join(changed) if changed else "their training mode"
                raise CheckFailed(
                    f"{case}: your function changed the conv or bn it was given ({what}). Leave them as they are"
                    " and return a new nn.Conv2d: the network they come from may still need them")
            if not isinstance(folded, nn.Conv2d):
                raise CheckFailed(
                    f"{case}: expected one nn.Conv2d, got {type(folded).__name__}. Folding means the BatchNorm"
                    " disappears into the convolution's weight and bias")
            if folded.bias is None:
                raise CheckFailed(
                    f"{case}: your conv has no bias. Hint: you forgot the bias term: BatchNorm's shift"
                    " (b - running_mean) * scale + beta needs one, even when conv has no bias of its own"
                    " (create the new nn.Conv2d with bias=True)")
            for attribute in ("stride", "padding", "dilation", "groups", "kernel_size"):
                if getattr(folded, attribute) != getattr(conv, attribute):
                    raise CheckFailed(
                        f"{case}: your conv has {attribute}={getattr(folded, attribute)}, conv has"
                        f" {getattr(conv, attribute)}: copy stride, padding, dilation and groups from conv")
            folded.eval()
            with torch.no_grad():
                actual = call(folded, x, case=case)
                hints = _fold_hints(conv, bn, x)
                statistics_hint = _implied_statistics_hint(folded, conv, bn)
            if statistics_hint:
                hints.append((lambda actual, expected: True, statistics_hint))
            expect_close(actual, expected, case, atol=1e-4, rtol=1e-4, hints=hints)

    run_check(
        "fold_batchnorm",
        body,
        f"one nn.Conv2d equal to conv -> BatchNorm (eval) on all {len(FOLD_CASES)} cases:\n  with and without"
        " conv bias, depthwise, stride 2, groups,\n  eps 1e-5 and 1e-3 with small running variances",
    )
