"""Checks for chapter 9: folding a BatchNorm into the convolution before it.

- `check_fold_batchnorm(fn)`: your `fold_batchnorm(conv, bn) -> nn.Conv2d` against `bn(conv(x))` with
  `bn` in eval mode, on convolutions with and without a bias, depthwise and strided, and a BatchNorm
  whose eps matters (small running variances).
- `check_pixel_order(fn)`: your `pixel_order(height, width, patch_size)`, the unfold as a list of pixels
  (the gather of `deploy.gather_patches`), against `mobilevit_edu.deploy.pixel_order`.
"""

import torch
from torch import nn
from torch.nn.utils import fusion

from .. import deploy
from ._common import CheckFailed, call, calls_by_name, expect_close, forbid, run_check

# (description, Conv2d arguments, conv has a bias, BN eps, running variances drawn in [low, high), x shape)
FOLD_CASES = [
    ("3x3 conv 3 -> 8 channels, no bias (as in ConvNormAct)", dict(in_channels=3, out_channels=8, kernel_size=3, padding=1),
     False, 1e-5, (0.5, 1.5), (2, 3, 9, 11)),
    ("1x1 conv 6 -> 4 channels with its own bias", dict(in_channels=6, out_channels=4, kernel_size=1),
     True, 1e-5, (0.5, 1.5), (1, 6, 7, 5)),
    ("depthwise 3x3, stride 2, with bias; eps 1e-3 and running variances near 1e-4",
     dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=6),
     True, 1e-3, (1e-4, 1e-3), (2, 6, 10, 9)),
    ("3x3 conv 4 -> 6 in 2 groups, dilation 2, no bias; eps 1e-3, small running variances",
     dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, dilation=2, padding=1), False, 1e-3, (1e-4, 1e-3),
     (1, 4, 8, 12)),
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
    variants = [
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
        (_folded_with(conv, bn, x, gamma / (var + eps), (b - mu) * gamma / (var + eps) + beta),
         "you divide by running_var + eps; BatchNorm divides by the standard deviation, its square root:"
         " scale = gamma / sqrt(running_var + eps)"),
        (_folded_with(conv, bn, x, gamma / (torch.sqrt(var) + eps), (b - mu) * gamma / (torch.sqrt(var) + eps) + beta),
         "you add eps outside the square root; it goes inside: sqrt(running_var + eps), as BatchNorm computes it"),
        (_folded_with(conv, bn, x, s, (b - mu) / torch.sqrt(var + eps) + beta),
         "your weights are right but your bias misses gamma: the shift (b - running_mean) is scaled by the whole"
         " scale gamma / sqrt(running_var + eps), b' = (b - running_mean) * scale + beta"),
        (_folded_with(conv, bn, x, gamma * torch.sqrt(var + eps), (b - mu) * gamma * torch.sqrt(var + eps) + beta),
         "you multiply by the standard deviation; BatchNorm divides by it: scale = gamma / sqrt(running_var + eps)"),
        (_folded_with(conv, bn, x, s, (b + mu) * s + beta),
         "you add the running mean; BatchNorm subtracts it: b' = (b - running_mean) * scale + beta"),
        (_folded_with(conv, bn, x, 1 / torch.sqrt(var + eps), (b - mu) / torch.sqrt(var + eps) + beta),
         "you left out gamma (bn.weight): BatchNorm multiplies the normalised value by it, so the scale is"
         " gamma / sqrt(running_var + eps), in the weights and in the bias"),
        (_folded_with(conv, bn, x, gamma / (1 + eps) ** 0.5, b * gamma / (1 + eps) ** 0.5 + beta),
         "you normalise with mean 0 and variance 1: in eval mode (and so in a folded conv) BatchNorm uses its"
         " running statistics, bn.running_mean and bn.running_var"),
    ]
    for other_eps in (1e-5, 1e-3, 0.0):  # a hard-coded eps: only a different answer where bn.eps is another one
        if other_eps != eps:
            s_other = gamma / torch.sqrt(var + other_eps)
            variants.append((_folded_with(conv, bn, x, s_other, (b - mu) * s_other + beta),
                             f"you use eps = {other_eps:g}; this BatchNorm's is bn.eps = {eps:g}: read it from bn"
                             if other_eps else "you forgot eps: BatchNorm divides by sqrt(running_var + eps), not"
                             f" sqrt(running_var); with small variances (here eps = {eps:g}) the difference is large"))
    def hint(actual, expected):  # the one mistake whose output the student's equals, or none
        matches = {sentence for v, sentence in variants if torch.allclose(actual, v, atol=1e-4, rtol=1e-4)
                   and not torch.allclose(v, expected, atol=1e-4, rtol=1e-4)}
        return matches.pop() if len(matches) == 1 else ""

    return hint


def _fallback_hint(student, conv, bn):
    """When no typical mistake matches: say, as facts, where the student's conv differs from the fold (the scale
    of one channel's weights, or one channel's bias) and what to re-read, naming no cause."""
    with torch.no_grad():
        w, w_student = conv.weight.flatten(1), student.weight.detach().flatten(1)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if w_student.shape != w.shape:
            return ""
        theirs = (w_student * w).sum(1) / (w * w).sum(1)  # the student's scale per output channel (least squares)
        if not torch.allclose(w_student, w * theirs[:, None], atol=1e-5, rtol=1e-4):
            found = "your weights are not conv's weights scaled per output channel (row c of conv.weight times one number)"
        elif not torch.allclose(theirs, scale, atol=1e-6, rtol=1e-4):
            c = int((theirs - scale).abs().argmax())
            found = (f"your weights scale channel {c} of conv by {theirs[c].item():.6g}; bn.weight[c] /"
                     f" sqrt(bn.running_var[c] + bn.eps) is {scale[c].item():.6g}")
        else:
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            right = (b - bn.running_mean) * scale + bn.bias
            c = int((student.bias.detach() - right).abs().argmax())
            found = (f"your weights are right; your bias of channel {c} is {student.bias[c].item():.6g}, the fold's is"
                     f" {right[c].item():.6g}")
    return f"no typical mistake matches; {found}; re-read {FOLD_SECTION}"


FOLD_SECTION = "'Folding BatchNorm by hand' in chapter 9"
# What the exercise asks to write: calling these is not an answer
FORBIDDEN_FOLDS = [(fusion, "fuse_conv_bn_eval"), (fusion, "fuse_conv_bn_weights"), (deploy, "fold_batchnorm"),
                   (deploy, "fuse")]
FORBIDDEN_FOLD_NAMES = {"fuse_conv_bn_eval", "fuse_conv_bn_weights", "fold_batchnorm", "fuse", "fuse_modules"}
FORBIDDEN_FOLD_MESSAGE = (
    "your function calls {what}, which folds the BatchNorm for you. Hint: write the fold yourself: a new"
    " nn.Conv2d whose weight and bias you compute from conv's and bn's tensors"
)


def check_fold_batchnorm(fn):
    """Check `fn(conv, bn)`: it must return one `nn.Conv2d` equal to `bn(conv(x))` with `bn` in eval mode,
    and leave `conv` and `bn` unchanged. Cases: with and without conv bias, depthwise, stride 2, groups,
    dilation 2, eps 1e-5 and 1e-3 with small running variances, batch 1 and 2, non-square inputs. Calling a
    library's fold (torch.nn.utils.fusion, the package's deploy) is rejected: the exercise is to write it."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, conv_args, with_bias, eps, var_range, x_shape in FOLD_CASES:
            case = f"case '{description}'"
            conv, bn = _make_case(conv_args, with_bias, eps, var_range, generator)
            before = {k: v.clone() for k, v in {**conv.state_dict(), **{f"bn.{k}": v for k, v in bn.state_dict().items()}}.items()}
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad():
                expected = bn(conv(x))
            try:
                with forbid(FORBIDDEN_FOLDS, None) as forbidden:
                    folded = call(fn, conv, bn, case=case)
                if forbidden:
                    raise CheckFailed(f"{case}: " + FORBIDDEN_FOLD_MESSAGE.format(what=forbidden[0]))
            except CheckFailed as error:
                if forbidden:
                    raise CheckFailed(f"{case}: " + FORBIDDEN_FOLD_MESSAGE.format(what=forbidden[0])) from None
                raise
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
                hint = _fold_hints(conv, bn, x)
                hints = [(lambda a, e: bool(hint(a, e)), hint(actual, expected) if actual.shape == expected.shape else "")]
                fallback = _fallback_hint(folded, conv, bn)
            if fallback:
                hints.append((lambda a, e: True, fallback))
            expect_close(actual, expected, case, atol=1e-4, rtol=1e-4, hints=hints)
        # the fallback: a call the patch cannot see (`from torch.nn.utils.fusion import fuse_conv_bn_eval`)
        names = [n for n in calls_by_name(fn, FORBIDDEN_FOLD_NAMES) if n != getattr(fn, "__name__", None)]
        if names:
            raise CheckFailed(FORBIDDEN_FOLD_MESSAGE.format(what=" and ".join(f"{n}(...)" for n in names)))

    run_check(
        "fold_batchnorm",
        body,
        f"one nn.Conv2d equal to conv -> BatchNorm (eval) on all {len(FOLD_CASES)} cases:\n  with and without"
        " conv bias, depthwise, stride 2, groups,\n  eps 1e-5 and 1e-3 with small running variances",
    )


# ------------------------------------------------------------------------ the unfold as a gather
# (height, width, (ph, pw)): a square map, a tall map with tall patches (where ph and pw can be swapped
# without an error), non-square patches, XXS's first MobileViT block
ORDER_CASES = [(4, 4, (2, 2)), (8, 4, (4, 2)), (6, 9, (2, 3)), (32, 32, (2, 2))]


def _order_from_pattern(height, width, ph, pw, pattern):
    """The row-major pixel indices read in the order an einops `pattern` ("(...) (...) -> (...)") gives."""
    from einops import rearrange

    numbers = torch.arange(height * width).reshape(height, width)
    return rearrange(numbers, pattern, ph=ph, pw=pw).flatten()


def _order_mistakes(height, width, ph, pw):
    """{name: (wrong order, hint)} for the usual mistakes, each computed for this case."""
    mistakes = {
        "inverse": (deploy.token_order(height, width, (ph, pw)),
                    "yours is the inverse permutation: for each pixel, where it lands (what fold needs). Entry i"
                    " must be the pixel that lands at position i"),
        "vit": (_order_from_pattern(height, width, ph, pw, "(nh ph) (nw pw) -> (nh nw ph pw)"),
                "you list the pixels patch by patch (ViT's order). MobileViT's unfold groups them by their position"
                " in the patch first: all top-left pixels, then the next position, ... (P, N), not (N, P)"),
        "positions by column": (_order_from_pattern(height, width, ph, pw, "(nh ph) (nw pw) -> (pw ph nh nw)"),
                                "you number the positions inside a patch column by column; unfold numbers them row"
                                " by row (ph, then pw)"),
        "patches by column": (_order_from_pattern(height, width, ph, pw, "(nh ph) (nw pw) -> (ph pw nw nh)"),
                              "you number the patches column by column (nw, then nh); unfold numbers them row by row"),
        "split": (_order_from_pattern(height, width, ph, pw, "(ph nh) (pw nw) -> (ph pw nh nw)"),
                  "you split the height as (ph nh) and the width as (pw nw). A patch is ph neighbouring rows, so the"
                  " height is (nh ph): which patch outside, the row inside the patch inside"),
        "identity": (torch.arange(height * width), "you return the pixels in their own row-major order: nothing is"
                                                   " rearranged"),
    }
    if height % pw == 0 and width % ph == 0 and ph != pw:
        mistakes["swapped"] = (deploy.pixel_order(height, width, (pw, ph)),
                               "you use pw for the height and ph for the width: patch_size is (ph, pw), height first")
    return mistakes


def _matching_mistakes(actual, height, width, ph, pw):
    return {name: hint for name, (wrong, hint) in _order_mistakes(height, width, ph, pw).items()
            if torch.equal(actual, wrong)}


def _order_hint(fn, case_index, actual):
    """The hint for a wrong order in ORDER_CASES[case_index]: the mistakes it matches, narrowed down by the
    later cases where two mistakes give the same order (2 x 2 patches on a 4 x 4 map do that); "" if none."""
    height, width, (ph, pw) = ORDER_CASES[case_index]
    matches = _matching_mistakes(actual, height, width, ph, pw)
    for height, width, (ph, pw) in ORDER_CASES[case_index + 1:]:
        if len(matches) < 2:
            break
        try:
            later = torch.as_tensor(fn(height, width, (ph, pw))).long()
        except Exception:  # the later cases only narrow the hint down; their errors are reported when reached
            break
        narrowed = {name: hint for name, hint in _matching_mistakes(later, height, width, ph, pw).items()
                    if name in matches}
        if narrowed:
            matches = narrowed
    hints = list(matches.values())
    if len(hints) > 1:
        return ". Hint: two mistakes give this order, and these cases cannot tell which: " + "; or ".join(hints)
    return f". Hint: {hints[0]}" if hints else ""


FORBIDDEN_ORDERS = [(deploy, "pixel_order"), (deploy, "token_order")]


def check_pixel_order(fn):
    """Check `fn(height, width, patch_size)`: a 1-D tensor (or list) of height * width ints whose entry i is
    the row-major index of the pixel that `unfold_patches` puts at position i of its (P, N) layout, against
    `mobilevit_edu.deploy.pixel_order`, which the exercise may not call."""

    def body():
        for index, (height, width, (ph, pw)) in enumerate(ORDER_CASES):
            case = f"case {height} x {width} map, {ph} x {pw} patches"
            with forbid(FORBIDDEN_ORDERS, None) as forbidden:
                try:
                    actual = call(fn, height, width, (ph, pw), case=case)
                except CheckFailed:
                    if forbidden:
                        break
                    raise
            if forbidden:
                break
            try:
                actual = torch.as_tensor(actual)
            except (TypeError, ValueError, RuntimeError):
                raise CheckFailed(f"{case}: expected a 1-D tensor or list of ints, got {type(actual).__name__}") from None
            if actual.dtype.is_floating_point or actual.dtype == torch.bool or actual.dim() != 1:
                raise CheckFailed(f"{case}: expected a 1-D tensor of ints (height * width = {height * width} of"
                                  f" them), got dtype {actual.dtype} and shape {tuple(actual.shape)}")
            actual = actual.long()
            expected = deploy.pixel_order(height, width, (ph, pw))
            if torch.equal(actual, expected):
                continue
            if actual.numel() != height * width:
                raise CheckFailed(f"{case}: expected {height * width} entries, one per pixel; you give {actual.numel()}")
            if torch.equal(actual, expected + 1):
                raise CheckFailed(f"{case}: yours is the right order, plus 1: pixel indices start at 0 (row * width + col)")
            if not torch.equal(actual.sort().values, torch.arange(height * width)):
                raise CheckFailed(f"{case}: yours is not a permutation of 0 .. {height * width - 1}: every pixel must"
                                  " appear exactly once (the unfold only moves pixels), as its row-major index"
                                  " row * width + column")
            i = int((actual != expected).nonzero()[0])
            got, want = int(actual[i]), int(expected[i])
            message = (f"{case}: at position {i} (p = {i // (height * width // (ph * pw))}, n ="
                       f" {i % (height * width // (ph * pw))}) you give pixel {got} (row {got // width}, column"
                       f" {got % width}); unfold_patches puts pixel {want} there (row {want // width}, column {want % width})")
            raise CheckFailed(message + _order_hint(fn, index, actual))
        names = [n for n in calls_by_name(fn, ["pixel_order", "token_order"]) if n != getattr(fn, "__name__", None)]
        if forbidden or names:
            raise CheckFailed("your pixel_order calls mobilevit_edu.deploy's pixel_order or token_order, which is the"
                              " answer. Build the order yourself: loops, or unfold_patches / einops on a map of"
                              " pixel numbers")

    run_check("pixel_order", body,
              f"the unfold's order of pixels on all {len(ORDER_CASES)} cases (square and non-square patches,"
              " XXS's 32 x 32 map)")
