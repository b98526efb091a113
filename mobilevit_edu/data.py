"""Data for training on a CPU: generated offline data sets, and CIFAR-10 when there is a network.

Chapter 7 (classification): `matching_marks` draws images with two small coloured marks in opposite
corners; the label says whether the two marks have the same colour. Nothing in any one corner tells:
the answer needs both corners at once, i.e. global context. Every image is drawn by vectorised
tensor operations from its own seeded torch.Generator, so a data set is the same on every machine.

`cifar10(...)` gives CIFAR-10 in the same format when torchvision can download it (in Colab, say);
offline it raises one RuntimeError that says so.

All data sets here are `torch.utils.data.TensorDataset`s of images (N, 3, H, W) float in [0, 1] and
targets (N,) long labels, which is what `mobilevit_edu.train.fit` takes.
"""

import torch
from torch.utils.data import TensorDataset

__all__ = ["PALETTE", "COLOUR_NAMES", "MATCH_CLASSES", "matching_marks", "matching_marks_splits", "cifar10"]

# ------------------------------------------------------------------------ chapter 7: matching marks
# The marks' colours (RGB in [0, 1]): saturated, far from the grey background and from each other.
PALETTE = torch.tensor(
    [
        [0.95, 0.15, 0.15],  # red
        [0.15, 0.75, 0.20],  # green
        [0.20, 0.35, 0.95],  # blue
        [0.95, 0.85, 0.10],  # yellow
    ]
)
COLOUR_NAMES = ("red", "green", "blue", "yellow")
MATCH_CLASSES = ("different", "same")  # label 0: the marks' colours differ; 1: they are the same


def matching_marks(num_images, resolution=32, *, seed=0, mark_fraction=0.1875, noise=0.1, num_colours=4):
    """A data set whose label needs global context: do the two marks have the same colour?

    Each image has a noisy grey background and two square marks of side `mark_fraction * resolution`
    (at least 2 pixels): one inside a random corner quadrant, the other inside the diagonally opposite
    quadrant, at random positions. Each mark's colour is one of the first `num_colours` of `PALETTE`.
    Label 1 ("same") when both marks have the same colour, 0 ("different") otherwise; the two labels
    are equally frequent, and every colour is equally frequent for each mark.

    Vectorised (no per-pixel or per-image Python loop) and deterministic: (num_images, resolution, seed)
    fix every pixel. Returns a TensorDataset of images (N, 3, R, R) float in [0, 1] and labels (N,) long.
    The dataset also carries what was drawn, for figures: `.colours` (N, 2) and `.corners` (N, 2, 2),
    the (row, column) of each mark's top-left pixel.
    """
    for name, value in (("num_images", num_images), ("resolution", resolution)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels to hold two marks in opposite corners, got {resolution}")
    if not 2 <= num_colours <= len(PALETTE):
        raise ValueError(f"num_colours must be between 2 and {len(PALETTE)}, got {num_colours}")
    if not 0 < mark_fraction <= 0.25:
        raise ValueError(f"mark_fraction must be in (0, 0.25] so a mark fits in a quadrant, got {mark_fraction}")
    g = torch.Generator().manual_seed(seed)
    N, R = num_images, resolution
    size = max(2, round(mark_fraction * R))  # side of a mark in pixels
    half = R // 2

    # labels first (balanced), then colours: the second mark repeats the first colour or shifts it
    labels = torch.randperm(N, generator=g) % 2  # exactly half "same" (up to one image)
    first = torch.randint(num_colours, (N,), generator=g)
    shift = torch.randint(1, num_colours, (N,), generator=g)  # a non-zero shift: a different colour
    second = torch.where(labels == 1, first, (first + shift) % num_colours)
    colours = torch.stack([first, second], dim=1)  # (N, 2)

    # mark 0 in a random quadrant (qy, qx), mark 1 in the opposite one (1 - qy, 1 - qx)
    quadrant = torch.randint(2, (N, 2), generator=g)  # (N, 2): (qy, qx) of mark 0
    quadrants = torch.stack([quadrant, 1 - quadrant], dim=1)  # (N, 2 marks, 2 coordinates)
    offsets = torch.randint(half - size + 1, (N, 2, 2), generator=g)  # position inside the quadrant
    corners = quadrants * (R - half) + offsets  # (N, 2, 2): top-left (row, column) of each mark

    # background: mid grey with per-pixel noise, the same in all three channels (no colour in it)
    grey = 0.5 + noise * (torch.rand(N, 1, R, R, generator=g) - 0.5)
    images = grey.expand(N, 3, R, R).clone()
    rows = torch.arange(R).view(1, R, 1)
    cols = torch.arange(R).view(1, 1, R)
    for k in range(2):  # two marks: a loop of 2, everything else is vectorised over images and pixels
        y0, x0 = corners[:, k, 0].view(N, 1, 1), corners[:, k, 1].view(N, 1, 1)
        inside = (rows >= y0) & (rows < y0 + size) & (cols >= x0) & (cols < x0 + size)  # (N, R, R)
        colour = PALETTE[colours[:, k]].view(N, 3, 1, 1)
        images = torch.where(inside[:, None], colour, images)
    dataset = TensorDataset(images.clamp_(0, 1), labels.long())
    dataset.colours, dataset.corners, dataset.mark_size = colours, corners, size
    return dataset


def matching_marks_splits(num_train, num_val, resolution=32, *, seed=0, **options):
    """Training and validation sets of `matching_marks`, drawn from different seeds (2 * seed and
    2 * seed + 1), so that no validation image is a training image. Returns (train_set, val_set)."""
    train = matching_marks(num_train, resolution, seed=2 * seed, **options)
    val = matching_marks(num_val, resolution, seed=2 * seed + 1, **options)
    return train, val


# --------------------------------------------------------------------------------- online: CIFAR-10
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar10(root="data", train=True, *, limit=None, download=True):
    """CIFAR-10 (60,000 32x32 photos, 10 classes) as a TensorDataset of (N, 3, 32, 32) float images in
    [0, 1] and (N,) long labels, through torchvision. `limit` keeps the first `limit` images.

    Needs the network the first time (about 170 MB into `root`); without one it raises a RuntimeError
    saying so in one sentence, instead of a download library's traceback.
    """
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as error:
        raise RuntimeError("cifar10() needs torchvision: pip install torchvision") from error
    try:
        data = CIFAR10(root=root, train=train, download=download)
    except Exception as error:  # URLError, timeouts, a missing file when download=False ...
        raise RuntimeError(
            f"CIFAR-10 is not available offline: torchvision could not download it into {root!r}"
            f" ({type(error).__name__}); connect to the internet (in Colab, for instance) or use the"
            " generated data set mobilevit_edu.data.matching_marks instead."
        ) from None
    images = torch.as_tensor(data.data)  # (N, 32, 32, 3) uint8
    labels = torch.as_tensor(data.targets)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    images = images.permute(0, 3, 1, 2).float().div_(255)  # (N, 3, 32, 32) in [0, 1]
    return TensorDataset(images, labels.long())


# ------------------------------------------------------------------- chapter 11: segmentation
# `flag_shapes`: masks (N, H, W) as targets, for `fit(..., metric=lambda: MeanIoU(5))`.
SEGMENTATION_CLASSES = ("background", "square", "triangle", "disc, red flag", "disc, blue flag")
FLAG_COLOURS = ((0.95, 0.1, 0.1), (0.1, 0.25, 0.95))  # red, blue


def flag_shapes(num_images, size=64, seed=0):
    """A generated segmentation data set in which one class needs context: TensorDataset(images, masks).

    images: (num_images, 3, size, size) float in [0, 1]; masks: (num_images, size, size) long labels
    0..4, named in `SEGMENTATION_CLASSES`. Each image has a textured background (stripes of random
    direction, frequency and tint, plus noise), a square, a triangle and a disc, each of a random colour
    that contrasts with the background (plus noise), in three of the four cells of a 2x2 grid in the
    middle, and a small flag in a random corner, exactly `FLAG_COLOURS[0]` (red) or `FLAG_COLOURS[1]`
    (blue). The disc is class 3 when the flag is red and class 4 when it is blue: nothing in the
    disc's own pixels says which, only the flag, far away. The flag itself is background.

    Deterministic for a given `seed` (a torch.Generator of its own), vectorised over images and pixels.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive int, got {num_images!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int of at least 16 (pixels), got {size!r}")
    g = torch.Generator().manual_seed(seed)
    n = num_images

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=g)

    def coin():  # one fair coin per image, shaped (n, 1, 1) to broadcast over the pixels
        return torch.rand((n, 1, 1), generator=g) < 0.5

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in (0, 1)
    y, x = coords.view(1, size, 1), coords.view(1, 1, size)  # broadcast to (n, size, size)

    # where the shapes go: three of the four cells of a 2x2 grid in the middle, jittered
    cells = torch.rand((n, 4), generator=g).argsort(dim=1)[:, :3]  # (n, 3): the square's, triangle's, disc's
    cy = 0.31 + 0.38 * (cells // 2).float() + uniform((n, 3), -0.03, 0.03)
    cx = 0.31 + 0.38 * (cells % 2).float() + uniform((n, 3), -0.03, 0.03)
    cy, cx = cy.view(n, 3, 1, 1), cx.view(n, 3, 1, 1)
    half = uniform((n, 3, 1, 1), 0.12, 0.16)  # half the side / the radius, as a fraction of the image
    dy, dx, h = y - cy, x - cx, half  # (n, 3, size, 1), (n, 3, 1, size): offsets from each shape's centre
    square = (dy[:, 0].abs() <= h[:, 0]) & (dx[:, 0].abs() <= h[:, 0])
    triangle = (dy[:, 1].abs() <= h[:, 1]) & (2 * dx[:, 1].abs() <= dy[:, 1] + h[:, 1])  # apex up
    disc = dy[:, 2] ** 2 + dx[:, 2] ** 2 <= h[:, 2] ** 2
    red = coin()
    flag_y, flag_x = torch.where(coin(), 0.1, 0.9), torch.where(coin(), 0.1, 0.9)
    flag = ((y - flag_y).abs() <= 0.07) & ((x - flag_x).abs() <= 0.07)

    # paint labels (later ones on top); 5 marks the flag while painting, background in the mask
    labels = torch.zeros((n, size, size), dtype=torch.long)
    labels[square.expand_as(labels)] = 1
    labels = torch.where(triangle, 2, labels)
    labels = torch.where(disc, torch.where(red, 3, 4), labels)  # the disc's class is the flag's colour
    labels = torch.where(flag, 5, labels)

    # colours: background base, one contrasting colour per shape, the flag's pure red or blue
    base = uniform((n, 1, 3), 0.2, 0.8)
    shape_colours = (base + 0.5 + uniform((n, 3, 3), -0.25, 0.25)) % 1.0  # (n, 3 shapes, RGB)
    flag_colour = torch.where(red.view(n, 1, 1), torch.tensor(FLAG_COLOURS[0]), torch.tensor(FLAG_COLOURS[1]))
    palette = torch.cat([base, shape_colours, shape_colours[:, 2:], flag_colour], dim=1)  # (n, 6, 3)
    images = palette[torch.arange(n).view(n, 1, 1), labels].permute(0, 3, 1, 2)  # (n, 3, size, size)

    # texture: stripes of random direction, frequency, phase and tint on the background; noise on
    # everything but the flag, which keeps its exact colour (so a figure can find and recolour it)
    angle, freq, phase = uniform((n, 1, 1), 0, torch.pi), uniform((n, 1, 1), 2, 6), uniform((n, 1, 1), 0, 2 * torch.pi)
    stripes = torch.sin(2 * torch.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    stripes = 0.12 * (stripes * (labels == 0)).unsqueeze(1) * uniform((n, 3, 1, 1), -1, 1)  # (n, 3, size, size)
    noise = 0.04 * torch.randn((n, 3, size, size), generator=g) * (labels != 5).unsqueeze(1)
    images = images + stripes + noise
    masks = torch.where(labels == 5, 0, labels)
    return TensorDataset(images.clamp(0.0, 1.0), masks)
