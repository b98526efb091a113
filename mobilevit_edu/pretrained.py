"""Chapter 8: the official ImageNet weights in mobilevit_edu's own network.

    model = mobilevit_xxs(pretrained=True)                       # downloads timm's weights (needs a connection)
    model = mobilevit_xxs(pretrained=True, weights="model.safetensors")   # a file you downloaded yourself
    x = preprocess(image, model.preprocessing)                   # PIL image -> (1, 3, 256, 256) in [0, 1]
    top_k(model(x), model.class_names, k=5)

The weights are timm's `mobilevit_{xxs,xs,s}.cvnets_in1k`: Apple's ml-cvnets checkpoints of the paper,
served by the Hugging Face Hub in the repositories `timm/mobilevit_*.cvnets_in1k` as `model.safetensors`
(and `pytorch_model.bin`), in timm's key names. `convert_timm_state_dict` renames them for our modules.
A state dict already in mobilevit_edu's names, or a mobilevit_edu checkpoint, loads too.

Offline, `load_pretrained` raises one `WeightsUnavailableError` that says the weights need a
connection and how to pass a local file (`weights=path`), instead of a traceback from the download
library: it looks in the local Hugging Face cache first, then checks in a few seconds whether the
Hub answers at all before asking `huggingface_hub` to download.

Preprocessing (timm's configuration for these weights): shorter side resized to floor(256 / 0.9) = 284
with bicubic interpolation, centre crop 256 x 256, pixels scaled to [0, 1], no mean/std
normalisation. Channel order: see `Preprocessing.channel_order` and chapter 8.

Needs `huggingface_hub` and `safetensors` to download and read the weights and `timm` for the ImageNet
class names: all three come with `pip install timm`.
"""

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .convert import convert_timm_state_dict
from .models import CONFIGS, MobileViT

# our network name -> the Hub repository that serves timm's converted cvnets weights
HUB_REPOS = {
    "mobilevit_xxs": "timm/mobilevit_xxs.cvnets_in1k",
    "mobilevit_xs": "timm/mobilevit_xs.cvnets_in1k",
    "mobilevit_s": "timm/mobilevit_s.cvnets_in1k",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's Hub repositories serve, in order of preference
PROBE_TIMEOUT = 3.0  # seconds to wait for the Hub to answer before calling it unreachable


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input (timm's `pretrained_cfg` for `mobilevit_*.cvnets_in1k`)."""

    input_size: int = 256  # the centre crop, input_size x input_size
    crop_pct: float = 0.9  # the crop keeps 90 % of the resized image's shorter side
    interpolation: str = "bicubic"  # for the resize (PIL's filter)
    mean: tuple = (0.0, 0.0, 0.0)  # no mean/std normalisation: pixels stay in [0, 1]
    std: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"  # as timm feeds them; "BGR" flips the channels (see chapter 8)

    @property
    def resize_size(self):
        """The shorter side before cropping: floor(input_size / crop_pct), timm's rule (284 for 256 / 0.9)."""
        return math.floor(self.input_size / self.crop_pct)


IMAGENET_PREPROCESSING = Preprocessing()


class WeightsUnavailableError(RuntimeError):
    """The pretrained weights could not be downloaded (no connection, Hub unreachable, ...).

    `str(error)` says what happened and how to pass a local file instead; `error.reason` is the short
    technical cause (e.g. "huggingface.co:443 cannot be reached: [Errno -2] Name or service not known").
    """

    def __init__(self, message, reason=""):
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------- downloading
def _require(module):
    """Import `module` or say in one sentence how to install it (all come with timm)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the pretrained weights need {module.split('.')[0]}: pip install timm") from None


def _check_name(name):
    if name not in HUB_REPOS:
        raise ValueError(f"name must be one of {sorted(HUB_REPOS)}, got {name!r}")


def hub_unreachable_reason(endpoint=None, timeout=PROBE_TIMEOUT):
    """Why the Hugging Face Hub cannot be reached, in a few words, or "" when it answers.

    Honours HF_HUB_OFFLINE and HF_ENDPOINT (as huggingface_hub does). Only opens a TCP connection,
    so it fails in at most `timeout` seconds instead of huggingface_hub's retries (24 s measured offline);
    behind an HTTPS proxy it does not probe (returns "").
    """
    constants = _require("huggingface_hub.constants")
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return ""  # behind a proxy a direct connection proves nothing: let huggingface_hub try
    url = urlparse(endpoint or constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"{host}:{port} cannot be reached: {error}"
    return ""


def _unavailable(name, reason, repo=None):
    repo = repo or HUB_REPOS[name]
    if repo != HUB_REPOS[name]:  # another file than the weights (e.g. Apple's checkpoint, for a comparison)
        return WeightsUnavailableError(
            f"{repo} is downloaded from the Hugging Face Hub, which needs an internet connection, and the"
            f" download failed here ({reason}). Run this where there is a connection (e.g. Colab).",
            reason,
        )
    return WeightsUnavailableError(
        f"The ImageNet weights of {name} are downloaded from the Hugging Face Hub ({repo}), which needs an"
        f" internet connection, and the download failed here ({reason}). Run this where there is a connection"
        f" (e.g. Colab), or download {WEIGHT_FILES[0]} from https://huggingface.co/{repo} yourself and pass its"
        f" path: {name}(pretrained=True, weights='path/to/{WEIGHT_FILES[0]}').",
        reason,
    )


def _download(name, repo):
    """The local path of the first of WEIGHT_FILES that `repo` serves: from the Hugging Face cache if it
    is there, else downloaded into it. Raises WeightsUnavailableError when it cannot be had."""
    huggingface_hub = _require("huggingface_hub")
    for filename in WEIGHT_FILES:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(cached, str) and os.path.isfile(cached):
            return Path(cached)
    reason = hub_unreachable_reason()
    if reason:
        raise _unavailable(name, reason, repo)
    failures = []
    for filename in WEIGHT_FILES:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename))
        except Exception as error:  # any failure of the download library becomes one clear error below
            failures.append(f"{filename}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    raise _unavailable(name, "; ".join(failures), repo) from None


def download_weights(name):
    """The local path of `name`'s ImageNet weights (e.g. "mobilevit_xxs"), timm's `<name>.cvnets_in1k`:
    from the Hugging Face cache if they are there, else downloaded into it. Raises
    WeightsUnavailableError when they cannot be had."""
    _check_name(name)
    return _download(name, HUB_REPOS[name])


# Apple's own conversion of the same cvnets checkpoints for Hugging Face transformers, and the key of
# the first convolution's weight there (transformers' convert_mlcvnets_to_pytorch.py renames
# cvnets' conv_1 to conv_stem and leaves the tensors as they are)
APPLE_REPOS = {
    "mobilevit_xxs": "apple/mobilevit-xx-small",
    "mobilevit_xs": "apple/mobilevit-x-small",
    "mobilevit_s": "apple/mobilevit-small",
}
APPLE_STEM_KEY = "mobilevit.conv_stem.convolution.weight"


def apple_stem_weight(name):
    """The stem convolution's weight (16, 3, 3, 3) in Apple's Hugging Face checkpoint of `name`, the
    cvnets tensor as it was trained (on BGR images, see chapter 8). Needs a connection (or the cache)."""
    _check_name(name)
    return read_state_dict(_download(name, APPLE_REPOS[name]))[APPLE_STEM_KEY]


# ---------------------------------------------------------------------------------------- loading
def read_state_dict(path):
    """The tensors of a weights file: `.safetensors` (safetensors), else a torch file read with
    `torch.load(weights_only=True)` (a state dict, or a dict holding one under "state_dict" or "model",
    e.g. a mobilevit_edu checkpoint). No code from the file runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no file at {path}")
    if path.suffix == ".safetensors":
        return _require("safetensors.torch").load_file(str(path))
    data = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"weights: {path} does not hold a state dict (a dict of tensors)")
    return data


def _is_timm_state_dict(state_dict):
    return "head.fc.weight" in state_dict or any(".bn." in key for key in state_dict)


def load_weights(model, state_dict, source="the weights"):
    """Load a state dict in timm's or in mobilevit_edu's key names into `model`, strictly; a mismatch
    becomes a ValueError that names the first missing/unexpected keys and wrong shapes."""
    if _is_timm_state_dict(state_dict):
        state_dict = convert_timm_state_dict(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k} {tuple(state_dict[k].shape)} (model: {tuple(own[k].shape)})"
             for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                problems.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ValueError(
            f"{source} do not fit {model.config.name}: {'; '.join(problems)}."
            " Are they the weights of another network (xxs / xs / s)?"
        )
    model.load_state_dict(state_dict)
    return model


def imagenet_class_names():
    """The 1000 ImageNet-1k class descriptions in the weights' order (index 0 "tench, Tinca tinca"),
    read from the copy timm ships (no download)."""
    info = _require("timm.data").ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def load_pretrained(name, weights=None, **changes):
    """Our MobileViT `name` ("mobilevit_xxs", "mobilevit_xs" or "mobilevit_s") with the ImageNet-1k weights,
    in eval mode, with two attributes: `class_names` (1000 strings) and `preprocessing` (a Preprocessing).

    `weights`: a local file (timm's model.safetensors / pytorch_model.bin, or any state dict in timm's or
    our names); None downloads timm's `<name>.cvnets_in1k` from the Hugging Face Hub (or takes it from the
    local cache). `changes`: config fields that keep the weights' shapes (e.g. drop_rate).
    Raises WeightsUnavailableError when the weights cannot be downloaded.
    """
    _check_name(name)
    from dataclasses import replace

    for field in ("num_classes", "in_chans"):
        if field in changes and changes[field] != getattr(CONFIGS[name], field):
            raise ValueError(
                f"the ImageNet weights have {field}={getattr(CONFIGS[name], field)}, got {field}={changes[field]}:"
                " load them as they are, then replace the head (model.head = nn.Linear(...))"
            )
    path = Path(weights) if weights is not None else download_weights(name)
    model = MobileViT(replace(CONFIGS[name], **changes))
    load_weights(model, read_state_dict(path), source=f"the weights in {path.name}")
    model.class_names = imagenet_class_names()
    model.preprocessing = IMAGENET_PREPROCESSING
    return model.eval()


# ------------------------------------------------------------------------------------ using them
def preprocess(image, preprocessing=IMAGENET_PREPROCESSING):
    """A PIL image (or a path to one) -> (1, 3, S, S) float tensor in [0, 1], as timm prepares it:
    shorter side resized to `preprocessing.resize_size` (bicubic), centre crop S x S, /255, then the
    channel order of `preprocessing.channel_order` and (x - mean) / std."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            return preprocess(opened.convert("RGB"), preprocessing)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image or a path, got {type(image).__name__}")
    if preprocessing.channel_order not in ("RGB", "BGR"):
        raise ValueError(f"preprocessing.channel_order must be 'RGB' or 'BGR', got {preprocessing.channel_order!r}")
    image = image.convert("RGB")
    width, height = image.size
    short, size = min(width, height), preprocessing.resize_size
    # torchvision's Resize(int): the shorter side becomes `size`, the longer one int(size * long / short)
    new_w, new_h = (size, int(size * height / width)) if width <= height else (int(size * width / height), size)
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[preprocessing.interpolation]
    image = image.resize((new_w, new_h), resample)
    crop = preprocessing.input_size
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))  # torchvision's CenterCrop
    image = image.crop((left, top, left + crop, top + crop))
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(crop, crop, 3)
    x = x.permute(2, 0, 1).float().div(255.0)  # (3, S, S) in [0, 1], RGB
    if preprocessing.channel_order == "BGR":
        x = x.flip(0)
    mean = torch.tensor(preprocessing.mean).view(3, 1, 1)
    std = torch.tensor(preprocessing.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)  # (1, 3, S, S)


def top_k(logits, class_names, k=5):
    """The k most probable classes of one image's logits ((num_classes,) or (1, num_classes)) as a list of
    (class name, probability) pairs, most probable first."""
    if logits.dim() == 2:
        if logits.shape[0] != 1:
            raise ValueError(f"logits: expected one image, (1, num_classes), got shape {tuple(logits.shape)}")
        logits = logits[0]
    if logits.shape[-1] != len(class_names):
        raise ValueError(f"logits have {logits.shape[-1]} classes but class_names has {len(class_names)}")
    probabilities = logits.detach().float().softmax(-1)
    values, indices = probabilities.topk(k)
    return [(class_names[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]


def stem_channel_order(stem_weight, reference_stem_weight, atol=1e-6):
    """Compare two copies of the same network's first conv weight (C_out, 3, k, k), e.g. timm's and
    Apple's/Hugging Face's: "same" if equal, "flipped" if equal after reversing the 3 input channels
    (one of the two expects BGR where the other expects RGB), "different" otherwise."""
    a, b = stem_weight.detach().float(), reference_stem_weight.detach().float()
    if a.shape != b.shape:
        return "different"
    if torch.allclose(a, b, atol=atol):
        return "same"
    if torch.allclose(a, b.flip(1), atol=atol):
        return "flipped"
    return "different"
