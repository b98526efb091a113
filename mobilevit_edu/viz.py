"""Figures of chapters 1-3: what unfold cuts out, which input pixels feed one output pixel, what
im2col costs, the separable saving, the ReLU-manifold experiment, attention's scale and cost.

Every `plot_*` function returns a matplotlib Figure with a title and labelled axes (images have
their axes switched off and say what they show in the title); the notebook displays it.
Chapters 4-6 have their own figures in `viz_patches.py`.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle

from .conv import conv_output_size

# colours used across the figures of chapters 1-3
INPUT = "#ffffff"
PADDING = "#d9d9d9"
TAP = "#f28e2b"  # an input pixel read by the chosen output pixel's window
TAP_IN_PADDING = "#f7c59f"  # a window position that falls on the zero padding
OUTPUT = "#d6e6f5"
CHOSEN = "#1f77b4"


def sample_image(size=(56, 48)):
    """A real photograph (Grace Hopper, shipped with matplotlib, so no download) as a float tensor
    (3, H, W) in [0, 1], resized to `size` = (H, W) with Pillow's antialiasing filter."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        image = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.LANCZOS)
        array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (3, H, W)


def _as_image(x):
    """(3, H, W) tensor or (H, W, 3) array -> (H, W, 3) numpy array clipped to [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.permute(1, 2, 0).numpy() if x.dim() == 3 and x.shape[0] in (1, 3) else x.numpy()
    return np.clip(x, 0, 1)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


# ------------------------------------------------------------------------------------------- chapter 1
def plot_unfold_patches(image, kernel_size, stride=None, max_outlines=200, figsize=(9, 4.6)):
    """What `F.unfold(image, kernel_size, stride=stride)` cuts out: the windows drawn on the image
    (left) and the L windows laid out on the output grid, one tile per column of the unfolded matrix
    (right). `image` is (3, H, W) in [0, 1]."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    image = image.detach().cpu().float()
    _, H, W = image.shape
    H_out, W_out = conv_output_size(H, kh, sh), conv_output_size(W, kw, sw)
    cols = torch.nn.functional.unfold(image[None], (kh, kw), stride=(sh, sw))[0]  # (3*kh*kw, L)
    tiles = cols.T.reshape(H_out, W_out, 3, kh, kw)  # column l = window (l // W_out, l % W_out)

    gap = 1
    canvas = np.ones((H_out * (kh + gap) - gap, W_out * (kw + gap) - gap, 3), dtype=np.float32)
    for i in range(H_out):
        for j in range(W_out):
            top, left = i * (kh + gap), j * (kw + gap)
            canvas[top:top + kh, left:left + kw] = _as_image(tiles[i, j])

    fig, (ax_image, ax_tiles) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [W, canvas.shape[1]]})
    ax_image.imshow(_as_image(image), interpolation="nearest")
    shown = 0
    for i in range(H_out):
        for j in range(W_out):
            if shown >= max_outlines:
                break
            ax_image.add_patch(Rectangle((j * sw - 0.5, i * sh - 0.5), kw, kh, fill=False, lw=0.8,
                                         edgecolor="white"))
            shown += 1
    ax_image.set_title(f"input 3×{H}×{W}\nwindows {kh}×{kw}, stride {sh if sh == sw else (sh, sw)}")
    ax_image.set_axis_off()
    ax_tiles.imshow(canvas, interpolation="nearest")
    ax_tiles.set_title(f"the L = {H_out}×{W_out} = {H_out * W_out} windows\n(one per column)")
    ax_tiles.set_axis_off()
    fig.suptitle("What F.unfold cuts out of a photograph")
    fig.tight_layout()
    return fig


def plot_unfold_matrix(cols, kernel_size, channel_names=("R", "G", "B")):
    """The unfolded matrix of one image, (C*k_h*k_w, L), as an image: one column per window, rows
    grouped by input channel (each block holds that channel's k_h*k_w pixels of the window)."""
    cols = cols.detach().cpu()
    if cols.dim() == 3:
        cols = cols[0]
    rows, L = cols.shape
    kh, kw = _pair(kernel_size)
    C = rows // (kh * kw)
    fig, ax = plt.subplots(figsize=(7, 5))
    shown = ax.imshow(cols.numpy(), aspect="auto", cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    for c in range(1, C):
        ax.axhline(c * kh * kw - 0.5, color=TAP, lw=1.5)
    names = list(channel_names)[:C] if len(channel_names) >= C else [f"c{c}" for c in range(C)]
    ax.set_yticks([c * kh * kw + kh * kw / 2 - 0.5 for c in range(C)])
    ax.set_yticklabels([f"{name}: {kh * kw} rows" for name in names])
    ax.set_xlabel(f"column l = window number (L = {L})")
    ax.set_ylabel(f"row = (channel, kernel row, kernel column): C·k·k = {rows}")
    ax.set_title(f"The unfolded matrix (C·k·k, L) = ({rows}, {L}): each column is one window")
    fig.colorbar(shown, ax=ax, label="pixel value")
    fig.tight_layout()
    return fig


def draw_receptive_field(axes, size, kernel_size, stride=1, padding=0, dilation=1, out_pos=None):
    """Draw on `axes` = (ax_in, ax_out) which pixels of a padded `size` = (H, W) input feed one output
    pixel of a convolution (orange: read; pale orange: a window tap that lands on the zero padding),
    and the output grid with that pixel (blue). `out_pos` = (row, col) is clamped to the output;
    default: the middle. Returns the output size (H_out, W_out), or None if the kernel does not fit."""
    H, W = size
    kh, kw = _pair(kernel_size)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    H_out, W_out = conv_output_size(H, kh, sh, ph, dh), conv_output_size(W, kw, sw, pw, dw)
    ax_in, ax_out = axes
    for ax in axes:
        ax.clear()

    padded = np.empty((H + 2 * ph, W + 2 * pw, 3))
    padded[:] = to_rgb(PADDING)
    padded[ph:ph + H, pw:pw + W] = to_rgb(INPUT)
    fits = H_out >= 1 and W_out >= 1
    if fits:
        r, c = out_pos if out_pos is not None else (H_out // 2, W_out // 2)
        r, c = min(max(r, 0), H_out - 1), min(max(c, 0), W_out - 1)
        for i in range(kh):
            for j in range(kw):
                y, x = r * sh + i * dh, c * sw + j * dw  # position in the padded input
                inside = ph <= y < ph + H and pw <= x < pw + W
                padded[y, x] = to_rgb(TAP if inside else TAP_IN_PADDING)
    # input coordinates: row 0, column 0 is the first real pixel; the padding is at -1, -2, ...
    _draw_grid(ax_in, padded, top=-ph, left=-pw)
    ax_in.add_patch(Rectangle((-0.5, -0.5), W, H, fill=False, lw=2, edgecolor="black"))
    ax_in.set_title(f"input {H}×{W}, padding {ph if ph == pw else (ph, pw)} (grey)")
    ax_in.set_xlabel("input column")
    ax_in.set_ylabel("input row")

    if fits:
        out = np.empty((H_out, W_out, 3))
        out[:] = to_rgb(OUTPUT)
        out[r, c] = to_rgb(CHOSEN)
        _draw_grid(ax_out, out)
        ax_out.set_title(f"output {H_out}×{W_out}, pixel ({r}, {c})")
    else:
        ax_out.text(0.5, 0.5, "the kernel does not fit:\nno output", ha="center", va="center",
                    transform=ax_out.transAxes)
        ax_out.set_title("output: none")
    # the output is drawn at the input's scale (same axes extent), so a stride-2 output looks half as big
    ax_out.set_xlim(-0.5, padded.shape[1] - 0.5)
    ax_out.set_ylim(padded.shape[0] - 0.5, -0.5)
    ax_out.set_aspect("equal")
    ax_out.set_xlabel("output column")
    ax_out.set_ylabel("output row")
    return (H_out, W_out) if fits else None


def _draw_grid(ax, rgb, top=0, left=0):
    """Show an (rows, cols, 3) array as cells with thin borders, the top-left cell at (top, left)."""
    rows, cols = rgb.shape[:2]
    ax.imshow(rgb, interpolation="nearest", extent=(left - 0.5, left + cols - 0.5, top + rows - 0.5, top - 0.5))
    ax.hlines(np.arange(top - 0.5, top + rows), left - 0.5, left + cols - 0.5, color="#888888", lw=0.5)
    ax.vlines(np.arange(left - 0.5, left + cols), top - 0.5, top + rows - 0.5, color="#888888", lw=0.5)
    step_x, step_y = max(1, cols // 6), max(1, rows // 6)
    ax.set_xticks(range(0, left + cols, step_x))
    ax.set_yticks(range(0, top + rows, step_y))


def receptive_field_title(kernel_size, stride, padding, dilation, out_size):
    text = f"kernel {kernel_size}×{kernel_size}, stride {stride}, padding {padding}, dilation {dilation}"
    return text + (f" → output {out_size[0]}×{out_size[1]}" if out_size else " → does not fit")


def plot_receptive_field(size=(9, 12), kernel_size=3, stride=1, padding=0, dilation=1, out_pos=None):
    """Figure: which input pixels one output pixel of a convolution reads (see `draw_receptive_field`)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), layout="constrained")
    out_size = draw_receptive_field(axes, size, kernel_size, stride, padding, dilation, out_pos)
    fig.suptitle(receptive_field_title(kernel_size, stride, padding, dilation, out_size))
    return fig


def plot_conv_memory(names, input_bytes, unfolded_bytes, title=None):
    """Bar chart, one pair of bars per convolution: the input's memory and its unfolded matrix's."""
    input_mb, unfolded_mb = np.asarray(input_bytes) / 2**20, np.asarray(unfolded_bytes) / 2**20
    positions = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(positions - 0.2, input_mb, 0.4, label="input C·H·W·4 bytes", color=CHOSEN)
    ax.bar(positions + 0.2, unfolded_mb, 0.4, label="unfolded C·k·k·L·4 bytes", color=TAP)
    ax.set_xticks(positions)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("3×3 convolution (layer of the network)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(title or "im2col's price: memory of the unfolded matrix against the input")
    ax.legend()
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- chapter 2
def plot_separable_saving(channels, measured, kernel_size=3):
    """The saving standard / depthwise-separable (parameters or MACs) against the channel count C
    (C_in = C_out = C), measured points over the formula 1 / (1/C + 1/k^2)."""
    channels = np.asarray(channels, dtype=float)
    k2 = kernel_size**2
    dense = np.geomspace(channels.min(), channels.max(), 200)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(dense, 1 / (1 / dense + 1 / k2), color=CHOSEN, label="formula 1 / (1/C_out + 1/k²)")
    ax.plot(channels, measured, "o", color=TAP, label="counted by torch.utils.flop_counter")
    ax.axhline(k2, color="gray", ls="--", lw=1, label=f"limit k² = {k2}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(channels)
    ax.set_xticklabels([f"{c:g}" for c in channels])
    ax.set_xlabel("channels C (= C_in = C_out)")
    ax.set_ylabel("standard / separable (MACs)")
    ax.set_title(f"How much a depthwise-separable {kernel_size}×{kernel_size} conv saves")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_manifold_embeddings(spiral, recovered, dims, activations, colour=None):
    """The ReLU-manifold experiment of MobileNetV2 (fig. 1): the input spiral, then for each
    activation (rows) and embedding dimension n (columns) the spiral recovered after
    x -> act(T x) -> pinv(T) y. `recovered[act][i]` is an (M, 2) array for `dims[i]`."""
    spiral = np.asarray(spiral)
    colour = np.linspace(0, 1, len(spiral)) if colour is None else colour
    rows, cols = len(activations), len(dims) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.2 * rows + 0.4), squeeze=False)
    for r, act in enumerate(activations):
        for c in range(cols):
            ax = axes[r, c]
            points = spiral if c == 0 else np.asarray(recovered[act][c - 1])
            ax.scatter(points[:, 0], points[:, 1], c=colour, cmap="viridis", s=4)
            ax.set_title("input" if c == 0 else f"{act}, n = {dims[c - 1]}", fontsize=9)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("x₁", fontsize=8, labelpad=1)
            ax.set_ylabel("x₂", fontsize=8, labelpad=1)
    fig.suptitle("A 2-D spiral embedded in n dimensions, passed through the activation and projected back")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- chapter 3
def plot_attention_entropy(dims, entropy_scaled, entropy_unscaled, num_tokens):
    """Mean entropy of attention rows (in nats) against the head size d, with and without the
    1/sqrt(d) scale, between uniform attention (log N) and one-hot (0)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(dims, entropy_scaled, "o-", color=CHOSEN, label="softmax(q·kᵀ / √d)")
    ax.plot(dims, entropy_unscaled, "s-", color=TAP, label="softmax(q·kᵀ), no scale")
    ax.axhline(np.log(num_tokens), color="gray", ls="--", lw=1, label=f"uniform over N = {num_tokens}: log N")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims)
    ax.set_xticklabels([f"{d:g}" for d in dims])
    ax.set_xlabel("head size d")
    ax.set_ylabel("mean entropy of an attention row (nats)")
    ax.set_title("Without the scale, attention saturates as d grows")
    ax.legend()
    fig.tight_layout()
    return fig


def draw_attention_rows(axes, row_scaled, row_unscaled, d):
    """Bars of one attention row with and without the scale, on `axes` = (ax_scaled, ax_unscaled)."""
    for ax, row, name, colour in zip(axes, (row_scaled, row_unscaled), ("scaled by 1/√d", "not scaled"), (CHOSEN, TAP)):
        row = np.asarray(row)
        ax.clear()
        ax.bar(np.arange(len(row)), row, color=colour)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(0, len(row), max(1, len(row) // 8)))
        entropy = float(-(row * np.log(np.clip(row, 1e-30, None))).sum())
        ax.set_title(f"{name}: max {row.max():.2f}, entropy {entropy:.2f}", fontsize=10)
        ax.set_xlabel("key j")
        ax.set_ylabel("attention weight")


def plot_attention_cost(tokens, seconds, fused_seconds, peak_bytes, fused_peak_bytes, head_dim):
    """Chapter 3's cost figure, both panels log-log against the number of tokens N.

    Left: measured time per call of the explicit softmax(QKᵀ/√d)V (`seconds`) and of
    F.scaled_dot_product_attention (`fused_seconds`), each with a line of slope 2 (c·N²·d) through
    its largest point. Right: their measured peak memory (bytes) beside one N×N float32 matrix.
    """
    tokens = np.asarray(tokens, dtype=float)
    matrix_mib = tokens**2 * 4 / 2**20

    def n_squared_line(times):  # c·N²·d in ms, with c chosen so that it passes through the largest point
        return times[-1] * (tokens / tokens[-1]) ** 2 * 1e3

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for times, marker, line, colour, name in [(seconds, "o", "-", TAP, "our softmax(QKᵀ/√d)V"),
                                              (fused_seconds, "^", "--", "gray", "F.scaled_dot_product_attention")]:
        ax_time.loglog(tokens, np.asarray(times) * 1e3, marker, color=colour, label=f"measured: {name}")
        ax_time.loglog(tokens, n_squared_line(times), line, color=colour, lw=1, label="c·N²·d through its largest point")
    ax_time.set(xlabel="tokens N", ylabel="time per call (ms)", title=f"Time, one head, d = {head_dim}")
    ax_mem.loglog(tokens, np.asarray(peak_bytes) / 2**20, "o", color=TAP, label="measured peak: our attention")
    ax_mem.loglog(tokens, np.asarray(fused_peak_bytes) / 2**20, "^", color="gray",
                  label="measured peak: F.scaled_dot_product_attention")
    ax_mem.loglog(tokens, matrix_mib, "-", color=CHOSEN, label="one N×N matrix, N²·4 bytes")
    ax_mem.set(xlabel="tokens N", ylabel="peak memory (MiB)", title="Peak memory, measured by torch.profiler")
    for ax in (ax_time, ax_mem):
        ax.legend(fontsize=8)
        ax.set_xticks([], minor=True)
        ax.set_xticks(tokens, [str(int(n)) for n in tokens])
    fig.suptitle("The cost of attention against the number of tokens")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- chapter 8
# Figures of "what a trained MobileViT sees"; the numbers come from mobilevit_edu.explain.
RED_DOT, BLUE_DOT = "#d62728", "#1f77b4"  # the query pixel and the pixels it attends to (as in chapter 4)
def plot_top_k(image, top, title="What the network sees in the photograph"):
    """The (3, H, W) image beside a bar chart of `top`, a list of (class name, probability)."""
    fig, (ax_image, ax_bars) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ax_image.imshow(_as_image(image))
    ax_image.set_title(f"input {image.shape[-2]}×{image.shape[-1]}")
    ax_image.set_axis_off()
    names = [name.split(",")[0] for name, _ in top][::-1]
    ax_bars.barh(range(len(top)), [p for _, p in top][::-1], color=CHOSEN)
    ax_bars.set_yticks(range(len(top)), names)
    ax_bars.set_xlim(0, 1)
    ax_bars.set_xlabel("probability (softmax of the logits)")
    ax_bars.set_ylabel("ImageNet class")
    ax_bars.set_title(f"top-{len(top)} classes")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_feature_maps(image, features, channels=6, title="Feature maps of each stage for one input"):
    """One row per stage output in `features` (a list of (1, C, h, w) maps, e.g. `model.features(x)`):
    the input, then the `channels` channels with the largest mean absolute activation, each on its own
    colour scale. `image` is (3, H, W) in [0, 1]."""
    rows = len(features)
    fig, axes = plt.subplots(rows, channels + 1, figsize=(1.45 * (channels + 1), 1.5 * rows + 0.5), squeeze=False)
    for r, feature in enumerate(features):
        maps = feature[0].detach()
        strongest = maps.abs().mean(dim=(1, 2)).argsort(descending=True)[:channels]
        axes[r, 0].imshow(_as_image(image))
        axes[r, 0].set_title(f"stages.{r}" if r else "input", fontsize=8)
        axes[r, 0].set_ylabel(f"stages.{r}\n{maps.shape[0]}×{maps.shape[1]}×{maps.shape[2]}", fontsize=8)
        for c, channel in enumerate(strongest.tolist()):
            axes[r, c + 1].imshow(maps[channel].numpy(), cmap="magma", interpolation="nearest")
            axes[r, c + 1].set_title(f"channel {channel}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[r, len(strongest) + 1:]:
            ax.set_visible(False)
        axes[r, 0].set_title("input" if r == 0 else "", fontsize=8)
    axes[-1, 0].set_xlabel("column →", fontsize=8)
    fig.suptitle(title + f" (rows: stages.0 … stages.{rows - 1}; columns: the {channels} most active channels)", fontsize=10)
    fig.tight_layout()
    return fig


def draw_attention_overlay(ax, image, attention, pixel, stride, title=None):
    """The "red dot, blue dots" figure from a trained network: on the (3, H, W) image, the query pixel
    `pixel` = (i, j) of a stage map (red) and the pixels it attends to (blue dots, area proportional to
    the attention weight), `attention` an (h, w) map of weights from `explain.attention_map`; each map
    pixel covers `stride` x `stride` input pixels."""
    ax.clear()
    ax.imshow(_as_image(image), extent=(-0.5, image.shape[-1] - 0.5, image.shape[-2] - 0.5, -0.5))
    weights = attention.detach().numpy()
    h, w = weights.shape
    for k in range(1, h):
        ax.axhline(k * stride - 0.5, color="white", lw=0.3, alpha=0.5)
    for k in range(1, w):
        ax.axvline(k * stride - 0.5, color="white", lw=0.3, alpha=0.5)
    ii, jj = np.nonzero(weights)
    centre = (stride - 1) / 2
    ax.scatter(jj * stride + centre, ii * stride + centre, s=2000 * weights[ii, jj] / max(h, w) ** 0.5 + 4,
               color=BLUE_DOT, alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
    ax.scatter([pixel[1] * stride + centre], [pixel[0] * stride + centre], s=60, color=RED_DOT,
               edgecolors="white", linewidths=0.8, zorder=4, marker="o")
    ax.set_xlim(-0.5, image.shape[-1] - 0.5)
    ax.set_ylim(image.shape[-2] - 0.5, -0.5)
    ax.set_title(title or f"pixel {tuple(pixel)}, largest weight {weights.max():.2f}", fontsize=9)
    ax.set_xlabel("input column")
    ax.set_ylabel("input row")



def plot_attention_overlays(image, panels, suptitle=None, dpi=80):
    """Several `draw_attention_overlay` panels side by side: `panels` is a list of
    (attention, pixel, stride, title)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9), dpi=dpi, layout="constrained")
    for ax, (attention, pixel, stride, title) in zip(np.atleast_1d(axes), panels):
        draw_attention_overlay(ax, image, attention, pixel, stride, title)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def gradient_share_within(erf, centre, radii):
    """The share of an effective receptive field's total |gradient| within Euclidean distance r of
    `centre` (row, column), for each r in `radii`: a curve that rises to 1."""
    erf = torch.as_tensor(erf, dtype=torch.float64)
    H, W = erf.shape
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    distance = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).sqrt()
    total = erf.sum()
    return [float(erf[distance <= r].sum() / total) for r in radii]


def plot_effective_receptive_fields(erfs, centre, title="Effective receptive field of one output pixel"):
    """`erfs`: {name: (H, W) mean |gradient|} from `explain.effective_receptive_field`. One heat map per
    network (each scaled to its own maximum) and, right, the share of the gradient within distance r of
    `centre` (the output pixel's centre in input coordinates)."""
    names = list(erfs)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.9 * (len(names) + 1), 3.8),
                             gridspec_kw={"width_ratios": [1] * len(names) + [1.3]})
    H, W = next(iter(erfs.values())).shape
    farthest = max(np.hypot(r - centre[0], c - centre[1]) for r in (0, H - 1) for c in (0, W - 1))
    radii = np.arange(0, int(np.ceil(farthest)) + 2)  # up to the farthest corner: the curves end at 1
    colours = [CHOSEN, TAP, "gray", "black"]
    for ax, name in zip(axes, names):
        erf = erfs[name].detach().double().numpy()
        shown = ax.imshow(erf / erf.max(), cmap="viridis", vmin=0, vmax=1)
        ax.scatter([centre[1]], [centre[0]], s=50, facecolors="none", edgecolors=RED_DOT, linewidths=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("input column")
        ax.set_ylabel("input row")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="|∂y/∂x| / max")
    for name, colour in zip(names, colours):
        axes[-1].plot(radii, gradient_share_within(erfs[name], centre, radii), color=colour, label=name)
    axes[-1].axhline(0.5, color="gray", lw=0.8, ls="--")
    axes[-1].set_xlabel("distance r from the output pixel's centre (input pixels)")
    axes[-1].set_ylabel("share of Σ|∂y/∂x| within r")
    axes[-1].set_title("How far the gradient reaches")
    axes[-1].set_ylim(0, 1.02)
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
