"""The exercise checks of chapters 4-6: the reference passes, a stub is "not implemented yet", and
wrong answers that look right are rejected with a message that says what is wrong."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import mobilevit_edu as me
from mobilevit_edu import checks
from mobilevit_edu.checks import CheckFailed


def _pair(patch):
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


def passes(check, answer, capsys):
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("✓"), out
    return out


def is_stub(check, answer, capsys):
    check(answer)  # must not raise
    assert "not implemented yet" in capsys.readouterr().out


def rejects(check, answer, *fragments):
    with pytest.raises(CheckFailed) as info:
        check(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------- chapter 4: unfold
def unfold_with(pattern):
    def unfold(x, patch_size):
        ph, pw = _pair(patch_size)
        return rearrange(x, pattern, ph=ph, pw=pw)

    return unfold


def unfold_stub(x, patch_size):
    raise NotImplementedError("Your code here")


def unfold_naive_reshape(x, patch_size):
    # right shape, wrong content: a reshape does not gather the pixels of each position
    ph, pw = _pair(patch_size)
    B, C, H, W = x.shape
    return x.reshape(B, C, ph * pw, (H // ph) * (W // pw)).permute(0, 2, 3, 1)


def unfold_square_only(x, patch_size):
    # forgets non-square patches: uses ph for both sides
    ph = patch_size if isinstance(patch_size, int) else patch_size[0]
    return rearrange(x, "b c (nh ph) (nw pw) -> b (ph pw) (nh nw) c", ph=ph, pw=ph)


def test_unfold_reference_passes(capsys):
    assert "all 4 cases" in passes(checks.check_unfold_patches, me.unfold_patches, capsys)


def test_unfold_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_unfold_patches, unfold_stub, capsys)


@pytest.mark.parametrize(
    "pattern,fragments",
    [
        ("b c (nh ph) (nw pw) -> b (nh nw) (ph pw) c", ["did you swap P and N", "case 'batch 1"]),
        ("b c (nh ph) (nw pw) -> b (ph pw) (nw nh) c", ["column by column (nw nh)"]),
        ("b c (nh ph) (nw pw) -> b (pw ph) (nh nw) c", ["(pw ph)", "row by row"]),
        ("b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)", ["ViT's flattening", "shape (1, 6, 4)"]),
        ("b c (ph nh) (pw nw) -> b (ph pw) (nh nw) c", ["not contiguous"]),
        ("b c (nh ph) (nw pw) -> b (ph pw) c (nh nw)", ["channels go last"]),
    ],
    ids=["swapped-P-N", "column-major-N", "pw-ph", "vit-flatten", "strided", "channels-first"],
)
def test_unfold_wrong_layouts_are_rejected(pattern, fragments):
    rejects(checks.check_unfold_patches, unfold_with(pattern), *fragments)


def test_unfold_naive_reshape_is_rejected():
    rejects(checks.check_unfold_patches, unfold_naive_reshape, "the values are not", "wrong places")


def test_unfold_square_only_fails_on_the_non_square_patch():
    rejects(checks.check_unfold_patches, unfold_square_only, "non-square 2x3 patches", "shape", "use ph for the height and pw")


# ------------------------------------------------------------------------------- chapter 4: fold
def fold_with(pattern, nh_from="H"):
    def fold(patches, output_size, patch_size):
        ph, pw = _pair(patch_size)
        H, W = output_size
        nh = H // ph if nh_from == "H" else W // pw
        return rearrange(patches, pattern, ph=ph, pw=pw, nh=nh)

    return fold


def fold_stub(patches, output_size, patch_size):
    raise NotImplementedError


def fold_naive_reshape(patches, output_size, patch_size):
    B, P, N, C = patches.shape
    return patches.permute(0, 3, 1, 2).reshape(B, C, *output_size)


def test_fold_reference_passes(capsys):
    passes(checks.check_fold_patches, me.fold_patches, capsys)


def test_fold_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_fold_patches, fold_stub, capsys)


@pytest.mark.parametrize(
    "answer,fragments",
    [
        (fold_with("b (ph pw) (nw nh) c -> b c (nh ph) (nw pw)"), ["column by column (nw nh)", "give x back"]),
        (fold_with("b (pw ph) (nh nw) c -> b c (nh ph) (nw pw)"), ["(pw ph)"]),
        (fold_naive_reshape, ["give x back exactly", "values are not"]),
        (fold_with("b (ph pw) (nh nw) c -> b c (nw pw) (nh ph)", nh_from="W"), ["wrong places"]),
        (fold_with("b (ph pw) (nh nw) c -> b c (nh ph) (nw pw)", nh_from="W"), ["case 'batch 1, one channel, 4x6 map", "give x back"]),
    ],
    ids=["column-major-N", "pw-ph", "naive-reshape", "transposed-map", "nh-from-width"],
)
def test_fold_that_is_not_the_inverse_is_rejected(answer, fragments):
    rejects(checks.check_fold_patches, answer, *fragments)


# ------------------------------------------------------------------------------- chapter 5: the block
class Stub(me.MobileViTBlock):
    def forward(self, x):
        raise NotImplementedError("Your code here")


class Wrong(me.MobileViTBlock):
    """The block with one typical mistake, chosen by the class attributes below."""

    fuse = "concat"  # "concat" | "add" | "concat_reversed" | "concat_residual"
    final_norm = True
    layout = "patches"  # or "pixels": attention across the P pixels of each patch
    resize = "bilinear"  # or None (crashes on odd sizes) or "nearest"
    use_conv_proj = True

    def forward(self, x):
        y = self.local_rep(x)
        B, d, H, W = y.shape
        ph, pw = self.patch_size
        Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
        kwargs = {} if self.resize == "nearest" else {"align_corners": False}
        if self.resize and (Hp, Wp) != (H, W):
            y = F.interpolate(y, size=(Hp, Wp), mode=self.resize, **kwargs)
        patches = me.unfold_patches(y, self.patch_size)
        P, N = patches.shape[1:3]
        if self.layout == "patches":
            t = rearrange(patches, "b p n d -> (b p) n d")
        else:
            t = rearrange(patches, "b p n d -> (b n) p d")
        t = self.transformer(t)
        if self.final_norm:
            t = self.norm(t)
        if self.layout == "patches":
            patches = rearrange(t, "(b p) n d -> b p n d", p=P)
        else:
            patches = rearrange(t, "(b n) p d -> b p n d", n=N)
        y = me.fold_patches(patches, (y.shape[-2], y.shape[-1]), self.patch_size)
        if self.resize and (Hp, Wp) != (H, W):
            y = F.interpolate(y, size=(H, W), mode=self.resize, **kwargs)
        if self.use_conv_proj:
            y = self.conv_proj(y)
        if self.fuse == "add":
            return self.fusion(x + y)
        if self.fuse == "concat_reversed":
            return self.fusion(torch.cat([y, x], dim=1))
        out = self.fusion(torch.cat([x, y], dim=1))
        return x + out if self.fuse == "concat_residual" else out


def wrong(**changes):
    return type("WrongBlock", (Wrong,), changes)


def test_block_reference_passes(capsys):
    passes(checks.check_mobilevit_block, me.MobileViTBlock, capsys)


def test_block_written_like_the_wrong_ones_but_right_passes(capsys):
    passes(checks.check_mobilevit_block, Wrong, capsys)  # the harness itself is right


def test_block_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_mobilevit_block, Stub, capsys)


@pytest.mark.parametrize(
    "changes,fragments",
    [
        ({"fuse": "add"}, ["RuntimeError", "did you add x + y", "torch.cat([x, y], dim=1)"]),
        ({"fuse": "concat_reversed"}, ["you concatenate [y, x]"]),
        ({"fuse": "concat_residual"}, ["no residual add"]),
        ({"final_norm": False}, ["forgot the LayerNorm"]),
        ({"layout": "pixels"}, ["(B*N, P, d)", "(B*P, N, d)"]),
        ({"resize": None}, ["7x9 map", "not a multiple of the 2x2 patch", "size=(8, 10)"]),
        ({"resize": "nearest"}, ["7x9 map", "mode='bilinear'"]),
        ({"use_conv_proj": False}, ["skip self.conv_proj"]),
    ],
    ids=["add", "concat-y-x", "residual", "no-final-norm", "across-pixels", "no-resize", "nearest", "no-conv-proj"],
)
def test_block_wrong_answers_are_rejected(changes, fragments):
    rejects(checks.check_mobilevit_block, wrong(**changes), *fragments)


def test_block_with_renamed_submodules_is_told_to_keep_the_names():
    class Renamed(me.MobileViTBlock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fuse = self.fusion
            del self.fusion

    rejects(checks.check_mobilevit_block, Renamed, "keep the submodule names")


# ------------------------------------------------------------------------------- chapter 6: config and forward
def xxs_with(**changes):
    return dataclasses.replace(me.XXS, **changes)


def xxs_with_stage(k, **changes):
    stages = list(me.XXS.stages)
    stages[k] = dataclasses.replace(stages[k], **changes)
    return xxs_with(stages=tuple(stages))


def test_config_reference_passes(capsys):
    assert "1,272,024" in passes(checks.check_mobilevit_config, me.XXS, capsys)


def test_config_as_a_function_passes(capsys):
    passes(checks.check_mobilevit_config, lambda: xxs_with(name="my_xxs"), capsys)


def test_config_stub_is_not_implemented_yet(capsys):
    def stub():
        raise NotImplementedError

    is_stub(checks.check_mobilevit_config, stub, capsys)


@pytest.mark.parametrize(
    "config,fragments",
    [
        (xxs_with(expand_ratio=4.0), ["expand_ratio is 4.0; expected 2.0", "XXS expands its MV2 blocks by 2"]),
        (xxs_with_stage(3, transformer_dim=96), ["stage 4 (stages[3]): transformer_dim is 96; expected 80"]),
        (xxs_with_stage(4, depth=4), ["stage 5 (stages[4]): depth is 4; expected 3", "number of transformer layers"]),
        (xxs_with(final_channels=640), ["final_channels is 640; expected 320", "640 is S's"]),
        (xxs_with(stages=me.XXS.stages[:4]), ["4 stages", "five stages"]),
        (xxs_with_stage(1, stride=1), ["stage 2 (stages[1]): stride is 1; expected 2"]),
        (me.XS, ["stage 1 (stages[0]): channels is 32; expected 16"]),
    ],
    ids=["expand-4", "wrong-d", "wrong-depth", "final-640", "four-stages", "stride", "the-XS-config"],
)
def test_config_wrong_answers_are_rejected(config, fragments):
    rejects(checks.check_mobilevit_config, config, *fragments)


def test_config_of_the_wrong_type_is_rejected():
    rejects(checks.check_mobilevit_config, {"expand_ratio": 2.0}, "expected a mobilevit_edu.MobileViTConfig, got dict")


class ForwardStub(me.MobileViT):
    def forward(self, x):
        raise NotImplementedError


class MaxPool(me.MobileViT):
    def forward(self, x):
        x = self.final_conv(self.features(x)[-1])
        return self.head(x.amax(dim=(2, 3)))


class NoFinalConv(me.MobileViT):
    def forward(self, x):
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))


class NoPool(me.MobileViT):
    def forward(self, x):
        return self.head(self.final_conv(self.features(x)[-1]).flatten(1))


class NoStem(me.MobileViT):
    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(self.final_conv(x).mean(dim=(2, 3)))


def test_forward_reference_passes(capsys):
    passes(checks.check_mobilevit_forward, me.MobileViT, capsys)


def test_forward_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_mobilevit_forward, ForwardStub, capsys)


@pytest.mark.parametrize(
    "answer,fragments",
    [
        (MaxPool, ["global *average*"]),
        (NoFinalConv, ["self.final_conv"]),
        (NoPool, ["pool over the spatial dimensions"]),
        (NoStem, ["run the stem first"]),
    ],
    ids=["max-pool", "no-final-conv", "no-pool", "no-stem"],
)
def test_forward_wrong_answers_are_rejected(answer, fragments):
    rejects(checks.check_mobilevit_forward, answer, *fragments)
