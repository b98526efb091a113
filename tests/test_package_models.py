"""The complete networks: exact parameter counts, outputs equal to timm's, clear errors, dtypes, tracing."""

from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

import mobilevit_edu as me

timm = pytest.importorskip("timm")

BUILDERS = {"mobilevit_xxs": me.mobilevit_xxs, "mobilevit_xs": me.mobilevit_xs, "mobilevit_s": me.mobilevit_s}
TIMM_PARAMS = {"mobilevit_xxs": 1_272_024, "mobilevit_xs": 2_317_848, "mobilevit_s": 5_578_632}
PAPER_PARAMS_M = {"mobilevit_xxs": 1.3, "mobilevit_xs": 2.3, "mobilevit_s": 5.6}


def randomised_timm(name):
    """A timm model with random weights *and* random BatchNorm statistics, so no layer is an identity."""
    model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=list(BUILDERS))
def pair(request):
    """(name, our model, timm's model) with the same (converted) weights, in eval mode."""
    name = request.param
    reference = randomised_timm(name)
    model = BUILDERS[name]().eval()
    model.load_state_dict(convert_and_check(reference.state_dict()))
    return name, model, reference


def convert_and_check(state_dict):
    converted = me.convert_timm_state_dict(state_dict)
    assert len(converted) == len(state_dict)
    return converted


def test_parameter_count_equals_timm_and_the_paper(pair):
    name, model, reference = pair
    assert me.count_parameters(model) == TIMM_PARAMS[name] == me.count_parameters(reference)
    assert round(me.count_parameters(model) / 1e6, 1) == PAPER_PARAMS_M[name]


@pytest.mark.parametrize("size", [(256, 256), (160, 224), (200, 264)], ids=["256x256", "non-square", "not-multiple"])
def test_outputs_equal_timm(pair, size):
    # (200, 264): stage 3 sees 25x33, stage 4 13x17, stage 5 7x9 -- none a multiple of the 2x2 patch
    name, model, reference = pair
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours, theirs = model(x), reference(x)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_stage_features_match_timm_stages(pair):
    _, model, reference = pair
    x = torch.rand(1, 3, 128, 96)
    with torch.inference_mode():
        ours = model.features(x)
        h = reference.stem(x)
        for i, stage in enumerate(reference.stages):
            h = stage(h)
            assert_close(ours[i], h, atol=1e-5, rtol=0)


def test_features_have_strides_2_to_32():
    feats = me.mobilevit_xxs().eval().features(torch.rand(1, 3, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in feats] == [s.channels for s in me.XXS.stages]


def test_multiply_adds_at_256_match_the_unfused_count():
    # 407 M for XXS (HF transformers' count; timm's fused attention would hide 78 M of it)
    assert me.count_macs(me.mobilevit_xxs(), torch.rand(1, 3, 256, 256)) == 407_364_096


def test_measure_latency_returns_the_median_and_restores_mode_and_threads():
    model = me.MobileViTBlock(8, 16, depth=1).train()
    threads = torch.get_num_threads()
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(module.training))
    seconds = me.measure_latency(model, torch.rand(1, 8, 8, 8), warmup=2, repeat=3, num_threads=1)
    assert isinstance(seconds, float) and seconds > 0
    assert calls == [False] * 5  # 2 warm-up runs + 3 timed runs, all in eval mode
    assert model.training and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="repeat >= 1"):
        me.measure_latency(model, torch.rand(1, 8, 8, 8), repeat=0)


def test_num_classes_and_in_chans():
    model = me.mobilevit_xxs(num_classes=10, in_chans=1).eval()
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 10)


def test_misspelt_option_is_an_error_not_ignored():
    with pytest.raises(TypeError):
        me.mobilevit_xxs(num_clases=10)


def test_converter_rejects_foreign_keys():
    with pytest.raises(ValueError, match="not a timm MobileViT"):
        me.convert_timm_state_dict({"features.0.weight": torch.zeros(1)})


# ---------------------------------------------------------------- clear errors
@pytest.fixture(scope="module")
def xxs():
    return me.mobilevit_xxs().eval()


def test_wrong_number_of_channels_names_the_argument(xxs):
    with pytest.raises(ValueError, match=r"x must have 3 channels .* got 1"):
        xxs(torch.rand(1, 1, 64, 64))


def test_a_3d_tensor_is_told_to_add_a_batch_dimension(xxs):
    with pytest.raises(ValueError, match=r"4-D tensor .* got 3-D .*unsqueeze\(0\)"):
        xxs(torch.rand(3, 64, 64))


def test_an_image_too_small_for_the_strides(xxs):
    with pytest.raises(ValueError, match=r"16x64, too small .* at least 32"):
        xxs(torch.rand(1, 3, 16, 64))


def test_an_integer_image_is_a_type_error(xxs):
    with pytest.raises(TypeError, match=r"floating-point .* torch.uint8"):
        xxs(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_a_dtype_that_does_not_match_the_weights(xxs):
    with pytest.raises(TypeError, match=r"torch.float16 but the model's weights are torch.float32"):
        xxs(torch.rand(1, 3, 64, 64, dtype=torch.float16))


def test_a_patch_size_that_does_not_fit():
    with pytest.raises(ValueError, match="patch_size must be a positive int or a pair"):
        me.MobileViTBlock(8, 16, depth=1, patch_size=(2, 2, 2))
    with pytest.raises(ValueError, match=r"multiples of patch_size \(3x3\)"):
        me.unfold_patches(torch.rand(1, 8, 8, 8), 3)


def test_not_a_tensor(xxs):
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        xxs([[0.0]])


# ---------------------------------------------------------------- dtypes, layouts, batch 1, tracing
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_with_a_matching_model(dtype, xxs):
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = xxs(x)
        out = me.mobilevit_xxs().eval().to(dtype)
        out.load_state_dict(xxs.state_dict())
        y = out(x.to(dtype))
    assert y.dtype == dtype
    assert_close(y.float(), expected, atol=0.05, rtol=0.05)


def test_channels_last_input_gives_the_same_output(xxs):
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        assert_close(xxs(x.to(memory_format=torch.channels_last)), xxs(x), atol=1e-5, rtol=1e-5)


def test_batch_of_one(xxs):
    with torch.inference_mode():
        assert xxs(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shapes are baked into a trace, as with timm
def test_torch_jit_trace(xxs):
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(xxs, x)
        assert_close(traced(x), xxs(x))


@pytest.mark.parametrize("output_stride, expected", [(32, (2, 4, 8, 16, 32)), (16, (2, 4, 8, 16, 16)), (8, (2, 4, 8, 8, 8))])
def test_stage_strides_recorded_at_build_are_the_strides_features_produce(output_stride, expected):
    model = me.MobileViT(replace(me.XXS, output_stride=output_stride)).eval()
    with torch.no_grad():
        outputs = model.features(torch.zeros(1, 3, 64, 64))
    assert model.stage_strides == expected
    assert tuple(64 // out.shape[-1] for out in outputs) == expected
