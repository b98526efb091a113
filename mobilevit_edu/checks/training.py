"""Checks for chapter 7: the learning-rate schedule and the multi-scale batch sampler.

- `check_lr_schedule(fn)`: your `lr_at(step, total_steps, lr, min_lr, warmup_steps, warmup_lr)`, linear
  warm-up then cosine decay to `min_lr`, against `mobilevit_edu.train.lr_at` on every step of several runs.
- `check_batch_size_for(fn)`: your `batch_size_for(resolution, base_resolution, base_batch_size)`, the
  batch size that keeps pixels per batch (at most) constant.
- `check_multiscale_batches(fn)`: your `multiscale_batches(num_samples, batch_size, resolutions,
  base_resolution, generator)`, one epoch of the sampler's (resolution, indices) batches.
"""

import math
import operator

import torch

from ..train import batch_size_for, lr_at
from ._common import CheckFailed, call, run_check

# ----------------------------------------------------------------------------- the learning rate
# (description, total_steps, lr, min_lr, warmup_steps, warmup_lr)
SCHEDULE_CASES = [
    ("20 steps, 5 of warm-up from 0.0002 to 0.002, cosine to 0.0002", 20, 2e-3, 2e-4, 5, 2e-4),
    ("12 steps, no warm-up, cosine from 1.0 to 0.1", 12, 1.0, 0.1, 0, 0.1),
    ("9 steps, 3 of warm-up from 0.05 to 0.5, cosine to 0.01", 9, 0.5, 0.01, 3, 0.05),
    ("101 steps, 10 of warm-up from 0.001 to 0.01, cosine to 0.001", 101, 1e-2, 1e-3, 10, 1e-3),
]


def _schedule(fn, total, lr, min_lr, warmup, warmup_lr):
    return [fn(t, total, lr, min_lr, warmup, warmup_lr) for t in range(total)]


def _wrong_schedules(total, lr, min_lr, warmup, warmup_lr):
    """Typical wrong schedules, each as a list over the steps, with what the student most likely did."""
    W, T = warmup, total

    def cosine(t, start, end, low):
        p = (t - start) / end if end > 0 else 0.0
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * p))

    wrong = {}
    if W > 0:
        wrong["warmup_one_early"] = [
            warmup_lr + (t + 1) * (lr - warmup_lr) / W if t < W else cosine(t, W, T - 1 - W, min_lr) for t in range(T)
        ]
        if W > 1:
            wrong["warmup_over_w_minus_1"] = [
                warmup_lr + t * (lr - warmup_lr) / (W - 1) if t < W else cosine(t, W, T - 1 - W, min_lr) for t in range(T)
            ]
        wrong["warmup_from_zero"] = [t * lr / W if t < W else cosine(t, W, T - 1 - W, min_lr) for t in range(T)]
        wrong["warmup_constant"] = [warmup_lr if t < W else cosine(t, W, T - 1 - W, min_lr) for t in range(T)]
        wrong["no_warmup"] = [cosine(t, 0, T - 1, min_lr) for t in range(T)]
        wrong["cosine_from_zero"] = [
            warmup_lr + t * (lr - warmup_lr) / W if t < W else cosine(t, 0, T - 1, min_lr) for t in range(T)
        ]
        wrong["cosine_from_zero_short"] = [  # counted from step 0 over the decay's own length
            warmup_lr + t * (lr - warmup_lr) / W if t < W else cosine(t, 0, T - 1 - W, min_lr) for t in range(T)
        ]
    warm = lambda t: warmup_lr + t * (lr - warmup_lr) / W  # noqa: E731
    wrong["cosine_to_zero"] = [warm(t) if t < W else cosine(t, W, T - 1 - W, 0.0) for t in range(T)]
    wrong["period_too_long"] = [warm(t) if t < W else cosine(t, W, T - W, min_lr) for t in range(T)]
    wrong["period_cvnets"] = [warm(t) if t < W else cosine(t, W, T - W + 1, min_lr) for t in range(T)]
    wrong["linear_decay"] = [
        warm(t) if t < W else lr - (lr - min_lr) * (t - W) / max(1, T - 1 - W) for t in range(T)
    ]
    return wrong


SCHEDULE_HINTS = {
    "warmup_one_early": "your warm-up reaches the peak one step early: step t of the warm-up is"
    " warmup_lr + t * (lr - warmup_lr) / warmup_steps, so step 0 is warmup_lr and step warmup_steps is lr"
    " (an off-by-one: did you use t + 1?)",
    "warmup_over_w_minus_1": "an off-by-one in the warm-up: divide by warmup_steps, not warmup_steps - 1;"
    " the peak lr belongs to step warmup_steps, the first step of the cosine",
    "warmup_from_zero": "your warm-up starts at 0; it starts at warmup_lr (the paper warms up from 0.0002 to 0.002)",
    "warmup_constant": "your warm-up stays at warmup_lr; it rises linearly, warmup_lr + step * (lr - warmup_lr) /"
    " warmup_steps, so that step warmup_steps reaches lr",
    "no_warmup": "there is no warm-up in your schedule: steps 0 .. warmup_steps - 1 rise linearly from warmup_lr to lr",
    "cosine_from_zero": "your cosine starts counting at step 0; it starts at the end of the warm-up:"
    " progress = (step - warmup_steps) / (total_steps - 1 - warmup_steps)",
    "cosine_from_zero_short": "your cosine starts counting at step 0; it starts at the end of the warm-up:"
    " progress = (step - warmup_steps) / (total_steps - 1 - warmup_steps)",
    "cosine_to_zero": "your cosine decays to 0 instead of the minimum: lr_t = min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * progress))",
    "period_too_long": "your last step stays above min_lr: the decay lasts total_steps - 1 - warmup_steps steps, so that"
    " the last step (total_steps - 1) has progress 1 and uses min_lr exactly",
    "period_cvnets": "your last step stays above min_lr (ml-cvnets' period, total_steps - warmup_steps + 1): here the"
    " decay lasts total_steps - 1 - warmup_steps steps, so that the last step has progress 1 and uses min_lr exactly",
    "linear_decay": "your decay is a straight line; it is half a cosine: min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * progress))",
}


def _first_difference(actual, expected):
    for t, (a, e) in enumerate(zip(actual, expected)):
        if not math.isclose(a, e, rel_tol=1e-6, abs_tol=1e-12):
            return t
    return None


def check_lr_schedule(fn):
    """Check `fn(step, total_steps, lr, min_lr, warmup_steps, warmup_lr)` -> float on every step of
    several runs (with and without warm-up, short and long) against the package's `lr_at`."""

    def body():
        for description, total, lr, min_lr, warmup, warmup_lr in SCHEDULE_CASES:
            case = (f"case '{description}' (total_steps={total}, lr={lr}, min_lr={min_lr},"
                    f" warmup_steps={warmup}, warmup_lr={warmup_lr})")
            actual = []
            for t in range(total):
                value = call(fn, t, total, lr, min_lr, warmup, warmup_lr, case=f"{case}, step {t}")
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.item()
                if not isinstance(value, (int, float)):
                    raise CheckFailed(f"{case}, step {t}: expected a number (float), got {type(value).__name__}")
                actual.append(float(value))
            expected = _schedule(lr_at, total, lr, min_lr, warmup, warmup_lr)
            t = _first_difference(actual, expected)
            if t is None:
                continue
            message = f"{case}: step {t} has lr {actual[t]:.6g}; expected {expected[t]:.6g}"
            for name, wrong in _wrong_schedules(total, lr, min_lr, warmup, warmup_lr).items():
                if _first_difference(actual, wrong) is None:
                    raise CheckFailed(f"{message}. Hint: {SCHEDULE_HINTS[name]}")
            if math.isclose(actual[-1], 0.0, abs_tol=1e-12):
                raise CheckFailed(f"{message}. Hint: {SCHEDULE_HINTS['cosine_to_zero']}")
            if t < warmup:
                message += ". The difference is in the warm-up (steps 0 .. warmup_steps - 1)"
            elif t == total - 1:
                message += f". The last step must use min_lr = {min_lr} exactly"
            raise CheckFailed(message)

    run_check(
        "lr_at (warm-up + cosine)",
        body,
        f"every step right in all {len(SCHEDULE_CASES)} runs (with and without warm-up)",
    )


# --------------------------------------------------------------------------- the batch sizes
# (resolution, base_resolution, base_batch_size)
BATCH_CASES = [
    (256, 256, 128), (160, 256, 128), (288, 256, 128), (320, 256, 128),
    (160, 224, 100),  # 100 * 224**2 / 160**2 is exactly 196; in floats 100 * (224 / 160)**2 = 195.99999999999997
    (32, 32, 64), (24, 32, 64), (40, 32, 64), (48, 32, 64), (64, 32, 64), (512, 32, 2),
]

BATCH_HINTS = [
    (lambda r, base, b: max(1, b * base // r), "your batch size scales with the resolution; pixels grow with its"
     " square: b * base_resolution**2 // resolution**2"),
    (lambda r, base, b: max(1, b * r**2 // base**2), "your batch sizes go the wrong way: larger images need"
     " smaller batches, b * base_resolution**2 // resolution**2"),
    (lambda r, base, b: max(1, math.ceil(b * base**2 / r**2)), "you round up, so some batches hold more pixels than"
     " the base batch (and may not fit in memory); round down: b * base**2 // resolution**2"),
    (lambda r, base, b: max(1, round(b * base**2 / r**2)), "you round to the nearest integer, so some batches hold"
     " more pixels than the base batch; round down, as ml-cvnets does: b * base**2 // resolution**2"),
    (lambda r, base, b: b * base**2 // r**2, "a very large resolution gives a batch of 0 images: keep at least 1 (max(1, ...))"),
    (lambda r, base, b: max(1, b * (base**2 // r**2)), "you round the ratio base_resolution**2 / resolution**2 down"
     " before multiplying by base_batch_size: multiply first, then divide, b * base**2 // resolution**2"),
    (lambda r, base, b: b, "your batch size does not change with the resolution: pixels per batch then grow with"
     " resolution**2; scale the batch by base_resolution**2 / resolution**2"),
]
FLOAT_HINT = (
    "floating-point rounding: here base_batch_size * base_resolution**2 / resolution**2 is exactly {exact}, but"
    " in floats it can come out just below (b * (base / resolution)**2 = {approx!r}), and int() or floor() then"
    " gives {low}; compute in integers, b * base**2 // resolution**2"
)


def _as_int(actual):
    """The student's batch size as an int (Python, NumPy or a one-element tensor), or None when it is not one."""
    if isinstance(actual, torch.Tensor) and actual.numel() == 1 and not actual.is_floating_point():
        actual = actual.item()
    if isinstance(actual, bool):
        return None
    try:
        return operator.index(actual)  # int, numpy.int64, ...: any integer
    except TypeError:
        pass
    if isinstance(actual, float) and actual.is_integer():
        return int(actual)
    return None


def check_batch_size_for(fn):
    """Check `fn(resolution, base_resolution, base_batch_size)` -> int (any integer type: Python, NumPy, a
    one-element tensor) on the paper's resolutions (base 256, batch 128) and the chapter's (base 32, batch 64),
    including one that would round to 0 and one, (160, 224, 100) -> 196, that float arithmetic gets wrong."""

    def body():
        answers = []
        for r, base, b in BATCH_CASES:
            case = f"case resolution={r}, base_resolution={base}, base_batch_size={b}"
            value = call(fn, r, base, b, case=case)
            actual = _as_int(value)
            if actual is None:
                raise CheckFailed(f"{case}: expected an int (a number of images), got {value!r}"
                                  f" of type {type(value).__name__}")
            answers.append(actual)
        for (r, base, b), actual in zip(BATCH_CASES, answers):
            expected = batch_size_for(r, base, b)
            if actual == expected:
                continue
            pixels = f"{actual} x {r}^2 = {actual * r * r:,} pixels vs the base batch's {b} x {base}^2 = {b * base * base:,}"
            message = f"case resolution={r}, base_resolution={base}, base_batch_size={b}: you give {actual}; expected {expected} ({pixels})"
            for wrong, hint in BATCH_HINTS:  # the wrong rule that gives all of the student's answers
                if all(wrong(*c) == a for c, a in zip(BATCH_CASES, answers)):
                    raise CheckFailed(f"{message}. Hint: {hint}")
            if actual == expected - 1 and (b * base**2) % (r**2) == 0 and b * base**2 // r**2 == expected:
                approx = b * (base / r) ** 2
                raise CheckFailed(f"{message}. Hint: " + FLOAT_HINT.format(exact=expected, approx=approx, low=actual))
            raise CheckFailed(message + ". Keep pixels per batch at most those of the base batch, as many images as fit")

    run_check("batch_size_for", body, f"right on all {len(BATCH_CASES)} cases: pixels per batch stay (at most) constant")


# --------------------------------------------------------------------------------- the sampler
# (description, num_samples, batch_size, resolutions, base_resolution)
SAMPLER_CASES = [
    ("100 images, batch 16 at 32 px, resolutions 24/32/40", 100, 16, (24, 32, 40), 32),
    ("50 images, batch 8 at 48 px, resolutions 32/48", 50, 8, (32, 48), 48),
    ("36 images, batch 4 at 32 px, one resolution 32 (an ordinary shuffled sampler; the order ends exactly with"
     " the 9th batch)", 36, 4, (32,), 32),
]
COVERAGE_SEEDS = range(2, 8)  # more epochs of the first case: every resolution must be drawn in them


def _describe(batches, limit=4):
    shown = ", ".join(f"({r}, {len(i)} images)" for r, i in batches[:limit])
    return f"[{shown}{', ...' if len(batches) > limit else ''}]"


def check_multiscale_batches(fn):
    """Check `fn(num_samples, batch_size, resolutions, base_resolution, generator)` -> list of (resolution,
    indices) for one epoch: the batches read one shuffled order of all images once, each batch has
    batch_size_for(resolution, ...) images, the last one topped up from the start of that order, no batch
    after the order is used up (also when it ends exactly, 36 images in batches of 4), the resolutions are
    drawn from `generator` (the same seed gives the same epoch, another seed another one), and every
    resolution gets drawn (over 6 more epochs of the first case)."""

    def body():
        for description, n, b, resolutions, base in SAMPLER_CASES:
            case = f"case '{description}'"
            epochs = []
            for seed in (0, 0, 1):
                generator = torch.Generator().manual_seed(seed)
                batches = call(fn, n, b, resolutions, base, generator, case=case)
                try:
                    batches = [(int(r), torch.as_tensor(i).long().flatten()) for r, i in batches]
                except Exception as error:
                    raise CheckFailed(f"{case}: expected a list of (resolution, indices) pairs, got {batches!r:.200}") from error
                epochs.append(batches)
            batches = epochs[0]
            if not batches:
                raise CheckFailed(f"{case}: your epoch has no batches")
            for k, (r, indices) in enumerate(batches):
                if r not in resolutions:
                    raise CheckFailed(f"{case}: batch {k} has resolution {r}, which is not one of {resolutions}")
                want = batch_size_for(r, base, b)
                if len(indices) != want:
                    last = k == len(batches) - 1
                    hint = (
                        "the last batch is short: top it up with indices from the start of the epoch's order,"
                        " as ml-cvnets does, so that every batch holds the same number of pixels"
                        if last and len(indices) < want
                        else f"use batch_size_for({r}, {base}, {b}) = {want} images at {r} px, so that pixels per"
                        f" batch stay constant ({want} x {r}^2 <= {b} x {base}^2)"
                    )
                    raise CheckFailed(
                        f"{case}: batch {k} at {r} px has {len(indices)} images; expected {want}. Hint: {hint}."
                        f" Your batches: {_describe(batches)}"
                    )
                if indices.numel() and (indices.min() < 0 or indices.max() >= n):
                    raise CheckFailed(f"{case}: batch {k} has indices outside 0 .. {n - 1}")
            flat = torch.cat([i for _, i in batches])
            seen = flat.unique()
            if len(seen) != n:
                raise CheckFailed(
                    f"{case}: your epoch shows {len(seen)} of the {n} images; every image must appear once"
                    " (walk through one shuffled order of all indices, e.g. torch.randperm(n, generator=generator))"
                )
            before_last = sum(len(i) for _, i in batches[:-1])
            if before_last >= n:
                raise CheckFailed(
                    f"{case}: your epoch has an extra batch: the first {len(batches) - 1} batches already hold"
                    f" {before_last} indices, the whole order of {n} images, yet batch {len(batches) - 1} follows."
                    f" Hint: stop when the order is used up (start < num_samples), also when it ends exactly."
                    f" Your batches: {_describe(batches)}"
                )
            if len(flat[:n].unique()) != n:
                repeated = int(n - len(flat[:n].unique()))
                raise CheckFailed(
                    f"{case}: your batches repeat {repeated} image(s) before every image has been seen once: walk"
                    " through one shuffled order of all indices, taking each index once"
                )
            tail = flat[n:]
            if len(tail) and not torch.equal(tail, flat[: len(tail)]):
                last = batches[-1][1]
                own = bool(torch.isin(tail, last[: len(last) - len(tail)]).all()) and len(last) > len(tail)
                what = "indices of the last batch itself (they repeat)" if own else "other indices"
                raise CheckFailed(
                    f"{case}: your last batch is topped up with {what}, {tail[:6].tolist()}; expected the first"
                    f" {len(tail)} of the epoch's order, {flat[:len(tail)][:6].tolist()}. Hint: top up the last batch"
                    " from the start of the epoch's order, as ml-cvnets does, so that the epoch is one order read"
                    " once, plus its start"
                )
            same = all(r1 == r2 and torch.equal(i1, i2) for (r1, i1), (r2, i2) in zip(epochs[0], epochs[1]))
            if not same or len(epochs[0]) != len(epochs[1]):
                raise CheckFailed(
                    f"{case}: two calls with generators of the same seed gave different epochs: draw every random"
                    " number (order and resolutions) from `generator`, not from torch's global generator"
                )
            flat = torch.cat([i for _, i in batches])
            if torch.equal(flat[:n], torch.arange(n)):
                raise CheckFailed(
                    f"{case}: your batches take the images in order 0, 1, 2, ...: shuffle them once per epoch"
                    " with torch.randperm(num_samples, generator=generator)"
                )
            if len(epochs[0]) == len(epochs[2]) and all(
                r1 == r2 and torch.equal(i1, i2) for (r1, i1), (r2, i2) in zip(epochs[0], epochs[2])
            ):
                raise CheckFailed(f"{case}: seeds 0 and 1 gave the same epoch: shuffle with the generator")
            used = {r for r, _ in batches}
            if len(resolutions) > 1 and len(used) == 1 and len(batches) >= 4:
                raise CheckFailed(
                    f"{case}: every batch has resolution {used.pop()}: draw one of {resolutions} at random for each batch"
                )
        # every resolution is drawn: more epochs of the first case (about 70 batches)
        description, n, b, resolutions, base = SAMPLER_CASES[0]
        drawn = []
        for seed in COVERAGE_SEEDS:
            batches = call(fn, n, b, resolutions, base, torch.Generator().manual_seed(seed), case=f"case '{description}'")
            drawn += [int(r) for r, _ in batches]
        missing = [r for r in resolutions if r not in drawn]
        if missing:
            message = (f"case '{description}': in {len(drawn)} batches (seeds {COVERAGE_SEEDS.start} to"
                       f" {COVERAGE_SEEDS.stop - 1}) your sampler never draws resolution {missing[0]}")
            if missing == [resolutions[-1]]:
                message += (". Hint: it never draws the last resolution: torch.randint(high, ...) draws from 0 to"
                            " high - 1, so high is len(resolutions)")
            else:
                message += f"; each batch draws one of {resolutions}, every one with the same chance"
            raise CheckFailed(message)

    run_check(
        "multiscale_batches",
        body,
        f"right on all {len(SAMPLER_CASES)} cases: every image once, constant pixels per batch, seeded",
    )
