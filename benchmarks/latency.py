"""CPU latency of mobilevit_edu against timm on the same weights, measured alternately in one run.

    python benchmarks/latency.py [--rounds 30] [--threads 2]

For each size: batch 1, 3x256x256, eval, inference mode, `--threads` intra-op threads. Each round
times one forward pass of each model, alternating which goes first, so that both see the same
machine state; the table gives each model's median and the ratio of medians (edu / timm, < 1:
mobilevit_edu is faster). Weights: timm's random initialisation with random BatchNorm statistics,
converted; denormals are flushed (tiny random weights can otherwise slow both models 6-10x).
"""

import argparse
import platform
import statistics
import time

import torch

import mobilevit_edu as me

try:
    import timm
except ImportError:  # the benchmark compares against timm; say so instead of a traceback
    raise SystemExit("benchmarks/latency.py needs timm: pip install timm")

BUILDERS = {"mobilevit_xxs": me.mobilevit_xxs, "mobilevit_xs": me.mobilevit_xs, "mobilevit_s": me.mobilevit_s}


def models_with_the_same_weights(name):
    reference = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(0)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    ours = BUILDERS[name]()
    ours.load_state_dict(me.convert_timm_state_dict(reference.state_dict()))
    return ours.eval(), reference.eval()


def time_once(model, x):
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256)
    print(f"torch {torch.__version__}, timm {timm.__version__}, {platform.processor() or platform.machine()},"
          f" {args.threads} threads, batch 1, 3x256x256, {args.rounds} rounds")
    print(f"{'model':<15}{'mobilevit_edu ms':>18}{'timm ms':>10}{'ratio':>8}")
    with torch.inference_mode():
        for name in BUILDERS:
            ours, reference = models_with_the_same_weights(name)
            assert (ours(x) - reference(x)).abs().max() <= 1e-5, "the two models disagree: not a fair comparison"
            for _ in range(args.warmup):
                ours(x), reference(x)
            t_ours, t_ref = [], []
            for r in range(args.rounds):
                pair = [(ours, t_ours), (reference, t_ref)]
                for model, times in pair if r % 2 == 0 else reversed(pair):
                    times.append(time_once(model, x))
            m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
            print(f"{name:<15}{m_ours * 1e3:>18.2f}{m_ref * 1e3:>10.2f}{m_ours / m_ref:>8.2f}")


if __name__ == "__main__":
    main()
