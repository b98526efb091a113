"""mobilevit_edu.data: the generated matching-marks data set and the offline CIFAR-10 message."""

import pytest
import torch

from mobilevit_edu import data


def test_matching_marks_shapes_range_and_dtypes():
    ds = data.matching_marks(10, 32, seed=0)
    images, labels = ds.tensors
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (10,) and labels.dtype == torch.long
    assert 0 <= images.min() and images.max() <= 1
    assert set(labels.tolist()) <= {0, 1}


def test_matching_marks_is_deterministic_per_seed():
    a, b = data.matching_marks(16, 32, seed=3), data.matching_marks(16, 32, seed=3)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    c = data.matching_marks(16, 32, seed=4)
    assert not torch.equal(a.tensors[0], c.tensors[0])


def test_matching_marks_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    data.matching_marks(8, 32, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_labels_are_balanced_and_say_whether_the_colours_match():
    ds = data.matching_marks(1000, 32, seed=1)
    labels = ds.tensors[1]
    assert labels.sum().item() == 500
    same = ds.colours[:, 0] == ds.colours[:, 1]
    assert torch.equal(same.long(), labels)


def test_each_mark_is_drawn_in_its_colour_at_its_place():
    ds = data.matching_marks(20, 40, seed=2)
    images = ds.tensors[0]
    for i in range(20):
        for k in range(2):
            y, x = ds.corners[i, k].tolist()
            patch = images[i, :, y:y + ds.mark_size, x:x + ds.mark_size]
            expected = data.PALETTE[ds.colours[i, k]].view(3, 1, 1).expand_as(patch)
            assert torch.equal(patch, expected)


def test_the_marks_are_in_opposite_quadrants():
    R = 32
    ds = data.matching_marks(200, R, seed=5)
    size, half = ds.mark_size, R // 2
    for k in range(2):
        y, x = ds.corners[:, k, 0], ds.corners[:, k, 1]
        # every mark lies wholly inside one quadrant
        assert (((y + size <= half) | (y >= R - half)) & ((x + size <= half) | (x >= R - half))).all()
    quadrant = ds.corners // half  # (N, 2 marks, 2): 0 or 1 per coordinate
    assert torch.equal(quadrant[:, 0], 1 - quadrant[:, 1])


def test_a_single_quadrant_says_nothing_about_the_label():
    # the colour in any one corner is independent of the label: the answer needs both corners
    ds = data.matching_marks(4000, 32, seed=0)
    labels = ds.tensors[1]
    for colour in range(len(data.PALETTE)):
        has = ds.colours[:, 0] == colour
        rate = labels[has].float().mean().item()
        assert abs(rate - 0.5) < 0.06, (colour, rate)


def test_background_has_no_colour():
    ds = data.matching_marks(4, 32, seed=0, noise=0.3)
    images = ds.tensors[0]
    marks = torch.zeros(4, 32, 32, dtype=torch.bool)
    for i in range(4):
        for k in range(2):
            y, x = ds.corners[i, k].tolist()
            marks[i, y:y + ds.mark_size, x:x + ds.mark_size] = True
    background = images.permute(1, 0, 2, 3)[:, ~marks]  # (3, pixels)
    assert torch.equal(background[0], background[1]) and torch.equal(background[1], background[2])


def test_splits_do_not_share_images():
    train, val = data.matching_marks_splits(50, 50, 32, seed=0)
    flat_train = train.tensors[0].flatten(1)
    flat_val = val.tensors[0].flatten(1)
    assert not (torch.cdist(flat_train, flat_val) == 0).any()


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"num_images": 0}, "num_images must be a positive int"),
        ({"num_images": 4, "resolution": 4}, "at least 8 pixels"),
        ({"num_images": 4, "num_colours": 1}, "num_colours must be between 2"),
        ({"num_images": 4, "mark_fraction": 0.5}, "mark_fraction"),
    ],
)
def test_matching_marks_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        data.matching_marks(**kwargs)


def test_cifar10_offline_says_so_in_one_sentence(monkeypatch, tmp_path):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    with pytest.raises(RuntimeError) as info:
        data.cifar10(root=str(tmp_path))
    message = str(info.value)
    assert message.startswith("CIFAR-10 is not available offline") and message.count(". ") == 0
    assert "matching_marks" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no download traceback


def test_cifar10_converts_torchvisions_arrays(monkeypatch, tmp_path):
    import numpy as np
    import torchvision.datasets

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            self.data = np.full((5, 32, 32, 3), 255, dtype=np.uint8)
            self.targets = [0, 1, 2, 3, 4]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    ds = data.cifar10(root=str(tmp_path), limit=3)
    images, labels = ds.tensors
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32 and images.max() == 1
    assert labels.tolist() == [0, 1, 2]
