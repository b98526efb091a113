"""Chapter 1: a 2-D convolution is unfold -> matmul -> fold.

`F.unfold` (im2col) copies every k_h x k_w window of the input into a column; one matrix
multiplication with the flattened kernels then computes every output pixel at once; a reshape
puts the columns back on the output grid.
"""

import torch
import torch.nn.functional as F
from einops import rearrange

from ._validate import check_image_batch, pair


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis (the formula in `torch.nn.Conv2d`'s docs)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def conv2d_unfold(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """`F.conv2d` computed as unfold -> matmul -> reshape.

    Args:
        x: input, (B, C_in, H, W).
        weight: kernels, (C_out, C_in / groups, k_h, k_w).
        bias: optional, (C_out,).
        stride, padding, dilation: ints or (h, w) pairs, as in `F.conv2d`. Padding is a number of
            pixels: `F.conv2d`'s strings "valid" (= 0) and "same" are not accepted.
        groups: C_in and C_out are split into `groups` independent convolutions
            (groups == C_in is a depthwise convolution).

    Returns:
        (B, C_out, H_out, W_out), equal to `F.conv2d(x, weight, bias, stride, padding, dilation, groups)`.
    """
    check_image_batch(x, "x")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 4-D tensor (C_out, C_in/groups, k_h, k_w), got {shape}")
    stride, padding, dilation = pair(stride, "stride"), _pair0(padding), pair(dilation, "dilation")
    B, C_in, H, W = x.shape
    C_out, C_in_per_group, kh, kw = weight.shape
    if not isinstance(groups, int) or groups < 1 or C_in % groups or C_out % groups:
        raise ValueError(
            f"groups must divide both the input channels ({C_in}) and weight's output channels ({C_out}),"
            f" got groups={groups}"
        )
    if C_in_per_group * groups != C_in:
        raise ValueError(
            f"weight expects {C_in_per_group * groups} input channels ({C_in_per_group} per group x"
            f" {groups} groups), but x has {C_in}"
        )
    if bias is not None and tuple(bias.shape) != (C_out,):
        raise ValueError(f"bias must have shape ({C_out},), got {tuple(bias.shape)}")
    H_out = conv_output_size(H, kh, stride[0], padding[0], dilation[0])
    W_out = conv_output_size(W, kw, stride[1], padding[1], dilation[1])
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"the kernel ({kh}x{kw}, dilation {dilation}) does not fit into x of size {H}x{W}"
            f" with padding {padding}"
        )

    # 1. unfold: every window becomes a column of C_in*k_h*k_w numbers, L = H_out*W_out columns
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (B, C_in*kh*kw, L)
    # 2. matmul: each group's kernels multiply only that group's rows of the columns
    cols = rearrange(cols, "b (g ckk) l -> b g ckk l", g=groups)
    kernels = rearrange(weight, "(g o) c kh kw -> g o (c kh kw)", g=groups)
    out = kernels @ cols  # (B, g, C_out/g, L)
    out = rearrange(out, "b g o l -> b (g o) l")
    if bias is not None:
        out = out + bias[:, None]
    # 3. fold: with non-overlapping outputs, F.fold(out, (H_out, W_out), 1) is just this reshape
    return rearrange(out, "b c (h w) -> b c h w", h=H_out, w=W_out)


def _pair0(value):
    """Like `pair`, but padding may be 0."""
    if isinstance(value, str):
        raise ValueError(
            f"padding must be a number of pixels (an int or a pair), got the string {value!r}: use 0 for"
            " 'valid', and dilation*(k-1)//2 for 'same' with stride 1 and an odd kernel size k"
        )
    if isinstance(value, int) and value >= 0:
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and v >= 0 for v in value):
        return tuple(value)
    raise ValueError(f"padding must be a non-negative int or a pair of them, got {value!r}")
