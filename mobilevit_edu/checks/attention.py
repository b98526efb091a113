"""Checks for chapter 3: scaled dot-product attention and the pre-norm transformer encoder layer.

- `check_scaled_dot_product_attention(fn)`: your `fn(q, k, v)` against `F.scaled_dot_product_attention`.
- `check_transformer_layer(cls)`: your `TransformerLayer` class (only `forward` is yours) against
  the package's, with the same weights.
- `check_transformer_layer_macs(fn)`: your hand count of one layer's multiply-adds on S sequences of
  N tokens against `count_macs`.
"""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..layers import MultiHeadSelfAttention, TransformerLayer
from ..profile import count_macs
from ._common import (
    CheckFailed,
    ForbiddenCall,
    call,
    calls_by_name,
    expect_close,
    expect_number,
    forbid,
    load_reference_weights,
    expect_module_output,
    run_check,
    traced_call,
    with_closing_hint,
)

# (description, q shape, k shape, v shape): (..., N_q, e), (..., N_k, e), (..., N_k, e_v)
ATTENTION_CASES = [
    ("batch 1, one head, 6 tokens of size 8", (1, 1, 6, 8), (1, 1, 6, 8), (1, 1, 6, 8)),
    ("batch 2, 4 heads, 7 tokens of size 16", (2, 4, 7, 16), (2, 4, 7, 16), (2, 4, 7, 16)),
    ("5 queries attend to 9 keys, values of size 12", (2, 3, 5, 16), (2, 3, 9, 16), (2, 3, 9, 12)),
    ("MobileViT's layout (B*P, N, d): 8 sequences of 13 tokens of size 32", (8, 13, 32), (8, 13, 32), (8, 13, 32)),
]


def _attention(q, k, v, scale, dim=-1):
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=dim) @ v


def _attention_variants(q, k, v):
    """[(output, sentence)]: what the typical wrong formulas give on (q, k, v) and what to say. Only the
    variants that run on these shapes and differ from the right answer are kept, and only those whose
    output no other mistake gives on this case: a sentence names the one mistake that gives the
    student's output, or none is said."""
    e, n_k, e_v = q.shape[-1], k.shape[-2], v.shape[-1]
    right = _attention(q, k, v, e**-0.5)
    candidates = [
        (lambda: _attention(q, k, v, 1.0), "you forgot the scale: divide the scores q k^T by sqrt(e), e = q.shape[-1]"),
        (lambda: _attention(q, k, v, 1 / e), "you divide by e; the scale is 1 / sqrt(e)"),
        (lambda: _attention(q, k, v, e_v**-0.5), "you scale by the size of the values, v.shape[-1]; the scale is"
         " 1 / sqrt(e) with e the size of the queries and keys, q.shape[-1]"),
        (lambda: _attention(q, k, v, n_k**-0.5), "you scale by the number of keys, k.shape[-2]; the scale is"
         " 1 / sqrt(e) with e the size of each query and key, q.shape[-1]"),
        (lambda: _attention(q, k, v, e**-0.5, dim=-2), "softmax over the wrong axis: each row (one query) must sum"
         " to 1 over the keys: softmax(dim=-1)"),
        (lambda: (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v * e**-0.5, "you scale after the softmax; divide"
         " the scores by sqrt(e) *before* it: softmax(q k^T / sqrt(e))"),
        (lambda: _attention(k, q, v, e**-0.5), "are queries and keys swapped? the scores are q k^T: row i holds"
         " query i against every key (you computed k q^T)"),
    ]
    outputs = []
    for make, sentence in candidates:
        try:
            alt = make()
        except RuntimeError:  # this mistake does not even run on these shapes (e.g. k q^T @ v with N_q != N_k)
            continue
        if alt.shape == right.shape and not torch.allclose(alt, right, atol=1e-5, rtol=1e-4):
            outputs.append((alt, sentence))

    def same(a, b):
        return torch.allclose(a, b, atol=1e-5, rtol=1e-4)

    return [(alt, sentence) for alt, sentence in outputs
            if not any(same(alt, other) for other, s in outputs if s != sentence)]


def _attention_hints(q, k, v):
    return [(lambda actual, expected, alt=alt: torch.allclose(actual, alt, atol=1e-5, rtol=1e-4), sentence)
            for alt, sentence in _attention_variants(q, k, v)]


ATTENTION_CLOSING_HINT = (
    "no typical mistake matches; re-read 'Scaled dot-product attention' in chapter 3: scores = q k^T / sqrt(e)"
    " with e = q.shape[-1] and k.transpose(-2, -1), softmax(dim=-1) over the keys, then @ v; any leading"
    " dimensions (batch, heads) stay as they are"
)


FORBIDDEN_ATTENTION = (
    "your function calls F.scaled_dot_product_attention. Hint: that is the very function this exercise"
    " rebuilds: compute the scores q k^T / sqrt(e) with a matrix product, then softmax, then the product with v"
)


def check_scaled_dot_product_attention(fn):
    """Check `fn(q, k, v)` = softmax(q k^T / sqrt(e)) v against `F.scaled_dot_product_attention` on several
    cases: batch 1, several heads, more keys than queries, values of another size, 3-D inputs.

    An answer that calls F.scaled_dot_product_attention (the function it rebuilds) is rejected: while it
    runs that function raises, and its source is read for a call to it."""

    def body():
        generator = torch.Generator().manual_seed(0)
        for description, q_shape, k_shape, v_shape in ATTENTION_CASES:
            q, k, v = (torch.randn(shape, generator=generator) for shape in (q_shape, k_shape, v_shape))
            case = f"case '{description}' (q {tuple(q_shape)}, k {tuple(k_shape)}, v {tuple(v_shape)})"
            expected = F.scaled_dot_product_attention(q, k, v)

            def compare():
                try:
                    with forbid([(F, "scaled_dot_product_attention")], "F.scaled_dot_product_attention") as forbidden:
                        actual = call(fn, q.clone(), k.clone(), v.clone(), case=case)
                except CheckFailed as error:
                    if forbidden or isinstance(error.__cause__, ForbiddenCall):
                        raise CheckFailed(f"{case}: {FORBIDDEN_ATTENTION}") from None
                    raise
                if forbidden:  # the student's code caught our exception and went on
                    raise CheckFailed(f"{case}: {FORBIDDEN_ATTENTION}")
                expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=_attention_hints(q, k, v))

            with_closing_hint(compare, ATTENTION_CLOSING_HINT)
        # the fallback: a call the patch cannot see, e.g. through `from torch.nn.functional import ...`
        if "scaled_dot_product_attention" in calls_by_name(fn, {"scaled_dot_product_attention"}):
            raise CheckFailed(FORBIDDEN_ATTENTION)

    run_check(
        "scaled_dot_product_attention",
        body,
        f"equals F.scaled_dot_product_attention on all {len(ATTENTION_CASES)} cases, without calling it:\n"
        "  batch 1, several heads, 5 queries on 9 keys, values of another size, 3-D inputs",
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


def _with_heads(attn, heads):
    """A copy of the attention module `attn` with the same weights but `heads` heads."""
    other = MultiHeadSelfAttention(attn.qkv.in_features, heads)
    other.load_state_dict(attn.state_dict())
    return other.eval()


def _layer_variants(reference, x):
    """[(output, sentence)] of the typical wrong forwards, from the reference's submodules."""
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
    one_norm = x + attn(norm1(x))
    one_norm = one_norm + mlp(norm1(one_norm))
    no_norms = x + attn(x)
    no_norms = no_norms + mlp(no_norms)
    swapped = x + mlp(norm1(x))
    swapped = swapped + attn(norm2(swapped))
    parallel = x + attn(norm1(x)) + mlp(norm2(x))
    right = reference(x)
    variants = [
        (post, "that is a post-norm layer (norm after the residual sum); MobileViT's layer is pre-norm:"
               " x = x + attn(norm1(x)), then x = x + mlp(norm2(x))"),
        (around, "your residual adds the normalised x: the residual must carry the un-normalised x,"
                 " x = x + attn(norm1(x))"),
        (both, "you forgot both residuals: x = x + attn(norm1(x)), then x = x + mlp(norm2(x))"),
        (no_first, "you forgot the residual around attention: x = x + attn(norm1(x))"),
        (no_second, "you forgot the residual around the MLP: x = x + mlp(norm2(x))"),
        (one_norm, "you use self.norm1 twice: the MLP reads self.norm2(x), a LayerNorm with its own scale and shift"),
        (no_norms, "you forgot the LayerNorms: each sub-layer reads a normalised copy, attn(norm1(x)) and mlp(norm2(x))"),
        (swapped, "attention comes first, then the MLP: x = x + attn(norm1(x)), then x = x + mlp(norm2(x))"),
        (parallel, "the two sub-layers run one after the other: the MLP reads the output of the attention step,"
                   " norm2(x) of the *updated* x, not of the layer's input"),
        (norm2(right),
         "no LayerNorm at the end of the layer: the final LayerNorm belongs to the MobileViT block, after all L layers"),
    ]
    for heads in (1, 2, 4, 8):
        if heads != attn.num_heads and attn.qkv.in_features % heads == 0:
            wrong_attn = _with_heads(attn, heads)
            y = x + wrong_attn(norm1(x))
            variants.append((y + mlp(norm2(y)), f"your attention uses {heads} head(s); this case asks for"
                             f" {attn.num_heads}: split into num_heads = {attn.num_heads} heads of size"
                             f" d / num_heads (use the num_heads the constructor receives)"))
    return variants


LAYER_SECTION = "'The pre-norm encoder layer' in chapter 3"
LAYER_CLOSING_HINT = f"no typical mistake matches; re-read {LAYER_SECTION}"


def _attention_probes(name, calls):
    """For a forward that writes attention itself (between `self.attn.qkv` and `self.attn.proj`, a step with
    no submodule): the attention of the last qkv output, right and in the typical wrong ways, as
    (description, tensor) candidates for the input of `self.attn.proj`."""
    if not name.endswith("attn.proj"):
        return []
    qkv = next((c.output for c in reversed(calls) if c.name == name.replace("proj", "qkv") and c.output is not None), None)
    if qkv is None:
        return []
    d = qkv.shape[-1] // 3
    out = []
    for heads in (1, 2, 4, 8):
        if d % heads:
            continue
        q, k, v = rearrange(qkv, "b n (three h e) -> three b h n e", three=3, h=heads).unbind(0)
        e = d // heads
        scores = q @ k.transpose(-2, -1)
        what = f"attention with {heads} head(s) of size {e} on the output of `self.attn.qkv`"
        for text, weights in [
            (f"{what}, scores scaled by 1/√{e} (the head size)", (scores / e**0.5).softmax(-1)),
            (f"{what}, without the 1/√e scale on the scores (a ratio of √{e})", scores.softmax(-1)),
            (f"{what}, scores scaled by 1/√{d} (the width d, not the head size {e})", (scores / d**0.5).softmax(-1)),
            (f"{what}, scores scaled by 1/{e} instead of 1/√{e}", (scores / e).softmax(-1)),
            (f"{what}, the softmax over the queries (dim=-2) instead of the keys", (scores / e**0.5).softmax(-2)),
            (f"{what}, scaled scores without the softmax", scores / e**0.5),
        ]:
            out.append((text, rearrange(weights @ v, "b h n e -> b n (h e)")))
        if heads > 1:  # heads cut from interleaved channels, (three e h) instead of (three h e)
            q, k, v = rearrange(qkv, "b n (three e h) -> three b h n e", three=3, h=heads).unbind(0)
            weights = (q @ k.transpose(-2, -1) / e**0.5).softmax(-1)
            out.append((f"{what}, but each head made of every {heads}th channel, (three e h) instead of (three h e)",
                        rearrange(weights @ v, "b h n e -> b n (h e)")))
    return out


def check_transformer_layer(cls):
    """Check your `TransformerLayer` class (its `forward`) against the package's with the same weights
    (LayerNorms given random affine parameters), on several sizes, batch 1 included. A wrong forward gets
    the typical mistake it equals, else the first submodule whose input differs and what that input is
    (an attention written inline is compared with attention without the scale, over the wrong axis, ...)."""

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
                expected, reference_calls = traced_call(reference, x, case)

                def compare():
                    actual, student_calls = traced_call(student, x.clone(), case)
                    expect_module_output(actual, expected, case, lambda: _layer_variants(reference, x), student_calls,
                                         reference_calls, x, LAYER_SECTION, probes=_attention_probes)

                with_closing_hint(compare, LAYER_CLOSING_HINT)

    run_check(
        "TransformerLayer",
        body,
        f"your pre-norm forward equals the package's on all {len(LAYER_CASES)} cases",
    )


# (description, S sequences, N tokens, d, num_heads, mlp_ratio)
LAYER_MACS_CASES = [
    ("one sequence of N = 16 tokens, d = 32, 4 heads", 1, 16, 32, 4, 2.0),
    ("MobileViT-XXS's stages.2 layer, batch 2: S = B*P = 8 sequences of N = 256 patches, d = 64", 8, 256, 64, 4, 2.0),
    ("2 heads, mlp_ratio 4, S = 3, N = 10, d = 24", 3, 10, 24, 2, 4.0),
    ("one head, S = 8, N = 49, d = 48", 8, 49, 48, 1, 2.0),
]


def layer_macs_variants(S, N, d, heads, ratio):
    """The multiply-adds of one TransformerLayer on (S, N, d), then the typical wrong counts as
    (value, sentence)."""
    hidden = int(d * ratio)

    def macs(qkv=3, proj=1, mlp=True, ratio_hidden=hidden, attention=2 * N * N * d, sequences=S):
        linear = N * d * d * (qkv + proj) + (2 * N * d * ratio_hidden if mlp else 0)
        return sequences * (linear + attention)

    return macs(), [
        (macs(attention=N * N * d), "attention is two products of N^2 d multiply-adds each: the scores"
         " q k^T and then the weights times v, 2 N^2 d per sequence"),
        (macs(attention=2 * N * N * d * heads), "the h heads split d: each costs 2 N^2 (d/h), all together"
         " 2 N^2 d, whatever the number of heads"),
        (macs(attention=2 * N * N * d // heads) if heads > 1 else None, "you count one head: the h heads of"
         " size d/h together cost 2 N^2 d"),
        (macs(qkv=1), "the fused qkv projection maps d to 3d numbers per token: 3 N d^2, not N d^2"),
        (macs(proj=0), "you forgot the output projection proj (d -> d): N d^2 per sequence"),
        (macs(mlp=False), "you forgot the MLP: d -> mlp_ratio * d -> d, 2 N d^2 * mlp_ratio per sequence"),
        (macs(ratio_hidden=2 * d) if ratio != 2 else None, "the MLP's hidden width is mlp_ratio * d, not 2d"),
        (macs(sequences=1), f"each of the S = {S} sequences costs the same: multiply by S"),
        (macs(sequences=1, attention=2 * (S * N) ** 2 * d) + (S - 1) * macs(attention=0, sequences=1)
         if S > 1 else None, "attention runs within each sequence: S * 2 N^2 d, not 2 (S N)^2 d over all"
         " S*N tokens at once (MobileViT's (B*P, N, d) layout)"),
    ]


def check_transformer_layer_macs(fn):
    """Check `fn(S, N, d, num_heads, mlp_ratio)` -> the multiply-adds of one `TransformerLayer(d,
    num_heads, mlp_ratio)` on S sequences of N tokens, (S, N, d), against `count_macs` (PyTorch's flop
    counter, attention written as matmuls; LayerNorm, softmax, SiLU and the bias additions not counted)."""

    def body():
        for description, S, N, d, heads, ratio in LAYER_MACS_CASES:
            case = f"case '{description}' (transformer_layer_macs(S={S}, N={N}, d={d}, num_heads={heads}, mlp_ratio={ratio}))"
            with torch.device("meta"):  # shapes only: counting needs no numbers, and costs no time
                layer, x = TransformerLayer(d, heads, ratio), torch.zeros(S, N, d)
            expected = count_macs(layer, x)
            right, variants = layer_macs_variants(S, N, d, heads, ratio)
            assert right == expected, (right, expected)  # the formula the hints are built on is right
            actual = call(fn, S, N, d, heads, ratio, case=case)
            expect_number(actual, expected, case, "multiply-add count", [v for v in variants if v[0] is not None])

    run_check(
        "transformer_layer_macs",
        body,
        f"your count equals count_macs on all {len(LAYER_MACS_CASES)} cases",
    )
