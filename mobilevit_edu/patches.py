"""Chapter 4: MobileViT's unfolding of a feature map into non-overlapping patches.

A (B, C, H, W) map is cut into N = (H/ph)(W/pw) non-overlapping ph x pw patches. Instead of
flattening each patch into one token (as ViT does), MobileViT keeps the P = ph*pw pixel positions
apart: the result is (B, P, N, C), and attention later runs across the N patches separately for
each of the P positions. Both P and N are in row-major order.
"""

from einops import rearrange

from ._validate import check_image_batch, pair

UNFOLD_PATTERN = "b c (nh ph) (nw pw) -> b (ph pw) (nh nw) c"
FOLD_PATTERN = "b (ph pw) (nh nw) c -> b c (nh ph) (nw pw)"


def unfold_patches(x, patch_size):
    """(B, C, H, W) -> (B, P, N, C), P = ph*pw, N = (H/ph)*(W/pw). A reshape: nothing overlaps."""
    check_image_batch(x, "x")
    ph, pw = pair(patch_size, "patch_size")
    H, W = x.shape[-2:]
    if H % ph or W % pw:
        raise ValueError(
            f"x's height and width ({H}x{W}) must be multiples of patch_size ({ph}x{pw});"
            " MobileViTBlock resizes such maps first"
        )
    return rearrange(x, UNFOLD_PATTERN, ph=ph, pw=pw)


def fold_patches(patches, output_size, patch_size):
    """(B, P, N, C) -> (B, C, H, W): the exact inverse of `unfold_patches`."""
    ph, pw = pair(patch_size, "patch_size")
    H, W = pair(output_size, "output_size")
    if patches.dim() != 4:
        raise ValueError(f"patches must be a 4-D tensor (B, P, N, C), got shape {tuple(patches.shape)}")
    if H % ph or W % pw:
        raise ValueError(f"output_size ({H}x{W}) must be a multiple of patch_size ({ph}x{pw})")
    B, P, N, C = patches.shape
    if P != ph * pw or N != (H // ph) * (W // pw):
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not fit output_size {H}x{W} with patch_size"
            f" {ph}x{pw}: expected (B, {ph * pw}, {(H // ph) * (W // pw)}, C)"
        )
    return rearrange(patches, FOLD_PATTERN, ph=ph, pw=pw, nh=H // ph)
