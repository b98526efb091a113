"""The checks of chapters 1-3: the reference passes, a stub is "not implemented yet", and wrong
answers that look right are rejected with a message that says what is wrong."""

import math

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
    check_mv2_cost,
    check_receptive_field,
    check_scaled_dot_product_attention,
    check_transformer_layer,
    check_transformer_layer_macs,
)
from mobilevit_edu.layers import ConvNormAct, MultiHeadSelfAttention

from _checking import is_stub as assert_not_implemented
from _checking import passes as assert_passes
from _checking import rejects as assert_rejected
from _checking import stub


# =============================================================================== chapter 1: conv2d_unfold
def unfold_matmul(x, weight, bias, stride, padding, dilation, groups, *, swap_hw=False, use_bias=True,
                  use_dilation=True, use_groups=True, use_stride=True, use_padding=True):
    """A student's conv2d_unfold with switches for the typical mistakes.

    (Written like the exercise's skeleton: this docstring and the comment below mention F.conv2d, which
    the check must not mistake for a call.)"""
    B, C, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    d = dilation if use_dilation else 1
    stride = stride if use_stride else 1
    padding = padding if use_padding else 0
    H_out = me.conv_output_size(H, kh, stride, padding, d)
    W_out = me.conv_output_size(W, kw, stride, padding, d)
    cols = F.unfold(x, (kh, kw), dilation=d, padding=padding, stride=stride)  # like F.conv2d's windows
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
    wrong = lambda *a: unfold_matmul(*a, use_stride=False)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "stride 2", "pass stride to F.unfold")


def test_conv_rejects_ignoring_padding():
    wrong = lambda *a: unfold_matmul(*a, use_padding=False)  # noqa: E731
    assert_rejected(check_conv2d_unfold, wrong, "padding 1 on a 7x10 input", "pass padding to F.unfold")


def conv_with_F(x, weight, bias, stride, padding, dilation, groups):
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv_with_module(x, weight, bias, stride, padding, dilation, groups):
    conv = nn.Conv2d(x.shape[1], weight.shape[0], weight.shape[-2:], stride, padding, dilation, groups, bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        return conv(x)


def conv_with_torch_conv2d(x, weight, bias, stride, padding, dilation, groups):
    return torch.conv2d(x, weight, bias, stride, padding, dilation, groups)


@pytest.mark.parametrize("answer", [conv_with_F, conv_with_module, conv_with_torch_conv2d],
                         ids=["F.conv2d", "nn.Conv2d", "torch.conv2d"])
def test_conv_rejects_calling_the_convolution_it_replaces(answer):
    message = assert_rejected(check_conv2d_unfold, answer, "the very convolution this exercise rebuilds", "F.unfold")
    assert "raised" not in message  # says what is wrong, not that something crashed


def test_conv_rejects_a_convolution_hidden_from_the_patch(capsys):
    from torch.nn.functional import conv2d  # a reference the runtime patch cannot replace

    def sneaky(x, weight, bias, stride, padding, dilation, groups):
        return conv2d(x, weight, bias, stride, padding, dilation, groups)

    assert_rejected(check_conv2d_unfold, sneaky, "the very convolution this exercise rebuilds", "conv2d(...)")


def test_conv_rejects_a_convolution_whose_exception_is_swallowed():
    def swallowing(x, weight, bias, stride, padding, dilation, groups):
        try:
            F.conv2d(x, weight)
        except Exception:
            pass
        return me.conv2d_unfold(x, weight, bias, stride, padding, dilation, groups)

    assert_rejected(check_conv2d_unfold, swallowing, "the very convolution this exercise rebuilds")


def test_conv_check_restores_F_conv2d():
    original = F.conv2d, torch.conv2d
    with pytest.raises(CheckFailed):
        check_conv2d_unfold(conv_with_F)
    assert (F.conv2d, torch.conv2d) == original
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    assert F.conv2d(x, w).shape == (1, 3, 3, 3)


# =============================================================================== chapter 1: receptive_field
def receptive_field(layers, *, use_dilation=True, jump="before", start=1):
    """A student's receptive_field with switches for the typical mistakes."""
    size, j = start, 1
    for k, s, d in layers:
        d = d if use_dilation else 1
        if jump == "including":
            j *= s
        size += (k - 1) * d * (1 if jump == "none" else j)
        if jump == "before":
            j *= s
    return size


def test_receptive_field_right_answer_passes(capsys):
    assert_passes(check_receptive_field, receptive_field, capsys)


def test_receptive_field_stub_is_not_implemented(capsys):
    assert_not_implemented(check_receptive_field, stub, capsys)


@pytest.mark.parametrize("switches,case,hint", [
    ({"use_dilation": False}, "dilation 2", "you ignore dilation"),
    ({"jump": "none"}, "3x3 stride 2, then two 3x3", "product of the strides of the layers before it"),
    ({"jump": "including"}, "3x3 stride 2, then two 3x3", "strides of the layers *before* a layer, not its own"),
    ({"start": 0}, "one 3x3 convolution", "off by one"),
], ids=["no-dilation", "no-jump", "jump-with-own-stride", "off-by-one"])
def test_receptive_field_typical_mistakes_are_named(switches, case, hint):
    message = assert_rejected(check_receptive_field, lambda layers: receptive_field(layers, **switches), case, hint)
    assert message.count("Hint:") == 1


def test_receptive_field_two_mistakes_get_no_misleading_hint():
    wrong = lambda layers: receptive_field(layers, use_dilation=False, start=0)  # noqa: E731
    message = assert_rejected(check_receptive_field, wrong, "one 3x3 convolution", "your receptive field is 2; expected 3")
    assert "you ignore dilation" not in message


def test_receptive_field_is_measured_not_assumed():
    from mobilevit_edu.checks.cnn import measured_receptive_field

    assert measured_receptive_field([(3, 1, 1)]) == 3
    assert measured_receptive_field([(3, 2, 1), (3, 1, 1)]) == 7
    assert measured_receptive_field([(3, 1, 2)]) == 5


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


class ReLU6AfterProjection(SkeletonMV2):
    def forward(self, x):
        y = F.relu6(self.project(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y


class ProjectionWithoutBN(SkeletonMV2):
    def forward(self, x):
        y = self.project.conv(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


class NoDepthwise(SkeletonMV2):
    def forward(self, x):
        y = self.project(self.expand(x))
        return x + y if self.use_residual else y


class ExpandConvOnly(SkeletonMV2):
    def forward(self, x):
        expand = self.expand.conv if isinstance(self.expand, ConvNormAct) else self.expand
        y = self.project(self.depthwise(expand(x)))
        return x + y if self.use_residual else y


class SiLUAfterResidual(SkeletonMV2):
    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return F.silu(x + y) if self.use_residual else y


class NoDepthwiseWhenStrided(SkeletonMV2):
    def forward(self, x):
        hidden = self.expand(x)
        y = self.project(self.depthwise(hidden) if self.use_residual else hidden)
        return x + y if self.use_residual else y


class DoubledOutput(GoodMV2):
    def forward(self, x):
        return 2 * super().forward(x)


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


@pytest.mark.parametrize("answer,hint", [
    (ReLU6AfterProjection, "no activation (here ReLU6) after self.project"),
    (ProjectionWithoutBN, "you skipped the projection's BatchNorm"),
    (NoDepthwise, "you skipped self.depthwise"),
    (ExpandConvOnly, "you skipped the expansion's BatchNorm and SiLU"),
    (SiLUAfterResidual, "no activation after the residual sum"),
], ids=["relu6-after-projection", "projection-without-bn", "no-depthwise", "expand-conv-only", "silu-after-residual"])
def test_mv2_names_each_typical_mistake(answer, hint):
    message = assert_rejected(check_inverted_residual, answer, "the residual applies", hint)
    assert message.count("Hint:") == 1 and "no typical mistake matches" not in message


def test_mv2_output_of_the_input_size_on_a_strided_block_is_explained():
    assert_rejected(check_inverted_residual, NoDepthwiseWhenStrided, "stride 2, 16 -> 24", "(2, 24, 11, 9)",
                    "the stride is in self.depthwise: did you skip it?")


def test_mv2_mistake_after_the_last_submodule_is_located_and_described():
    message = assert_rejected(check_inverted_residual, DoubledOutput, "values are not",
                              "Hint: every submodule gets the right input", "after `self.project.norm`",
                              "your output is 2 times the package's output", "re-read 'The block' in chapter 2")
    assert message.count("Hint:") == 1


def test_mv2_rejects_renamed_submodules():
    assert_rejected(check_inverted_residual, RenamedSubmodules, "reference weights do not fit")


def test_mv2_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    check_inverted_residual(GoodMV2)
    assert torch.equal(torch.random.get_rng_state(), before)


# =============================================================================== chapter 2: mv2_cost
def mv2_cost(c_in, c_out, stride, r, H, W, *, expand_on="input", outputs="ceil", bn=2, dense_dw=False,
             hidden_of="in", expand_if_r1=False):
    """A student's hand count with switches for the typical mistakes."""
    has_expand = r != 1 or expand_if_r1
    hidden = me.make_divisible(round((c_in if hidden_of == "in" else c_out) * r)) if has_expand else c_in
    H_out, W_out = {"ceil": (math.ceil(H / stride), math.ceil(W / stride)), "floor": (H // stride, W // stride),
                    "input": (H, W)}[outputs]
    weights = {"expand": c_in * hidden if has_expand else 0, "depthwise": 9 * hidden * (hidden if dense_dw else 1),
               "project": hidden * c_out}
    params = sum(weights.values()) + bn * ((hidden if has_expand else 0) + hidden + c_out)
    e_H, e_W = (H, W) if expand_on == "input" else (H_out, W_out)
    macs = weights["expand"] * e_H * e_W + (weights["depthwise"] + weights["project"]) * H_out * W_out
    return params, macs


def test_mv2_cost_right_count_passes(capsys):
    assert_passes(check_mv2_cost, mv2_cost, capsys)


def test_mv2_cost_stub_is_not_implemented(capsys):
    assert_not_implemented(check_mv2_cost, stub, capsys)


@pytest.mark.parametrize("switches,case,hint", [
    ({"expand_on": "output"}, "stages.1.0", "the 1x1 expansion runs before the stride"),
    ({"outputs": "input"}, "stages.1.0", "run on the halved map"),
    ({"outputs": "floor"}, "odd 9x7", "ceil(H / 2)"),
    ({"bn": 0}, "stages.1.0", "2 parameters per channel"),
    ({"bn": 4}, "stages.1.0", "running mean and variance are buffers"),
    ({"dense_dw": True}, "stages.1.0", "one 3x3 kernel per channel"),
    ({"hidden_of": "out"}, "stages.1.0", "*input* channels"),
    ({"expand_if_r1": True}, "expansion 1", "no expansion (self.expand is nn.Identity)"),
], ids=["expand-on-output", "all-on-input", "floor", "no-bn", "bn-stats", "dense-depthwise", "hidden-from-output",
        "expand-when-r1"])
def test_mv2_cost_typical_mistakes_are_named(switches, case, hint):
    wrong = lambda *a: mv2_cost(*a, **switches)  # noqa: E731
    message = assert_rejected(check_mv2_cost, wrong, case, hint)
    assert message.count("Hint:") == 1


def test_mv2_cost_wants_two_numbers():
    assert_rejected(check_mv2_cost, lambda *a: mv2_cost(*a)[1], "return two numbers")


# =============================================================================== chapter 3: attention
def attention(q, k, v, scale=None, dim=-1):
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=dim) @ v


def test_attention_reference_passes(capsys):
    assert_passes(check_scaled_dot_product_attention, attention, capsys)


def test_attention_rejects_calling_the_function_it_rebuilds():
    def fused(q, k, v):
        """Not softmax(q k^T / sqrt(e)) v written out: F.scaled_dot_product_attention itself."""
        return F.scaled_dot_product_attention(q, k, v)

    message = assert_rejected(check_scaled_dot_product_attention, fused, "batch 1", "the very function this exercise rebuilds")
    assert message.count("Hint:") == 1 and "no typical mistake matches" not in message


def test_attention_rejects_the_fused_function_hidden_from_the_patch():
    from torch.nn.functional import scaled_dot_product_attention  # a reference the runtime patch cannot replace

    def imported(q, k, v):
        return scaled_dot_product_attention(q, k, v)

    assert_rejected(check_scaled_dot_product_attention, imported, "the very function this exercise rebuilds")


def test_attention_stub_is_not_implemented(capsys):
    assert_not_implemented(check_scaled_dot_product_attention, stub, capsys)


@pytest.mark.parametrize("wrong,case,hint", [
    (lambda q, k, v: attention(q, k, v, 1.0), "batch 1", "you forgot the scale"),
    (lambda q, k, v: attention(q, k, v, 1 / q.shape[-1]), "batch 1", "you divide by e; the scale is 1 / sqrt(e)"),
    (lambda q, k, v: attention(q, k, v, dim=-2), "batch 1", "softmax over the wrong axis"),
    (lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v * q.shape[-1] ** -0.5, "batch 1",
     "you scale after the softmax"),
    (lambda q, k, v: attention(q, k, v, k.shape[-2] ** -0.5), "batch 1", "you scale by the number of keys"),
    # right on the first two cases (values as large as queries), wrong on the third: the reported bug
    (lambda q, k, v: attention(q, k, v, v.shape[-1] ** -0.5), "5 queries attend to 9 keys",
     "you scale by the size of the values"),
    (lambda q, k, v: attention(k, q, v), "batch 1", "are queries and keys swapped?"),
], ids=["no-scale", "divide-by-e", "softmax-axis", "scale-after-softmax", "scale-by-keys", "scale-by-value-size",
        "q-k-swapped"])
def test_attention_names_each_typical_mistake(wrong, case, hint):
    message = assert_rejected(check_scaled_dot_product_attention, wrong, case, hint)
    assert message.count("Hint:") == 1


def test_attention_wrong_scale_on_the_third_case_is_not_called_a_softmax_axis_mistake():
    wrong = lambda q, k, v: attention(q, k, v, v.shape[-1] ** -0.5)  # noqa: E731
    message = assert_rejected(check_scaled_dot_product_attention, wrong, "5 queries attend to 9 keys")
    assert "axis" not in message


def test_attention_hints_only_name_mistakes_that_give_the_output():
    """Every hint of every case, fed the output of its own mistake, is the hint that fires; and the right
    output matches no hint."""
    from mobilevit_edu.checks.attention import ATTENTION_CASES, _attention_variants

    generator = torch.Generator().manual_seed(0)
    for _, *shapes in ATTENTION_CASES:
        q, k, v = (torch.randn(shape, generator=generator) for shape in shapes)
        variants = _attention_variants(q, k, v)
        assert len(variants) >= 5
        right = F.scaled_dot_product_attention(q, k, v)
        for alt, sentence in variants:
            matching = [s for other, s in variants if torch.allclose(alt, other, atol=1e-5, rtol=1e-4)]
            assert matching == [sentence]
            assert not torch.allclose(alt, right, atol=1e-5, rtol=1e-4)


def test_attention_unrecognised_mistake_gets_the_closing_hint():
    wrong = lambda q, k, v: attention(q, k, v) + 0.1  # noqa: E731
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


class NoAttentionResidual(SkeletonLayer):
    def forward(self, x):
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class OneNormTwice(SkeletonLayer):
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm1(x))


class NoNorms(SkeletonLayer):
    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class MLPFirst(SkeletonLayer):
    def forward(self, x):
        x = x + self.mlp(self.norm1(x))
        return x + self.attn(self.norm2(x))


class Parallel(SkeletonLayer):
    def forward(self, x):
        return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))


class FinalNormInside(GoodLayer):
    def forward(self, x):
        return self.norm2(super().forward(x))


class FourHeadsAlways(SkeletonLayer):
    """Writes the attention by hand and hard-codes 4 heads (the case with 2 heads must catch it)."""

    def forward(self, x):
        qkv = self.attn.qkv(self.norm1(x))
        q, k, v = rearrange(qkv, "b n (three h e) -> three b h n e", three=3, h=4)
        y = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n e -> b n (h e)")
        x = x + self.attn.proj(y)
        return x + self.mlp(self.norm2(x))


class ScaledOutput(GoodLayer):
    def forward(self, x):
        return 2 * super().forward(x)


@pytest.mark.parametrize("answer,case,hint", [
    (NoAttentionResidual, "d=16", "you forgot the residual around attention"),
    (OneNormTwice, "d=16", "you use self.norm1 twice"),
    (NoNorms, "d=16", "you forgot the LayerNorms"),
    (MLPFirst, "d=16", "attention comes first, then the MLP"),
    (Parallel, "d=16", "the two sub-layers run one after the other"),
    (FinalNormInside, "d=16", "no LayerNorm at the end of the layer"),
    (FourHeadsAlways, "2 heads", "your attention uses 4 head(s); this case asks for 2"),
], ids=["no-attention-residual", "norm1-twice", "no-norms", "mlp-first", "parallel", "final-norm-inside", "hard-coded-heads"])
def test_layer_names_each_typical_mistake(answer, case, hint):
    message = assert_rejected(check_transformer_layer, answer, case, hint)
    assert message.count("Hint:") == 1 and "no typical mistake matches" not in message


def test_layer_mistake_after_the_last_submodule_is_located_and_described():
    message = assert_rejected(check_transformer_layer, ScaledOutput, "d=16", "values are not",
                              "Hint: every submodule gets the right input", "your output is 2 times",
                              "re-read 'The pre-norm encoder layer'")
    assert message.count("Hint:") == 1


def test_layer_recognised_mistake_keeps_its_own_hint():
    message = assert_rejected(check_transformer_layer, PostNorm, "post-norm")
    assert "no typical mistake matches" not in message


# =============================================================================== chapter 3: layer MACs
def layer_macs(S, N, d, heads, ratio, *, attention_products=2, per_head=None, qkv=3, proj=1, mlp=True,
               hidden=None, sequences=True, one_long_sequence=False):
    """A student's hand count with switches for the typical mistakes."""
    hidden = int(d * ratio) if hidden is None else hidden
    linear = N * d * d * (qkv + proj) + (2 * N * d * hidden if mlp else 0)
    attention = attention_products * N * N * d
    if per_head == "times":
        attention *= heads
    elif per_head == "one":
        attention //= heads
    if one_long_sequence:
        return S * linear + 2 * (S * N) ** 2 * d
    return (S if sequences else 1) * (linear + attention)


def test_layer_macs_right_count_passes(capsys):
    assert_passes(check_transformer_layer_macs, layer_macs, capsys)


def test_layer_macs_stub_is_not_implemented(capsys):
    assert_not_implemented(check_transformer_layer_macs, stub, capsys)


@pytest.mark.parametrize("switches,case,hint", [
    ({"attention_products": 1}, "one sequence", "two products of N^2 d"),
    ({"per_head": "times"}, "one sequence", "whatever the number of heads"),
    ({"per_head": "one"}, "one sequence", "you count one head"),
    ({"qkv": 1}, "one sequence", "3 N d^2, not N d^2"),
    ({"proj": 0}, "one sequence", "you forgot the output projection"),
    ({"mlp": False}, "one sequence", "you forgot the MLP"),
    ({"hidden": None, "ratio_two": True}, "mlp_ratio 4", "mlp_ratio * d, not 2d"),
    ({"sequences": False}, "S = B*P = 8 sequences", "multiply by S"),
    ({"one_long_sequence": True}, "S = B*P = 8 sequences", "attention runs within each sequence"),
], ids=["one-product", "times-heads", "one-head", "qkv-d2", "no-proj", "no-mlp", "mlp-2d", "one-sequence",
        "one-long-sequence"])
def test_layer_macs_typical_mistakes_are_named(switches, case, hint):
    if switches.pop("ratio_two", False):
        def wrong(S, N, d, heads, ratio):
            return layer_macs(S, N, d, heads, ratio, hidden=2 * d)
    else:
        def wrong(S, N, d, heads, ratio):
            return layer_macs(S, N, d, heads, ratio, **switches)
    message = assert_rejected(check_transformer_layer_macs, wrong, case, hint)
    assert message.count("Hint:") == 1
