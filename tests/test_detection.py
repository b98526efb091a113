"""mobilevit_edu.detection: the SSDLite head's shapes and parameter counts (ml-cvnets' COCO config), anchors,
matching and the encode/decode round trip, the multibox loss on a hand-computed case, NMS per class, the COCO
evaluator and the clear errors on bad boxes."""

import math

import pytest
import torch

from mobilevit_edu.detection import (
    COCO_SSD, TOY_SSD, SSDLite, SSDLoss, anchor_sizes, box_iou, center_to_corners, check_targets, coco_map,
    corners_to_center, decode, encode, map_anchors, match_anchors, multibox_loss, postprocess, shapes_detection,
)
from mobilevit_edu.models import MINI, MINI_CNN, S, XS, XXS, MobileViT


@pytest.mark.parametrize("config, count", [(XXS, 1_755_050), (XS, 2_742_042), (S, 5_738_826)])
def test_coco_ssdlite_parameter_counts(config, count):
    """81 classes (COCO's 80 + background), ml-cvnets v0.1's head: the paper's 1.7 / 2.7 / 5.7 M."""
    detector = SSDLite(MobileViT(config), 81, COCO_SSD)
    assert sum(p.numel() for p in detector.parameters()) == count


def test_coco_ssdlite_outputs_one_row_per_anchor_at_320():
    detector = SSDLite(MobileViT(XXS), 81).eval()
    confidences, locations = detector(torch.rand(1, 3, 320, 320))
    # maps 20, 10, 5, 3, 2, 1 with 6, 6, 6, 6, 6, 4 anchors per cell
    assert detector.map_sizes(320, 320) == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert confidences.shape == (1, 3232, 81) and locations.shape == (1, 3232, 4)
    assert detector.anchors(320, 320).shape == (3232, 4)


@pytest.mark.parametrize("config", [MINI, MINI_CNN])
def test_toy_head_map_sizes_match_the_feature_maps(config):
    detector = SSDLite(MobileViT(config), 4, TOY_SSD)
    maps = detector.feature_maps(torch.rand(2, 3, 64, 48))
    assert [tuple(m.shape[-2:]) for m in maps] == detector.map_sizes(64, 48)
    confidences, locations = detector(torch.rand(2, 3, 64, 48))
    assert confidences.shape[:2] == locations.shape[:2] == (2, detector.anchors(64, 48).shape[0])


def test_anchor_sizes_and_order_follow_ml_cvnets():
    sizes = anchor_sizes(COCO_SSD)  # linspace(0.1, 1.05, 7)
    assert sizes[0][0] == pytest.approx(0.1) and sizes[0][1] == pytest.approx(math.sqrt(0.1 * (0.1 + 0.95 / 6)))
    anchors = map_anchors(2, 3, 0.2, 0.3, (2,))
    assert anchors.shape == (2 * 3 * 4, 4)
    # first cell (row 0, column 0): small square, big square, wide, tall
    c = 1 / 6
    expected = [[c, 0.25, 0.2, 0.2], [c, 0.25, 0.3, 0.3], [c, 0.25, 0.2 * 2**0.5, 0.2 / 2**0.5], [c, 0.25, 0.2 / 2**0.5, 0.2 * 2**0.5]]
    assert torch.allclose(anchors[:4], torch.tensor(expected))
    assert torch.allclose(anchors[4, :2], torch.tensor([0.5, 0.25]))  # the next cell is to the right


def test_box_iou_hand_computed():
    iou = box_iou(torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([[2.0, 2, 6, 6], [4.0, 0, 6, 4], [0.0, 0, 4, 4]]))
    assert torch.allclose(iou, torch.tensor([[4 / 28, 0.0, 1.0]]))


def test_encode_decode_round_trip():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.1, 0.8, 0.05, 0.1]])
    boxes = torch.tensor([[0.45, 0.6, 0.25, 0.2], [0.12, 0.75, 0.08, 0.04]])
    assert torch.allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-6)
    assert torch.allclose(corners_to_center(center_to_corners(boxes)), boxes, atol=1e-6)
    # the variances scale the offsets: a box equal to its anchor encodes to zero
    assert torch.equal(encode(anchors, anchors), torch.zeros(2, 4))


def test_matching_threshold_and_forced_best_anchor():
    anchors = corners_to_center(torch.tensor([[0.0, 0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]]))
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.4], [0.55, 0.55, 0.6, 0.6]])  # IoU 0.8 with anchor 0; 0.01 with anchor 1
    matched, labels = match_anchors(boxes, torch.tensor([2, 1]), anchors, 0.5)
    assert labels.tolist() == [2, 1, 0]  # the tiny box still gets its best anchor
    assert torch.equal(matched[1], boxes[1])


def test_image_with_no_objects_is_all_background():
    anchors = map_anchors(2, 2, 0.3, 0.4, (2,))
    matched, labels = match_anchors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), anchors)
    assert labels.sum() == 0 and matched.shape == (16, 4)


def test_multibox_loss_hand_computed():
    # 1 positive (label 1) and 5 negatives: 3 x 1 = 3 hardest negatives by -log p(background)
    logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    labels = torch.tensor([[1, 0, 0, 0, 0, 0]])
    predicted = torch.zeros(1, 6, 4)
    predicted[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.2])
    box_loss, class_loss, num_pos = multibox_loss(logits, predicted, labels, torch.zeros(1, 6, 4), 3)
    hardest = math.log(1 + math.e**2) + math.log(1 + math.e) + math.log(2)  # negatives 2, 4, 1
    assert num_pos == 1
    assert class_loss.item() == pytest.approx(math.log(2) + hardest, rel=1e-6)
    assert box_loss.item() == pytest.approx(0.5 * 0.25 + 1.5 + 0.0 + 0.5 * 0.04, rel=1e-6)


def test_batch_without_objects_gives_a_finite_zero_loss():
    detector = SSDLite(MobileViT(MINI), 4, TOY_SSD)
    targets = torch.full((2, 4, 5), 0)
    targets[..., 0] = -1
    loss = SSDLoss(detector, (64, 64))(detector(torch.rand(2, 3, 64, 64)), targets)
    assert loss.item() == 0.0


def test_postprocess_suppresses_within_a_class_only():
    anchors = corners_to_center(torch.tensor([[0.0, 0, 0.5, 0.5], [0.0, 0, 0.5, 0.45], [0.0, 0, 0.5, 0.5]]))
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])  # anchors 0 and 1: class 1; 2: class 2
    out = postprocess(logits, torch.zeros(3, 4), anchors, (10, 10), COCO_SSD)
    assert out["labels"].tolist() == [1, 2]  # anchor 1 suppressed by anchor 0, anchor 2 kept (another class)
    assert torch.allclose(out["boxes"][0], torch.tensor([0.0, 0.0, 5.0, 5.0]))


def test_coco_map_perfect_and_empty():
    truth = [(torch.tensor([[1.0, 1, 20, 20]]), torch.tensor([1])), (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]
    perfect = [{"boxes": torch.tensor([[1.0, 1, 20, 20]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    assert coco_map(perfect, truth, 2) == pytest.approx({"map": 1.0, "map_50": 1.0})
    assert coco_map([perfect[1], perfect[1]], truth, 2) == {"map": 0.0, "map_50": 0.0}


@pytest.mark.parametrize("boxes, message", [
    ([[5.0, 5, 70, 20]], "outside the 64x64 image"),
    ([[-1.0, 5, 10, 20]], "outside the 64x64 image"),
    ([[20.0, 5, 10, 20]], "x2 < x1"),
    ([[5.0, 5, 5, 20]], "empty"),
])
def test_bad_boxes_get_a_clear_error(boxes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_targets(torch.tensor(boxes), torch.tensor([1]), (64, 64))


def test_no_objects_is_valid_and_bad_types_are_named():
    check_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (64, 64))
    with pytest.raises(TypeError, match="labels must be integers"):
        check_targets(torch.tensor([[1.0, 1, 5, 5]]), torch.tensor([1.0]), (64, 64))
    with pytest.raises(ValueError, match=r"shape \(M, 4\)"):
        check_targets(torch.tensor([1.0, 1, 5, 5]), torch.tensor([1]), (64, 64))
    with pytest.raises(ValueError, match="labels must be object classes 1..3"):
        check_targets(torch.tensor([[1.0, 1, 5, 5]]), torch.tensor([4]), (64, 64), num_classes=4)


def test_generated_data_is_seeded_and_boxes_are_valid():
    images, targets = shapes_detection(16, seed=3)
    again, _ = shapes_detection(16, seed=3)
    assert torch.equal(images, again) and images.shape == (16, 3, 64, 64) and targets.shape == (16, 4, 5)
    for t in targets:
        t = t[t[:, 0] >= 0]
        check_targets(t[:, 1:].float(), t[:, 0], (64, 64), num_classes=4)
