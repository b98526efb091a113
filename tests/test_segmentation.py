"""Chapter 11: the backbone at output stride 16 (and 8), the ASPP head, DeepLabV3, mean IoU and the
generated segmentation data."""

import dataclasses

import pytest
import torch

import mobilevit_edu as me
from mobilevit_edu.data import FLAG_COLOURS, SEGMENTATION_CLASSES, flag_shapes
from mobilevit_edu.segmentation import (
    ASPP, FLAG_CNN, FLAG_MOBILEVIT, DeepLabV3, MeanIoU, confusion_matrix, flag_flip_share, flag_segmenter,
    iou_per_class, swap_flags,
)


def seeded(build, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# ------------------------------------------------------------------------------------- output stride
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_features_at_each_output_stride(output_stride):
    model = me.mobilevit_xxs(output_stride=output_stride).eval()
    with torch.no_grad():
        feats = model.features(torch.rand(1, 3, 64, 96))
    sizes = [tuple(f.shape[-2:]) for f in feats]
    expected = [(64 // s, 96 // s) for s in (2, 4, 8, min(16, output_stride), output_stride)]
    assert sizes == expected


@pytest.mark.parametrize("builder", [me.mobilevit_xxs, me.mobilevit_xs, me.mobilevit_s])
def test_output_stride_keeps_the_parameters(builder):
    counts = {os: me.count_parameters(builder(output_stride=os)) for os in (32, 16, 8)}
    assert counts[16] == counts[32] == counts[8]


def test_output_stride_16_removes_the_last_stride_as_ml_cvnets():
    """Stage 4's downsampling MV2 gets stride 1 and (ml-cvnets' `dilation=prev_dilation`) dilation 1;
    everything before it is unchanged, so with the same weights stages 0-3 give the same outputs."""
    os32, os16 = seeded(lambda: me.mobilevit_xxs()), seeded(lambda: me.mobilevit_xxs(output_stride=16))
    os16.load_state_dict(os32.state_dict())
    mv2 = os16.stages[4][0]
    assert mv2.depthwise.conv.stride == (1, 1) and mv2.depthwise.conv.dilation == (1, 1)
    assert os32.stages[4][0].depthwise.conv.stride == (2, 2)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = os32.eval().features(x), os16.eval().features(x)
    for k in range(4):
        assert torch.equal(a[k], b[k])
    assert a[4].shape[-2:] == (2, 2) and b[4].shape[-2:] == (4, 4)


def test_output_stride_8_dilates_after_the_removed_stride():
    """At 8, stage 3 loses its stride too; stage 4's MV2 then runs with dilation 2 (ml-cvnets)."""
    model = me.mobilevit_xxs(output_stride=8)
    assert model.stages[3][0].depthwise.conv.stride == (1, 1) and model.stages[3][0].depthwise.conv.dilation == (1, 1)
    assert model.stages[4][0].depthwise.conv.stride == (1, 1) and model.stages[4][0].depthwise.conv.dilation == (2, 2)
    assert model.stages[4][0].depthwise.conv.padding == (2, 2)


@pytest.mark.parametrize("bad", [4, 64, 24, "16"])
def test_unsupported_output_stride_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="output_stride"):
        me.mobilevit_xxs(output_stride=bad)


def test_default_is_the_classifier_of_chapter_6():
    assert me.XXS.output_stride == 32
    assert me.count_parameters(me.mobilevit_xxs()) == 1_272_024


# ------------------------------------------------------------------------------------------------ ASPP
def aspp_parameters(c_in, c_out, num_rates):
    """By hand: every conv is bias-free and followed by BatchNorm (2 parameters per channel)."""
    one_by_one = c_in * c_out + 2 * c_out
    atrous = 9 * c_in * c_out + 2 * c_out
    pooling = c_in * c_out + 2 * c_out
    project = (num_rates + 2) * c_out * c_out + 2 * c_out
    return one_by_one + num_rates * atrous + pooling + project


@pytest.mark.parametrize("c_in,c_out,rates", [(80, 256, (6, 12, 18)), (16, 8, (1, 2)), (7, 5, (1, 2, 3, 4))])
def test_aspp_parameters_equal_the_hand_count(c_in, c_out, rates):
    assert me.count_parameters(ASPP(c_in, c_out, rates)) == aspp_parameters(c_in, c_out, len(rates))


@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (3, 16, 1, 1), (2, 16, 8, 8)])
def test_aspp_keeps_the_map_size(shape):
    aspp = ASPP(16, 12, (1, 6, 12)).eval()
    with torch.no_grad():
        assert aspp(torch.rand(shape)).shape == (shape[0], 12, *shape[2:])


def test_aspp_atrous_branch_with_a_rate_beyond_the_map_is_its_centre_tap():
    """DeepLabv3's remark: when the rate exceeds the map, a 3x3 atrous conv sees only padding around
    its centre and acts as a 1x1 conv with its centre weights."""
    aspp = ASPP(4, 3, (6,)).eval()
    branch = aspp.branches[1]
    x = torch.rand(1, 4, 5, 5)
    centre = torch.nn.functional.conv2d(x, branch.conv.weight[:, :, 1:2, 1:2])
    with torch.no_grad():
        assert torch.allclose(branch.conv(x), centre, atol=1e-6)


def test_aspp_pooling_branch_sees_the_whole_map():
    aspp = ASPP(4, 3, (1,)).eval()
    x = torch.zeros(1, 4, 9, 9)
    y = x.clone()
    y[..., 8, 8] = 5.0  # a change in one corner
    with torch.no_grad():
        changed = (aspp(x) - aspp(y)).abs().sum(dim=1)[0]
    assert changed[0, 0] > 0  # ... reaches the opposite corner (through the image-pooling branch)


@pytest.mark.parametrize("kwargs,fragment", [({"atrous_rates": ()}, "atrous_rates"), ({"atrous_rates": (0, 1)}, "atrous_rates"),
                                             ({"dropout": 1.0}, "dropout")])
def test_aspp_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ASPP(8, 4, **kwargs)


# ------------------------------------------------------------------------------------------- DeepLabV3
# The backbone without its classifier (final 1x1 conv + linear head), by hand from chapter 6's counts
BACKBONE = {
    "xxs": 1_272_024 - (320 * 1000 + 1000) - (80 * 320 + 2 * 320),
    "xs": 2_317_848 - (384 * 1000 + 1000) - (96 * 384 + 2 * 384),
    "s": 5_578_632 - (640 * 1000 + 1000) - (160 * 640 + 2 * 640),
}
LAST_STAGE = {"xxs": 80, "xs": 96, "s": 160}
PAPER_M = {"xxs": 1.9, "xs": 2.9, "s": 6.4}  # DeepLabv3 on PASCAL VOC (21 classes), the paper's table


@pytest.mark.parametrize("name", ["xxs", "xs", "s"])
def test_deeplabv3_parameters_equal_the_hand_count_and_the_paper(name):
    model = DeepLabV3(getattr(me, f"mobilevit_{name}")(output_stride=16), num_classes=21)
    head = aspp_parameters(LAST_STAGE[name], 256, 3) + 256 * 21 + 21  # + the 1x1 classifier with bias
    assert me.count_parameters(model.backbone) == BACKBONE[name]
    assert me.count_parameters(model) == BACKBONE[name] + head
    assert round(me.count_parameters(model) / 1e6, 1) == PAPER_M[name]


@pytest.mark.parametrize("output_stride,size", [(16, (64, 96)), (32, (64, 64)), (16, (50, 70))])
def test_deeplabv3_predicts_every_pixel(output_stride, size):
    model = DeepLabV3(me.mobilevit_xxs(output_stride=output_stride), 5, aspp_channels=16).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 5, *size)


def test_deeplabv3_logits_before_upsampling_are_at_the_output_stride():
    seen = {}
    model = DeepLabV3(me.mobilevit_xxs(output_stride=16), 3, aspp_channels=8).eval()
    model.classifier.register_forward_hook(lambda module, args, out: seen.update(shape=out.shape))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 96))
    assert seen["shape"] == (1, 3, 4, 6)


def test_deeplabv3_trains_a_step():
    model = seeded(lambda: DeepLabV3(me.mobilevit_xxs(output_stride=16), 3, aspp_channels=8))
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_deeplabv3_rejects_what_is_not_a_backbone():
    with pytest.raises(TypeError, match="backbone"):
        DeepLabV3(torch.nn.Conv2d(3, 3, 1), 3)
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV3(me.mobilevit_xxs(), 0)


# -------------------------------------------------------------------------------------------- mean IoU
def masks(*rows):
    return torch.tensor([[int(c) for c in row] for row in rows]).unsqueeze(0)


def test_confusion_matrix_by_hand():
    predicted, target = masks("0011", "0001"), masks("0001", "0011")
    # rows: truth, columns: prediction
    assert confusion_matrix(predicted, target, 2).tolist() == [[4, 1], [1, 2]]


def test_mean_iou_on_hand_made_masks():
    metric = MeanIoU(2)
    metric.update(masks("0011", "0001"), masks("0001", "0011"))
    # class 0: TP 4, FP 1, FN 1 -> 4/6; class 1: TP 2, FP 1, FN 1 -> 2/4
    assert metric.per_class().tolist() == pytest.approx([4 / 6, 2 / 4])
    assert metric.compute() == pytest.approx((4 / 6 + 2 / 4) / 2)


def test_a_class_absent_from_truth_and_prediction_is_left_out():
    """Class 2 appears nowhere: its IoU is 0/0, NaN, and the mean is over classes 0 and 1 only (counting it
    as 0 would punish the model for a class the data never asked for; as 1 would reward it)."""
    metric = MeanIoU(3)
    metric.update(masks("001", "011", "111"), masks("011", "011", "011"))
    per_class = metric.per_class()
    assert per_class[:2].tolist() == pytest.approx([2 / 4, 5 / 7]) and per_class[2].isnan()
    assert metric.compute() == pytest.approx((2 / 4 + 5 / 7) / 2)


def test_a_class_only_predicted_counts_as_zero():
    metric = MeanIoU(3)
    metric.update(masks("02"), masks("00"))  # class 2 predicted, never true: IoU 0; class 1 absent: NaN
    assert metric.per_class()[2] == 0 and metric.per_class()[1].isnan()
    assert metric.compute() == pytest.approx((1 / 2 + 0) / 2)


def test_mean_iou_accumulates_pixels_over_batches_not_per_image():
    predicted = torch.cat([masks("012", "012"), masks("000", "222")])
    target = torch.cat([masks("011", "012"), masks("000", "202")])
    once, twice = MeanIoU(3), MeanIoU(3)
    once.update(predicted, target)
    twice.update(predicted[:1], target[:1])
    twice.update(predicted[1:], target[1:])
    assert torch.equal(once.confusion, twice.confusion)
    assert once.compute() == twice.compute()
    iou = iou_per_class(confusion_matrix(predicted, target, 3))
    assert once.compute() == pytest.approx(iou.mean().item())


def test_mean_iou_takes_logits():
    target = masks("0122")
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 5  # (1, 3, 1, 4)
    metric = MeanIoU(3)
    metric.update(logits, target)
    assert metric.compute() == 1.0


def test_mean_iou_ignore_index():
    metric = MeanIoU(2, ignore_index=255)
    target = torch.tensor([[[0, 1, 255, 255]]])
    metric.update(torch.tensor([[[0, 1, 1, 0]]]), target)
    assert metric.compute() == 1.0


@pytest.mark.parametrize(
    "predicted,target,fragment",
    [(masks("01"), masks("011"), "same shape"), (masks("03"), masks("01"), "predicted labels must be in 0..2"),
     (masks("01"), masks("31"), "target labels must be in 0..2")],
    ids=["shapes", "predicted-range", "target-range"],
)
def test_mean_iou_bad_input(predicted, target, fragment):
    with pytest.raises(ValueError, match=fragment):
        MeanIoU(3).update(predicted, target)


# ------------------------------------------------------------------------------------------------ data
def test_flag_shapes_shapes_types_and_range():
    data = flag_shapes(6, size=32, seed=0)
    images, labels = data.tensors
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (6, 32, 32) and labels.dtype == torch.long
    assert 0 <= images.min() and images.max() <= 1
    assert set(labels.unique().tolist()) <= set(range(len(SEGMENTATION_CLASSES)))


def test_flag_shapes_is_deterministic():
    a, b, c = flag_shapes(5, seed=3), flag_shapes(5, seed=3), flag_shapes(5, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))
    assert not torch.equal(a.tensors[0], c.tensors[0])


def test_every_class_appears():
    _, labels = flag_shapes(40, seed=0).tensors
    assert labels.unique().tolist() == list(range(len(SEGMENTATION_CLASSES)))


def test_the_disc_class_is_the_flag_colour():
    """Each image has one disc, of class 3 or 4, and one flag, exactly red or exactly blue, labelled
    background; the disc is class 3 exactly when the flag is red."""
    images, labels = flag_shapes(60, size=64, seed=1).tensors
    for image, label in zip(images, labels):
        present = set(label.unique().tolist())
        assert len(present & {3, 4}) == 1
        red = ((image - torch.tensor(FLAG_COLOURS[0]).view(3, 1, 1)).abs().amax(dim=0) == 0)
        blue = ((image - torch.tensor(FLAG_COLOURS[1]).view(3, 1, 1)).abs().amax(dim=0) == 0)
        assert bool(red.any()) != bool(blue.any())
        flag = red | blue
        assert (label[flag] == 0).all()
        assert (3 in present) == bool(red.any())
        rows, cols = flag.nonzero(as_tuple=True)  # the flag sits in a corner, far from the middle
        assert min(rows.min(), 63 - rows.max()) <= 3 and min(cols.min(), 63 - cols.max()) <= 3


def test_flag_shapes_bad_arguments():
    with pytest.raises(ValueError, match="num_images"):
        flag_shapes(0)
    with pytest.raises(ValueError, match="size"):
        flag_shapes(4, size=8)


def test_dropouts_are_ml_cvnets_v0_1s_elementwise_in_aspp_channelwise_before_the_classifier():
    """ml-cvnets v0.1 (d38a116): nn.Dropout after the ASPP's projection, Dropout2d before the 1x1 classifier."""
    deeplab = DeepLabV3(me.mobilevit_xxs(output_stride=16), num_classes=21)
    assert type(deeplab.aspp.dropout) is torch.nn.Dropout and deeplab.aspp.dropout.p == 0.1
    assert type(deeplab.classifier_dropout) is torch.nn.Dropout2d and deeplab.classifier_dropout.p == 0.1
    calls = []
    for name in ("aspp", "classifier_dropout", "classifier"):
        getattr(deeplab, name).register_forward_hook(lambda m, a, o, name=name: calls.append(name))
    deeplab.eval()(torch.rand(1, 3, 64, 64))
    assert calls == ["aspp", "classifier_dropout", "classifier"]
    with pytest.raises(ValueError, match="classifier_dropout"):
        DeepLabV3(me.mobilevit_xxs(), 21, classifier_dropout=1.0)


def test_flag_backbones_have_equal_heads_and_sizes_within_two_percent():
    mobilevit, cnn = flag_segmenter(FLAG_MOBILEVIT), flag_segmenter(FLAG_CNN)
    assert me.count_parameters(mobilevit.aspp) == me.count_parameters(cnn.aspp)
    a, b = me.count_parameters(mobilevit.backbone), me.count_parameters(cnn.backbone)
    assert abs(a - b) / a < 0.02
    assert not any(s.transformer_dim for s in FLAG_CNN.stages)
    x = torch.rand(2, 3, 64, 64)
    assert mobilevit.eval()(x).shape == cnn.eval()(x).shape == (2, 5, 64, 64)


def test_swap_flags_recolours_only_the_flag_and_twice_is_the_identity():
    images, masks = flag_shapes(6, size=64, seed=3).tensors
    swapped = swap_flags(images)
    changed = (swapped != images).any(dim=1)
    red = ((images - torch.tensor(FLAG_COLOURS[0]).view(3, 1, 1)).abs().amax(dim=1) < 1e-6)
    blue = ((images - torch.tensor(FLAG_COLOURS[1]).view(3, 1, 1)).abs().amax(dim=1) < 1e-6)
    assert torch.equal(changed, red | blue) and changed.any()
    assert torch.equal(swap_flags(swapped), images)


def test_flag_flip_share_is_zero_for_a_network_blind_to_the_flag():
    class Constant(torch.nn.Module):  # every pixel "disc, red flag": finds the discs, never flips
        def forward(self, x):
            scores = torch.zeros(len(x), 5, *x.shape[-2:])
            scores[:, 3] = 1
            return scores

    images, masks = flag_shapes(4, size=64, seed=2).tensors
    assert flag_flip_share(Constant(), images, masks) == 0.0
