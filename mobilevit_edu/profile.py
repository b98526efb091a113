"""Measuring a network: parameters, multiply-adds and CPU latency."""

import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model, trainable_only=False):
    """Number of parameters (BatchNorm's running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model, x):
    """Multiply-adds of one forward pass on input `x`, counted by `torch.utils.flop_counter`.

    FlopCounterMode counts convolutions and matmuls (1 MAC = 2 FLOPs) but not PyTorch's fused CPU
    attention kernel, so attention is forced onto the "math" backend, which is written as
    matmuls that it does see. Element-wise work (BatchNorm, activations, softmax) is not counted,
    as in the paper and in timm/HF's figures.
    """
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def measure_latency(model, x, warmup=10, repeat=50, num_threads=None):
    """Median wall-clock seconds of `model(x)` in eval and inference mode, after `warmup` runs.

    Timings vary from run to run and machine to machine: compare ratios measured in the same run.
    The model's training mode and torch's thread count are restored afterwards.
    """
    if warmup < 0 or repeat < 1:
        raise ValueError(f"warmup must be >= 0 and repeat >= 1, got warmup={warmup}, repeat={repeat}")
    previous_threads, was_training = torch.get_num_threads(), model.training
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeat):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    return statistics.median(times)
