"""The checks of exercises 4-6's new tasks (mobilevit_edu/checks/tasks_4_6.py): right answers pass,
blank ones say "not implemented yet", and typical wrong answers are rejected with a message that
names the mistake."""

import math

import torch
import torch.nn.functional as F
from einops import rearrange

import mobilevit_edu as me
from mobilevit_edu import viz_patches as vp
from mobilevit_edu.checks import check_block_reach, check_global_rep_by_fold, check_parameters_from_config
from mobilevit_edu.checks.tasks_4_6 import REACH_CASES, reference_block_reach
from mobilevit_edu.layers import make_divisible

from _checking import is_stub, passes, rejects, stub


# ------------------------------------------------------------------------------------------ block_reach
def _window(mask):
    return F.max_pool2d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0


def _partners(H, W, patch, mask):
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    rows, cols = torch.arange(H)[:, None], torch.arange(W)[None, :]
    out = torch.zeros(H, W, dtype=torch.bool)
    for a, b in mask.nonzero().tolist():
        out |= (rows % ph == a % ph) & (cols % pw == b % pw)
    return out


def right_reach(H, W, patch, pixel):
    out = torch.zeros(H, W, dtype=torch.bool)
    out[pixel] = True
    return _window(_partners(H, W, patch, _window(out)))


def test_reference_reach_is_what_autograd_sees_through_a_real_block():
    for _, H, W, patch, pixel in REACH_CASES:
        torch.manual_seed(0)
        block = me.MobileViTBlock(8, 16, 1, patch_size=patch).eval()
        seen = vp.input_gradient(block, torch.randn(1, 8, H, W), pixel) > 0
        assert torch.equal(seen, reference_block_reach(H, W, patch, pixel))


def test_corner_of_a_16x16_map_with_4x4_patches_is_reached_by_225_pixels():
    assert int(reference_block_reach(16, 16, 4, (0, 0)).sum()) == 225


def test_block_reach_accepts_a_right_answer_and_reports_a_blank(capsys):
    passes(check_block_reach, right_reach, capsys)
    is_stub(check_block_reach, stub, capsys)


def test_block_reach_rejects_the_local_then_global_path_alone():
    def local_then_global(H, W, patch, pixel):
        out = torch.zeros(H, W, dtype=torch.bool)
        out[pixel] = True
        return _window(_partners(H, W, patch, out))
    rejects(check_block_reach, local_then_global, "corner (0, 0)", "local-then-global path only")


def test_block_reach_rejects_a_missing_local_convolution_and_all_true():
    def no_local(H, W, patch, pixel):
        out = torch.zeros(H, W, dtype=torch.bool)
        out[pixel] = True
        return _partners(H, W, patch, _window(out)) | _window(out)
    rejects(check_block_reach, no_local, "local_rep")
    rejects(check_block_reach, lambda H, W, patch, pixel: torch.ones(H, W, dtype=torch.bool), "no path")


def test_block_reach_rejects_a_wrong_shape():
    rejects(check_block_reach, lambda H, W, patch, pixel: torch.ones(H + 1, W, dtype=torch.bool), "shape")


# ----------------------------------------------------------------------------------- global_rep_by_fold
def right_fold(block, y):
    B, d, H, W = y.shape
    ph, pw = block.patch_size
    cols = F.unfold(y, (ph, pw), stride=(ph, pw))                  # (B, d*P, N)
    tokens = rearrange(cols, "b (d p) n -> (b p) n d", d=d)         # (B*P, N, d)
    tokens = block.norm(block.transformer(tokens))
    cols = rearrange(tokens, "(b p) n d -> b (d p) n", b=B)
    return F.fold(cols, (H, W), (ph, pw), stride=(ph, pw))


def test_global_rep_by_fold_accepts_a_right_answer_and_reports_a_blank(capsys):
    passes(check_global_rep_by_fold, right_fold, capsys)
    is_stub(check_global_rep_by_fold, stub, capsys)


def test_global_rep_by_fold_rejects_attention_within_the_patch():
    def within(block, y):
        B, d, H, W = y.shape
        ph, pw = block.patch_size
        cols = F.unfold(y, (ph, pw), stride=(ph, pw))
        tokens = block.norm(block.transformer(rearrange(cols, "b (d p) n -> (b n) p d", d=d)))
        return F.fold(rearrange(tokens, "(b n) p d -> b (d p) n", b=B), (H, W), (ph, pw), stride=(ph, pw))
    rejects(check_global_rep_by_fold, within, "across the N patches")


def test_global_rep_by_fold_rejects_a_swapped_column_order_and_a_missing_norm():
    def swapped(block, y):
        B, d, H, W = y.shape
        ph, pw = block.patch_size
        cols = F.unfold(y, (ph, pw), stride=(ph, pw))
        tokens = block.norm(block.transformer(rearrange(cols, "b (p d) n -> (b p) n d", d=d)))
        return F.fold(rearrange(tokens, "(b p) n d -> b (p d) n", b=B), (H, W), (ph, pw), stride=(ph, pw))

    def no_norm(block, y):
        B, d, H, W = y.shape
        ph, pw = block.patch_size
        cols = F.unfold(y, (ph, pw), stride=(ph, pw))
        tokens = block.transformer(rearrange(cols, "b (d p) n -> (b p) n d", d=d))
        return F.fold(rearrange(tokens, "(b p) n d -> b (d p) n", b=B), (H, W), (ph, pw), stride=(ph, pw))
    rejects(check_global_rep_by_fold, swapped, "'(d p)'")
    rejects(check_global_rep_by_fold, no_norm, "LayerNorm")


def test_global_rep_by_fold_rejects_calling_the_package():
    rejects(check_global_rep_by_fold, lambda block, y: block.global_rep(y), "global_rep")


# -------------------------------------------------------------------------------- parameters_from_config
def right_parameters(cfg):
    def conv_bn(c_in, c_out, k=1, groups=1):
        return c_out * (c_in // groups) * k * k + 2 * c_out

    total, channels = conv_bn(cfg.in_chans, cfg.stem_channels, 3), cfg.stem_channels
    for stage in cfg.stages:
        for _ in range(stage.num_mv2):
            hidden = make_divisible(round(channels * cfg.expand_ratio))
            total += conv_bn(channels, hidden) + conv_bn(hidden, hidden, 3, hidden) + conv_bn(hidden, stage.channels)
            channels = stage.channels
        if stage.transformer_dim:
            C, d, m = channels, stage.transformer_dim, int(stage.transformer_dim * cfg.mlp_ratio)
            layer = 4 * d + 4 * d * d + 4 * d + 2 * d * m + m + d
            total += conv_bn(C, C, 3) + C * d + stage.depth * layer + 2 * d + conv_bn(d, C) + conv_bn(2 * C, C, 3)
    total += conv_bn(channels, cfg.final_channels)
    return total + (cfg.final_channels + 1) * cfg.num_classes


def test_parameters_from_config_accepts_a_right_answer_and_reports_a_blank(capsys):
    passes(check_parameters_from_config, right_parameters, capsys)
    is_stub(check_parameters_from_config, stub, capsys)


def test_parameters_from_config_rejects_missing_batchnorm_and_hidden_from_output():
    from mobilevit_edu.checks.tasks_4_6 import reference_parameters
    rejects(check_parameters_from_config, lambda cfg: reference_parameters(cfg, bn=False), "BatchNorm")
    rejects(check_parameters_from_config, lambda cfg: reference_parameters(cfg, hidden_from_output=True),
            "INPUT channels")


def test_parameters_from_config_rejects_building_the_network():
    rejects(check_parameters_from_config, lambda cfg: me.count_parameters(me.MobileViT(cfg)), "configuration alone")


def test_parameters_from_config_rejects_a_missing_layernorm_and_rounding():
    def no_final_norm(cfg):
        return right_parameters(cfg) - 2 * sum(s.transformer_dim for s in cfg.stages if s.transformer_dim)

    def unrounded(cfg):
        from mobilevit_edu.checks.tasks_4_6 import reference_parameters
        return reference_parameters(cfg, divisible=False)
    rejects(check_parameters_from_config, no_final_norm, "LayerNorm")
    rejects(check_parameters_from_config, unrounded, "make_divisible", "made-up network")


def test_parameters_from_config_rejects_a_float():
    rejects(check_parameters_from_config, lambda cfg: float(right_parameters(cfg)), "expected an int")


def test_no_resize_exactly_when_64k_minus_7_le_side_le_64k():
    """Exercise 6's closed form: the three MobileViT blocks see even sides exactly when
    64k - 7 <= H <= 64k for some k."""
    for side in range(32, 600):
        even = all(math.ceil(side / s) % 2 == 0 for s in (8, 16, 32))
        assert even == (side % 64 == 0 or side % 64 >= 57), side
