"""Checks for chapter 3: scaled dot-product attention and the pre-norm transformer encoder layer.

- `check_scaled_dot_product_attention(fn)`: your `fn(q, k, v)` against `F.scaled_dot_product_attention`.
- `check_transformer_layer(cls)`: your `TransformerLayer` class (only `forward` is yours) against
  the package's, with the same weights.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import TransformerLayer
from ._common import CheckFailed, call, expect_close, load_reference_weights, run_check

# (description, q shape, k shape, v shape): (..., N_q, e), (..., N_k, e), (..., N_k, e_v)
ATTENTION_CASES = [
    ("batch 1, one head, 6 tokens of size 8", (1, 1, 6, 8), (1, 1, 6, 8), (1, 1, 6, 8)),
    ("batch 2, 4 heads, 7 tokens of size 16", (2, 4, 7, 16), (2, 4, 7, 16), (2, 4, 7, 16)),
    ("5 queries attend to 9 keys, values of size 12", (2, 3, 5, 16), (2, 3, 9, 16), (2, 3, 9, 12)),
    ("MobileViT's layout (B*P, N, d): 8 sequences of 13 tokens of size 32", (8, 13, 32), (8, 13, 32), (8, 13, 32)),
]


def _attention(q, k, v, scale, dim):
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=dim) @ v


def _attention_hints(q, k, v):
    e = q.shape[-1]
    variants = [
        (_attention(q, k, v, 1.0, -1), "you forgot the scale: divide the scores q k^T by sqrt(e), e = q.shape[-1]"),
        (_attention(q, k, v, 1 / e, -1), "you divide by e; the scale is 1 / sqrt(e)"),
        (
            _attention(q, k, v, e**-0.5, -2),
            "softmax over the wrong axis: each row (one query) must sum to 1 over the keys: softmax(dim=-1)",
        ),
    ]
    if q.shape[-2] == k.shape[-2]:  # k q^T @ v only runs when there are as many queries as keys
        variants.append(
            (
                _attention(k, q, v, e**-0.5, -1),
                "are queries and keys swapped? the scores are q k^T: row i holds query i against every key"
                " (you computed k q^T)",
            )
        )
    hints = [
        (lambda actual, expected, alt=alt: torch.allclose(actual, alt, atol=1e-5, rtol=1e-4), sentence)
        for alt, sentence in variants
        if alt.shape == (*q.shape[:-1], v.shape[-1])
    ]
    if q.shape[-2] != k.shape[-2]:
        hints.append(
            (
                lambda actual, expected: True,
                "the scores q k^T are (..., N_q, N_k): softmax over the last axis (the keys) and multiply by v",
            )
        )
    return hints


def _with_closing_hint(step, closing):
    """Run `step()`; if it fails with a message that has no hint (no specific mistake recognised),
    add `closing`: what to re-read."""
    try:
        step()
    except CheckFailed as failure:
        if "Hint: " in str(failure):
            raise
        raise CheckFailed(f"{failure}. Hint: {closing}") from failure.__cause__


ATTENTION_CLOSING_HINT = (
    "no typical mistake matches; re-read 'Scaled dot-product attention' in chapter 3: scores = q k^T / sqrt(e)"
    " with e = q.shape[-1] and k.transpose(-2, -1), softmax(dim=-1) over the keys, then @ v; any leading"
    " dimensions (batch, heads) stay as they are"
)


def check_scaled_dot_product_attention(fn):
    """Check `fn(q, k, v)` = softmax(q k^T / sqrt(e)) v against `F.scaled_dot_product_attention` on several
    cases: batch 1, several heads, more keys than queries, values of another size, 3-D inputs."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, q_shape, k_shape, v_shape in ATTENTION_CASES:
            q, k, v = (torch.randn(shape, generator=generator) for shape in (q_shape, k_shape, v_shape))
            case = f"case '{description}' (q {tuple(q_shape)}, k {tuple(k_shape)}, v {tuple(v_shape)})"
            expected = F.scaled_dot_product_attention(q, k, v)

            def compare():
                actual = call(fn, q.clone(), k.clone(), v.clone(), case=case)
                expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=_attention_hints(q, k, v))

            _with_closing_hint(compare, ATTENTION_CLOSING_HINT)

    run_check(
        "scaled_dot_product_attention",
        body,
        f"equals F.scaled_dot_product_attention on all {len(ATTENTION_CASES)} cases:\n  batch 1,"
        " several heads, 5 queries on 9 keys, values of another size, 3-D inputs",
    )


# (description, dim, num_heads, mlp_ratio, x shape (B, N, d))
LAYER_CASES = [
    ("d=16, 4 heads, 7 tokens, batch 2", 16, 4, 2.0, (2, 7, 16)),
    ("batch 1, d=32, 2 heads, 5 tokens", 32, 2, 2.0, (1, 5, 32)),
    ("MobileViT-XXS's first layer: d=64, 4 heads, (B*P, N) = (8, 16)", 64, 4, 2.0, (8, 16, 64)),
]


def randomize_layernorm(module, generator):
    """Give every LayerNorm random affine parameters, so that a misplaced norm changes the output more."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.5)
    return module


def _layer_variants(reference, x):
    """Outputs of the typical wrong forwards, from the reference's submodules."""
    attn, mlp, norm1, norm2 = reference.attn, reference.mlp, reference.norm1, reference.norm2
    post = norm1(x + attn(x))
    post = norm2(post + mlp(post))
    h = norm1(x)
    around = h + attn(h)
    h2 = norm2(around)
    around = h2 + mlp(h2)
    both = mlp(norm2(attn(norm1(x))))
    no_first = attn(norm1(x))
    no_first = no_first + mlp(norm2(no_first))
    no_second = x + attn(norm1(x))
    no_second = mlp(norm2(no_second))
    return [
        (post, "that is a post-norm layer (norm after the residual sum); MobileViT's layer is pre-norm:"
               " x = x + attn(norm1(x)), then x = x + mlp(norm2(x))"),
        (around, "your residual adds the normalised x: the residual must carry the un-normalised x,"
                 " x = x + attn(norm1(x))"),
        (both, "you forgot both residuals: x = x + attn(norm1(x)), then x = x + mlp(norm2(x))"),
        (no_first, "you forgot the residual around attention: x = x + attn(norm1(x))"),
        (no_second, "you forgot the residual around the MLP: x = x + mlp(norm2(x))"),
    ]


LAYER_CLOSING_HINT = (
    "no typical mistake matches; re-read 'The pre-norm encoder layer' in chapter 3: x = x + self.attn(self.norm1(x)),"
    " then x = x + self.mlp(self.norm2(x)), with the skeleton's submodules, and return x of shape (B, N, d)"
)


def check_transformer_layer(cls):
    """Check your `TransformerLayer` class (its `forward`) against the package's with the same weights
    (LayerNorms given random affine parameters), on several sizes, batch 1 included."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, dim, heads, ratio, x_shape in LAYER_CASES:
            case = f"case '{description}' (TransformerLayer({dim}, {heads}, {ratio}), x {tuple(x_shape)})"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                reference = randomize_layernorm(TransformerLayer(dim, heads, ratio), generator).eval()
                student = call(cls, dim, heads, ratio, case=case)
            load_reference_weights(student, reference, case)
            student.eval()
            x = torch.randn(x_shape, generator=generator)
            with torch.no_grad():
                expected = reference(x)
                hints = [
                    (lambda a, e, alt=alt: torch.allclose(a, alt, atol=1e-5, rtol=1e-4), sentence)
                    for alt, sentence in _layer_variants(reference, x)
                ]

                def compare():
                    actual = call(student, x.clone(), case=case)
                    expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=hints)

                _with_closing_hint(compare, LAYER_CLOSING_HINT)

    run_check(
        "TransformerLayer",
        body,
        f"your pre-norm forward equals the package's on all {len(LAYER_CASES)} cases",
    )
