"""Measuring a network: parameters, multiply-adds and CPU latency.

Every timing in the course goes through `time_call`, one method stated once: the median of `repeat`
timed calls after `warmup` untimed ones, on `num_threads` threads, with autograd off.
"""

import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model, trainable_only=False):
    """Number of parameters (BatchNorm's running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _counted_forward(model, x):
    """One forward pass of `model` (in eval mode, attention on the "math" backend) under
    FlopCounterMode; returns the counter. The model's training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter


@torch.no_grad()
def count_macs(model, x):
    """Multiply-adds of one forward pass on input `x`, counted by `torch.utils.flop_counter`.

    FlopCounterMode counts convolutions and matmuls (1 MAC = 2 FLOPs) but not PyTorch's fused CPU
    attention kernel, so attention is forced onto the "math" backend, which is written as
    matmuls that it does see. Element-wise work (BatchNorm, activations, softmax) is not counted,
    as in the paper and in timm/HF's figures.
    """
    return _counted_forward(model, x).get_total_flops() // 2


# which kind of work each operator counted by FlopCounterMode is, in `count_macs_by_part`
_KIND_OF_OP = {"convolution": "convolution", "addmm": "linear", "mm": "linear",
               "bmm": "attention", "baddbmm": "attention"}
KINDS = ("convolution", "linear", "attention")


@torch.no_grad()
def count_macs_by_part(model, x, parts):
    """Multiply-adds of one forward pass, per part of `model` and per kind of work.

    parts: names of submodules as in `model.named_modules()`, e.g. ["stem", "stages.0", "head"].
    Returns {part: {"convolution": MACs, "linear": MACs, "attention": MACs}}, where "linear" is the
    matrix products of linear layers (`addmm`, `mm`) and "attention" the batched products of
    attention, q·kᵀ and weights·v (`bmm`; attention runs on the "math" backend, as in `count_macs`).
    An operator of another kind raises ValueError, so nothing is silently left out.
    """
    names = dict(model.named_modules())
    missing = [part for part in parts if part not in names]
    if missing:
        raise ValueError(f"parts must name submodules of the model; not found: {missing}")
    counter = _counted_forward(model, x)
    root = type(model).__name__
    counts = counter.get_flop_counts()
    result = {}
    for part in parts:
        row = dict.fromkeys(KINDS, 0)
        for op, flops in counts.get(f"{root}.{part}", {}).items():
            name = str(op).split(".")[-1]
            if name not in _KIND_OF_OP:
                raise ValueError(f"count_macs_by_part: operator {op} in {part} is of no known kind")
            row[_KIND_OF_OP[name]] += flops // 2
        result[part] = row
    return result


def time_call(fn, warmup=2, repeat=5, num_threads=1):
    """Median wall-clock seconds of `fn()` over `repeat` timed calls, after `warmup` untimed ones.

    The course's one timing method. The calls run with autograd off (`torch.inference_mode`) on
    `num_threads` threads (None: leave torch's setting; one thread is slower but steadier on a
    shared machine). The median ignores the few calls that another program slowed down. Timings
    vary from run to run and machine to machine: compare ratios measured in the same run.
    torch's thread count is restored afterwards.
    """
    if warmup < 0 or repeat < 1:
        raise ValueError(f"warmup must be >= 0 and repeat >= 1, got warmup={warmup}, repeat={repeat}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeat):
                start = time.perf_counter()
                fn()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return statistics.median(times)


def measure_latency(model, x, warmup=10, repeat=50, num_threads=None):
    """Median wall-clock seconds of `model(x)` in eval mode, measured with `time_call`.

    The model's training mode and torch's thread count are restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        return time_call(lambda: model(x), warmup=warmup, repeat=repeat, num_threads=num_threads)
    finally:
        model.train(was_training)
