"""MobileViTv2 (chapter 10): separable attention, the block, the seven networks against timm, clear errors."""

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.testing import assert_close

import mobilevit_edu as me
from mobilevit_edu.attention_v2 import SeparableSelfAttention, SeparableTransformerLayer, separable_self_attention
from mobilevit_edu.checks import randomize_batchnorm
from mobilevit_edu.convert import convert_timm_v2_state_dict
from mobilevit_edu.models_v2 import CONFIGS_V2, WIDTH_MULTIPLIERS, MobileViTv2Block, mobilevitv2

timm = pytest.importorskip("timm")

# timm 1.0.31's parameter counts (ml-cvnets' model zoo rounds them to 1.4, 2.9, 4.9, 7.5, 10.6, 14.3, 18.4 M)
TIMM_PARAMS = {
    0.5: 1_370_593, 0.75: 2_866_009, 1.0: 4_901_841, 1.25: 7_478_089,
    1.5: 10_594_753, 1.75: 14_251_833, 2.0: 18_449_329,
}
PAPER_PARAMS_M = {0.5: 1.4, 0.75: 2.9, 1.0: 4.9, 1.25: 7.5, 1.5: 10.6, 1.75: 14.3, 2.0: 18.4}


def randomize_groupnorm(module, generator):
    """Random affine parameters for every GroupNorm, so that a misplaced norm changes the output."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.5)
    return module


def randomised_timm(name):
    """timm's model with random weights, random BatchNorm statistics and random GroupNorm affine parameters."""
    g = torch.Generator().manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    return randomize_groupnorm(randomize_batchnorm(model, g), g).eval()


@pytest.fixture(scope="module", params=WIDTH_MULTIPLIERS, ids=lambda a: f"alpha={a}")
def pair(request):
    """(alpha, our model, timm's model) with the same converted weights, in eval mode; built once each."""
    alpha = request.param
    model = mobilevitv2(alpha).eval()
    reference = randomised_timm(model.config.name)
    converted = convert_timm_v2_state_dict(reference.state_dict())
    assert len(converted) == len(reference.state_dict())
    model.load_state_dict(converted)  # strict: every key and shape must fit
    return alpha, model, reference


def test_parameter_count_equals_timm_and_the_model_zoo(pair):
    alpha, model, reference = pair
    assert me.count_parameters(model) == TIMM_PARAMS[alpha] == me.count_parameters(reference)
    assert round(me.count_parameters(model) / 1e6, 1) == PAPER_PARAMS_M[alpha]


@pytest.mark.parametrize("size", [(256, 256), (72, 104)], ids=["256x256", "non-square-not-multiple"])
def test_outputs_equal_timm(pair, size):
    # (72, 104), small to keep the test fast: stages.2 sees 9x13, which its MobileViTv2 block resizes to
    # 10x14; then 5x7 -> 6x8 and 3x4 -> 4x4: every block's resize is exercised
    _, model, reference = pair
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours, theirs = model(x), reference(x)
    assert ours.shape == theirs.shape == (1, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_non_square_batch_of_two_equals_timm():
    reference = randomised_timm("mobilevitv2_050")
    model = mobilevitv2(0.5).eval()
    model.load_state_dict(convert_timm_v2_state_dict(reference.state_dict()))
    x = torch.rand(2, 3, 160, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5
        h = reference.stem(x)
        for i, (ours, stage) in enumerate(zip(model.features(x), reference.stages)):
            h = stage(h)
            assert_close(ours, h, atol=1e-5, rtol=0, msg=f"stages.{i}")


def test_the_config_table():
    cfg = CONFIGS_V2["mobilevitv2_075"]
    assert cfg.stem_channels == 24
    assert [s.channels for s in cfg.stages] == [48, 96, 192, 288, 384]
    assert [s.transformer_dim for s in cfg.stages] == [None, None, 96, 144, 192]  # d = C / 2
    assert [(s.num_mv2, s.stride, s.depth) for s in cfg.stages] == [(1, 1, 0), (2, 2, 0), (1, 2, 2), (1, 2, 4), (1, 2, 3)]
    assert list(CONFIGS_V2) == [f"mobilevitv2_{n}" for n in ("050", "075", "100", "125", "150", "175", "200")]


# ---------------------------------------------------------------- separable attention
def test_separable_attention_equals_timms_linear_self_attention():
    from timm.models.mobilevit import LinearSelfAttention

    torch.manual_seed(0)
    reference = LinearSelfAttention(16).eval()
    ours = SeparableSelfAttention(16)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 16, 4, 25)  # (B, d, P, N)
    assert_close(ours(x), reference(x), atol=1e-6, rtol=0)


def test_separable_layer_equals_timms_linear_transformer_block():
    from timm.models.mobilevit import LinearTransformerBlock

    torch.manual_seed(0)
    reference = randomize_groupnorm(LinearTransformerBlock(24), torch.Generator().manual_seed(0)).eval()
    ours = SeparableTransformerLayer(24)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 24, 4, 9)
    assert_close(ours(x), reference(x), atol=1e-6, rtol=0)


def test_every_patch_gets_the_same_context_vector():
    g = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 1, 4, 10, generator=g), torch.randn(2, 8, 4, 10, generator=g)
    ones = torch.ones(2, 8, 4, 10)  # ReLU(1) = 1: the output is the context vector itself, at every patch
    out = separable_self_attention(query, key, ones)
    assert_close(out, out[..., :1].expand_as(out))
    assert_close(out[..., 0], (key * query.softmax(-1)).sum(-1))


def test_the_token_layout_gives_the_same_result():
    g = torch.Generator().manual_seed(0)
    query, key, value = torch.randn(2, 1, 1, 7, generator=g), torch.randn(2, 5, 1, 7, generator=g), torch.randn(2, 5, 1, 7, generator=g)
    channels_first = separable_self_attention(query, key, value)  # (B, d, 1, N)
    tokens = separable_self_attention(*(t[:, :, 0].transpose(1, 2) for t in (query, key, value)), dim=-2)  # (B, N, d)
    assert_close(tokens, channels_first[:, :, 0].transpose(1, 2))


class LargestResult(TorchFunctionMode):
    """Records the number of elements of the largest tensor any torch function returns inside it."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.largest = max(self.largest, out.numel())
        return out


@pytest.mark.parametrize("n", [256, 1024])
def test_separable_attention_makes_no_tensor_larger_than_the_keys(n):
    d = 8
    query, key, value = torch.randn(1, 1, 1, n), torch.randn(1, d, 1, n), torch.randn(1, d, 1, n)
    with LargestResult() as separable:
        separable_self_attention(query, key, value)
    assert separable.largest == n * d  # linear in N
    q = k = v = torch.randn(1, n, d)
    with LargestResult() as softmax_attention:  # chapter 3's, for contrast: an N x N matrix
        (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    assert softmax_attention.largest == n * n


# ---------------------------------------------------------------- the block
def test_block_pads_by_resizing_the_input_with_align_corners_and_keeps_the_size():
    reference = randomised_timm("mobilevitv2_050").stages[2][1]  # its first MobileViTv2 block: C = 128, d = 64
    ours = MobileViTv2Block(128, 64, depth=2).eval()
    # the converter maps whole-network keys: put the block back at stages.2.1, then take it out again
    converted = convert_timm_v2_state_dict({f"stages.2.1.{k}": v for k, v in reference.state_dict().items()})
    ours.load_state_dict({k.removeprefix("stages.2.1."): v for k, v in converted.items()})
    x = torch.randn(2, 128, 7, 9)
    with torch.no_grad():
        y = ours(x)
        assert y.shape == (2, 128, 8, 10)  # resized up, not back: unlike v1's block
        assert_close(y, reference(x), atol=1e-5, rtol=0)
        # align_corners=True, at the input: the same as resizing x first
        resized = F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=True)
        assert_close(ours(resized), y)


def test_the_network_with_a_small_input():
    model = mobilevitv2(0.5, num_classes=10).eval()
    feats = model.features(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 4)]  # 2x3 -> 2x4
    assert model(torch.rand(1, 3, 32, 40)).shape == (1, 10)  # stages.4 sees 1x2, resized to 2x2


# ---------------------------------------------------------------- clear errors
@pytest.fixture(scope="module")
def small():
    return mobilevitv2(0.5).eval()


def test_wrong_number_of_channels_names_the_argument(small):
    with pytest.raises(ValueError, match=r"x must have 3 channels .* got 1"):
        small(torch.rand(1, 1, 64, 64))


def test_a_3d_tensor_is_told_to_add_a_batch_dimension(small):
    with pytest.raises(ValueError, match=r"4-D tensor .* got 3-D .*unsqueeze\(0\)"):
        small(torch.rand(3, 64, 64))


def test_an_image_too_small_for_the_strides(small):
    with pytest.raises(ValueError, match=r"16x64, too small .* at least 32"):
        small(torch.rand(1, 3, 16, 64))


def test_an_integer_image_or_a_wrong_dtype_is_a_type_error(small):
    with pytest.raises(TypeError, match=r"floating-point .* torch.uint8"):
        small(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"torch.float16 but the model's weights are torch.float32"):
        small(torch.rand(1, 3, 64, 64, dtype=torch.float16))


def test_the_block_names_a_wrong_channel_count():
    with pytest.raises(ValueError, match=r"x must have 16 channels .* got 8"):
        MobileViTv2Block(16, 8, depth=1)(torch.rand(1, 8, 4, 4))


def test_an_unknown_width_multiplier_or_a_misspelt_option():
    with pytest.raises(ValueError, match=r"width_multiplier must be one of .* got 0.6"):
        mobilevitv2(0.6)
    with pytest.raises(TypeError):
        mobilevitv2(1.0, num_clases=10)


def test_the_v2_converter_rejects_v1_and_foreign_keys():
    with pytest.raises(ValueError, match="not a timm MobileViTv2 key"):
        convert_timm_v2_state_dict({"stages.2.1.conv_fusion.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a timm MobileViTv2 key"):
        convert_timm_v2_state_dict({"features.0.weight": torch.zeros(1)})
