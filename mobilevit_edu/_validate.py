"""Input checks shared by the package: each error names the argument, what was expected and what came."""

import torch


def check_image_batch(x, name="x", channels=None):
    """Raise a clear error unless `x` is a floating-point (B, C, H, W) tensor with `channels` channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(
            f"{name} must be a 4-D tensor (B, C, H, W), got {x.dim()}-D with shape {tuple(x.shape)}{hint}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (e.g. float32), got dtype {x.dtype}"
            " (convert images with x.float() / 255)"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (dim 1 of (B, C, H, W)), got {x.shape[1]}"
            f" in shape {tuple(x.shape)}"
        )


def pair(value, name):
    """Turn an int or a pair of ints into a tuple (h, w) of positive ints."""
    if isinstance(value, int):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return tuple(value)
