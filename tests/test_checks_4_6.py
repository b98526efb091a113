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
from mobilevit_edu import viz_patches as vp

from _checking import is_stub, passes, rejects


def _pair(patch):
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


# ------------------------------------------------------------------------------- chapter 4: unfold
def unfold_with(pattern):
    def unfold(x, patch_size):
        ph, pw = _pair(patch_size)
        return rearrange(x, pattern, ph=ph, pw=pw)

    return unfold


def unfold_stub(x, patch_size):
    raise NotImplementedError("Your code here")


def any_stub(*args):
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


# ------------------------------------------------------------------------------- chapter 4: attention partners
def partners(H, W, patch_size, pixel, *, mistake=None):
    """A student's attention_partners with switches for the typical mistakes."""
    ph, pw = _pair(patch_size)
    i, j = pixel
    if mistake == "swap_patch":
        ph, pw = pw, ph
    if mistake == "transposed_pixel":
        i, j = j, i
    rows, cols = torch.arange(H)[:, None], torch.arange(W)[None, :]
    if mistake == "own_patch":
        return (rows // ph == i // ph) & (cols // pw == j // pw)
    mask = (rows % ph == i % ph) & (cols % pw == j % pw)
    if mistake == "without_self":
        mask[pixel] = False
    return mask


def test_partners_right_answer_passes(capsys):
    passes(checks.check_attention_partners, partners, capsys)
    passes(checks.check_attention_partners, vp.attention_partners, capsys)


def test_partners_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_attention_partners, any_stub, capsys)


@pytest.mark.parametrize("mistake,fragments", [
    ("own_patch", ["8x8 map, 2x2 patches", "own patch", "every patch"]),
    ("without_self", ["8x8 map", "attends to itself too"]),
    ("swap_patch", ["non-square 2x3 patches", "2 rows by 3 columns"]),
    ("transposed_pixel", ["8x8 map", "(row, column)"]),
], ids=["own-patch", "without-self", "swapped-patch", "transposed-pixel"])
def test_partners_typical_mistakes_are_named(mistake, fragments):
    message = rejects(checks.check_attention_partners, lambda *a: partners(*a, mistake=mistake), *fragments)
    assert message.count("Hint:") == 1


def test_partners_wrong_shape_is_rejected():
    rejects(checks.check_attention_partners, lambda H, W, p, pixel: partners(H, W, p, pixel).flatten(),
            "shape (64,)", "expected (8, 8)")


# ------------------------------------------------------------------------------- chapter 5: the block
class Stub(me.MobileViTBlock):
    def forward(self, x):
        raise NotImplementedError("Your code here")


class Wrong(me.MobileViTBlock):
    """The block with one typical mistake, chosen by the class attributes below."""

    fuse = "concat"  # "concat" | "add" | "concat_reversed" | "concat_residual" | "concat_local"
    final_norm = True
    norm_first = False  # the block's LayerNorm before the transformer instead of after
    layout = "patches"  # or "pixels": attention across the P pixels of each patch; "all": one sequence of H*W
    resize = "bilinear"  # or None (crashes on odd sizes), "nearest" or "pad" (zeros, then crop)
    align_corners = False
    use_conv_proj = True
    use_conv_kxk = True
    fold_order = "b p"  # how the tokens are split back: "p b" mixes images and positions up for batch > 1

    def forward(self, x):
        y = self.local_rep(x) if self.use_conv_kxk else self.local_rep.conv_1x1(x)
        B, d, H, W = y.shape
        if self.layout == "all":
            t = rearrange(y, "b d h w -> b (h w) d")
            y = rearrange(self.norm(self.transformer(t)), "b (h w) d -> b d h w", h=H)
            return self.fusion(torch.cat([x, self.conv_proj(y)], dim=1))
        ph, pw = self.patch_size
        Hp, Wp = math.ceil(H / ph) * ph, math.ceil(W / pw) * pw
        kwargs = {} if self.resize == "nearest" else {"align_corners": self.align_corners}
        if self.resize == "pad" and (Hp, Wp) != (H, W):
            y = F.pad(y, (0, Wp - W, 0, Hp - H))
        elif self.resize and (Hp, Wp) != (H, W):
            y = F.interpolate(y, size=(Hp, Wp), mode=self.resize, **kwargs)
        patches = me.unfold_patches(y, self.patch_size)
        P, N = patches.shape[1:3]
        if self.layout == "patches":
            t = rearrange(patches, "b p n d -> (b p) n d")
        else:
            t = rearrange(patches, "b p n d -> (b n) p d")
        if self.norm_first:
            t = self.transformer(self.norm(t))
        else:
            t = self.transformer(t)
            if self.final_norm:
                t = self.norm(t)
        if self.layout == "patches":
            patches = rearrange(t, f"({self.fold_order}) n d -> b p n d", p=P)
        else:
            patches = rearrange(t, "(b n) p d -> b p n d", n=N)
        y = me.fold_patches(patches, (y.shape[-2], y.shape[-1]), self.patch_size)
        if self.resize == "pad" and (Hp, Wp) != (H, W):
            y = y[:, :, :H, :W]
        elif self.resize and (Hp, Wp) != (H, W):
            y = F.interpolate(y, size=(H, W), mode=self.resize, **kwargs)
        if self.use_conv_proj:
            y = self.conv_proj(y)
        if self.fuse == "add":
            return self.fusion(x + y)
        if self.fuse == "concat_reversed":
            return self.fusion(torch.cat([y, x], dim=1))
        if self.fuse == "concat_local":
            return self.fusion(torch.cat([self.local_rep.conv_kxk(x), y], dim=1))
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
        ({"norm_first": True}, ["batch 2, 8x8", "*after* the transformer layers"]),
        ({"layout": "all"}, ["batch 2, 8x8", "all H*W pixels as one sequence"]),
        ({"use_conv_kxk": False}, ["batch 2, 8x8", "local representation's 3x3 convolution"]),
        ({"fuse": "concat_local"}, ["batch 2, 8x8", "not the output of the local 3x3 convolution"]),
        ({"fold_order": "p b"}, ["batch 2, 8x8", "split them back as (p b)"]),
        ({"resize": "pad"}, ["7x9 map", "you pad the map with zeros"]),
        ({"align_corners": True}, ["7x9 map", "align_corners=False"]),
    ],
    ids=["add", "concat-y-x", "residual", "no-final-norm", "across-pixels", "no-resize", "nearest", "no-conv-proj",
         "norm-first", "all-pixels", "no-conv-kxk", "concat-local", "fold-order", "zero-pad", "align-corners"],
)
def test_block_wrong_answers_are_rejected(changes, fragments):
    message = rejects(checks.check_mobilevit_block, wrong(**changes), *fragments)
    assert message.count("Hint:") == 1 and "no typical mistake matches" not in message


def test_block_mistake_after_the_last_submodule_is_located_and_described():
    class Doubled(me.MobileViTBlock):
        def forward(self, x):
            return 2 * super().forward(x)

    rejects(checks.check_mobilevit_block, Doubled, "values are not", "Hint: every submodule gets the right input",
            "after `self.fusion.act`", "your output is 2 times")


def test_block_with_renamed_submodules_is_told_to_keep_the_names():
    class Renamed(me.MobileViTBlock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fuse = self.fusion
            del self.fusion

    rejects(checks.check_mobilevit_block, Renamed, "keep the submodule names")


# ------------------------------------------------------------------------------- chapter 5: block MACs
def block_macs(C, d, L, H, W, patch, *, fusion_in=None, proj=True, local_1x1=True, layers=None, resized=True,
               attention="patches"):
    """A student's hand count of a MobileViT block's multiply-adds, with switches for the typical mistakes."""
    fusion_in = 2 * C if fusion_in is None else fusion_in
    layers = L if layers is None else layers
    Hp, Wp = (math.ceil(H / patch) * patch, math.ceil(W / patch) * patch) if resized else (H, W)
    P, tokens = patch * patch, Hp * Wp
    N = tokens // P
    convs = 9 * C * C * H * W + fusion_in * 9 * C * H * W
    convs += (C * d * H * W if local_1x1 else 0) + (d * C * H * W if proj else 0)
    per_layer = tokens * (3 * d * d + d * d + 2 * d * 2 * d)  # qkv, proj, MLP d -> 2d -> d
    per_layer += {"patches": P * 2 * N * N * d, "all": 2 * tokens**2 * d, "pixels": N * 2 * P * P * d,
                  "one_position": 2 * N * N * d}[attention]
    return convs + layers * per_layer


def test_block_macs_right_count_passes(capsys):
    passes(checks.check_mobilevit_block_macs, block_macs, capsys)


def test_block_macs_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_mobilevit_block_macs, any_stub, capsys)


@pytest.mark.parametrize("switches,fragments", [
    ({"fusion_in": "C"}, ["stages.2 block", "2C input channels"]),
    ({"proj": False}, ["stages.2 block", "one of the two 1x1 convolutions", "conv_proj"]),
    ({"local_1x1": False}, ["stages.2 block", "one of the two 1x1 convolutions", "conv_1x1"]),
    ({"layers": 1}, ["stages.2 block", "L = 2 transformer layers"]),
    ({"attention": "all"}, ["stages.2 block", "one sequence over every pixel"]),
    ({"attention": "pixels"}, ["stages.2 block", "across the P pixels of each patch"]),
    ({"attention": "one_position"}, ["stages.2 block", "multiply the attention term by P"]),
    ({"resized": False}, ["7x9 map", "resized to the next multiple", "8x10"]),
], ids=["fusion-C", "no-conv-proj", "no-local-1x1", "one-layer", "all-pixels", "across-pixels", "one-position",
        "not-resized"])
def test_block_macs_typical_mistakes_are_named(switches, fragments):
    def wrong(C, d, L, H, W, patch):
        options = dict(switches)
        if options.get("fusion_in") == "C":
            options["fusion_in"] = C
        return block_macs(C, d, L, H, W, patch, **options)

    message = rejects(checks.check_mobilevit_block_macs, wrong, *fragments)
    assert message.count("Hint:") == 1


# ------------------------------------------------------------------------------- chapter 6: stage sizes
def stage_sizes(H, W, *, halve=lambda n: -(-n // 2), stem=True, stage0_halves=False):
    """A student's stage_sizes with switches for the typical mistakes."""
    sizes = []
    h, w = (halve(H), halve(W)) if stem else (H, W)
    sizes.append((h, w))
    for k in range(5):
        if k > 0 or stage0_halves:
            h, w = halve(h), halve(w)
        sizes.append((h, w))
    return sizes


def test_stage_sizes_right_answer_passes(capsys):
    passes(checks.check_stage_sizes, stage_sizes, capsys)


def test_stage_sizes_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_stage_sizes, any_stub, capsys)


@pytest.mark.parametrize("switches,fragments", [
    ({"halve": lambda n: n // 2}, ["250x250", "stages.1", "not n // 2"]),
    ({"stem": False}, ["256x256", "the stem", "the stem halves the image too"]),
    ({"stage0_halves": True}, ["256x256", "stages.0", "stages.0 keeps the size"]),
], ids=["floor", "no-stem", "stage0-halves"])
def test_stage_sizes_typical_mistakes_are_named(switches, fragments):
    message = rejects(checks.check_stage_sizes, lambda H, W: stage_sizes(H, W, **switches), *fragments)
    assert message.count("Hint:") == 1


def test_stage_sizes_wants_six_sizes():
    rejects(checks.check_stage_sizes, lambda H, W: stage_sizes(H, W)[1:], "5 sizes; expected 6")


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
        (xxs_with_stage(3, transformer_dim=96), ["stages.3 (stages[3]): transformer_dim is 96; expected 80"]),
        (xxs_with_stage(4, depth=4), ["stages.4 (stages[4]): depth is 4; expected 3", "number of transformer layers"]),
        (xxs_with(final_channels=640), ["final_channels is 640; expected 320", "640 is S's"]),
        (xxs_with(stages=me.XXS.stages[:4]), ["4 stages", "five stages"]),
        (xxs_with_stage(1, stride=1), ["stages.1 (stages[1]): stride is 1; expected 2"]),
        (me.XS, ["stages.0 (stages[0]): channels is 32; expected 16"]),
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
