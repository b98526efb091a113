"""Chapter 9: from a training network to an inference one.

- `fold_batchnorm(conv, bn)`: one convolution that computes conv followed by BatchNorm (eval mode).
- `fuse(model)`: an inference-only copy of a network with every BatchNorm folded into the
  convolution before it; `.train()` on it raises.
- `gather_patches(model)`: a copy whose MobileViT blocks unfold and fold by a gather of whole
  pixels instead of a six-axis transpose: the same numbers, faster under ONNX Runtime.
- `export_onnx(model, path)`: one self-contained ONNX file with a dynamic batch size (or a fixed
  one, `batch_size=1`: faster under ONNX Runtime), through `torch.onnx.export(dynamo=True)`, of the
  `gather_patches` copy;
  `onnx_session(path)` runs it with ONNX Runtime; `onnx_operator_counts(path)` says what the graph
  is made of, `runtime_graph(path)` what ONNX Runtime runs of it after its fusions.
- `measure_latencies(runs)`: the median time of several ways of running, measured in alternating rounds;
  `time_by_operation(module, x)`: where the time of a forward pass goes, by kind of operation.

Folding BatchNorm. In eval mode BatchNorm is an affine map per channel c, with the *running*
statistics mu_c, var_c (not the batch's) and its learnt gamma_c, beta_c:

    BN(y)_c = gamma_c * (y_c - mu_c) / sqrt(var_c + eps) + beta_c = s_c * y_c + (beta_c - s_c * mu_c),
    s_c = gamma_c / sqrt(var_c + eps).

A convolution's output channel c is y_c = W_c * x + b_c, so BN(conv(x)) is again one convolution:
W'_c = s_c W_c and b'_c = s_c (b_c - mu_c) + beta_c. In training mode BatchNorm normalises with the
batch's statistics, which change with every batch: nothing can be folded, hence eval only.
"""

import collections
import contextlib
import copy
import operator
import os
import statistics
import time
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from ._validate import pair
from .block import MobileViTBlock
from .patches import FOLD_PATTERN, UNFOLD_PATTERN


def fold_batchnorm(conv, bn):
    """A new `nn.Conv2d` equal to `bn(conv(x))` with `bn` in eval mode (its running statistics).

    The result has a bias (the folded shift) even when `conv` has none; `conv` and `bn` are unchanged.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"bn must be an nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"bn has {bn.num_features} features but conv has {conv.out_channels} output channels: they must match"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False): there is nothing to fold")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)  # 1 / sqrt(var + eps), (C_out,)
        if bn.affine:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale  # (C_out,)
        if bn.affine:
            shift = shift + bn.bias
        bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
        folded = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias=True, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))  # W'_c = s_c W_c
        folded.bias.copy_(bias * scale + shift)  # b'_c = s_c (b_c - mu_c) + beta_c
    return folded


class Fused(nn.Module):
    """An inference-only network: `net` with its BatchNorms folded (made by `fuse`).

    Calls `net` unchanged: same inputs, same outputs, same `state_dict` under the prefix `net.`.
    It cannot go back to training mode: the batch statistics BatchNorm needs are gone.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        super().train(False)

    def train(self, mode=True):
        if mode:
            raise RuntimeError(
                "this network was fused for inference (fuse(model)): its BatchNorms are folded into the"
                " convolutions, so it cannot be trained. Train the original model, then call fuse() again"
            )
        return super().train(False)

    def forward(self, x):
        if any(m.training for m in self.net.modules()):
            raise RuntimeError(
                "part of this fused network was put in training mode (e.g. fused.net.train()): a fused"
                " network is for inference only. Call fused.eval(), or train the original model"
            )
        return self.net(x)


def _fold_children(parent):
    """Fold each BatchNorm child of `parent` into the Conv2d child registered just before it. Returns
    how many were folded. Registration order is forward order in an nn.Sequential and in the modules
    that `fuse` documents; `fuse` checks the rest."""
    children = list(parent.named_children())
    folded = 0
    for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(parent, conv_name, fold_batchnorm(conv, bn))
            if type(bn) is nn.BatchNorm2d:
                setattr(parent, bn_name, nn.Identity())
            elif isinstance(getattr(bn, "act", None), nn.Module) and isinstance(getattr(bn, "drop", None), nn.Module):
                # timm's BatchNormAct2d is BN -> dropout -> activation in one module: keep the last two
                setattr(parent, bn_name, nn.Sequential(bn.drop, bn.act))
            else:
                raise TypeError(f"fuse() does not know how to remove a {type(bn).__name__} after folding it")
            folded += 1
    return folded


def fuse(model):
    """An eval-only copy of `model` with every BatchNorm folded into the convolution just before it.

    The copy is a `Fused` module around the folded network: same outputs (to float rounding) in
    eval mode, fewer operations, no BatchNorm left. `model` itself is unchanged. Works on
    mobilevit_edu's networks and blocks (every BatchNorm follows its conv inside a ConvNormAct) and on
    timm's MobileNetV2/EfficientNet family (conv followed by a BatchNormAct2d). A BatchNorm that does
    not directly follow a convolution is an error, not silently left in place.

    Raises ValueError when `model` is in training mode: folding uses the running statistics,
    which only eval mode uses. Call `model.eval()` first.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, Fused):
        raise ValueError("model is already fused")
    training = [name or "(the model)" for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"model is in training mode ({len(training)} module(s), e.g. {training[0]}): folding BatchNorm uses"
            " its running statistics, which only eval mode uses. Call model.eval() first"
        )
    net = copy.deepcopy(model)
    for module in list(net.modules()):
        _fold_children(module)
    left = [name for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(
            f"{len(left)} BatchNorm(s) do not directly follow a Conv2d and cannot be folded, e.g. {left[0]}"
        )
    return Fused(net)


# ------------------------------------------------------------------------------ unfold by a gather
def _patch_grid(height, width, patch_size):
    """(height, width, ph, pw) as ints, after checking that height x width is a whole number of
    ph x pw patches. (A tracing exporter gives sizes as 0-d tensors: they count as ints.)"""
    ph, pw = pair(patch_size, "patch_size")
    sizes = []
    for name, value, step in (("height", height, ph), ("width", width, pw)):
        try:
            size = None if isinstance(value, bool) else operator.index(value)
        except TypeError:
            size = None
        if size is None or size < 1 or size % step:
            raise ValueError(f"{name} must be a positive int and a multiple of the patch's {step}, got {value!r}")
        sizes.append(size)
    return (*sizes, ph, pw)


def pixel_order(height, width, patch_size):
    """The unfolding as a permutation of pixels: (P*N,) int64, entry i = the row-major index of the
    pixel that `unfold_patches` puts at position i of its (P, N) layout (read row by row)."""
    H, W, ph, pw = _patch_grid(height, width, patch_size)
    numbers = torch.arange(H * W).reshape(1, 1, H, W)  # each pixel holds its own index
    return rearrange(numbers, UNFOLD_PATTERN, ph=ph, pw=pw).flatten()


def token_order(height, width, patch_size):
    """The folding as a permutation: (H*W,) int64, entry j = the (P, N) position, read row by row,
    whose token `fold_patches` puts at pixel j. The inverse of `pixel_order`."""
    H, W, ph, pw = _patch_grid(height, width, patch_size)
    numbers = torch.arange(H * W).reshape(1, ph * pw, -1, 1)  # each token holds its own position
    return rearrange(numbers, FOLD_PATTERN, ph=ph, pw=pw, nh=H // ph).flatten()


class GatherPatchesBlock(MobileViTBlock):
    """A MobileViTBlock whose unfold and fold move whole pixels (made by `gather_patches`).

    The block's own unfold is one transpose of six axes, (B, d, nh, ph, nw, pw) -> (B, ph, pw, nh,
    nw, d), that moves the last axis (d) together with others: ONNX Runtime's CPU Transpose copies
    such a permutation one number at a time. Here the same permutation takes two steps it does fast:
    a transpose that moves only the channel axis, to the end ((B, d, H, W) -> (B, H, W, d)), then a
    gather of whole pixels (rows of d numbers) into patch order. Fold is the reverse. Same weights,
    same outputs, bit for bit: only where numbers are copied changes.
    """

    def unfold(self, x):
        """(B, d, H, W) -> (B*P, N, d), as MobileViTBlock.unfold."""
        H, W = x.shape[-2:]
        pixels = rearrange(x, "b d h w -> b (h w) d")  # channels last: (B, H*W, d)
        tokens = pixels.index_select(1, pixel_order(H, W, self.patch_size))  # (B, P*N, d) in patch order
        return rearrange(tokens, "b (p n) d -> (b p) n d", p=self.patch_size[0] * self.patch_size[1])

    def fold(self, tokens, size):
        """(B*P, N, d) -> (B, d, H, W), as MobileViTBlock.fold."""
        H, W = size
        tokens = rearrange(tokens, "(b p) n d -> b (p n) d", p=self.patch_size[0] * self.patch_size[1])
        pixels = tokens.index_select(1, token_order(H, W, self.patch_size))  # (B, H*W, d), row-major
        # contiguous: a view with the channels last would make the next convolution's kernels, and
        # so its rounding, differ from the block's own
        return rearrange(pixels, "b (h w) d -> b d h w", h=H).contiguous()


def gather_patches(model):
    """A copy of `model` whose MobileViT blocks are `GatherPatchesBlock`s: same weights, same outputs
    bit for bit, and less time under ONNX Runtime (benchmarks/latency.py --exports measures how much).
    `model` itself is unchanged; `export_onnx` exports this copy."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    net = copy.deepcopy(model)
    for module in net.modules():
        if type(module) is MobileViTBlock:
            module.__class__ = GatherPatchesBlock  # no new weights: only unfold and fold change
    return net


# ------------------------------------------------------------------------------------------- ONNX
def export_onnx(model, path, image_size=256, opset_version=None, batch_size=None, dynamo=True, gather=True):
    """Export `model` (eval mode) to one self-contained ONNX file at `path` and return the path.

    Uses `torch.onnx.export(..., dynamo=True, external_data=False)`: the graph comes from
    `torch.export`, the weights are stored inside the file (the input is named "image", the output
    "logits"); height and width are fixed to `image_size` (an int or (H, W)). Needs the packages
    onnx and onnxscript.

    batch_size=None (the default): the batch dimension is free, one file for any batch.
    batch_size=k: the batch is fixed to k, so every shape in the graph is known. ONNX Runtime then
    fuses more: each linear layer's MatMul and bias Add become one Gemm, and the reshapes and
    transposes around attention are planned once instead of computed from the input's shape at
    every call. For batch 1 on a CPU that is the faster file (benchmarks/latency.py --exports).

    gather=True (the default): exports `gather_patches(model)`, whose MobileViT blocks unfold and
    fold by a transpose of the channel axis alone and a gather of whole pixels instead of one
    six-axis transpose, which ONNX Runtime copies a number at a time. Same outputs; gather=False
    exports `model` as it is.

    dynamo=False: the older TorchScript exporter (`torch.onnx.export(..., dynamo=False)`), which
    traces the model instead of `torch.export`ing it: the same numbers (tests/test_export.py), about
    ten times less CPU time to export (0.5 s against 5-9 s for chapter 7's small network). The book
    build uses it (scripts/browser_demo_assets.py).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model is in training mode: call model.eval() before exporting it")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (a free batch) or an int >= 1, got {batch_size!r}")
    H, W = pair(image_size, "image_size")
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    if gather:
        model = gather_patches(model)
    if batch_size is None:
        example = torch.rand(2, in_chans, H, W)  # batch 2: a batch of 1 would be specialised as a constant
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    else:
        example = torch.rand(batch_size, in_chans, H, W)
        dynamic_shapes = None
    if not dynamo:
        import warnings

        with warnings.catch_warnings():  # the tracer warns about every shape check it turns into a constant
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                dynamic_axes=None if batch_size else {"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset_version or 17,
            )
        return path
    torch.onnx.export(
        model, (example,), str(path), dynamo=True, external_data=False, input_names=["image"],
        output_names=["logits"], dynamic_shapes=dynamic_shapes, opset_version=opset_version, verbose=False,
    )
    return path


def onnx_session(path, num_threads=2, profile_prefix=None):
    """An ONNX Runtime inference session on the CPU, with `num_threads` intra-op threads, no
    spinning (idle worker threads would otherwise keep a core busy and slow whatever runs next) and
    denormal floats flushed to zero (as `torch.set_flush_denormal(True)` does for PyTorch).
    `profile_prefix`: turn on ONNX Runtime's profiler, which writes every node's time to a JSON file
    named from this prefix; `session.end_profiling()` returns its path."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, x):
    """Run an ONNX Runtime session on a torch tensor `x` and return its first output as a tensor."""
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])


def onnx_operator_counts(path):
    """How many nodes of each operator type the ONNX graph at `path` has (functions inlined), most first."""
    import onnx
    import onnx.inliner

    graph = onnx.inliner.inline_local_functions(onnx.load(str(path))).graph
    return collections.Counter(node.op_type for node in graph.node).most_common()


def runtime_graph(path):
    """The graph ONNX Runtime actually runs for the file at `path`, after its own fusions at the
    extended level (hardware-independent: the same on every CPU), as an onnx GraphProto: what to count
    or inspect when asking what the runtime executes rather than what the exporter wrote."""
    import tempfile

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath).graph


# ------------------------------------------------------------------------------------------ latency
def interleaved_times(runs, rounds=20, warmup=3):
    """Every time (seconds) of each callable in `runs` (a dict name -> function of no arguments),
    measured in alternating rounds: each round calls every function once, starting one further along
    each time, so that all of them see the same machine state. Returns a dict name -> list of seconds."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    if not runs:
        raise ValueError("runs is empty: give a dict name -> function to time")
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def measure_latencies(runs, rounds=20, warmup=3):
    """Median seconds of each callable in `runs` (a dict name -> function of no arguments), measured in
    alternating rounds (`interleaved_times`). PyTorch work should run in inference mode (the callers'
    job). Returns a dict name -> median seconds. Timings vary from run to run: compare them within one
    call, never across machines or runs."""
    times = interleaved_times(runs, rounds, warmup)
    return {name: statistics.median(t) for name, t in times.items()}


# (kind, substrings of PyTorch operator names): the first kind that matches an operator gets its time
OPERATION_KINDS = (
    ("convolution", ("conv",)),
    ("BatchNorm", ("batch_norm",)),
    ("LayerNorm", ("layer_norm",)),
    ("attention (softmax(q k^T) v)", ("attention", "softmax", "bmm")),
    ("linear layers (qkv, proj, FFN)", ("addmm", "aten::mm", "aten::linear")),
    ("activation (SiLU)", ("silu", "sigmoid")),
    ("copies (unfold/fold, concat)", ("copy_", "clone", "aten::cat", "contiguous")),
    ("additions (residuals)", ("aten::add",)),
)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what C++ code writes to file descriptor 2 (the profiler logs its start and stop there,
    and a missing GPU as an error); Python's own sys.stderr is untouched."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def time_by_operation(module, x, repeat=10, warmup=2):
    """Where the time of `module(x)` goes: seconds per forward pass for each kind of operation of
    OPERATION_KINDS (and "other"), from the self CPU time that `torch.profiler` records over `repeat`
    passes in inference mode. The profiler adds a little overhead of its own; the shares are the point."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeat):
                module(x)
    seconds = {kind: 0.0 for kind, _ in OPERATION_KINDS}
    seconds["other"] = 0.0
    for event in prof.key_averages():
        kind = next((k for k, keys in OPERATION_KINDS if any(key in event.key for key in keys)), "other")
        seconds[kind] += event.self_cpu_time_total / 1e6 / repeat  # microseconds over all passes -> s per pass
    return seconds
