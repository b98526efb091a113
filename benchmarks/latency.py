"""CPU latency of mobilevit_edu against timm on the same weights, measured alternately in one run.

    python benchmarks/latency.py [--rounds 30] [--threads 2] [--models mobilevit_xxs ...] [--variants eager fused ...]

For each network: batch 1, 3x256x256, eval, inference mode, `--threads` intra-op threads. Each
network is run as timm's model (eager PyTorch: the baseline) and as mobilevit_edu's in several
*variants* (VARIANTS below): eager, BatchNorm folded (`mobilevit_edu.deploy.fuse`), folded and in
channels_last memory format, and exported to ONNX and run by ONNX Runtime. Each round times one
forward pass of each of them, the order rotating from round to round, so that all see the same
machine state (`mobilevit_edu.deploy.measure_latencies`); the table gives each median and the ratio of medians (variant / timm eager, < 1:
faster than timm). Weights: timm's random initialisation with random BatchNorm statistics,
converted; denormals are flushed (tiny random weights can otherwise slow both models 6-10x), in
PyTorch and in ONNX Runtime; ONNX Runtime uses `--threads` intra-op threads and does not spin.

On a machine shared with other work, run it as `OMP_WAIT_POLICY=PASSIVE python benchmarks/latency.py`:
by default PyTorch's OpenMP threads spin while they wait for each other, and when other processes
hold the cores each forward pass can take tens of times longer (seen here: seconds instead of
milliseconds), while ONNX Runtime, told not to spin, is unaffected. The header line says which
policy a table was measured with.

To add a network, append a Network to NETWORKS (a name and a function returning mobilevit_edu's
model and timm's with the same weights); to add a way of running it, append to VARIANTS.
"""

import argparse
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import mobilevit_edu as me
from mobilevit_edu import deploy
from mobilevit_edu.convert import convert_timm_v2_state_dict
from mobilevit_edu.models_v2 import mobilevitv2

try:
    import timm
except ImportError:  # the benchmark compares against timm; say so instead of a traceback
    raise SystemExit("benchmarks/latency.py needs timm: pip install timm")


def randomize_running_stats(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def mobilevit_pair(name, builder):
    """() -> (mobilevit_edu's model, timm's model), with the same weights, in eval mode."""

    def make():
        reference = randomize_running_stats(timm.create_model(name, pretrained=False))
        ours = builder()
        ours.load_state_dict(me.convert_timm_state_dict(reference.state_dict()))
        return ours.eval(), reference.eval()

    return make


@dataclass(frozen=True)
class Network:
    name: str  # the row label (timm's model name)
    make: Callable  # () -> (ours, reference): same weights, eval mode


NETWORKS = [
    Network("mobilevit_xxs", mobilevit_pair("mobilevit_xxs", me.mobilevit_xxs)),
    Network("mobilevit_xs", mobilevit_pair("mobilevit_xs", me.mobilevit_xs)),
    Network("mobilevit_s", mobilevit_pair("mobilevit_s", me.mobilevit_s)),
]


def mobilevitv2_pair(name, width_multiplier):
    """() -> (mobilevit_edu's MobileViTv2, timm's), with the same weights, in eval mode (chapter 10)."""

    def make():
        reference = randomize_running_stats(timm.create_model(name, pretrained=False))
        ours = mobilevitv2(width_multiplier)
        ours.load_state_dict(convert_timm_v2_state_dict(reference.state_dict()))
        return ours.eval(), reference.eval()

    return make


NETWORKS += [
    Network(f"mobilevitv2_{round(100 * alpha):03d}", mobilevitv2_pair(f"mobilevitv2_{round(100 * alpha):03d}", alpha))
    for alpha in (0.5, 0.75, 1.0)
]


def eager(model, x, workdir, threads):
    return lambda: model(x)


def fused(model, x, workdir, threads):
    net = deploy.fuse(model)
    return lambda: net(x)


def fused_channels_last(model, x, workdir, threads):
    net = deploy.fuse(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)  # converted once, outside the timing
    return lambda: net(x_cl)


def onnx_runtime(model, x, workdir, threads):
    path = deploy.export_onnx(model, Path(workdir) / "model.onnx", image_size=tuple(x.shape[-2:]))
    session = deploy.onnx_session(path, num_threads=threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def onnxruntime_version():
    try:
        import onnxruntime
    except ImportError:
        return "(not installed)"
    return onnxruntime.__version__


# label, function (model, x, workdir, threads) -> a callable that runs one forward pass and returns the output
VARIANTS = [
    ("eager", eager),
    ("fused", fused),
    ("fused + channels_last", fused_channels_last),
    ("ONNX Runtime", onnx_runtime),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=[n.name for n in NETWORKS], default=[n.name for n in NETWORKS])
    parser.add_argument("--variants", nargs="+", choices=[v[0] for v in VARIANTS], default=[v[0] for v in VARIANTS])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256)
    print(f"torch {torch.__version__}, timm {timm.__version__}, onnxruntime {onnxruntime_version()},"
          f" {platform.processor() or platform.machine()}, {args.threads} threads,"
          f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, batch 1, 3x256x256, {args.rounds} rounds")
    print(f"{'model':<17}{'variant':<24}{'ms':>8}{'timm eager ms':>15}{'ratio':>7}")
    variants = [(label, make) for label, make in VARIANTS if label in args.variants]
    for network in (n for n in NETWORKS if n.name in args.models):
        ours, reference = network.make()
        runs = [("timm eager", lambda: reference(x))]
        with tempfile.TemporaryDirectory() as workdir:  # the ONNX file is read into the session at once
            for label, make in variants:
                runs.append((label, make(ours, x, workdir, args.threads)))
        with torch.inference_mode():
            expected = reference(x)
            for label, run in runs:  # all of them compute the same thing, or the comparison is void
                difference = (run() - expected).abs().max().item()
                assert difference <= 1e-4, f"{network.name} {label} differs from timm by {difference:.2g}"
            medians = deploy.measure_latencies(dict(runs), rounds=args.rounds, warmup=args.warmup)
            base = medians["timm eager"]
            for label, _ in runs[1:]:
                print(f"{network.name:<17}{label:<24}{medians[label] * 1e3:>8.2f}{base * 1e3:>15.2f}"
                      f"{medians[label] / base:>7.2f}")


if __name__ == "__main__":
    main()
