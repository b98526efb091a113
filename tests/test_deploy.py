"""mobilevit_edu.deploy: BatchNorm folding, the fused inference-only network, ONNX export."""


import pytest
import torch
from torch import nn

import mobilevit_edu as me
from mobilevit_edu import deploy
from mobilevit_edu.block import MobileViTBlock
from mobilevit_edu.checks import randomize_batchnorm

from _tiny import TINY  # a small MobileViT with every kind of block: the export tests share it


def conv_bn(conv, seed=0):
    bn = randomize_batchnorm(nn.BatchNorm2d(conv.out_channels, eps=1e-3), torch.Generator().manual_seed(seed))
    return conv, bn.eval()


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True),
        nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),  # depthwise
        nn.Conv2d(5, 7, (1, 3), dilation=2, bias=True),
    ],
    ids=["3x3", "stride2-bias", "depthwise", "1x3-dilated-bias"],
)
def test_fold_batchnorm_equals_conv_then_bn_in_eval_mode(conv):
    conv, bn = conv_bn(conv)
    x = torch.randn(2, conv.in_channels, 9, 11)
    folded = deploy.fold_batchnorm(conv, bn)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    assert folded.bias is not None and isinstance(folded, nn.Conv2d)


def test_fold_batchnorm_leaves_its_inputs_unchanged():
    conv, bn = conv_bn(nn.Conv2d(3, 4, 3, bias=False))
    weight, mean = conv.weight.clone(), bn.running_mean.clone()
    deploy.fold_batchnorm(conv, bn)
    assert torch.equal(conv.weight, weight) and torch.equal(bn.running_mean, mean) and conv.bias is None


def test_fold_batchnorm_without_affine_parameters():
    conv = nn.Conv2d(3, 4, 1)
    bn = nn.BatchNorm2d(4, affine=False).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(deploy.fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_rejects_mismatched_or_wrong_modules():
    with pytest.raises(ValueError, match="6 features but conv has 4 output channels"):
        deploy.fold_batchnorm(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(6))
    with pytest.raises(TypeError, match="conv must be an nn.Conv2d"):
        deploy.fold_batchnorm(nn.Linear(3, 4), nn.BatchNorm2d(4))
    with pytest.raises(TypeError, match="bn must be an nn.BatchNorm2d"):
        deploy.fold_batchnorm(nn.Conv2d(3, 4, 1), nn.LayerNorm(4))
    with pytest.raises(ValueError, match="no running statistics"):
        deploy.fold_batchnorm(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))


@pytest.fixture(scope="module")
def networks():
    """The three networks with random weights and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    return {
        builder.__name__: randomize_batchnorm(builder(), torch.Generator().manual_seed(k)).eval()
        for k, builder in enumerate((me.mobilevit_xxs, me.mobilevit_xs, me.mobilevit_s))
    }


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s"])
def test_fuse_equals_the_network_and_leaves_no_batchnorm(networks, name):
    model = networks[name]
    fused = deploy.fuse(model)
    x = torch.rand(2, 3, 128, 160)  # stages.4 is 4x5: its MobileViT block resizes, a path of its own
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    n_conv_with_bias = sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in fused.modules())
    assert n_bn > 0 and n_conv_with_bias == n_bn  # every BatchNorm became one conv's bias


def test_fuse_leaves_the_original_untouched(networks):
    model = networks["mobilevit_xxs"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = deploy.fuse(model)
    assert model.stem.norm.__class__ is nn.BatchNorm2d
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert fused.net is not model and fused.net.stem.conv.weight.data_ptr() != model.stem.conv.weight.data_ptr()


def test_fuse_works_in_channels_last_and_at_other_sizes(networks):
    model = networks["mobilevit_xxs"]
    fused = deploy.fuse(model).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 160, 224)  # 5x7 at the last stage: not multiples of the 2x2 patch
    with torch.no_grad():
        torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-5, rtol=1e-5)


def test_fuse_refuses_a_model_in_training_mode():
    model = me.mobilevit_xxs()  # a new model is in training mode
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        deploy.fuse(model)
    model.eval()
    model.stages[2].train()  # one part left in training mode is enough to refuse
    with pytest.raises(ValueError, match=r"training mode \(\d+ module\(s\), e.g. stages.2\)"):
        deploy.fuse(model)


def test_the_fused_network_cannot_be_trained(networks):
    fused = deploy.fuse(networks["mobilevit_xxs"])
    assert not fused.training
    with pytest.raises(RuntimeError, match="fused for inference.*cannot be trained"):
        fused.train()
    assert fused.eval() is fused  # eval() is train(False): allowed
    fused.net.stages[0].train()  # around the guard: the forward pass refuses
    with pytest.raises(RuntimeError, match="training mode"):
        fused(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="already fused"):
        deploy.fuse(fused.eval())


def test_fuse_refuses_a_batchnorm_that_follows_no_convolution():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1)).eval()
    with pytest.raises(ValueError, match="1 BatchNorm.*do not directly follow a Conv2d.*e.g. 0"):
        deploy.fuse(model)


def test_fuse_folds_timm_mobilenetv2():
    timm = pytest.importorskip("timm")
    model = randomize_batchnorm(timm.create_model("mobilenetv2_100", pretrained=False), torch.Generator().manual_seed(0))
    model.eval()
    fused = deploy.fuse(model)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert isinstance(fused.net.blocks[1][0].bn1[1], nn.ReLU6)  # BatchNormAct2d keeps its activation


# ---------------------------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = randomize_batchnorm(me.MobileViT(TINY), torch.Generator().manual_seed(0)).eval()
    path = deploy.export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", image_size=(64, 96))
    return model, path


def test_export_onnx_writes_one_file_that_onnx_runtime_runs_with_any_batch_size(tiny_onnx):
    model, path = tiny_onnx
    assert [p.name for p in path.parent.iterdir()] == ["tiny.onnx"]  # the weights are inside: no .data file
    session = deploy.onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["image"] and session.get_outputs()[0].name == "logits"
    for batch in (1, 3):
        x = torch.rand(batch, 3, 64, 96)
        with torch.no_grad():
            torch.testing.assert_close(deploy.run_onnx(session, x), model(x), atol=1e-4, rtol=1e-4)


def test_onnx_operator_counts_see_the_convolutions_and_attention(tiny_onnx):
    model, path = tiny_onnx
    counts = dict(deploy.onnx_operator_counts(path))
    assert counts["Conv"] == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert counts["LayerNormalization"] == sum(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert counts["Softmax"] == sum(s.depth for s in TINY.stages)  # one attention per transformer layer
    assert [op for op, _ in deploy.onnx_operator_counts(path)][0] == max(counts, key=counts.get)  # most first


def test_export_onnx_refuses_a_model_in_training_mode(tmp_path):
    with pytest.raises(ValueError, match="training mode"):
        deploy.export_onnx(me.MobileViT(TINY), tmp_path / "x.onnx")


def test_export_onnx_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        deploy.export_onnx(me.MobileViT(TINY).eval(), tmp_path / "x.onnx", image_size=(0, 64))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        deploy.export_onnx(lambda x: x, tmp_path / "x.onnx")


# ------------------------------------------------------------------------------------------- latency
def test_measure_latencies_times_every_run_in_rotating_order():
    order = []
    runs = {name: (lambda name=name: order.append(name)) for name in "abc"}
    seconds = deploy.measure_latencies(runs, rounds=3, warmup=1)
    assert set(seconds) == set("abc") and all(s >= 0 for s in seconds.values())
    assert order == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rotated rounds
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        deploy.measure_latencies(runs, rounds=0)
    with pytest.raises(ValueError, match="runs is empty"):
        deploy.measure_latencies({})


def test_time_by_operation_sorts_a_blocks_time_into_kinds():
    torch.manual_seed(0)
    mv2 = me.InvertedResidual(16, 16, stride=1, expand_ratio=2).eval()
    block = me.MobileViTBlock(16, 32, depth=1).eval()
    mv2_time = deploy.time_by_operation(mv2, torch.rand(1, 16, 8, 8), repeat=2, warmup=1)
    block_time = deploy.time_by_operation(block, torch.rand(1, 16, 8, 8), repeat=2, warmup=1)
    assert mv2_time["convolution"] > 0 and block_time["convolution"] > 0
    assert mv2_time["LayerNorm"] == 0 and mv2_time["attention (softmax(q k^T) v)"] == 0
    assert block_time["LayerNorm"] > 0 and block_time["attention (softmax(q k^T) v)"] > 0
    assert block_time["linear layers (qkv, proj, FFN)"] > 0 and mv2_time["additions (residuals)"] > 0


# ---------------------------------------------------------------------------- unfold by a gather
@pytest.mark.parametrize("size, patch", [((8, 8), 2), ((6, 9), (2, 3)), ((4, 10), (4, 2))])
def test_pixel_order_lists_the_pixels_in_unfold_patches_order_and_token_order_inverts_it(size, patch):
    H, W = size
    numbers = torch.arange(H * W, dtype=torch.float32).reshape(1, 1, H, W)
    assert deploy.pixel_order(H, W, patch).tolist() == me.unfold_patches(numbers, patch).flatten().long().tolist()
    order, inverse = deploy.pixel_order(H, W, patch), deploy.token_order(H, W, patch)
    assert torch.equal(order[inverse], torch.arange(H * W)) and torch.equal(inverse[order], torch.arange(H * W))


@pytest.mark.parametrize("size", [(16, 16), (14, 19)], ids=["multiple of the patch", "resized"])
@pytest.mark.parametrize("patch", [2, (2, 3)])
def test_gather_patches_block_computes_the_blocks_outputs_bit_for_bit(size, patch):
    torch.manual_seed(0)
    block = MobileViTBlock(8, 16, depth=1, patch_size=patch, num_heads=2).eval()
    gathered = deploy.gather_patches(block)
    assert type(gathered) is deploy.GatherPatchesBlock and type(block) is MobileViTBlock  # a copy
    x = torch.randn(2, 8, *size)
    y = block.local_rep(x)
    with torch.inference_mode():
        assert torch.equal(gathered.unfold(y[..., :12, :12]), block.unfold(y[..., :12, :12]))
        assert torch.equal(gathered(x), block(x))


def test_gather_patches_changes_every_mobilevit_block_of_a_network_and_nothing_else():
    model = me.mobilevit_xxs().eval()
    gathered = deploy.gather_patches(model)
    kinds = [type(m).__name__ for m in gathered.modules()]
    assert kinds.count("GatherPatchesBlock") == 3 and "MobileViTBlock" not in kinds
    assert [type(m).__name__ for m in model.modules()].count("MobileViTBlock") == 3  # the original is untouched
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), gathered.state_dict().values()))
    x = torch.rand(1, 3, 96, 128)
    with torch.inference_mode():
        assert torch.equal(gathered(x), model(x))


def test_gather_patches_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="model must be an nn.Module, got Tensor"):
        deploy.gather_patches(torch.zeros(1))


@pytest.mark.parametrize("height, width, fragment", [(7, 8, "height must be"), (8, 9, "width must be"),
                                                     (8.0, 8, "got 8.0"), (0, 8, "got 0")])
def test_pixel_order_names_a_size_that_is_not_a_whole_number_of_patches(height, width, fragment):
    with pytest.raises(ValueError, match=fragment):
        deploy.pixel_order(height, width, 2)
    with pytest.raises(ValueError, match=fragment):
        deploy.token_order(height, width, 2)
