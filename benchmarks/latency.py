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

    python benchmarks/latency.py --exports [--rounds 30]     (about 2 minutes)

The export table (chapter 9, issue 23): ONNX Runtime (`--threads` threads, no spinning) on
mobilevit_edu's export against the best of two exports of timm's model with the same weights
(`torch.onnx.export` dynamo and legacy, opset 17, batch fixed to 1), for XXS, XS and S, all files of
one network timed in alternating rounds. Printed twice: the median of the runs and their minimum (on a
loaded machine the minimum is the steadier estimate of what each file costs; the median says what a
reader sees). Rows: ours with a fixed batch (`export_onnx(...,
batch_size=1)`, what the browser page ships), the same without the gather of `deploy.gather_patches`
(`gather=False`: the unfold and fold are one six-axis transpose each), ours with a free batch (the
default), and for XXS
ours quantized to int8 by ONNX Runtime's static quantization (QDQ, per-channel weights, calibrated
on 16 random images; random weights, so its accuracy is not measured here: see chapter 9). Ratios
< 1: faster than timm's best export. Then, for XXS, ONNX Runtime's profiler: the time of each
operator type in three of the files (ours, ours with gather=False, timm's legacy export), in alternating rounds.

To add a network, append a Network to NETWORKS (a name and a function returning mobilevit_edu's
model and timm's with the same weights); to add a way of running it, append to VARIANTS.
"""

import argparse
import json
import os
import platform
import statistics
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


def quantize_int8(fp32_path, int8_path, image_size=256, calibration_images=16, seed=0):
    """ONNX Runtime's static int8 quantization of the file at `fp32_path` (QDQ format, per-channel
    weights), calibrated on random images (shape (1, 3, H, W)); returns `int8_path`."""
    import numpy as np
    from onnxruntime import quantization as q

    rng = np.random.default_rng(seed)

    class RandomImages(q.CalibrationDataReader):
        def __init__(self):
            self.left = calibration_images

        def get_next(self):
            if self.left == 0:
                return None
            self.left -= 1
            return {"image": rng.random((1, 3, image_size, image_size), dtype=np.float32)}

    q.quantize_static(str(fp32_path), str(int8_path), RandomImages(), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, weight_type=q.QuantType.QInt8, activation_type=q.QuantType.QUInt8)
    return int8_path


def optimized_node_counts(path):
    """Operator counts of the graph ONNX Runtime runs after its fusions (`deploy.runtime_graph`: the same
    on every CPU), a measure that does not depend on the machine's load."""
    import collections

    return collections.Counter(node.op_type for node in deploy.runtime_graph(path).node)


def time_by_operator(paths, feed, threads, prefix, runs=30, warmup=5):
    """ONNX Runtime's profiler on each file of `paths` ({label: path}): {label: {operator type: ms per
    run}}, largest first. The files run in alternating rounds, as in the latency table; each session's
    first `warmup` runs are dropped; kernel times only, summed over the nodes of each type."""
    sessions = {label: deploy.onnx_session(path, threads, profile_prefix=f"{prefix}_{i}")
                for i, (label, path) in enumerate(paths.items())}
    for _ in range(warmup + runs):
        for session in sessions.values():
            session.run(None, feed)
    result = {}
    for label, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        per_run = len(kernels) // (warmup + runs)
        totals = {}
        for e in kernels[-runs * per_run:]:
            totals[e["args"]["op_name"]] = totals.get(e["args"]["op_name"], 0.0) + e["dur"] / 1e3 / runs
        result[label] = dict(sorted(totals.items(), key=lambda item: -item[1]))
    return result


def export_table(names, rounds, warmup, threads, int8_for=("mobilevit_xxs",), profile_for=("mobilevit_xxs",)):
    """Print ONNX Runtime's median latency of mobilevit_edu's exports and timm's, and their ratios;
    return the rows as dicts and, for the networks in `profile_for`, ONNX Runtime's time by operator
    type of three of the files (for --save)."""
    rows, profiles = [], {}
    x = torch.rand(1, 3, 256, 256)
    feed = {"image": x.numpy()}
    print(f"{'model':<15}{'export':<34}{'of runs':>8}{'ms':>8}{'MB':>7}{'/ timm best':>12}"
          f"{'nodes':>7}{'Trans':>6}{'Gemm':>6}{'MatMul':>7}   (nodes: the graph ONNX Runtime runs)")
    for network in (n for n in NETWORKS if n.name in names):
        ours, reference = network.make()
        with tempfile.TemporaryDirectory() as workdir, torch.inference_mode():
            w = Path(workdir)
            files = {
                "ours, batch fixed to 1": deploy.export_onnx(ours, w / "ours1.onnx", batch_size=1),
                "ours, batch 1, gather=False": deploy.export_onnx(ours, w / "ours1_six_axes.onnx", batch_size=1,
                                                                 gather=False),
                "ours, free batch (default)": deploy.export_onnx(ours, w / "ours.onnx"),
            }
            for label, dynamo in (("timm, dynamo exporter", True), ("timm, legacy exporter", False)):
                path = w / f"timm_{dynamo}.onnx"
                torch.onnx.export(reference, (x,), str(path), dynamo=dynamo, external_data=False, opset_version=17,
                                  input_names=["image"], output_names=["logits"])
                files[label] = path
            if network.name in int8_for:
                files["ours, int8 (static, QDQ)"] = quantize_int8(files["ours, batch fixed to 1"], w / "int8.onnx")
            if network.name in profile_for:
                compared = ("ours, batch 1, gather=False", "ours, batch fixed to 1", "timm, legacy exporter")
                profiles[network.name] = time_by_operator({label: files[label] for label in compared}, feed, threads,
                                                          w / "profile")
            sessions = {label: deploy.onnx_session(path, num_threads=threads) for label, path in files.items()}
            sizes = {label: path.stat().st_size / 1e6 for label, path in files.items()}
            nodes = {label: optimized_node_counts(path) for label, path in files.items()}
        with torch.inference_mode():
            expected = reference(x).numpy()
        for label, session in sessions.items():
            difference = abs(session.run(None, feed)[0] - expected).max()
            if "int8" not in label:  # the float files compute the same thing, or the comparison is void
                assert difference <= 1e-4, f"{network.name} {label} differs from timm by {difference:.2g}"
        times = deploy.interleaved_times({label: (lambda s=session: s.run(None, feed)) for label, session in sessions.items()},
                                  rounds, warmup)
        for statistic in (statistics.median, min):
            value = {label: statistic(t) for label, t in times.items()}
            best = min(value["timm, dynamo exporter"], value["timm, legacy exporter"])
            for label in sessions:
                print(f"{network.name:<15}{label:<34}{statistic.__name__:>8}{value[label] * 1e3:>8.2f}"
                      f"{sizes[label]:>7.2f}{value[label] / best:>12.2f}{sum(nodes[label].values()):>7}"
                      f"{nodes[label]['Transpose']:>6}{nodes[label]['Gemm']:>6}{nodes[label]['MatMul']:>7}")
                rows.append({"model": network.name, "export": label, "statistic": statistic.__name__,
                             "ms": value[label] * 1e3, "MB": sizes[label], "ratio": value[label] / best,
                             "nodes": sum(nodes[label].values()), "Transpose": nodes[label]["Transpose"],
                             "Gemm": nodes[label]["Gemm"], "MatMul": nodes[label]["MatMul"]})
    for name, by_file in profiles.items():
        print(f"{name}: ONNX Runtime's profiler, ms per run by operator type (kernel time, alternating rounds)")
        operators = sorted({op for times in by_file.values() for op in times},
                           key=lambda op: -max(t.get(op, 0) for t in by_file.values()))
        print(f"  {'operator':<24}" + "".join(f"{label:>30}" for label in by_file))
        for op in operators[:8] + ["(all)"]:
            cells = [sum(t.values()) if op == "(all)" else t.get(op, 0.0) for t in by_file.values()]
            print(f"  {op:<24}" + "".join(f"{c:>30.3f}" for c in cells))
    return rows, profiles


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", type=Path, help="with --exports: also write the table as JSON to this file"
                        " (chapter 9 reads mobilevit_edu/assets/onnx_exports.json)")
    parser.add_argument("--exports", action="store_true",
                        help="the ONNX export table: ours against timm's exports under ONNX Runtime (XXS, XS, S)")
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
    header = (f"torch {torch.__version__}, timm {timm.__version__}, onnxruntime {onnxruntime_version()},"
              f" {platform.processor() or platform.machine()}, {args.threads} threads,"
              f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, batch 1, 3x256x256, {args.rounds} rounds,"
              f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(header)
    if args.exports:
        rows, profiles = export_table([m for m in args.models if m in ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")],
                                      args.rounds, args.warmup, args.threads)
        if args.save:
            args.save.write_text(json.dumps({"measured": header, "load_average_after": round(os.getloadavg()[0], 1),
                                             "rows": rows, "ms_by_operator": profiles}, indent=1) + "\n")
        return
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
