"""The checks of the experiment tasks of exercises 7-9 (mobilevit_edu/checks/experiments_7_9.py): the
reference passes, a blank answer is "not implemented yet", and wrong answers that look right are
rejected with a hint that names the mistake."""

import math

import pytest
import torch

from mobilevit_edu import checks, explain, train
from tests._checking import is_stub, passes, rejects, stub


# ------------------------------------------------------------------------ batch sizes by rule
def test_batch_size_rules_reference_passes(capsys):
    passes(checks.check_batch_size_rules, train.batch_size_for, capsys)


def test_batch_size_rules_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_batch_size_rules, stub, capsys)


def _floor(r, base, b):
    return max(1, b * base**2 // r**2)


def _v01_like_pixels(r, base, b, rule):
    if rule == "paper" and r > base:
        raise ValueError("resolution above the base")
    return _floor(r, base, b)  # forgets max(base_batch_size, ...) for cvnets-v0.1


def _v01_everywhere(r, base, b, rule):
    if rule == "paper" and r > base:
        raise ValueError("resolution above the base")
    return max(b, _floor(r, base, b))  # applies v0.1's max to every rule


def _paper_without_error(r, base, b, rule):
    return max(b, _floor(r, base, b)) if rule == "cvnets-v0.1" else _floor(r, base, b)


def _rounds_up(r, base, b, rule):
    if rule == "paper" and r > base:
        raise ValueError("resolution above the base")
    q = max(1, math.ceil(b * base**2 / r**2))
    return max(b, q) if rule == "cvnets-v0.1" else q


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (_v01_like_pixels, ["cvnets-v0.1", "stays at the base batch"]),
        (_v01_everywhere, ["'pixels'", "batches shrink"]),
        (_paper_without_error, ["expected a ValueError", "largest resolution"]),
        (_rounds_up, ["round down"]),
        (lambda r, base, b, rule: b, ["expected"]),
    ],
)
def test_batch_size_rules_rejects_wrong_answers(wrong, fragments):
    rejects(checks.check_batch_size_rules, wrong, *fragments)


# ------------------------------------------------------------------------------ epochs to reach
def _first_reach(curve, level):
    return next((e + 1 for e, a in enumerate(torch.as_tensor(curve).tolist()) if a >= level), None)


def test_epochs_to_reach_reference_passes(capsys):
    passes(checks.check_epochs_to_reach, _first_reach, capsys)


def test_epochs_to_reach_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_epochs_to_reach, stub, capsys)


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (lambda c, l: next((e for e, a in enumerate(torch.as_tensor(c).tolist()) if a >= l), None), ["count epochs from 1"]),
        (lambda c, l: next((e + 1 for e, a in enumerate(torch.as_tensor(c).tolist()) if a > l), None), [">=, not >"]),
        (lambda c, l: _first_reach(c, l) or len(c), ["return None"]),
        (lambda c, l: _first_reach(c, l) or -1, ["return None"]),
        (lambda c, l: max((e + 1 for e, a in enumerate(torch.as_tensor(c).tolist()) if a >= l), default=None), ["*first* epoch"]),
    ],
)
def test_epochs_to_reach_rejects_wrong_answers(wrong, fragments):
    rejects(checks.check_epochs_to_reach, wrong, *fragments)


# ----------------------------------------------------------------------------------------- r_half
def _r_half(erf, centre):
    return explain.receptive_field_summary(erf, centre)["r_half"]


def _r_half_with(distance_of, strict=False):
    def r_half(erf, centre):
        rows, cols = torch.meshgrid(torch.arange(erf.shape[0]), torch.arange(erf.shape[1]), indexing="ij")
        distance = distance_of(rows - centre[0], cols - centre[1])
        for r in range(sum(erf.shape)):
            inside = distance < r if strict else distance <= r
            if erf[inside].sum() >= 0.5 * erf.sum():
                return r
    return r_half


def test_r_half_reference_passes(capsys):
    passes(checks.check_r_half, _r_half, capsys)


def test_r_half_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_r_half, stub, capsys)


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (_r_half_with(lambda dr, dc: (dr.double() ** 2 + dc.double() ** 2).sqrt(), strict=True), ["<=, not <"]),
        (_r_half_with(lambda dr, dc: dr.abs() + dc.abs()), ["Euclidean", "|Δrow| + |Δcolumn|"]),
        (_r_half_with(lambda dr, dc: torch.maximum(dr.abs(), dc.abs())), ["Euclidean", "max("]),
        (lambda erf, centre: _r_half(erf, centre) + 0.5, ["whole radius"]),
    ],
)
def test_r_half_rejects_wrong_answers(wrong, fragments):
    rejects(checks.check_r_half, wrong, *fragments)


def test_receptive_field_summary_of_a_uniform_field():
    """The baselines chapter 8 prints: a uniform field from a corner and from the centre."""
    corner = explain.receptive_field_summary(torch.ones(32, 32), (0, 0))
    centre = explain.receptive_field_summary(torch.ones(32, 32), (16, 16))
    assert corner["r_half"] == 25 and corner["opposite_quadrant"] == pytest.approx(0.25)
    assert centre["r_half"] == 13 and centre["opposite_quadrant"] == pytest.approx(0.25)


# ------------------------------------------------------------------------------ attention counts
def _computed(b, n, d):
    return 2 * b * n * n * d


def _counted(b, n, d):
    return 2 * b * n * d * d


def test_attention_counts_reference_passes(capsys):
    passes(lambda _: checks.check_attention_counts(_computed, _counted), None, capsys)


def test_attention_counts_stub_is_not_implemented_yet(capsys):
    is_stub(lambda _: checks.check_attention_counts(stub, stub), None, capsys)


@pytest.mark.parametrize(
    "computed,counted,fragments",
    [
        (lambda b, n, d: b * n * n * d, _counted, ["two matrix products"]),
        (lambda b, n, d: 2 * n * n * d, _counted, ["own products"]),
        (_counted, _counted, ["seq_len²·dim"]),
        (_computed, _computed, ["in_channels", "whatever the patch size"]),
        (_computed, lambda b, n, d: 2 * b * n * d * d + 1, ["counted("]),
    ],
)
def test_attention_counts_reject_wrong_answers(computed, counted, fragments):
    rejects(lambda _: checks.check_attention_counts(computed, counted), None, *fragments)


# ------------------------------------------------------------------------ the package's new tools
def test_uniform_attention_is_a_mean_over_patches_and_is_undone():
    """Inside uniform_attention every attention returns proj(mean of the values); after it, the original."""
    from mobilevit_edu.layers import MultiHeadSelfAttention

    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, num_heads=2).eval()
    x = torch.randn(3, 5, 8)
    before = attn(x)
    with explain.uniform_attention(attn):
        pooled = attn(x)
    _, _, v = attn._heads(x)
    expected = attn.proj(v.mean(dim=2, keepdim=True).expand_as(v).transpose(1, 2).reshape(3, 5, 8))
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(attn(x), before)


def test_effective_receptive_field_each_channel_does_not_cancel():
    """channels="each" adds |gradient| per output channel: two channels with opposite kernels do not cancel."""
    conv = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[0] = 1.0
        conv.weight[1] = -1.0
    images = torch.rand(2, 1, 7, 7)
    summed = explain.effective_receptive_field(conv, images, pixel=(3, 3))
    each = explain.effective_receptive_field(conv, images, pixel=(3, 3), channels="each")
    assert summed.abs().max() == 0
    expected = torch.zeros(7, 7)
    expected[2:5, 2:5] = 2.0
    torch.testing.assert_close(each, expected)
    with pytest.raises(ValueError, match="channels"):
        explain.effective_receptive_field(conv, images, channels="both")


def test_attention_entropy_is_log_n_for_uniform_rows():
    import mobilevit_edu as me

    block = me.MobileViTBlock(8, 16, 1).eval()
    with torch.no_grad():
        for layer in block.transformer:
            layer.attn.qkv.weight.zero_()  # q = k = bias only: every score equal, every row uniform
            layer.attn.qkv.bias.zero_()
    entropy = explain.attention_entropy(block, torch.randn(1, 16, 4, 6))
    assert entropy.shape == (1, 4, block.transformer[0].attn.num_heads, 6)
    torch.testing.assert_close(entropy, torch.full_like(entropy, math.log(6)))
