"""Checks for chapter 10: MobileViTv2's separable self-attention.

- `check_separable_self_attention(fn)`: your `fn(query, key, value)` in the (B, d, P, N) layout against
  `mobilevit_edu.attention_v2.separable_self_attention`, naming the typical mistakes (softmax over the
  wrong axis, ReLU on the wrong branch, summing instead of weighting, ...).
"""

import torch
import torch.nn.functional as F

from ..attention_v2 import separable_self_attention
from ._common import CheckFailed, call, expect_close, run_check

# (description, B, d, P, N): query (B, 1, P, N), key and value (B, d, P, N)
SEPARABLE_CASES = [
    ("batch 1, d=8, P=4 pixel positions, N=16 patches", 1, 8, 4, 16),
    ("batch 2, d=16, P=4, N=9 (a 6x6 map cut into 2x2 patches)", 2, 16, 4, 9),
    ("batch 2, one pixel position (P=1), d=12, N=7", 2, 12, 1, 7),
    ("MobileViTv2-0.5's stages.4: d=128, P=4, N=16", 1, 128, 4, 16),
]

SOFTMAX_OVER_N = "the context scores are softmax(query) over the N patches, the last axis (dim=-1)"


def _variants(query, key, value):
    """The outputs of typical wrong answers, each with what the student most likely did."""
    scores = query.softmax(dim=-1)  # (B, 1, P, N)
    context = (key * scores).sum(dim=-1, keepdim=True)  # (B, d, P, 1)
    relu_v = F.relu(value)
    plain_sum = key.sum(dim=-1, keepdim=True)
    variants = [
        (
            relu_v * plain_sum,
            "your context vector is the plain sum of the keys over N (summing instead of weighting): every key"
            " weighs 1. Weight each key by its context score before summing. (Took the softmax over dim=1? The"
            f" query has ONE channel, so that softmax is all ones; {SOFTMAX_OVER_N})",
        ),
        (
            relu_v * key.mean(dim=-1, keepdim=True),
            "your context vector is the mean of the keys: uniform weights 1/N. The weights must come from the"
            f" query: {SOFTMAX_OVER_N}",
        ),
        (
            relu_v * (key * query).sum(dim=-1, keepdim=True),
            f"you weighted the keys by the raw query; {SOFTMAX_OVER_N}, and weight the keys by those scores",
        ),
        (
            relu_v * (key * scores),
            "you weighted the keys but did not sum them over the N patches: the context vector is ONE vector"
            " per sample and pixel position, (key * scores).sum(dim=-1, keepdim=True) of shape (B, d, P, 1),"
            " which every patch then shares",
        ),
        (
            relu_v * (key * scores).sum(dim=1, keepdim=True),
            "you summed the weighted keys over the channels (dim=1); sum them over the N patches (dim=-1),"
            " keepdim=True, so that the context vector (B, d, P, 1) has one entry per channel",
        ),
        (
            relu_v * (key * scores).mean(dim=-1, keepdim=True),
            "you average the weighted keys over the N patches; the context scores already sum to 1, so sum them:"
            " (key * scores).sum(dim=-1, keepdim=True)",
        ),
        (
            relu_v + context,
            "you added the context vector to the values; multiply them: F.relu(value) * context_vector",
        ),
        (
            F.relu(key) * context,
            "ReLU on the wrong branch: it goes on the values, F.relu(value), not on the keys",
        ),
        (
            value * F.relu(context),
            "ReLU on the wrong branch: you applied it to the context vector; it goes on the values,"
            " F.relu(value) * context_vector",
        ),
        (
            F.relu(value * context),
            "ReLU on the wrong branch: you applied it to the product; it goes on the values only,"
            " F.relu(value) * context_vector",
        ),
        (
            relu_v * (key * F.relu(query).softmax(dim=-1)).sum(dim=-1, keepdim=True),
            "ReLU on the wrong branch: you applied it to the query; it goes on the values, F.relu(value)",
        ),
        (
            value * context,
            "you forgot the ReLU on the values: F.relu(value) * context_vector",
        ),
    ]
    if query.shape[-2] > 1:  # over P: only a different answer when there is more than one pixel position
        variants.insert(
            0,
            (
                relu_v * (key * query.softmax(dim=-2)).sum(dim=-1, keepdim=True),
                "softmax over the wrong axis: you normalised the scores over the P pixel positions (dim=-2);"
                f" {SOFTMAX_OVER_N}",
            ),
        )
        variants.insert(
            1,
            (
                relu_v * (key * query.softmax(dim=-2)).sum(dim=-2, keepdim=True),
                "softmax and sum over the wrong axis: you used the P pixel positions (dim=-2);"
                f" {SOFTMAX_OVER_N}, and the context vector sums over N too",
            ),
        )
    return [
        (lambda actual, expected, alt=alt: torch.allclose(actual, alt, atol=1e-5, rtol=1e-4), sentence)
        for alt, sentence in variants
    ]


SECTION = "'Separable self-attention, step by step' in chapter 10"
CLOSING_HINT = f"no typical mistake matches; re-read {SECTION}"
BROADCAST_HINT = (
    "these shapes do not broadcast: keep the summed axis (keepdim=True), so that the context vector is"
    " (B, d, P, 1) and multiplies every one of the N patches"
)


def check_separable_self_attention(fn):
    """Check `fn(query, key, value)`: query (B, 1, P, N), key and value (B, d, P, N) -> (B, d, P, N), on
    several cases (batch 1 and 2, P = 1 and 4, small and MobileViTv2-sized d), against the package."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, B, d, P, N in SEPARABLE_CASES:
            query = torch.randn(B, 1, P, N, generator=generator) * 2
            key, value = torch.randn(2, B, d, P, N, generator=generator).unbind(0)
            case = f"case '{description}' (query {(B, 1, P, N)}, key and value {(B, d, P, N)})"
            expected = separable_self_attention(query, key, value)
            try:
                actual = call(fn, query.clone(), key.clone(), value.clone(), case=case)
            except CheckFailed as error:
                if "must match the size of tensor" in str(error):
                    raise CheckFailed(f"{str(error).rstrip('.')}. Hint: {BROADCAST_HINT}") from error.__cause__
                raise
            try:
                expect_close(actual, expected, case, hints=_variants(query, key, value))
            except CheckFailed as failure:
                if "Hint: " in str(failure):
                    raise
                raise CheckFailed(f"{failure}. Hint: {CLOSING_HINT}") from None

    run_check(
        "separable_self_attention",
        body,
        f"equals the package's on all {len(SEPARABLE_CASES)} cases: batch 1 and 2, P = 1 and 4, d up to 128",
    )
