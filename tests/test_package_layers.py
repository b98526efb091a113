"""The building blocks: convolution as unfold, patches, MV2, attention, transformer, MobileViT block."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import mobilevit_edu as me


# ---------------------------------------------------------------- conv2d_unfold
CONV_CASES = [
    # (B, C_in, H, W, C_out, k, stride, padding, dilation, groups)
    (1, 3, 10, 12, 32, (4, 5), 1, 0, 1, 1),  # chapter 1's seed example: output 7x8
    (2, 4, 9, 7, 6, 3, 2, 1, 1, 1),
    (3, 4, 11, 13, 8, 3, (2, 1), (1, 2), 2, 2),
    (1, 6, 8, 8, 6, 3, 1, 1, 1, 6),  # depthwise
    (2, 6, 16, 10, 12, 3, 2, 1, 1, 6),  # depthwise with channel multiplier 2
    (1, 5, 7, 9, 4, 1, 1, 0, 1, 1),  # pointwise
    (2, 3, 15, 6, 5, (3, 2), 3, 0, (2, 1), 1),
]


@pytest.mark.parametrize("B,C,H,W,O,k,s,p,d,g", CONV_CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv2d_unfold_equals_conv2d(B, C, H, W, O, k, s, p, d, g, with_bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(B, C, H, W)
    weight = torch.randn(O, C // g, kh, kw)
    bias = torch.randn(O) if with_bias else None
    expected = F.conv2d(x, weight, bias, stride=s, padding=p, dilation=d, groups=g)
    assert_close(me.conv2d_unfold(x, weight, bias, s, p, d, g), expected, atol=1e-4, rtol=1e-4)


def test_conv2d_unfold_seed_example_output_is_7x8():
    out = me.conv2d_unfold(torch.randn(1, 3, 10, 12), torch.randn(32, 3, 4, 5))
    assert out.shape == (1, 32, 7, 8)


def test_conv2d_unfold_rejects_channels_that_do_not_match_the_weight():
    with pytest.raises(ValueError, match=r"weight expects 4 input channels .* x has 3"):
        me.conv2d_unfold(torch.randn(1, 3, 8, 8), torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_unfold_says_how_to_replace_string_padding(padding):
    with pytest.raises(ValueError, match=r"padding must be a number of pixels .* use 0 for 'valid'"):
        me.conv2d_unfold(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding=padding)


def test_conv2d_unfold_rejects_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError, match="groups must divide"):
        me.conv2d_unfold(torch.randn(1, 6, 8, 8), torch.randn(4, 2, 3, 3), groups=4)


def test_conv2d_unfold_rejects_a_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match="does not fit"):
        me.conv2d_unfold(torch.randn(1, 3, 2, 2), torch.randn(1, 3, 3, 3))


# ---------------------------------------------------------------- patches
@pytest.mark.parametrize("shape,patch", [((2, 3, 8, 6), 2), ((1, 5, 6, 9), (2, 3)), ((1, 1, 4, 4), 4)])
def test_fold_inverts_unfold_exactly(shape, patch):
    x = torch.randn(shape)
    patches = me.unfold_patches(x, patch)
    assert torch.equal(me.fold_patches(patches, shape[-2:], patch), x)


def test_unfold_patches_layout_is_position_major_and_row_major():
    # a 1-channel 4x4 map numbered 0..15 in row-major order, 2x2 patches
    x = torch.arange(16.0).view(1, 1, 4, 4)
    patches = me.unfold_patches(x, 2)[0, :, :, 0]  # (P, N)
    # position 0 (top-left pixel) of the 4 patches, patches in row-major order
    assert patches[0].tolist() == [0, 2, 8, 10]
    # patch 0 (top-left patch): its pixels in row-major order
    assert patches[:, 0].tolist() == [0, 1, 4, 5]
    # patch 1 is the top-right patch
    assert patches[:, 1].tolist() == [2, 3, 6, 7]


def test_unfold_patches_rejects_sizes_that_are_not_multiples_of_the_patch():
    with pytest.raises(ValueError, match=r"7x8.*multiples of patch_size \(2x2\)"):
        me.unfold_patches(torch.randn(1, 3, 7, 8), 2)


def test_fold_patches_rejects_patches_that_do_not_fit_the_output_size():
    with pytest.raises(ValueError, match="do not fit output_size"):
        me.fold_patches(torch.randn(1, 4, 15, 3), (8, 8), 2)


def test_patch_size_must_be_positive():
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        me.unfold_patches(torch.randn(1, 3, 8, 8), 0)


# ---------------------------------------------------------------- MV2
@pytest.mark.parametrize(
    "cin,cout,stride,ratio,residual",
    [(16, 16, 1, 2, True), (16, 24, 1, 4, False), (16, 16, 2, 4, False), (8, 8, 1, 1, True)],
)
def test_inverted_residual_shape_and_residual_rule(cin, cout, stride, ratio, residual):
    block = me.InvertedResidual(cin, cout, stride, ratio).eval()
    assert block.use_residual is residual
    assert block(torch.randn(2, cin, 9, 10)).shape == (2, cout, (9 - 1) // stride + 1, (10 - 1) // stride + 1)


def test_inverted_residual_without_expansion_has_no_expand_conv():
    block = me.InvertedResidual(8, 8, 1, 1)
    assert isinstance(block.expand, torch.nn.Identity)
    assert block.depthwise.conv.in_channels == 8


def test_inverted_residual_projection_is_linear():
    block = me.InvertedResidual(8, 16, 1, 2)
    assert isinstance(block.project.act, torch.nn.Identity)
    assert isinstance(block.depthwise.act, torch.nn.SiLU)


def test_inverted_residual_hidden_width_is_ratio_times_input_channels():
    block = me.InvertedResidual(24, 48, 2, 4)
    assert block.expand.conv.out_channels == 96


# ---------------------------------------------------------------- attention and transformer
def test_attention_equals_the_explicit_softmax_formula():
    attn = me.MultiHeadSelfAttention(32, num_heads=4)
    x = torch.randn(3, 10, 32)
    q, k, v = attn.qkv(x).view(3, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(3, 10, 32))
    assert_close(attn(x), expected)
    assert_close(attn.attention_weights(x), weights)


def test_attention_weights_rows_sum_to_one():
    attn = me.MultiHeadSelfAttention(16, num_heads=4)
    w = attn.attention_weights(torch.randn(2, 7, 16))
    assert w.shape == (2, 4, 7, 7)
    assert_close(w.sum(-1), torch.ones(2, 4, 7))


def test_attention_rejects_a_width_not_divisible_by_the_heads():
    with pytest.raises(ValueError, match=r"dim \(30\) must be divisible by num_heads \(4\)"):
        me.MultiHeadSelfAttention(30, 4)


def test_transformer_layer_is_pre_norm():
    layer = me.TransformerLayer(16, 4, 2.0)
    x = torch.randn(2, 5, 16)
    h = x + layer.attn(layer.norm1(x))
    assert_close(layer(x), h + layer.mlp(layer.norm2(h)))
    assert layer.mlp.fc1.out_features == 32


# ---------------------------------------------------------------- MobileViT block
def test_mobilevit_block_keeps_the_shape():
    block = me.MobileViTBlock(48, 64, depth=2).eval()
    assert block(torch.randn(2, 48, 8, 6)).shape == (2, 48, 8, 6)


def test_mobilevit_block_fusion_concatenates_input_and_global_features():
    block = me.MobileViTBlock(8, 16, depth=1).eval()
    assert block.fusion.conv.in_channels == 16  # 2C: [x, conv_proj(...)]
    x = torch.randn(1, 8, 4, 4)
    y = block.conv_proj(block.global_rep(block.local_rep(x)))
    assert_close(block(x), block.fusion(torch.cat([x, y], 1)))


def test_mobilevit_block_attends_across_patches_for_each_position():
    # Pixels at the same position of every 2x2 patch form one sequence: changing one pixel at
    # position 0 of one patch must not change the transformer's output at the other positions.
    block = me.MobileViTBlock(4, 8, depth=1).eval()
    y = torch.randn(1, 8, 4, 4)
    y2 = y.clone()
    y2[:, 0, 0, 0] += 1.0  # one channel at position (0, 0) of patch 0 (all channels: LayerNorm would cancel it)
    diff = (block.global_rep(y) - block.global_rep(y2)).abs().sum(1)[0]  # (4, 4)
    changed = diff > 1e-6
    assert changed[0::2, 0::2].all()  # position 0 of every patch sees it
    assert not changed[1::2, :].any() and not changed[:, 1::2].any()  # other positions do not


def test_mobilevit_block_resizes_non_multiple_sizes_like_timm():
    # The reference implementation resizes bilinearly to the next multiple of the patch size
    # before unfolding and back after folding; pin that behaviour against an explicit recomputation.
    block = me.MobileViTBlock(4, 8, depth=1).eval()
    x = torch.randn(1, 4, 7, 9)
    y = block.local_rep(x)
    up = F.interpolate(y, size=(8, 10), mode="bilinear", align_corners=False)
    tokens = me.unfold_patches(up, 2).flatten(0, 1)  # (B*P, N, d)
    g = me.fold_patches(block.norm(block.transformer(tokens)).view(1, 4, 20, 8), (8, 10), 2)
    g = F.interpolate(g, size=(7, 9), mode="bilinear", align_corners=False)
    expected = block.fusion(torch.cat([x, block.conv_proj(g)], 1))
    assert_close(block(x), expected)


def test_mobilevit_block_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"x must have 8 channels .* got 3"):
        me.MobileViTBlock(8, 16, depth=1)(torch.randn(1, 3, 4, 4))


def test_make_divisible_rounds_to_multiples_of_eight():
    assert [me.make_divisible(v) for v in (32, 48, 36, 4, 100)] == [32, 48, 40, 8, 104]
