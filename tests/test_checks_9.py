"""The check of chapter 9's exercise: the reference passes, a stub is "not implemented yet", and wrong
folds that look right are rejected with a message that names the mistake."""

import copy

import pytest
import torch
from torch import nn

import mobilevit_edu as me
from mobilevit_edu import deploy
from mobilevit_edu.checks import CheckFailed, check_fold_batchnorm, check_pixel_order
from tests._checking import is_stub, passes, rejects


def stub(conv, bn):
    raise NotImplementedError("write your code here")


def student_fold(conv, bn, *, eps=True, gamma=True, beta=True, mean=True, conv_bias="scaled", keep_bias=True,
                 stats="running", in_place=False, axis="out"):
    """A student's fold_batchnorm with switches for the typical mistakes."""
    if stats == "running":
        mu, var = bn.running_mean, bn.running_var
    else:  # the statistics of a batch: what BatchNorm uses in training mode, and a fold must not
        with torch.no_grad():
            y = conv(torch.randn(8, conv.in_channels, 16, 16, generator=torch.Generator().manual_seed(1)))
        mu, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    scale = 1 / torch.sqrt(var + (bn.eps if eps else 0.0))
    if gamma:
        scale = scale * bn.weight
    b = conv.bias if conv.bias is not None else torch.zeros_like(mu)
    bias = {"scaled": b * scale, "unscaled": b, "dropped": 0 * b}[conv_bias]
    if mean:
        bias = bias - mu * scale
    if beta:
        bias = bias + bn.bias
    folded = conv if in_place else copy.deepcopy(conv)
    if keep_bias and folded.bias is None:
        folded.bias = nn.Parameter(torch.zeros(conv.out_channels))
    with torch.no_grad():
        shape = (-1, 1, 1, 1) if axis == "out" else (1, -1, 1, 1)
        folded.weight.copy_(conv.weight * scale.reshape(shape).expand_as(conv.weight) if axis == "out"
                            else conv.weight * scale[: conv.weight.shape[1]].reshape(shape))
        if keep_bias:
            folded.bias.copy_(bias)
    return folded


def assert_rejected(answer, *fragments):
    with pytest.raises(CheckFailed) as info:
        check_fold_batchnorm(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message: {message}"
    return message


def test_reference_passes(capsys):
    check_fold_batchnorm(deploy.fold_batchnorm)
    assert capsys.readouterr().out.startswith("✓ fold_batchnorm")


def test_student_like_solution_passes(capsys):
    check_fold_batchnorm(student_fold)
    assert capsys.readouterr().out.startswith("✓")


def test_library_folds_are_forbidden():
    # the exercise asks for the fold by hand, as chapters 1-6 forbid F.conv2d and SDPA
    assert_rejected(torch.nn.utils.fusion.fuse_conv_bn_eval, "fusion.fuse_conv_bn", "write the fold yourself")
    assert_rejected(lambda c, b: deploy.fold_batchnorm(c, b), "deploy.fold_batchnorm", "write the fold yourself")


def test_stub_is_not_implemented(capsys):
    check_fold_batchnorm(stub)  # must not raise
    assert "not implemented yet" in capsys.readouterr().out


def test_rejects_forgetting_eps():
    message = assert_rejected(lambda c, b: student_fold(c, b, eps=False), "you forgot eps", "sqrt(running_var + eps)")
    assert "eps 1e-3" in message  # the first case where eps matters


def test_rejects_forgetting_the_bias_term():
    assert_rejected(lambda c, b: student_fold(c, b, keep_bias=False), "your conv has no bias", "you forgot the bias term")


def test_rejects_forgetting_the_shift_in_the_bias():
    assert_rejected(lambda c, b: student_fold(c, b, mean=False, beta=False), "you forgot the bias term")


def test_rejects_forgetting_beta():
    assert_rejected(lambda c, b: student_fold(c, b, beta=False), "you forgot beta")


def test_rejects_forgetting_the_running_mean():
    assert_rejected(lambda c, b: student_fold(c, b, mean=False), "subtract the running mean")


def test_rejects_forgetting_gamma_and_beta():
    assert_rejected(lambda c, b: student_fold(c, b, gamma=False, beta=False), "affine parameters", "bn.weight (gamma)")


def test_rejects_dropping_or_not_scaling_the_conv_bias():
    assert_rejected(lambda c, b: student_fold(c, b, conv_bias="dropped"), "1x1 conv 6 -> 4", "you dropped conv's own bias")
    assert_rejected(lambda c, b: student_fold(c, b, conv_bias="unscaled"), "own bias must be scaled as well")


def test_batch_statistics_get_the_facts_not_a_guess():
    # a scale that no typical mistake gives could come from many causes: the hint says where it differs, not why
    message = assert_rejected(lambda c, b: student_fold(c, b, stats="batch"), "no typical mistake matches",
                              "your weights scale channel", "bn.weight[c] / sqrt(bn.running_var[c] + bn.eps)",
                              "'Folding BatchNorm by hand' in chapter 9")
    assert "statistics of a batch" not in message


def test_rejects_scaling_the_input_channels():
    # in the square 3x3 case the shapes fit, so only the values can tell
    assert_rejected(lambda c, b: student_fold(c, b, axis="in"), "not conv's weights scaled per output channel")


def test_rejects_changing_the_conv_in_place():
    assert_rejected(lambda c, b: student_fold(c, b, in_place=True), "changed the conv or bn", "weight")


def test_rejects_something_that_is_not_one_conv():
    assert_rejected(lambda c, b: nn.Sequential(c, b), "expected one nn.Conv2d, got Sequential")


def test_rejects_a_conv_that_forgets_stride_or_groups():
    def no_stride(conv, bn):
        folded = student_fold(conv, bn)
        folded.stride = (1, 1)
        return folded

    assert_rejected(no_stride, "depthwise 3x3, stride 2", "stride=(1, 1)")


def test_a_crash_names_the_case():
    def crashes(conv, bn):
        return conv.weight * bn.weight  # (C_out, C_in/g, k, k) * (C_out,): broadcasting fails

    assert_rejected(crashes, "case '3x3 conv 3 -> 8 channels", "your code raised RuntimeError")


# ------------------------------------------------------------------------ the unfold as a gather
def order_by_loops(height, width, patch_size, *, patch_outer=False, columns_first=False, patches_by_column=False):
    """A student's pixel_order with loops, and switches for the typical mistakes."""
    ph, pw = patch_size
    positions = [(i, j) for i in range(ph) for j in range(pw)]
    if columns_first:
        positions = [(i, j) for j in range(pw) for i in range(ph)]
    patches = [(r, c) for r in range(0, height, ph) for c in range(0, width, pw)]
    if patches_by_column:
        patches = [(r, c) for c in range(0, width, pw) for r in range(0, height, ph)]
    pairs = [(p, n) for n in patches for p in positions] if patch_outer else [(p, n) for p in positions for n in patches]
    return torch.tensor([(r + i) * width + (c + j) for (i, j), (r, c) in pairs])


def order_by_unfold(height, width, patch_size):
    numbers = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    return me.unfold_patches(numbers, patch_size).flatten().long()


def test_pixel_order_reference_and_student_answers_pass(capsys):
    for answer in (deploy.pixel_order, order_by_loops, order_by_unfold):
        passes(check_pixel_order, answer, capsys)


def test_pixel_order_stub_is_not_implemented(capsys):
    is_stub(check_pixel_order, lambda h, w, p: stub(None, None), capsys)


@pytest.mark.parametrize("answer, fragments", [
    (lambda h, w, p: order_by_loops(h, w, p, patch_outer=True), ["patch by patch", "(P, N), not (N, P)"]),
    (lambda h, w, p: order_by_loops(h, w, p, columns_first=True), ["inside a patch column by column"]),
    (lambda h, w, p: order_by_loops(h, w, p, patches_by_column=True), ["patches column by column"]),
    (lambda h, w, p: order_by_loops(h, w, p).argsort(), ["inverse permutation"]),
    (lambda h, w, p: order_by_loops(h, w, p) + 1, ["plus 1", "start at 0"]),
    (lambda h, w, p: order_by_loops(h, w, (p[1], p[0])) if h % p[1] == 0 and w % p[0] == 0 else order_by_loops(h, w, p),
     ["pw for the height"]),
    (lambda h, w, p: torch.arange(h * w), ["own row-major order"]),
    (lambda h, w, p: order_by_unfold(h, w, p).float(), ["1-D tensor of ints", "torch.float32"]),
    (lambda h, w, p: order_by_unfold(h, w, p).reshape(p[0] * p[1], -1), ["1-D", "shape (4, 4)"]),
    (lambda h, w, p: order_by_loops(h, w, p)[:-1], ["one per pixel"]),
    (lambda h, w, p: torch.tensor([(r + i) * h + c + j for i in range(p[0]) for j in range(p[1])
                                   for r in range(0, h, p[0]) for c in range(0, w, p[1])]),
     ["8 x 4 map", "not a permutation", "row * width + column"]),
])
def test_pixel_order_rejects_wrong_answers_naming_the_mistake(answer, fragments):
    rejects(check_pixel_order, answer, *fragments)


def test_pixel_order_may_not_call_the_package():
    def pixel_order(height, width, patch_size):
        return deploy.pixel_order(height, width, patch_size)

    rejects(check_pixel_order, pixel_order, "which is the answer")
