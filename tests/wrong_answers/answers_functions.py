"""Answers to the function exercises of chapters 7 to 11, written as students would write them: wrong ones,
each with the words a hint that names its mistake contains, and right ones written another way."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import mobilevit_edu as me
from mobilevit_edu import checks
from mobilevit_edu.segmentation import ASPP

SETS = {}


# ============================================================================ chapter 7: the learning rate
def lr_right(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def lr_numpy(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return float(np.interp(step, [0, warmup_steps], [warmup_lr, lr]))
    span = total_steps - 1 - warmup_steps
    t = (step - warmup_steps) / span if span else 0.0
    return float(min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * t)))


def lr_tensor(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return torch.tensor(warmup_lr + step * (lr - warmup_lr) / warmup_steps)
    decay = total_steps - 1 - warmup_steps
    cos = torch.cos(torch.tensor(math.pi * (step - warmup_steps) / decay if decay else 0.0, dtype=torch.float64))
    return min_lr + 0.5 * (lr - min_lr) * (1 + cos)


def _lr(warm="right", decay_len="right", floor="min", shape="cos", start="warm"):
    def lr_at(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
        W, T = warmup_steps, total_steps
        if step < W:
            base = 0.0 if warm == "zero" else warmup_lr
            if warm == "early":
                return base + (step + 1) * (lr - base) / W
            if warm == "w-1":
                return base + step * (lr - base) / max(1, W - 1)
            return base + step * (lr - base) / W
        length = {"right": T - 1 - W, "T-W": T - W, "T": T - 1}[decay_len]
        begin = 0 if start == "zero" else W
        p = (step - begin) / length if length > 0 else 0.0
        low = 0.0 if floor == "zero" else min_lr
        if shape == "linear":
            return lr - (lr - low) * p
        if shape == "quarter":
            return low + (lr - low) * math.cos(math.pi / 2 * p)
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * p))
    return lr_at


def lr_no_warmup(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / (total_steps - 1)))


def lr_int_division(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * (step // warmup_steps)
    p = (step - warmup_steps) / (total_steps - 1 - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))


def lr_degrees(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return warmup_lr + step * (lr - warmup_lr) / warmup_steps
    p = (step - warmup_steps) / (total_steps - 1 - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(180 * p))


LR_WRONG = [
    ("warm-up one step early", _lr(warm="early"), ["one step early"]),
    ("warm-up over W - 1", _lr(warm="w-1"), ["warmup_steps - 1"]),
    ("warm-up from 0", _lr(warm="zero"), ["starts at 0"]),
    ("no warm-up", lr_no_warmup, ["no warm-up"]),
    ("cosine counted from step 0", _lr(start="zero"), ["starts counting at step 0"]),
    ("cosine to 0", _lr(floor="zero"), ["decays to 0"]),
    ("cosine over T - W", _lr(decay_len="T-W"), ["last step stays above min_lr"]),
    ("linear decay", _lr(shape="linear"), ["straight line"]),
    ("quarter cosine", _lr(shape="quarter"), ["half a cosine", "cosine"]),
    ("integer division in the warm-up", lr_int_division, ["warm-up"]),
    ("cosine of degrees", lr_degrees, ["cosine", "radians"]),
    ("cosine over T - 1 from the warm-up's end", _lr(decay_len="T"), ["last step", "min_lr"]),
]
LR_RIGHT = [("max(1, ...) for the span", lr_right), ("NumPy", lr_numpy), ("returns a tensor", lr_tensor)]
SETS["check_lr_schedule"] = (checks.check_lr_schedule, LR_WRONG, LR_RIGHT)


# ============================================================================ chapter 7: batch sizes
BATCH_WRONG = [
    ("float rounding", lambda r, base, b: max(1, int(b * (base / r) ** 2)), ["floating-point", "float"]),
    ("scales with r, not r^2", lambda r, base, b: max(1, b * base // r), ["square"]),
    ("the wrong way round", lambda r, base, b: max(1, b * r * r // (base * base)), ["wrong way"]),
    ("rounds up", lambda r, base, b: max(1, math.ceil(b * base * base / (r * r))), ["round up"]),
    ("rounds to nearest", lambda r, base, b: max(1, round(b * base**2 / r**2)), ["nearest"]),
    ("no floor at 1", lambda r, base, b: b * base**2 // r**2, ["at least 1"]),
    ("returns a float", lambda r, base, b: max(1.0, b * base**2 / r**2), ["an int", "round down"]),
    ("pixels of one side", lambda r, base, b: max(1, (b * base) // r), ["square"]),
    ("floor of the ratio first", lambda r, base, b: max(1, b * (base**2 // r**2)), ["ratio", "multiply"]),
    ("ignores the resolution", lambda r, base, b: b, ["resolution"]),
    ("float then floor via math.floor of float32", lambda r, base, b: max(1, math.floor(np.float32(b) * np.float32(base / r) ** 2)), ["floating-point", "float"]),
]
BATCH_RIGHT = [
    ("NumPy integer", lambda r, base, b: np.int64(max(1, b * base * base // (r * r)))),
    ("divmod", lambda r, base, b: max(1, divmod(b * base**2, r**2)[0])),
    ("a one-element tensor", lambda r, base, b: torch.tensor(max(1, b * base**2 // r**2))),
    ("fractions", lambda r, base, b: max(1, math.floor(__import__("fractions").Fraction(b * base**2, r**2)))),
]
SETS["check_batch_size_for"] = (checks.check_batch_size_for, BATCH_WRONG, BATCH_RIGHT)


# ============================================================================ chapter 7: the sampler
def _bs(r, base, b):
    return max(1, b * base * base // (r * r))


def sampler(topup="start", stop="<", draw="all", order="perm", gen=True, sizes="right", short="topup"):
    def multiscale_batches(num_samples, batch_size, resolutions, base_resolution, generator):
        g = generator if gen else None
        perm = torch.randperm(num_samples, generator=g) if order == "perm" else torch.arange(num_samples)
        out, start = [], 0
        while (start < num_samples) if stop == "<" else (start <= num_samples):
            k = len(resolutions) - 1 if draw == "last-missing" else len(resolutions)
            if draw == "first":
                r = resolutions[0]
            else:
                r = resolutions[int(torch.randint(k if k > 0 else 1, (1,), generator=g))]
            size = _bs(r, base_resolution, batch_size) if sizes == "right" else batch_size
            idx = perm[start:start + size]
            if len(idx) < size and short == "topup":
                missing = size - len(idx)
                if topup == "start":
                    idx = torch.cat([idx, perm[:missing]])
                elif topup == "repeat":
                    idx = torch.cat([idx, idx[:missing] if len(idx) >= missing else idx.repeat(missing)[:missing]])
                elif topup == "fresh":
                    idx = torch.cat([idx, torch.randperm(num_samples, generator=g)[:missing]])
                elif topup == "end":
                    idx = torch.cat([idx, perm[-missing:]])
            out.append((r, idx))
            start += size
        return out
    return multiscale_batches


def sampler_drop_last(num_samples, batch_size, resolutions, base_resolution, generator):
    perm = torch.randperm(num_samples, generator=generator)
    out, start = [], 0
    while True:
        r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
        size = _bs(r, base_resolution, batch_size)
        if start + size > num_samples:
            return out
        out.append((r, perm[start:start + size]))
        start += size


def sampler_per_batch_perm(num_samples, batch_size, resolutions, base_resolution, generator):
    out, total = [], 0
    while total < num_samples:
        r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
        size = _bs(r, base_resolution, batch_size)
        out.append((r, torch.randperm(num_samples, generator=generator)[:size]))
        total += size
    return out


SAMPLER_WRONG = [
    ("top-up by repeating the batch's own indices", sampler(topup="repeat"), ["start of the epoch's order", "top it up"]),
    ("top-up from a fresh permutation", sampler(topup="fresh"), ["start of the epoch's order", "top it up"]),
    ("top-up from the end of the order", sampler(topup="end"), ["start of the epoch's order", "top it up"]),
    ("never draws the last resolution", sampler(draw="last-missing"), ["never draws", "upper bound"]),
    ("an extra wrapped batch when the order ends exactly", sampler(stop="<="), ["extra batch", "used up"]),
    ("a short last batch", sampler(short="keep"), ["last batch is short"]),
    ("drops the last batch", sampler_drop_last, ["every image must appear", "drop"]),
    ("the global generator", sampler(gen=False), ["global generator"]),
    ("no shuffle", sampler(order="arange"), ["in order 0, 1, 2"]),
    ("always the first resolution", sampler(draw="first"), ["draw one of"]),
    ("the base batch size at every resolution", sampler(sizes="base"), ["batch_size_for"]),
    ("a fresh permutation per batch", sampler_per_batch_perm, ["once per epoch", "every image", "shuffled order"]),
]


def sampler_resolutions_first(num_samples, batch_size, resolutions, base_resolution, generator):
    order = torch.randperm(num_samples, generator=generator).tolist()
    batches, i = [], 0
    while i < len(order):
        r = resolutions[torch.randint(0, len(resolutions), (), generator=generator).item()]
        n = _bs(r, base_resolution, batch_size)
        chunk = order[i:i + n]
        chunk += order[:n - len(chunk)]
        batches.append((r, chunk))
        i += n
    return batches


def sampler_choice_by_multinomial(num_samples, batch_size, resolutions, base_resolution, generator):
    order = torch.randperm(num_samples, generator=generator)
    doubled = torch.cat([order, order])
    batches, start = [], 0
    weights = torch.ones(len(resolutions))
    while start < num_samples:
        r = resolutions[int(torch.multinomial(weights, 1, generator=generator))]
        n = _bs(r, base_resolution, batch_size)
        batches.append((r, doubled[start:start + n]))
        start += n
    return batches


SAMPLER_RIGHT = [("a Python list, top-up by slicing", sampler_resolutions_first),
                 ("torch.multinomial, a doubled order", sampler_choice_by_multinomial)]
SETS["check_multiscale_batches"] = (checks.check_multiscale_batches, SAMPLER_WRONG, SAMPLER_RIGHT)


# ============================================================================ chapter 8: attention weights
def _aw(norm="norm1", skip=False, scale="head", dim=-1, layout="(b p) n d", softmax=True, heads=None):
    def attention_weights(block, y, layer):
        ph, pw = block.patch_size
        tokens = rearrange(y, "b d (nh ph) (nw pw) -> (b ph pw) (nh nw) d", ph=ph, pw=pw) if layout == "(b p) n d" \
            else rearrange(y, "b d (nh ph) (nw pw) -> (b nh nw) (ph pw) d", ph=ph, pw=pw)
        if not skip:
            for earlier in block.transformer[:layer]:
                tokens = earlier(tokens)
        this = block.transformer[layer]
        h = {"norm1": this.norm1, "norm2": this.norm2, "block": block.norm, "none": nn.Identity()}[norm](tokens)
        H = heads or this.attn.num_heads
        q, k, v = rearrange(this.attn.qkv(h), "b n (three h e) -> three b h n e", three=3, h=H)
        s = q @ k.transpose(-2, -1)
        if scale == "head":
            s = s / q.shape[-1] ** 0.5
        elif scale == "width":
            s = s / h.shape[-1] ** 0.5
        return s.softmax(dim=dim) if softmax else s
    return attention_weights


def aw_library(block, y, layer):
    tokens = rearrange(me.unfold_patches(y, block.patch_size), "b p n d -> (b p) n d")
    for earlier in block.transformer[:layer]:
        tokens = earlier(tokens)
    this = block.transformer[layer]
    return this.attn.attention_weights(this.norm1(tokens))


def aw_explain(block, y, layer):
    return me.explain.block_attention(block, y, layer)[0]


AW_WRONG = [
    ("norm2 instead of norm1", _aw(norm="norm2"), ["norm2"]),
    ("the block's final LayerNorm", _aw(norm="block"), ["block.norm", "final LayerNorm"]),
    ("no LayerNorm", _aw(norm="none"), ["pre-norm"]),
    ("skips the earlier layers", _aw(skip=True), ["layers 0 .. layer-1"]),
    ("no scale", _aw(scale=None), ["forgot the scale"]),
    ("scale by the width", _aw(scale="width"), ["not the model width"]),
    ("softmax over the queries", _aw(dim=-2), ["wrong axis"]),
    ("no softmax", _aw(softmax=False), ["forgot the softmax"]),
    ("patches and positions swapped", _aw(layout="(b n) p d"), ["swapped"]),
    ("one head", _aw(heads=1), ["heads apart", "one head", "heads"]),
    ("the layer's own attention_weights", aw_library, ["attention_weights"]),
    ("the package's explain.block_attention", aw_explain, ["block_attention"]),
]


def aw_unfold(block, y, layer):
    ph, pw = block.patch_size
    d = y.shape[1]
    cols = F.unfold(y, (ph, pw), stride=(ph, pw))  # (1, d*ph*pw, N)
    tokens = rearrange(cols, "b (d p) n -> (b p) n d", d=d)
    for i in range(layer):
        tokens = block.transformer[i](tokens)
    t = block.transformer[layer]
    x = F.layer_norm(tokens, (d,), t.norm1.weight, t.norm1.bias, t.norm1.eps)
    q, k, _ = t.attn.qkv(x).chunk(3, dim=-1)
    split = lambda z: rearrange(z, "b n (h e) -> b h n e", h=t.attn.num_heads)  # noqa: E731
    q, k = split(q), split(k)
    return torch.softmax(torch.einsum("bhne,bhme->bhnm", q, k) * q.shape[-1] ** -0.5, dim=-1)


AW_RIGHT = [("F.unfold, chunk and einsum", aw_unfold), ("the model answer's layout by hand", _aw())]
SETS["check_attention_weights"] = (checks.check_attention_weights, AW_WRONG, AW_RIGHT)


# ============================================================================ chapter 8: attention map
def _am(row=True, head_mean=False, p_order="rows", n_order="rows", place="p", swap_hw=False, transpose=False):
    def attention_map(weights, pixel, size, patch_size, head):
        (H, W), (i, j) = size, pixel
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
        p = (i % ph) * pw + (j % pw) if p_order == "rows" else (j % pw) * ph + (i % ph)
        n = (i // ph) * (W // pw) + (j // pw) if n_order == "rows" else (j // pw) * (H // ph) + (i // ph)
        w = weights.mean(1) if head_mean else weights[:, head]
        vals = w[p, n] if row else w[p, :, n]
        out = torch.zeros(H, W)
        r0, c0 = (i % ph, j % pw) if place == "p" else (0, 0)
        out[r0::ph, c0::pw] = vals.reshape(H // ph, W // pw)
        if swap_hw:
            out = out.reshape(W, H)
        if transpose:
            out = out.t()
        return out
    return attention_map


def am_every_pixel(weights, pixel, size, patch_size, head):
    (H, W), (i, j) = size, pixel
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    p = (i % ph) * pw + (j % pw)
    n = (i // ph) * (W // pw) + (j // pw)
    row = weights[p, head, n].reshape(H // ph, W // pw)
    return row.repeat_interleave(ph, 0).repeat_interleave(pw, 1)


def am_row_only(weights, pixel, size, patch_size, head):
    (H, W), (i, j) = size, pixel
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return weights[(i % ph) * pw + (j % pw), head, (i // ph) * (W // pw) + (j // pw)]


AM_WRONG = [
    ("column instead of row", _am(row=False), ["column n"]),
    ("mean over heads", _am(head_mean=True), ["averaged the heads"]),
    ("position numbered by columns", _am(p_order="cols"), ["numbered row by row"]),
    ("patches numbered by columns", _am(n_order="cols"), ["patches are numbered row by row"]),
    ("placed at each patch's first pixel", _am(place="0"), ["same position p"]),
    ("reshaped W x H", _am(swap_hw=True), ["W x H"]),
    ("transposed", _am(transpose=True), ["W x H", "transpos", "wrong places"]),
    ("spread over every pixel of the patch", am_every_pixel, ["same position p", "zero elsewhere", "every pixel"]),
    ("returns only the row", am_row_only, ["row of N"]),
    ("column and mean of heads", _am(row=False, head_mean=True), ["column", "averaged"]),
]


def am_loops(weights, pixel, size, patch_size, head):
    (H, W), (i, j) = size, pixel
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    out = torch.zeros(size)
    p = (i % ph) * pw + j % pw
    n = (i // ph) * (W // pw) + j // pw
    for m in range(weights.shape[-1]):
        out[(m // (W // pw)) * ph + i % ph, (m % (W // pw)) * pw + j % pw] = weights[p, head, n, m]
    return out


def am_einops(weights, pixel, size, patch_size, head):
    (H, W), (i, j) = size, pixel
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    p, n = me.explain.pixel_to_patch(pixel, size, (ph, pw))
    onehot = torch.zeros(ph * pw, 1)
    onehot[p] = 1
    table = onehot * weights[p, head, n][None, :]  # (P, N)
    return rearrange(table, "(ph pw) (nh nw) -> (nh ph) (nw pw)", ph=ph, nh=H // ph)


AM_RIGHT = [("loops", am_loops), ("einops and pixel_to_patch", am_einops)]
SETS["check_attention_map"] = (checks.check_attention_map, AM_WRONG, AM_RIGHT)


# ============================================================================ chapter 9: fold BatchNorm
def _fold(scale_kind="right", bias_kind="right", copy_dilation=True, bias=True):
    def fold_batchnorm(conv, bn):
        var, eps, g, beta, mu = bn.running_var, bn.eps, bn.weight, bn.bias, bn.running_mean
        scale = {
            "right": g / torch.sqrt(var + eps),
            "var": g / (var + eps),
            "eps-outside": g / (torch.sqrt(var) + eps),
            "fixed-eps": g / torch.sqrt(var + 1e-5),
            "no-gamma": 1 / torch.sqrt(var + eps),
            "std-times": g * torch.sqrt(var + eps),
        }[scale_kind]
        b = conv.bias if conv.bias is not None else torch.zeros_like(mu)
        new_bias = {
            "right": (b - mu) * scale + beta,
            "no-gamma": (b - mu) / torch.sqrt(var + eps) + beta,
            "no-beta": (b - mu) * scale,
            "plus-mu": (b + mu) * scale + beta,
            "unscaled-b": b + beta - mu * scale,
        }[bias_kind]
        out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        dilation=conv.dilation if copy_dilation else 1, groups=conv.groups, bias=bias)
        with torch.no_grad():
            out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            if bias:
                out.bias.copy_(new_bias)
        return out
    return fold_batchnorm


def fold_library(conv, bn):
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)


def fold_library_weights(conv, bn):
    import copy
    from torch.nn.utils.fusion import fuse_conv_bn_weights
    out = copy.deepcopy(conv)
    w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    out.weight, out.bias = w, b
    return out


def fold_batch_statistics(conv, bn):
    return _fold()(conv, type("BN", (), dict(running_var=torch.ones_like(bn.running_var), eps=bn.eps, weight=bn.weight,
                                             bias=bn.bias, running_mean=torch.zeros_like(bn.running_mean)))())


FOLD_WRONG = [
    ("var instead of sqrt(var)", _fold(scale_kind="var"), ["sqrt(var", "square root"]),
    ("eps outside the root", _fold(scale_kind="eps-outside"), ["eps inside", "outside the square root"]),
    ("hard-coded eps 1e-5", _fold(scale_kind="fixed-eps"), ["bn.eps"]),
    ("gamma missing from the bias", _fold(bias_kind="no-gamma"), ["bias", "gamma"]),
    ("no beta", _fold(bias_kind="no-beta"), ["forgot beta"]),
    ("+ mean", _fold(bias_kind="plus-mu"), ["subtract the running mean", "running mean"]),
    ("conv bias unscaled", _fold(bias_kind="unscaled-b"), ["scaled as well"]),
    ("no gamma anywhere", _fold(scale_kind="no-gamma", bias_kind="no-gamma"), ["affine parameters", "left out gamma"]),
    ("drops the dilation", _fold(copy_dilation=False), ["dilation"]),
    ("no bias", _fold(bias=False), ["no bias"]),
    ("multiplies by the std", _fold(scale_kind="std-times"), ["divide", "sqrt"]),
    ("torch's fuse_conv_bn_eval", fold_library, ["fuse_conv_bn"]),
    ("torch's fuse_conv_bn_weights", fold_library_weights, ["fuse_conv_bn"]),
    ("identity statistics (mean 0, var 1)", fold_batch_statistics, ["running"]),
]


def fold_rsqrt(conv, bn):
    s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups)
    new.weight = nn.Parameter((conv.weight * s[:, None, None, None]).detach())
    b = bn.bias - bn.running_mean * s
    if conv.bias is not None:
        b = b + conv.bias * s
    new.bias = nn.Parameter(b.detach())
    return new


def fold_deepcopy(conv, bn):
    import copy
    new = copy.deepcopy(conv)
    std = (bn.running_var + bn.eps).sqrt()
    with torch.no_grad():
        new.weight.mul_((bn.weight / std).reshape(-1, 1, 1, 1))
        old = conv.bias if conv.bias is not None else 0
        new.bias = nn.Parameter(bn.weight * (old - bn.running_mean) / std + bn.bias)
    return new


FOLD_RIGHT = [("rsqrt and nn.Parameter", fold_rsqrt), ("deepcopy and in-place", fold_deepcopy)]
SETS["check_fold_batchnorm"] = (checks.check_fold_batchnorm, FOLD_WRONG, FOLD_RIGHT)


# ============================================================================ chapter 9: the unfold as a gather
def _order_einops(pattern, swap=False, offset=0):
    def pixel_order(height, width, patch_size):
        ph, pw = patch_size[::-1] if swap else patch_size
        numbers = torch.arange(height * width).reshape(height, width)
        return rearrange(numbers, pattern, ph=ph, pw=pw).flatten() + offset
    return pixel_order


def order_loops_patch_first(height, width, patch_size):
    ph, pw = patch_size
    order = []
    for r in range(0, height, ph):  # one patch after the other: ViT's order
        for c in range(0, width, pw):
            for i in range(ph):
                for j in range(pw):
                    order.append((r + i) * width + c + j)
    return torch.tensor(order)


def order_loops_index_by_height(height, width, patch_size):
    ph, pw = patch_size
    return torch.tensor([(r + i) * height + c + j for i in range(ph) for j in range(pw)
                         for r in range(0, height, ph) for c in range(0, width, pw)])


def order_unfold_float(height, width, patch_size):
    numbers = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    return me.unfold_patches(numbers, patch_size).flatten()  # floats: forgot .long()


def order_unfold_table(height, width, patch_size):
    numbers = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    return me.unfold_patches(numbers, patch_size)[0, :, :, 0].long()  # the (P, N) table, not flattened


def order_every_pixel_a_patch(height, width, patch_size):
    ph, pw = patch_size
    return torch.tensor([(r + i) * width + c + j for i in range(ph) for j in range(pw)
                         for r in range(0, height - ph + 1) for c in range(0, width - pw + 1)])  # stride 1


def order_inverse(height, width, patch_size):
    ph, pw = patch_size
    numbers = torch.arange(height * width).reshape(height, width)
    return rearrange(numbers, "(nh ph) (nw pw) -> (ph pw nh nw)", ph=ph, pw=pw).flatten().argsort()


ORDER_WRONG = [
    ("ViT's order with einops", _order_einops("(nh ph) (nw pw) -> (nh nw ph pw)"), ["patch by patch"]),
    ("ViT's order with loops", order_loops_patch_first, ["patch by patch"]),
    ("positions column by column", _order_einops("(nh ph) (nw pw) -> (pw ph nh nw)"), ["column by column"]),
    ("patches column by column", _order_einops("(nh ph) (nw pw) -> (ph pw nw nh)"), ["patches column by column"]),
    ("(ph nh) split", _order_einops("(ph nh) (pw nw) -> (ph pw nh nw)"), ["(nh ph)"]),
    ("ph and pw swapped", _order_einops("(nh ph) (nw pw) -> (ph pw nh nw)", swap=True), ["pw for the height"]),
    ("1-based", _order_einops("(nh ph) (nw pw) -> (ph pw nh nw)", offset=1), ["start at 0"]),
    ("the inverse, by argsort", order_inverse, ["inverse permutation"]),
    ("row * height", order_loops_index_by_height, ["row * width"]),
    ("floats from unfold_patches", order_unfold_float, ["of ints"]),
    ("the (P, N) table", order_unfold_table, ["1-D"]),
    ("overlapping patches", order_every_pixel_a_patch, ["one per pixel"]),
    ("no rearranging", lambda height, width, patch_size: torch.arange(height * width), ["own row-major order"]),
]


def order_list(height, width, patch_size):
    ph, pw = patch_size
    return [(nh * ph + i) * width + nw * pw + j for i in range(ph) for j in range(pw)
            for nh in range(height // ph) for nw in range(width // pw)]


ORDER_RIGHT = [("einops on numbers", _order_einops("(nh ph) (nw pw) -> (ph pw nh nw)")), ("a list", order_list),
               ("unfold_patches, .long()", lambda h, w, p: order_unfold_float(h, w, p).long())]
SETS["check_pixel_order"] = (checks.check_pixel_order, ORDER_WRONG, ORDER_RIGHT)


# ============================================================================ chapter 10: separable attention
def _sep(sm_dim=-1, sum_dim=-1, relu="value", combine="mul", weight="softmax", keep=True):
    def separable_self_attention(query, key, value):
        scores = query.softmax(dim=sm_dim) if weight == "softmax" else query
        if weight == "ones":
            scores = torch.ones_like(query)
        ctx = key * scores if sum_dim is None else (key * scores).sum(dim=sum_dim, keepdim=keep)
        v = F.relu(value) if relu == "value" else value
        k = ctx if relu != "context" else F.relu(ctx)
        out = v * k if combine == "mul" else v + k
        return F.relu(out) if relu == "out" else out
    return separable_self_attention


def sep_einsum_no_keepdim(query, key, value):
    ctx = torch.einsum("bdpn,bpn->bdp", key, query.softmax(-1)[:, 0])
    return F.relu(value) * ctx


def sep_sigmoid(query, key, value):
    ctx = (key * torch.sigmoid(query)).sum(-1, keepdim=True)
    return F.relu(value) * ctx


SEP_WRONG = [
    ("softmax over P", _sep(sm_dim=-2), ["over the P pixel positions"]),
    ("softmax over the channel", _sep(sm_dim=1), ["plain sum", "ONE channel"]),
    ("sum over channels", _sep(sum_dim=1), ["over the channels"]),
    ("ReLU on the context", _sep(relu="context"), ["context vector; it goes"]),
    ("ReLU on the product", _sep(relu="out"), ["applied it to the product"]),
    ("no ReLU", _sep(relu=None), ["forgot the ReLU"]),
    ("adds the context", _sep(combine="add"), ["added the context"]),
    ("raw query", _sep(weight="raw"), ["raw query"]),
    ("uniform weights", _sep(weight="ones"), ["plain sum"]),
    ("no sum (broadcast crash)", sep_einsum_no_keepdim, ["keepdim", "(B, d, P, 1)"]),
    ("sigmoid instead of softmax", sep_sigmoid, ["sigmoid", "softmax"]),
    ("no sum at all", _sep(sum_dim=None), ["did not sum"]),
]


def sep_einsum(query, key, value):
    scores = torch.softmax(query, dim=3)
    ctx = torch.einsum("bdpn,bxpn->bdp", key, scores).unsqueeze(-1)
    return value.clamp(min=0) * ctx


def sep_explicit(query, key, value):
    w = query.exp() / query.exp().sum(-1, keepdim=True)
    return torch.relu(value) * (w * key).sum(3, keepdim=True)


SEP_RIGHT = [("einsum and clamp", sep_einsum), ("softmax by hand", sep_explicit)]
SETS["check_separable_self_attention"] = (checks.check_separable_self_attention, SEP_WRONG, SEP_RIGHT)


# ============================================================================ chapter 11: ASPP
def aspp(forward):
    return type(forward.__name__, (ASPP,), {"forward": forward})


@aspp
def ASPPInherits(self, x):  # placeholder replaced below: a subclass that writes no forward at all
    raise AssertionError


ASPPInherits = type("ASPPInherits", (ASPP,), {})


@aspp
def ASPPSuper(self, x):
    return super(type(self), self).forward(x)


@aspp
def ASPPNoOneByOne(self, x):
    H, W = x.shape[-2:]
    outs = [b(x) for b in self.branches[1:]] + [self.pool(x).expand(-1, -1, H, W)]
    return self.dropout(self.project(torch.cat(outs, 1)))


@aspp
def ASPPNoPool(self, x):
    return self.dropout(self.project(torch.cat([b(x) for b in self.branches], 1)))


@aspp
def ASPPPoolFirst(self, x):
    H, W = x.shape[-2:]
    outs = [self.pool(x).expand(-1, -1, H, W)] + [b(x) for b in self.branches]
    return self.dropout(self.project(torch.cat(outs, 1)))


@aspp
def ASPPNoProject(self, x):
    H, W = x.shape[-2:]
    return self.dropout(torch.cat([b(x) for b in self.branches] + [self.pool(x).expand(-1, -1, H, W)], 1))


@aspp
def ASPPSum(self, x):
    H, W = x.shape[-2:]
    return self.dropout(self.project(sum([b(x) for b in self.branches] + [self.pool(x).expand(-1, -1, H, W)])))


@aspp
def ASPPDropoutFirst(self, x):
    H, W = x.shape[-2:]
    return self.project(self.dropout(torch.cat([b(x) for b in self.branches] + [self.pool(x).expand(-1, -1, H, W)], 1)))


@aspp
def ASPPNoDropout(self, x):
    H, W = x.shape[-2:]
    return self.project(torch.cat([b(x) for b in self.branches] + [self.pool(x).expand(-1, -1, H, W)], 1))


@aspp
def ASPPPoolNotPooled(self, x):
    return self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [self.pool.conv(x)], 1)))


@aspp
def ASPPMaxPool(self, x):
    H, W = x.shape[-2:]
    pooled = self.pool.conv(F.adaptive_max_pool2d(x, 1)).expand(-1, -1, H, W)
    return self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1)))


@aspp
def ASPPNoExpand(self, x):
    return self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [self.pool(x)], 1)))


@aspp
def ASPPReversedRates(self, x):
    H, W = x.shape[-2:]
    outs = [self.branches[0](x)] + [b(x) for b in reversed(self.branches[1:])] + [self.pool(x).expand(-1, -1, H, W)]
    return self.dropout(self.project(torch.cat(outs, 1)))


ASPP_WRONG = [
    ("inherits forward", ASPPInherits, ["write forward", "inherit"]),
    ("calls super().forward", ASPPSuper, ["super().forward", "package's forward"]),
    ("no 1x1 branch", ASPPNoOneByOne, ["self.branches[0]", "1x1 branch"]),
    ("no pooling branch", ASPPNoPool, ["image-pooling branch"]),
    ("pooling first", ASPPPoolFirst, ["another order"]),
    ("no projection", ASPPNoProject, ["self.project"]),
    ("sum instead of concat", ASPPSum, ["do not add them"]),
    ("dropout first", ASPPDropoutFirst, ["dropout acts on the concatenated"]),
    ("no dropout", ASPPNoDropout, ["no dropout"]),
    ("pooling skipped", ASPPPoolNotPooled, ["skips the pooling"]),
    ("max pooling", ASPPMaxPool, ["maximum"]),
    ("pooled map not broadcast", ASPPNoExpand, ["broadcast"]),
    ("rates reversed", ASPPReversedRates, ["another order"]),
]


@aspp
def ASPPInterpolate(self, x):
    H, W = x.shape[-2:]
    outs = [branch(x) for branch in self.branches]
    outs.append(F.interpolate(self.pool(x), size=(H, W), mode="bilinear", align_corners=False))
    return self.dropout(self.project(torch.cat(outs, dim=1)))


@aspp
def ASPPByHand(self, x):
    pooled = self.pool.conv(x.mean(dim=(2, 3), keepdim=True))
    outs = [branch(x) for branch in self.branches] + [pooled.repeat(1, 1, *x.shape[-2:])]
    return self.dropout(self.project(torch.cat(outs, 1)))


ASPP_RIGHT = [("F.interpolate the pooled map", ASPPInterpolate), ("mean and repeat", ASPPByHand)]
SETS["check_aspp_forward"] = (checks.check_aspp_forward, ASPP_WRONG, ASPP_RIGHT)


# ============================================================================ chapter 11: mean IoU
def _iou(present="union", background=True, kind="iou", per_image=False, absent="skip"):
    def mean_iou(predicted, target, num_classes):
        def one(p, t):
            ious = []
            for c in range(num_classes):
                P, T = p == c, t == c
                inter = (P & T).sum().item()
                union = (P | T).sum().item()
                if kind == "dice":
                    denom = P.sum().item() + T.sum().item()
                    value, num = (2 * inter / denom if denom else None), denom
                elif kind == "precision":
                    value = inter / P.sum().item() if P.sum() else None
                else:
                    value = inter / union if union else None
                keep = {"union": union > 0, "target": T.any().item(), "tp": inter > 0, "all": True}[present]
                if not background and c == 0:
                    continue
                if keep:
                    ious.append(value if value is not None else (0.0 if absent == "zero" else 1.0))
            return sum(ious) / len(ious)
        if per_image:
            return sum(one(p, t) for p, t in zip(predicted, target)) / len(predicted)
        return one(predicted, target)
    return mean_iou


def iou_accuracy(predicted, target, num_classes):
    return (predicted == target).float().mean().item()


def iou_nan(predicted, target, num_classes):
    ious = []
    for c in range(num_classes):
        inter = ((predicted == c) & (target == c)).sum()
        union = ((predicted == c) | (target == c)).sum()
        ious.append(inter / union)
    return torch.stack(ious).float().mean().item()


def iou_nanmean_float16(predicted, target, num_classes):
    ious = []
    for c in range(num_classes):
        inter = ((predicted == c) & (target == c)).sum()
        union = ((predicted == c) | (target == c)).sum()
        ious.append((inter / union).half())
    return torch.stack(ious).nanmean().item()


IOU_WRONG = [
    ("skips classes absent from the truth", _iou(present="target"), ["predicted but absent from the truth",
                                                                     "absent from the truth"]),
    ("skips classes with IoU 0", _iou(present="tp"), ["IoU 0", "IoU of 0"]),
    ("absent classes as 0", _iou(present="all", absent="zero"), ["do not count it as 0"]),
    ("absent classes as 1", _iou(present="all", absent="one"), ["do not count it as 1"]),
    ("no background", _iou(background=False), ["background"]),
    ("Dice", _iou(kind="dice"), ["Dice"]),
    ("precision", _iou(kind="precision"), ["TP + FP"]),
    ("per image", _iou(per_image=True), ["each image"]),
    ("pixel accuracy", iou_accuracy, ["pixel accuracy"]),
    ("NaN for absent classes", iou_nan, ["NaN"]),
    ("float16 IoUs", iou_nanmean_float16, ["float16", "precision", "half"]),
]


def iou_confusion_numpy(predicted, target, num_classes):
    p, t = predicted.numpy().ravel(), target.numpy().ravel()
    cm = np.zeros((num_classes, num_classes))
    np.add.at(cm, (t, p), 1)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def iou_nanmean(predicted, target, num_classes):
    ious = []
    for c in range(num_classes):
        inter = ((predicted == c) & (target == c)).sum().double()
        union = ((predicted == c) | (target == c)).sum().double()
        ious.append(inter / union)
    return torch.stack(ious).nanmean()


IOU_RIGHT = [("NumPy confusion matrix", iou_confusion_numpy), ("nanmean of a tensor", iou_nanmean),
             ("per class loops", _iou())]
SETS["check_mean_iou"] = (checks.check_mean_iou, IOU_WRONG, IOU_RIGHT)


# ------------------------------------------------------------------------- a second batch, written later
import random  # noqa: E402  (a student's random.choice)

def lr_flat_warmup(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return warmup_lr
    p = (step - warmup_steps) / (total_steps - 1 - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))
def lr_cos_plus_one(step, total_steps, lr, min_lr, warmup_steps, warmup_lr):
    if step < warmup_steps:
        return warmup_lr + step * (lr - warmup_lr) / warmup_steps
    p = (step - warmup_steps + 1) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * p))
def bs_floordiv_float(r, base, b):
    return max(1, b // (r / base) ** 2)
def sampler_random_choice(n, b, resolutions, base, generator):
    order = torch.randperm(n, generator=generator)
    out, s = [], 0
    while s < n:
        r = random.choice(resolutions)
        k = _bs(r, base, b)
        idx = order[s:s + k]
        if len(idx) < k: idx = torch.cat([idx, order[:k - len(idx)]])
        out.append((r, idx))
        s += k
    return out
def sampler_one_res_per_epoch(n, b, resolutions, base, generator):
    order = torch.randperm(n, generator=generator)
    r = resolutions[int(torch.randint(len(resolutions), (1,), generator=generator))]
    k = _bs(r, base, b)
    out = []
    for s in range(0, n, k):
        idx = order[s:s + k]
        if len(idx) < k: idx = torch.cat([idx, order[:k - len(idx)]])
        out.append((r, idx))
    return out
def aw_whole_width(block, y, layer):
    return _aw(heads=1)(block, y, layer)
def aw_after_layer(block, y, layer):
    tokens = rearrange(me.unfold_patches(y, block.patch_size), "b p n d -> (b p) n d")
    for l in block.transformer[:layer + 1]:
        tokens = l(tokens)
    this = block.transformer[layer]
    q, k, _ = rearrange(this.attn.qkv(this.norm1(tokens)), "b n (three h e) -> three b h n e", three=3, h=this.attn.num_heads)
    return (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
def fold_input_axis(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        w = conv.weight.clone()
        n = min(w.shape[1], len(s))
        w[:, :n] *= s[:n].view(1, -1, 1, 1)
        out.weight.copy_(w)
        b = conv.bias if conv.bias is not None else 0
        out.bias.copy_((b - bn.running_mean) * s + bn.bias)
    return out
def fold_no_conv_bias(conv, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        out.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))
        out.bias.copy_(bn.bias - bn.running_mean * s)
    return out
def sep_softmax_dim2(query, key, value):
    return F.relu(value) * (key * query.softmax(dim=2)).sum(-1, keepdim=True)
def sep_mean_weighted(query, key, value):
    return F.relu(value) * (key * query.softmax(-1)).mean(-1, keepdim=True)
def iou_half_dice(predicted, target, num_classes):
    v = []
    for c in range(num_classes):
        P, T = predicted == c, target == c
        den = P.sum() + T.sum()
        if den:
            v.append(((P & T).sum() / den).item())
    return sum(v) / len(v)
def iou_last_class_missing(predicted, target, num_classes):
    return _iou()(predicted, target, num_classes - 1)
@aspp
def ASPPReLUAfter(self, x):
    H, W = x.shape[-2:]
    return F.relu(self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [self.pool(x).expand(-1, -1, H, W)], 1))))
@aspp
def ASPPPoolNoConv(self, x):
    H, W = x.shape[-2:]
    return self.dropout(self.project(torch.cat([b(x) for b in self.branches] + [self.pool.avg(x).expand(-1, -1, H, W)], 1)))

LR_WRONG += [("a flat warm-up", lr_flat_warmup, ["stays at warmup_lr"]),
             ("cosine progress shifted by one", lr_cos_plus_one, ["off-by-one", "one step"])]
BATCH_WRONG += [("float floor division", bs_floordiv_float, ["floating-point"])]
SAMPLER_WRONG += [("random.choice", sampler_random_choice, ["global generator", "from `generator`"]),
                  ("one resolution per epoch", sampler_one_res_per_epoch, ["draw one of"])]
AW_WRONG += [("one head over the whole width", aw_whole_width, ["one head over the whole width"]),
             ("through the layer itself", aw_after_layer, ["layer `layer` itself"])]
FOLD_WRONG += [("scaled along the input channels", fold_input_axis, ["scaled per output channel"]),
               ("conv bias dropped", fold_no_conv_bias, ["dropped conv's own bias"])]
SEP_WRONG += [("softmax over dim 2", sep_softmax_dim2, ["over the P pixel positions"]),
              ("mean of the weighted keys", sep_mean_weighted, ["you average the weighted keys"])]
IOU_WRONG += [("union counted twice", iou_half_dice, ["counts the pixels"]),
              ("the last class left out", iou_last_class_missing, ["last class", "num_classes"])]
ASPP_WRONG += [("the pooling's 1x1 conv skipped", ASPPPoolNoConv, ["skips its 1x1 conv"])]
ASPP_RIGHT += [("an extra ReLU after the dropout (a no-op on ReLU outputs)", ASPPReLUAfter)]
