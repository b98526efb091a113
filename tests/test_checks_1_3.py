"""The checks of chapters 1-3: the reference passes, a stub is "not implemented yet", and wrong
answers that look right are rejected with a message that says what is wrong."""

import re

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import mobilevit_edu as me
from mobilevit_edu.checks import (
    CheckFailed,
    check_conv2d_unfold,
    check_inverted_residual,
    check_scaled_dot_product_attention,
    check_transformer_layer,
)
from mobilevit_edu.layers import ConvNormAct, MultiHeadSelfAttention


def stub(*args, **kwargs):
    raise NotImplementedError("write your code here")


def assert_passes(check, answer, capsys):
    check(answer)
    assert capsys.readouterr().out.startswith("✓")


def assert_not_implemented(check, answer, capsys):
    check(answer)  # must not raise
    assert "not implemented yet" in capsys.readouterr().out


def assert_rejected(check, answer, *fragments):
    with pytest.raises(CheckFailed) as info:
        check(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in the message: {message}"
    return message


# =============================================================================== chapter 1: conv2d_unfold
def unfold_matmul(x, weight, bias, stride, padding, dilation, groups, *, swap_hw=False, use_bias=True,
                  use_dilation=True, use_groups=True):
    """A student's conv2d_unfold with switches for the typical mistakes."""
    B, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    d = dilation if use_dilation else 1
    H_out = me.conv_output_size(H, kh, stride, padding, d)
    W_out = me.conv_output_size(W, kw, stride, padding, d)
    cols = F.unfold(x, (kh, kw), dilation=d, padding=padding, stride=stride)  # (B, C*kh*kw, L)
    if use_groups:
        g = groups
        cols = rearrange(cols, "b (g r) l -> b g r l", g=g)
        out = rearrange(weight, "(g o) c kh kw -> g o (c kh kw)", g=g) @ cols
        out = rearrange(out, "b g o l -> b (g o) l")
    else:
        out = weight.view(C_out, -1) @ cols
    if bias is not None and use_bias:
        out = out + bias[:, None]
    return out.view(B, C_out, W_out, H_out) if swap_hw else out.view(B, C_out, H_out, W_out)


def test_conv_reference_passes(capsys):
    assert_passes(check_conv2d_unfold, me.conv2d_unfold, capsys)


def test_conv_student_like_solution_passes(capsys):
    assert_passes(check_conv2d_unfold, unfold_matmul, capsys)


def test_conv_stub_is_not_implemented(capsys):
    assert_not_implemented(check_conv2d_unfold, stub, capsys)


def test_conv_rejects_forgetting_groups():
    wrong = lambda *a: unfold_matmul(*a, use_groups=False)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "groups=2", "raised RuntimeError", "Hint: with groups=2")


def test_conv_rejects_a_transposed_reshape():
    wrong = lambda *a: unfold_matmul(*a, swap_hw=True)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "seed example", "(1, 32, 8, 7)", "expected (1, 32, 7, 8)", "row-major")


def test_conv_rejects_ignoring_the_bias():
    wrong = lambda *a: unfold_matmul(*a, use_bias=False)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "with bias", "values are not", "you forgot the bias")


def test_conv_rejects_ignoring_dilation():
    wrong = lambda *a: unfold_matmul(*a, use_dilation=False)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "dilation 2", "shape", "pass dilation to F.unfold")


def test_conv_rejects_ignoring_stride():
    def wrong(x, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, 1, padding, dilation, groups)

    assert_rejected(check_conv2d_unfold, wrong, "stride 2", "pass stride to F.unfold")


def test_conv_rejects_a_non_tensor():
    assert_rejected(check_conv2d_unfold, lambda *a: unfold_matmul(*a).tolist(), "expected a torch.Tensor")


# =============================================================================== chapter 2: InvertedResidual
class SkeletonMV2(nn.Module):
    """The exercise's skeleton: the package's __init__, the forward is the student's."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = me.make_divisible(round(in_channels * expand_ratio))
        self.expand = ConvNormAct(in_channels, hidden, 1) if expand_ratio != 1 else nn.Identity()
        hidden = hidden if expand_ratio != 1 else in_channels
        self.depthwise = ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvNormAct(hidden, out_channels, 1, act=False)
        self.use_residual = stride == 1 and in_channels == out_channels


class GoodMV2(SkeletonMV2):
    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


class StubMV2(SkeletonMV2):
    def forward(self, x):
        raise NotImplementedError


class AlwaysResidual(SkeletonMV2):
    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class SiLUAfterProjection(SkeletonMV2):
    def forward(self, x):
        y = F.silu(self.project(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y


class NoResidual(SkeletonMV2):
    def forward(self, x):
        return self.project(self.depthwise(self.expand(x)))


class ResidualBeforeBN(SkeletonMV2):
    def forward(self, x):
        y = self.project.conv(self.depthwise(self.expand(x)))
        return self.project.norm(x + y if self.use_residual else y)


class RenamedSubmodules(nn.Module):
    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        self.block = me.InvertedResidual(in_channels, out_channels, stride, expand_ratio)

    def forward(self, x):
        return self.block(x)


def test_mv2_reference_passes(capsys):
    assert_passes(check_inverted_residual, me.InvertedResidual, capsys)
    assert_passes(check_inverted_residual, GoodMV2, capsys)


def test_mv2_stub_is_not_implemented(capsys):
    assert_not_implemented(check_inverted_residual, StubMV2, capsys)


def test_mv2_rejects_a_residual_when_shapes_differ():
    assert_rejected(check_inverted_residual, AlwaysResidual, "stride 2", "raised RuntimeError", "self.use_residual")


def test_mv2_rejects_silu_after_the_projection():
    assert_rejected(check_inverted_residual, SiLUAfterProjection, "the residual applies", "the projection is linear")


def test_mv2_rejects_no_residual():
    assert_rejected(check_inverted_residual, NoResidual, "the residual applies", "you forgot the residual")


def test_mv2_rejects_residual_before_the_projection_batchnorm():
    assert_rejected(check_inverted_residual, ResidualBeforeBN, "the residual applies", "before the projection's BatchNorm")


def test_mv2_rejects_renamed_submodules():
    assert_rejected(check_inverted_residual, RenamedSubmodules, "reference weights do not fit")


def test_mv2_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    check_inverted_residual(GoodMV2)
    assert torch.equal(torch.random.get_rng_state(), before)


# =============================================================================== chapter 3: attention
def attention(q, k, v, scale=None, dim=-1):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=dim) @ v


def test_attention_reference_passes(capsys):
    assert_passes(check_scaled_dot_product_attention, F.scaled_dot_product_attention, capsys)
    assert_passes(check_scaled_dot_product_attention, attention, capsys)


def test_attention_stub_is_not_implemented(capsys):
    assert_not_implemented(check_scaled_dot_product_attention, stub, capsys)


def test_attention_rejects_a_missing_scale():
    assert_rejected(check_scaled_dot_product_attention, lambda q, k, v: attention(q, k, v, 1.0), "batch 1", "you forgot the scale")


def test_attention_rejects_scaling_by_d():
    wrong = lambda q, k, v: attention(q, k, v, 1 / q.shape[-1])  # noqa: E731
    assert_rejected(check_scaled_dot_product_attention, wrong, "you divide by e", "1 / sqrt(e)")


def test_attention_rejects_softmax_over_the_wrong_axis():
    wrong = lambda q, k, v: attention(q, k, v, dim=-2)  # noqa: E731
    assert_rejected(check_scaled_dot_product_attention, wrong, "batch 1", "softmax over the wrong axis")


def test_attention_rejects_keys_and_queries_swapped():
    wrong = lambda q, k, v: (k @ q.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1) @ v  # noqa: E731
    # the first case is square (6 queries, 6 keys), so k q^T runs and only the values are wrong
    with pytest.raises(CheckFailed, match=re.escape(
        "values are not") + ".*" + re.escape("Hint: are queries and keys swapped? the scores are q k^T:"
                                             " row i holds query i against every key")):
        check_scaled_dot_product_attention(wrong)


def test_attention_unrecognised_mistake_gets_the_closing_hint():
    wrong = lambda q, k, v: F.scaled_dot_product_attention(q, k, v) + 0.1  # noqa: E731
    message = assert_rejected(check_scaled_dot_product_attention, wrong, "batch 1", "values are not",
                              "Hint: no typical mistake matches; re-read 'Scaled dot-product attention'")
    assert message.count("Hint:") == 1


def test_attention_a_crash_gets_the_closing_hint():
    def wrong(q, k, v):
        raise ValueError("oops")

    assert_rejected(check_scaled_dot_product_attention, wrong, "raised ValueError: oops",
                    "Hint: no typical mistake matches")


# =============================================================================== chapter 3: TransformerLayer
class SkeletonLayer(nn.Module):
    def __init__(self, dim, num_heads=4, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.act = nn.SiLU()
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)


class GoodLayer(SkeletonLayer):
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class StubLayer(SkeletonLayer):
    def forward(self, x):
        raise NotImplementedError


class PostNorm(SkeletonLayer):
    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class NoResiduals(SkeletonLayer):
    def forward(self, x):
        return self.mlp(self.norm2(self.attn(self.norm1(x))))


class NoMLPResidual(SkeletonLayer):
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return self.mlp(self.norm2(x))


class ResidualAroundNorm(SkeletonLayer):
    def forward(self, x):
        x = self.norm1(x)
        x = x + self.attn(x)
        x = self.norm2(x)
        return x + self.mlp(x)


def test_layer_reference_passes(capsys):
    assert_passes(check_transformer_layer, me.TransformerLayer, capsys)
    assert_passes(check_transformer_layer, GoodLayer, capsys)


def test_layer_stub_is_not_implemented(capsys):
    assert_not_implemented(check_transformer_layer, StubLayer, capsys)


def test_layer_rejects_post_norm():
    assert_rejected(check_transformer_layer, PostNorm, "d=16", "post-norm")


def test_layer_rejects_missing_residuals():
    assert_rejected(check_transformer_layer, NoResiduals, "you forgot both residuals")
    assert_rejected(check_transformer_layer, NoMLPResidual, "residual around the MLP")


def test_layer_rejects_a_residual_around_the_norm():
    assert_rejected(check_transformer_layer, ResidualAroundNorm, "un-normalised x")


class ScaledOutput(GoodLayer):
    def forward(self, x):
        return 2 * super().forward(x)


def test_layer_unrecognised_mistake_gets_the_closing_hint():
    message = assert_rejected(check_transformer_layer, ScaledOutput, "d=16", "values are not",
                              "Hint: no typical mistake matches; re-read 'The pre-norm encoder layer'")
    assert message.count("Hint:") == 1


def test_layer_recognised_mistake_keeps_its_own_hint():
    message = assert_rejected(check_transformer_layer, PostNorm, "post-norm")
    assert "no typical mistake matches" not in message
