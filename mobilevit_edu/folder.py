"""An image folder for `fit` (the training command, `python -m mobilevit_edu.train`): real photographs
decoded by PIL in the DataLoader's worker processes, augmented as the paper trains.

    from mobilevit_edu.folder import image_folder_splits
    train_set, val_set = image_folder_splits("data/imagenette", image_size=256)
    history = fit(model, train_set, val_set, config, num_workers=4)

Layout: `root/train/<class>/*` and `root/val/<class>/*` (torchvision's ImageFolder: one folder per class,
classes sorted by name, the same classes in both splits).

- Training (`FolderTrainSet`): the multi-scale sampler asks for key (resolution, index, seed); the image
  is decoded, random-resized-cropped to resolution x resolution (bilinear; scale 0.08-1, aspect 3/4-4/3)
  and flipped left-right with probability 1/2: the paper's only augmentations (sec. 4.1; ml-cvnets v0.1's
  `random_resized_crop` + `random_horizontal_flip`). The crop and flip draw from `seed` alone, so an
  image's augmentation does not depend on which worker, process or resumed run loads it.
- Validation (`FolderValSet`): resize the shorter side to image_size + 32, centre crop image_size
  (ml-cvnets v0.1's `validation_transforms`: 288 then 256).

Images come out (3, H, W) float in [0, 1] (no mean/std normalisation, as the networks expect).
An image PIL cannot read stops the run with a ValueError naming the file (we chose stopping over
skipping: a skipped image changes the data silently). The checkpoint written before it is intact, so
replace or delete the file and continue with `--resume`.
"""

from pathlib import Path

import torch

__all__ = ["FolderTrainSet", "FolderValSet", "image_folder_splits", "check_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _torchvision():
    try:
        import torchvision  # noqa: F401
        from torchvision.transforms import v2
    except ImportError as error:  # pragma: no cover - torchvision comes with timm and with Colab's torch
        raise ImportError('the image-folder data needs torchvision: pip install "mobilevit_edu[train]"') from error
    return v2


def check_image_folder(root):
    """The sorted class names of `root/train` and `root/val`, after checking what ImageFolder would
    otherwise report late or not at all: the folders exist, every class folder holds at least one image,
    and both splits have the same classes. Raises one ValueError naming the folder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--data {root}: no such folder (expected {root}/train/<class>/* and {root}/val/<class>/*)")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ValueError(f"--data {root}: there is no {split}/ folder (expected {root / split}/<class>/*)")
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise ValueError(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
        for name in names:
            if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in (folder / name).iterdir() if p.is_file()):
                raise ValueError(
                    f"class folder {folder / name} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
        classes[split] = names
    if classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"]))
        only_val = sorted(set(classes["val"]) - set(classes["train"]))
        raise ValueError(
            f"{root}: train/ and val/ must have the same class folders; only in train/: {only_train},"
            f" only in val/: {only_val}"
        )
    return classes["train"]


def _open_rgb(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... for bad files
        raise ValueError(
            f"cannot read image {path}: {error}. Replace or delete the file, then continue with --resume"
        ) from error


class _Folder(torch.utils.data.Dataset):
    def __init__(self, root, split, image_size):
        from torchvision.datasets import ImageFolder

        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.folder = ImageFolder(str(Path(root) / split), allow_empty=False, loader=_open_rgb)
        self.classes = self.folder.classes
        self.targets = torch.tensor(self.folder.targets, dtype=torch.long)
        self.image_size = image_size

    def __len__(self):
        return len(self.folder.samples)

    def path(self, index):
        return self.folder.samples[index][0]


class FolderTrainSet(_Folder):
    """`root/train`: item `(resolution, index, seed)` -> (image (3, resolution, resolution) in [0, 1], label).
    `image_size` is the sampler's base resolution (where the batch size holds)."""

    loads_files = True  # fit reads it through a DataLoader, with (resolution, index, seed) keys

    def __init__(self, root, image_size=256):
        super().__init__(root, "train", image_size)
        self._v2 = _torchvision()
        self._crops = {}  # resolution -> transform

    def _augment(self, resolution):
        if resolution not in self._crops:
            v2 = self._v2
            self._crops[resolution] = v2.Compose([
                v2.RandomResizedCrop(resolution, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
            ])
        return self._crops[resolution]

    def __getitem__(self, key):
        resolution, index, seed = key
        path, label = self.folder.samples[index]
        image = _open_rgb(path)
        with torch.random.fork_rng(devices=[]):  # the crop and flip draw from `seed` alone
            torch.default_generator.manual_seed(seed)  # the CPU generator only (torch.manual_seed is slower)
            return self._augment(resolution)(image), label


class FolderValSet(_Folder):
    """`root/val`: item `index` -> (image (3, image_size, image_size) in [0, 1], label): shorter side
    resized to image_size + 32, then the centre image_size x image_size crop."""

    loads_files = True  # evaluate reads it through a DataLoader

    def __init__(self, root, image_size=256):
        super().__init__(root, "val", image_size)
        v2 = _torchvision()
        self.transform = v2.Compose([
            v2.Resize(image_size + 32, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.CenterCrop(image_size),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __getitem__(self, index):
        path, label = self.folder.samples[index]
        return self.transform(_open_rgb(path)), label


def image_folder_splits(root, image_size=256):
    """(FolderTrainSet, FolderValSet) of `root`, checked first (see check_image_folder)."""
    check_image_folder(root)
    train, val = FolderTrainSet(root, image_size), FolderValSet(root, image_size)
    if train.classes != val.classes:  # pragma: no cover - check_image_folder saw the same folders
        raise ValueError(f"{root}: train/ and val/ classes differ: {train.classes} vs {val.classes}")
    return train, val
