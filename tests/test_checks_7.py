"""The exercise checks of chapter 7: the reference passes, a stub is "not implemented yet", and wrong
schedules, batch sizes and samplers that look right are rejected with the hint that names the mistake."""

import math

import pytest
import torch

from mobilevit_edu import checks, train

from _checking import is_stub, passes, rejects, stub


# ---------------------------------------------------------------------------------- the schedule
def cosine(step, start, length, lr, low):
    progress = (step - start) / length if length > 0 else 0.0
    return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * progress))


def lr_warmup_plus_one(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + (step + 1) * (lr - warmup_lr) / warmup
    return cosine(step, warmup, total - 1 - warmup, lr, min_lr)


def lr_warmup_over_w_minus_1(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / (warmup - 1)
    return cosine(step, warmup, total - 1 - warmup, lr, min_lr)


def lr_cosine_to_zero(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return cosine(step, warmup, total - 1 - warmup, lr, 0.0)


def lr_cvnets_period(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return cosine(step, warmup, total - warmup, lr, min_lr)


def lr_cvnets_plus_one(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return cosine(step, warmup, total - warmup + 1, lr, min_lr)


def lr_warmup_from_zero(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return step * lr / warmup
    return cosine(step, warmup, total - 1 - warmup, lr, min_lr)


def lr_cosine_counted_from_step_0(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return cosine(step, 0, total - 1, lr, min_lr)


def lr_linear_decay(step, total, lr, min_lr, warmup, warmup_lr):
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return lr - (lr - min_lr) * (step - warmup) / (total - 1 - warmup)


def lr_returns_a_list(step, total, lr, min_lr, warmup, warmup_lr):
    return [train.lr_at(step, total, lr, min_lr, warmup, warmup_lr)]


def test_schedule_reference_passes(capsys):
    passes(checks.check_lr_schedule, train.lr_at, capsys)


def test_schedule_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_lr_schedule, stub, capsys)


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (lr_warmup_plus_one, ["reaches the peak one step early", "off-by-one", "step 0"]),
        (lr_warmup_over_w_minus_1, ["divide by warmup_steps, not warmup_steps - 1"]),
        (lr_cosine_to_zero, ["decays to 0 instead of the minimum"]),
        (lr_cvnets_period, ["last step stays above min_lr"]),
        (lr_cvnets_plus_one, ["last step stays above min_lr", "ml-cvnets' period"]),
        (lr_warmup_from_zero, ["starts at 0; it starts at warmup_lr"]),
        (lr_cosine_counted_from_step_0, ["starts counting at step 0"]),
        (lr_linear_decay, ["straight line"]),
        (lr_returns_a_list, ["expected a number"]),
    ],
)
def test_schedule_rejects_wrong_answers_with_the_right_hint(wrong, fragments):
    rejects(checks.check_lr_schedule, wrong, *fragments)


# ------------------------------------------------------------------------------- the batch sizes
def test_batch_size_reference_passes(capsys):
    passes(checks.check_batch_size_for, train.batch_size_for, capsys)


def test_batch_size_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_batch_size_for, stub, capsys)


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (lambda r, base, b: max(1, b * base // r), ["scales with the resolution", "square"]),
        (lambda r, base, b: max(1, b * r**2 // base**2), ["wrong way"]),
        (lambda r, base, b: max(1, math.ceil(b * base**2 / r**2)), ["round up"]),
        (lambda r, base, b: max(1, round(b * base**2 / r**2)), ["nearest integer"]),
        (lambda r, base, b: b * base**2 // r**2, ["batch of 0 images"]),
        (lambda r, base, b: b, ["pixels"]),  # constant batch: pixels grow with the resolution
        (lambda r, base, b: b * base**2 / r**2, ["expected an int"]),
    ],
)
def test_batch_size_rejects_wrong_answers_with_the_right_hint(wrong, fragments):
    rejects(checks.check_batch_size_for, wrong, *fragments)


# ------------------------------------------------------------------------------------ the sampler
def reference_batches(n, b, resolutions, base, generator):
    """The package's sampler, driven by the given generator."""
    order = torch.randperm(n, generator=generator)
    batches, start = [], 0
    while start < n:
        r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
        size = train.batch_size_for(r, base, b)
        indices = order[start:start + size]
        if len(indices) < size:
            indices = torch.cat([indices, order[: size - len(indices)]])
        batches.append((r, indices))
        start += size
    return batches


def batches_without_top_up(n, b, resolutions, base, generator):
    return [(r, i[i >= 0][: len(i)]) for r, i in _no_top_up(n, b, resolutions, base, generator)]


def _no_top_up(n, b, resolutions, base, generator):
    order = torch.randperm(n, generator=generator)
    batches, start = [], 0
    while start < n:
        r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
        size = train.batch_size_for(r, base, b)
        batches.append((r, order[start:start + size]))
        start += size
    return batches


def batches_constant_size(n, b, resolutions, base, generator):
    order = torch.randperm(n, generator=generator)
    batches = []
    for start in range(0, n, b):
        r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
        indices = order[start:start + b]
        if len(indices) < b:
            indices = torch.cat([indices, order[: b - len(indices)]])
        batches.append((r, indices))
    return batches


def batches_global_rng(n, b, resolutions, base, generator):
    return reference_batches(n, b, resolutions, base, torch.Generator().manual_seed(torch.randint(1000, (1,)).item()))


def batches_not_shuffled(n, b, resolutions, base, generator):
    batches = reference_batches(n, b, resolutions, base, generator)
    flat, out, start = torch.arange(n), [], 0
    for r, i in batches:
        idx = torch.arange(start, start + len(i)) % n
        out.append((r, flat[idx]))
        start += len(i)
    return out


def batches_one_resolution(n, b, resolutions, base, generator):
    return reference_batches(n, b, resolutions[:1], base, generator)


def batches_missing_images(n, b, resolutions, base, generator):
    return [(r, i % max(1, n - 5)) for r, i in reference_batches(n, b, resolutions, base, generator)]


def test_sampler_reference_passes(capsys):
    passes(checks.check_multiscale_batches, reference_batches, capsys)


def test_sampler_stub_is_not_implemented_yet(capsys):
    is_stub(checks.check_multiscale_batches, stub, capsys)


@pytest.mark.parametrize(
    "wrong,fragments",
    [
        (batches_without_top_up, ["the last batch is short", "top it up"]),
        (batches_constant_size, ["pixels per batch stay constant"]),
        (batches_global_rng, ["same seed gave different epochs"]),
        (batches_not_shuffled, ["in order 0, 1, 2", "shuffle"]),
        (batches_one_resolution, ["draw one of"]),
        (batches_missing_images, ["of the 100 images"]),
    ],
)
def test_sampler_rejects_wrong_answers_with_the_right_hint(wrong, fragments):
    rejects(checks.check_multiscale_batches, wrong, *fragments)
