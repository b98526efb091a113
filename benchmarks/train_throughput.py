"""Training throughput of mobilevit_edu's MobileViT-XXS against timm's, same weights, alternating rounds.

    python benchmarks/train_throughput.py [--sizes 64 256] [--batch 32] [--rounds 10] [--warmup 2] [--threads 2]

One training step = forward, cross-entropy loss, backward, AdamW step (lr 0.002, weight decay 0.01, as
the paper), batch 32 of random images (classes 1000), both models in training mode. timm's
`mobilevit_xxs` is built with random weights; ours gets the same weights through
`convert_timm_state_dict`, and the first step's losses are checked equal, so both do the same work.
Each round runs one step of each model, the order alternating from round to round, so that both see
the same machine state; the table gives the median step time and images per second of each, and the
ratio ours / timm in images per second (> 1: mobilevit_edu trains faster). Denormals are flushed.
"""

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import mobilevit_edu as me

try:
    import timm
except ImportError:  # the benchmark compares against timm; say so instead of a traceback
    raise SystemExit("benchmarks/train_throughput.py needs timm: pip install timm")


def make_pair(seed=0):
    """(ours, timm's) MobileViT-XXS with the same random weights, in training mode."""
    torch.manual_seed(seed)
    reference = timm.create_model("mobilevit_xxs", pretrained=False)
    ours = me.mobilevit_xxs()
    ours.load_state_dict(me.convert_timm_state_dict(reference.state_dict()))
    return ours.train(), reference.train()


def step_function(model, x, y):
    """A closure running one training step of `model` on (x, y); returns the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def measure(size, batch, rounds, warmup):
    """Median seconds per training step of ours and timm's at `size` x `size`, alternating."""
    g = torch.Generator().manual_seed(size)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = torch.randint(1000, (batch,), generator=g)
    ours, reference = make_pair()
    steps = {"mobilevit_edu": step_function(ours, x, y), "timm": step_function(reference, x, y)}
    first = {name: step() for name, step in steps.items()}  # the same weights give the same loss
    assert abs(first["mobilevit_edu"] - first["timm"]) <= 1e-4 * max(1.0, abs(first["timm"])), first
    times = {name: [] for name in steps}
    order = list(steps)
    for i in range(warmup + rounds):
        for name in order:
            start = time.perf_counter()
            steps[name]()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
        order.reverse()  # alternate who goes first
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, timm {timm.__version__}, {platform.processor() or platform.machine()},"
          f" {args.threads} threads, MobileViT-XXS training step (fwd + bwd + AdamW), batch {args.batch},"
          f" {args.rounds} rounds")
    print(f"{'input':<10}{'ours ms':>10}{'timm ms':>10}{'ours img/s':>12}{'timm img/s':>12}{'ratio':>7}")
    for size in args.sizes:
        medians = measure(size, args.batch, args.rounds, args.warmup)
        ours, theirs = medians["mobilevit_edu"], medians["timm"]
        print(f"{size}x{size:<7}{ours * 1e3:>10.1f}{theirs * 1e3:>10.1f}{args.batch / ours:>12.1f}"
              f"{args.batch / theirs:>12.1f}{theirs / ours:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
