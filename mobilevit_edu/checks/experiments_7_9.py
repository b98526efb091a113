"""Checks for the experiment tasks of exercises 7, 8 and 9: the pieces a student writes to run an
experiment and read it.

- `check_batch_size_rules(fn)`: your `batch_size_for(resolution, base_resolution, base_batch_size, rule)` for
  the three rules of chapter 7 ("pixels": later ml-cvnets; "paper": the base batch at the largest
  resolution; "cvnets-v0.1": never below the base batch), against `mobilevit_edu.train.batch_size_for`.
- `check_epochs_to_reach(fn)`: your `epochs_to_reach(curve, level)`, the first epoch (1-based) whose
  accuracy reaches `level`, or None.
- `check_r_half(fn)`: your `r_half(erf, centre)`, the smallest whole radius around `centre` that holds
  half of an effective receptive field's total, against `mobilevit_edu.explain.receptive_field_summary`.
- `check_attention_counts(computed, counted)`: your multiply-adds of attention's two matrix products for
  `sequences` sequences of `seq_len` tokens of width `dim`, as computed (2 * sequences * seq_len^2 * dim)
  and as ml-cvnets v0.1's `profile_module` counts them (2 * sequences * seq_len * dim^2).
"""

import math

import torch

from ..explain import receptive_field_summary
from ..train import BATCH_RULES, batch_size_for
from ._common import CheckFailed, call, run_check

__all__ = ["check_batch_size_rules", "check_epochs_to_reach", "check_r_half", "check_attention_counts"]


# ------------------------------------------------------------------------------ exercise 7: rules
# (rule, base_resolution, base_batch_size): the paper's resolutions with its 128 images per GPU
RULE_CASES = [("pixels", 256, 128), ("cvnets-v0.1", 256, 128), ("paper", 320, 128), ("pixels", 32, 32),
              ("cvnets-v0.1", 32, 32), ("paper", 40, 20)]
RULE_RESOLUTIONS = {256: (160, 192, 256, 288, 320), 320: (160, 192, 256, 288, 320), 32: (24, 32, 40),
                    40: (24, 32, 40)}


def _as_int(actual, case):
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    if isinstance(actual, float) and actual.is_integer():
        actual = int(actual)
    if isinstance(actual, bool) or not isinstance(actual, int):
        raise CheckFailed(f"{case}: expected an int (a number of images), got {actual!r}")
    return actual


def check_batch_size_rules(fn):
    """Check `fn(resolution, base_resolution, base_batch_size, rule)` -> int for the three rules, and that
    rule="paper" refuses a resolution above base_resolution with a ValueError."""

    def body():
        for rule, base, b in RULE_CASES:
            got, want = [], []
            for r in RULE_RESOLUTIONS[base]:
                case = f"rule={rule!r}, resolution={r}, base_resolution={base}, base_batch_size={b}"
                got.append(_as_int(call(fn, r, base, b, rule, case=case), case))
                want.append(batch_size_for(r, base, b, rule=rule))
            if got == want:
                continue
            message = (f"rule={rule!r}, base {b} images at {base}²: for resolutions {list(RULE_RESOLUTIONS[base])}"
                       f" you give {got}; expected {want}")
            pixels = [batch_size_for(r, base, b, rule="pixels") for r in RULE_RESOLUTIONS[base]]
            if rule == "cvnets-v0.1" and got == pixels:
                raise CheckFailed(message + ". Hint: ml-cvnets v0.1 takes max(batch_size_gpu0, ...): above the base"
                                            " resolution the batch stays at the base batch, it does not shrink")
            if rule != "cvnets-v0.1" and got == [max(b, p) for p in pixels]:
                raise CheckFailed(message + ". Hint: that is ml-cvnets v0.1's max(base_batch_size, ...); this rule"
                                            " keeps pixels per batch at most the base batch's, so batches shrink")
            ceiling = [max(1, math.ceil(b * base**2 / r**2)) for r in RULE_RESOLUTIONS[base]]
            if got == ceiling or got == [max(1, round(b * base**2 / r**2)) for r in RULE_RESOLUTIONS[base]]:
                raise CheckFailed(message + ". Hint: round down (floor), so that a batch never holds more pixels"
                                            " than the base batch")
            raise CheckFailed(message)
        case = "rule='paper', resolution=352, base_resolution=320, base_batch_size=128"
        try:
            answer = fn(352, 320, 128, "paper")
        except NotImplementedError:
            raise
        except ValueError:
            return
        except Exception as error:
            raise CheckFailed(f"{case}: expected a ValueError, your code raised {type(error).__name__}: {error}") from error
        raise CheckFailed(f"{case}: you return {answer!r}; expected a ValueError. The paper defines the base batch at"
                          " the largest resolution, so a larger resolution has no batch under its rule")

    run_check("batch_size_for with rules", body,
              f"right for all {len(BATCH_RULES)} rules on {len(RULE_CASES)} bases, and rule='paper' refuses a"
              " resolution above its base")


# --------------------------------------------------------------------- exercise 7: epochs to reach
# (curve, level, expected): epochs counted from 1; reaching the level exactly counts
REACH_CASES = [
    ([0.50, 0.70, 0.85, 0.90], 0.8, 3),
    ([0.50, 0.75, 0.70, 0.95], 0.75, 2),  # 0.75 is exact in float32 too: reaching it counts
    ([0.90, 0.60, 0.95], 0.8, 1),
    ([0.50, 0.60, 0.70], 0.8, None),
    ([0.55, 0.62, 0.81, 0.74, 0.86], 0.85, 5),
]


def check_epochs_to_reach(fn):
    """Check `fn(curve, level)` -> the first epoch (1-based) whose accuracy is >= level, or None; `curve` as
    a list and as a tensor."""

    def body():
        for curve, level, expected in REACH_CASES:
            for given in (list(curve), torch.tensor(curve)):
                kind = "a list" if isinstance(given, list) else "a tensor"
                case = f"curve {curve} (as {kind}), level {level}"
                actual = call(fn, given, level, case=case)
                if isinstance(actual, torch.Tensor) and actual.numel() == 1:
                    actual = actual.item()
                if actual == expected and (expected is not None or actual is None) and not isinstance(actual, bool):
                    continue
                message = f"{case}: you give {actual!r}; expected {expected!r}"
                if expected is not None and actual == expected - 1:
                    raise CheckFailed(message + ". Hint: count epochs from 1 (the first entry is epoch 1)")
                if expected is None:
                    raise CheckFailed(message + ". Hint: a curve that never reaches the level has no such epoch:"
                                                " return None, not a number")
                strict = next((e + 1 for e, a in enumerate(curve) if a > level), None)
                if actual == strict:
                    raise CheckFailed(message + ". Hint: reaching the level exactly counts (>=, not >)")
                reached = [e + 1 for e, a in enumerate(curve) if a >= level]
                if actual in reached[1:]:
                    raise CheckFailed(message + ". Hint: the *first* epoch that reaches the level, not a later one")
                raise CheckFailed(message)

    run_check("epochs_to_reach", body, f"right on all {len(REACH_CASES)} curves, as lists and as tensors")


# ----------------------------------------------------------------------------- exercise 8: r_half
def _erf_cases():
    generator = torch.Generator().manual_seed(0)
    gauss = lambda h, w, c, s: torch.exp(-((torch.arange(h)[:, None] - c[0]) ** 2 + (torch.arange(w)[None] - c[1]) ** 2) / (2 * s**2))
    return [
        ("a uniform 32×32 field, centre (0, 0) (a corner)", torch.ones(32, 32), (0, 0)),
        ("a uniform 32×32 field, centre (16, 16)", torch.ones(32, 32), (16, 16)),
        ("a Gaussian field of width 3 around (10, 20) in 24×32", gauss(24, 32, (10, 20), 3.0).double(), (10, 20)),
        ("a random field, centre (5, 7)", torch.rand(20, 20, generator=generator), (5, 7)),
    ]


def check_r_half(fn):
    """Check `fn(erf, centre)` -> the smallest whole radius r with half of erf's total within Euclidean
    distance r of `centre` (distance <= r), on uniform, Gaussian and random fields."""

    def body():
        for case, erf, centre in _erf_cases():
            actual = call(fn, erf.clone(), centre, case=case)
            if isinstance(actual, torch.Tensor) and actual.numel() == 1:
                actual = actual.item()
            expected = receptive_field_summary(erf, centre)["r_half"]
            if actual == expected and not isinstance(actual, bool):
                continue
            message = f"{case}: you give {actual!r}; expected r½ = {expected}"
            if isinstance(actual, float) and not float(actual).is_integer():
                raise CheckFailed(message + ". Hint: return a whole radius (an int), the smallest r that holds half")
            if actual == expected + 1:
                raise CheckFailed(message + ". Hint: count the pixels at distance exactly r as within r (<=, not <),"
                                            " and stop at the first r whose share reaches one half (>=)")
            rows, cols = torch.meshgrid(torch.arange(erf.shape[0]), torch.arange(erf.shape[1]), indexing="ij")
            for name, distance in (("|Δrow| + |Δcolumn|", (rows - centre[0]).abs() + (cols - centre[1]).abs()),
                                   ("max(|Δrow|, |Δcolumn|)", torch.maximum((rows - centre[0]).abs(), (cols - centre[1]).abs()))):
                other = next(r for r in range(sum(erf.shape)) if erf[distance <= r].sum() >= 0.5 * erf.sum())
                if actual == other:
                    raise CheckFailed(message + f". Hint: the distance is Euclidean, sqrt(Δrow² + Δcolumn²), not {name}")
            raise CheckFailed(message)

    run_check("r_half", body, "right on all 4 fields (uniform, corner and centre, Gaussian, random)")


# ------------------------------------------------------------------ exercise 9: attention counts
# (sequences, seq_len, dim): chapter 9's XS blocks with 2x2 and with 8x8 patches, and odd sizes
COUNT_CASES = [(4, 256, 96), (64, 16, 96), (4, 64, 120), (16, 16, 120), (3, 7, 5)]


def check_attention_counts(computed, counted):
    """Check `computed(sequences, seq_len, dim)` = 2 * sequences * seq_len^2 * dim (q k^T and the weighted
    sum, as computed) and `counted(sequences, seq_len, dim)` = 2 * sequences * seq_len * dim^2 (the same two
    products as ml-cvnets v0.1's MultiHeadAttention.profile_module counts them)."""

    def body():
        for fn, name, rule in ((computed, "computed", lambda b, n, d: 2 * b * n * n * d),
                               (counted, "counted", lambda b, n, d: 2 * b * n * d * d)):
            for b, n, d in COUNT_CASES:
                case = f"{name}(sequences={b}, seq_len={n}, dim={d})"
                actual = _as_int(call(fn, b, n, d, case=case), case)
                expected = rule(b, n, d)
                if actual == expected:
                    continue
                message = f"{case}: you give {actual:,}; expected {expected:,}"
                if actual * 2 == expected:
                    raise CheckFailed(message + ". Hint: two matrix products, q k^T and the weighted sum of the values")
                if actual * b == expected:
                    raise CheckFailed(message + ". Hint: every one of the `sequences` sequences has its own products")
                swapped = 2 * b * n * d * d if name == "computed" else 2 * b * n * n * d
                if actual == swapped:
                    raise CheckFailed(message + (". Hint: computed, q k^T is (seq_len x dim) @ (dim x seq_len): seq_len²·dim"
                                                 if name == "computed" else
                                                 ". Hint: ml-cvnets counts each product as seq_len * in_channels *"
                                                 " in_channels per sequence: seq_len·dim², whatever the patch size"))
                raise CheckFailed(message)

    run_check("attention counts", body,
              f"both counts right on all {len(COUNT_CASES)} cases (computed: 2·b·N²·d, ml-cvnets: 2·b·N·d²)")
