"""The exercise check of chapter 10: the reference passes, a stub is "not implemented yet", and wrong answers
that look right (right shape, wrong operator) are rejected with the hint that names the mistake."""

import pytest
import torch
import torch.nn.functional as F

from mobilevit_edu import checks
from mobilevit_edu.attention_v2 import separable_self_attention
from mobilevit_edu.checks import CheckFailed


def rejects(answer, *fragments):
    with pytest.raises(CheckFailed) as info:
        checks.check_separable_self_attention(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_reference_passes(capsys):
    checks.check_separable_self_attention(separable_self_attention)
    assert capsys.readouterr().out.startswith("✓ separable_self_attention")


def test_a_hand_written_answer_passes(capsys):
    def mine(query, key, value):
        scores = torch.exp(query - query.amax(-1, keepdim=True))
        scores = scores / scores.sum(-1, keepdim=True)
        return value.clamp_min(0) * torch.einsum("bdpn,bpn->bdp", key, scores[:, 0])[..., None]

    checks.check_separable_self_attention(mine)
    assert capsys.readouterr().out.startswith("✓")


def test_a_stub_is_not_implemented_yet(capsys):
    def stub(query, key, value):
        raise NotImplementedError("Your code here")

    checks.check_separable_self_attention(stub)  # must not raise
    assert "not implemented yet" in capsys.readouterr().out


# ---------------------------------------------------------------- softmax over the wrong axis
def test_softmax_over_the_pixel_positions():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(dim=-2)).sum(-1, keepdim=True),
            "softmax over the wrong axis", "P pixel positions (dim=-2)")


def test_softmax_over_the_query_channel_is_all_ones():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(dim=1)).sum(-1, keepdim=True),
            "plain sum of the keys", "softmax over dim=1")


def test_softmax_and_sum_over_the_pixel_positions():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(dim=2)).sum(2, keepdim=True),
            "softmax and sum over the wrong axis")


def test_no_softmax_at_all():
    rejects(lambda q, k, v: F.relu(v) * (k * q).sum(-1, keepdim=True), "raw query")


# ---------------------------------------------------------------- summing instead of weighting
def test_summing_the_keys_without_weights():
    rejects(lambda q, k, v: F.relu(v) * k.sum(-1, keepdim=True), "summing instead of weighting")


def test_averaging_the_keys():
    rejects(lambda q, k, v: F.relu(v) * k.mean(-1, keepdim=True), "mean of the keys")


def test_weighting_without_summing():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(-1)), "did not sum them over the N patches")


def test_summing_over_the_channels():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(-1)).sum(1, keepdim=True), "over the channels (dim=1)")


def test_adding_the_context_instead_of_multiplying():
    rejects(lambda q, k, v: F.relu(v) + (k * q.softmax(-1)).sum(-1, keepdim=True), "you added the context vector")


# ---------------------------------------------------------------- ReLU on the wrong branch
def context(q, k):
    return (k * q.softmax(-1)).sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "answer, fragment",
    [
        (lambda q, k, v: F.relu(k) * context(q, k), "not on the keys"),
        (lambda q, k, v: v * F.relu(context(q, k)), "applied it to the context vector"),
        (lambda q, k, v: F.relu(v * context(q, k)), "applied it to the product"),
        (lambda q, k, v: F.relu(v) * context(F.relu(q), k), "applied it to the query"),
        (lambda q, k, v: v * context(q, k), "forgot the ReLU"),
    ],
    ids=["on-keys", "on-context", "on-product", "on-query", "none"],
)
def test_relu_on_the_wrong_branch(answer, fragment):
    rejects(answer, fragment)


# ---------------------------------------------------------------- other failures
def test_a_crash_names_the_case():
    rejects(lambda q, k, v: F.relu(v) * (k * q.softmax(-1)).sum(-1), "your code raised", "case 'batch 1")


def test_an_unrecognised_mistake_gets_the_closing_hint():
    rejects(lambda q, k, v: 2 * separable_self_attention(q, k, v), "no typical mistake matches", "chapter 10")


def test_a_wrong_shape_is_named():
    rejects(lambda q, k, v: separable_self_attention(q, k, v)[..., 0], "your output has shape")
