"""Figures, widgets and animations of chapters 4-6: patches, the MobileViT block, the networks.

Every picture here is computed from the package's own code (`unfold_patches`, gradients of real
modules, the configs), never drawn by hand. Each widget (ipywidgets, for readers with a kernel) has a
static twin, a matplotlib animation that still moves in the HTML book; show it with
`mobilevit_edu.widgets.animation_html`, which requires a one-sentence description for readers who
cannot see it (it becomes the player's alt text and aria-label) and starts the animation::

    from mobilevit_edu.widgets import animation_html
    animation_html(patch_layout_animation(), alt="The (P, N) table of an 8 by 8 map for ...")

Needs matplotlib (and ipywidgets for the widgets): `pip install mobilevit_edu[viz]`.
"""

import html
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import animation
from matplotlib.colors import LogNorm

from ._validate import pair
from .patches import unfold_patches

POSITION_COLORS = plt.get_cmap("tab20").colors  # colour of pixel position p (cycled beyond 20)
RED, BLUE, SEEN = "#d62728", "#1f77b4", "#ffd8a8"


# ---------------------------------------------------------------- index arithmetic
def padded_size(H, W, patch_size):
    """The size MobileViTBlock resizes an H x W map to: the next multiples of the patch size."""
    ph, pw = pair(patch_size, "patch_size")
    return math.ceil(H / ph) * ph, math.ceil(W / pw) * pw


def pixel_layout(H, W, patch_size):
    """Where each pixel of an H x W map lands in `unfold_patches`' (P, N) layout.

    Returns (position, patch): two (H, W) long tensors, the pixel's position p in its patch and the
    patch's number n. Computed by unfolding a map of pixel numbers, so it is the package's layout.
    """
    numbers = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    table = unfold_patches(numbers, patch_size)[0, :, :, 0].long()  # (P, N): pixel number at (p, n)
    P, N = table.shape
    position = torch.empty(H * W, dtype=torch.long)
    patch = torch.empty(H * W, dtype=torch.long)
    position[table.flatten()] = torch.arange(P).repeat_interleave(N)
    patch[table.flatten()] = torch.arange(N).repeat(P)
    return position.reshape(H, W), patch.reshape(H, W)


def attention_partners(H, W, patch_size, pixel):
    """(H, W) bool: the pixels that `pixel` (i, j) attends to in MobileViT's global representation,
    i.e. the pixels at the same position p in every patch (itself included)."""
    position, _ = pixel_layout(H, W, patch_size)
    return position == position[pixel]


def conv_reach(mask, kernel_size=3):
    """(H, W) bool: every pixel within a k x k window of a pixel in `mask` (what a k x k conv mixes in)."""
    kh, kw = pair(kernel_size, "kernel_size")
    hits = F.conv2d(mask[None, None].double(), torch.ones(1, 1, kh, kw, dtype=torch.float64), padding=(kh // 2, kw // 2))
    return hits[0, 0] > 0


def input_gradient(fn, x, pixel, channel=0):
    """|d fn(x)[0, channel, i, j] / dx| summed over x's channels: an (H, W) map of how much each input
    pixel of the first image moves the output at `pixel` = (i, j). Zero means "not seen"."""
    x = x.detach().clone().requires_grad_(True)
    i, j = pixel
    (grad,) = torch.autograd.grad(fn(x)[0, channel, i, j], x)
    return grad[0].abs().sum(0)


# ---------------------------------------------------------------- drawing
def _grid(ax, H, W, patch_size, colors=None):
    """Pixels as squares (row i from the top), thin pixel lines, thick patch borders."""
    ph, pw = pair(patch_size, "patch_size")
    if colors is not None:
        ax.imshow(colors, extent=(0, W, H, 0), interpolation="nearest")
    for i in range(H + 1):
        ax.plot([0, W], [i, i], color="k", lw=1.6 if i % ph == 0 else 0.3)
    for j in range(W + 1):
        ax.plot([j, j], [0, H], color="k", lw=1.6 if j % pw == 0 else 0.3)
    ax.set_xlim(-0.2, W + 0.2)
    ax.set_ylim(H + 0.2, -0.2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _position_rgb(position):
    return np.array([[POSITION_COLORS[p % len(POSITION_COLORS)] for p in row] for row in position.tolist()])


def draw_patch_grid(ax, H, W, patch_size, numbers=True, title=None):
    """An H x W map: each pixel coloured by its position p in its patch, numbered in row-major order."""
    position, _ = pixel_layout(H, W, patch_size)
    _grid(ax, H, W, patch_size, _position_rgb(position))
    if numbers:
        size = 7 if max(H, W) <= 8 else 5
        for i in range(H):
            for j in range(W):
                ax.text(j + 0.5, i + 0.5, str(i * W + j), ha="center", va="center", fontsize=size)
    ax.set_xlabel(f"W = {W}")
    ax.set_ylabel(f"H = {H}")
    ax.set_title(title or f"feature map {H}×{W}, patches {pair(patch_size, 'patch_size')[0]}×{pair(patch_size, 'patch_size')[1]}")


def draw_unfolded(ax, H, W, patch_size, numbers=True, title=None):
    """The (P, N) table `unfold_patches` makes of a numbered H x W map: row p = position in the patch,
    column n = patch number; each cell shows which pixel lands there."""
    numbers_map = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    table = unfold_patches(numbers_map, patch_size)[0, :, :, 0].long()
    P, N = table.shape
    rgb = np.array([[POSITION_COLORS[p % len(POSITION_COLORS)]] * N for p in range(P)])
    ax.imshow(rgb, extent=(0, N, P, 0), interpolation="nearest", aspect="auto")
    for p in range(P + 1):
        ax.axhline(p, color="k", lw=0.6)
    if numbers and N <= 36:
        size = 7 if N <= 16 else 5
        for p in range(P):
            for n in range(N):
                ax.text(n + 0.5, p + 0.5, str(table[p, n].item()), ha="center", va="center", fontsize=size)
    ax.set_xlim(0, N)
    ax.set_ylim(P, 0)
    ax.set_xticks([n + 0.5 for n in range(N)] if N <= 16 else [0.5, N - 0.5])
    ax.set_xticklabels([str(n) for n in range(N)] if N <= 16 else ["0", str(N - 1)], fontsize=7)
    ax.set_yticks([p + 0.5 for p in range(P)])
    ax.set_yticklabels([str(p) for p in range(P)], fontsize=7)
    ax.set_xlabel(f"patch n (N = {N})")
    ax.set_ylabel(f"position p (P = {P})")
    ax.set_title(title or f"unfold_patches: (P, N) = ({P}, {N}); a row is one attention sequence")


def plot_unfold(H=8, W=8, patch_size=2, numbers=True, dpi=80):
    """The map coloured by pixel position, beside the (P, N) table unfold_patches makes of it.

    When H or W is not a multiple of the patch size, shows the map MobileViTBlock resizes to.
    """
    ph, pw = pair(patch_size, "patch_size")
    Hp, Wp = padded_size(H, W, (ph, pw))
    P, N = ph * pw, (Hp // ph) * (Wp // pw)
    fig, (ax_map, ax_table) = plt.subplots(
        1, 2, figsize=(9, 3.6), dpi=dpi, gridspec_kw={"width_ratios": [1, 1.6]}, layout="constrained"
    )
    note = "" if (Hp, Wp) == (H, W) else f" (resized from {H}×{W})"
    draw_patch_grid(ax_map, Hp, Wp, (ph, pw), numbers and Hp * Wp <= 144, f"{Hp}×{Wp} map{note}, {ph}×{pw} patches")
    draw_unfolded(ax_table, Hp, Wp, (ph, pw), numbers, f"(P, N) = ({P}, {N})")
    return fig


def plot_image_unfold(image, patch_size=2, dpi=80):
    """A real image (3, H, W) in [0, 1] and the P images of N pixels `unfold_patches` makes of it:
    sequence p holds the pixels at position p of every patch, i.e. the image subsampled with offset p."""
    ph, pw = pair(patch_size, "patch_size")
    _, H, W = image.shape
    patches = unfold_patches(image[None], (ph, pw))[0]  # (P, N, 3)
    P = ph * pw
    fig, axes = plt.subplots(1, P + 1, figsize=(2.2 * (P + 1), 2.6), dpi=dpi, layout="constrained")
    axes[0].imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    axes[0].set_title(f"input {H}×{W}", fontsize=9)
    for p in range(P):
        seq = patches[p].reshape(H // ph, W // pw, 3)
        axes[p + 1].imshow(seq.numpy(), interpolation="nearest")
        axes[p + 1].set_title(f"sequence p={p}: N={(H // ph) * (W // pw)}\n(offset {p // pw},{p % pw})", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return fig


def draw_reach(ax, attends, sees, pixel, patch_size, title=None):
    """The red/blue-dot figure: red = `pixel`, blue dots = the pixels it attends to, shaded = the
    pixels that reach it (e.g. through the conv before attention). Masks are (H, W) bool tensors."""
    H, W = attends.shape
    colors = np.ones((H, W, 3))
    if sees is not None:
        colors[sees.numpy()] = plt.matplotlib.colors.to_rgb(SEEN)
    _grid(ax, H, W, patch_size, colors)
    ii, jj = torch.nonzero(attends, as_tuple=True)
    ax.scatter(jj.numpy() + 0.5, ii.numpy() + 0.5, s=max(10, 900 / max(H, W) ** 1.3), color=BLUE, zorder=3)
    ax.scatter([pixel[1] + 0.5], [pixel[0] + 0.5], s=max(14, 1300 / max(H, W) ** 1.3), color=RED, zorder=4)
    seen = "" if sees is None else f"; shaded: reach it ({int(sees.sum())}/{H * W})"
    ax.set_title(title or f"pixel {tuple(pixel)}: attends to {int(attends.sum())} pixels{seen}", fontsize=9)
    ax.set_xlabel("j")
    ax.set_ylabel("i")


def plot_reach(panels, suptitle=None, dpi=80):
    """Several `draw_reach` panels side by side: `panels` is a list of (attends, sees, pixel, patch_size, title)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), dpi=dpi, layout="constrained")
    for ax, (attends, sees, pixel, patch_size, title) in zip(np.atleast_1d(axes), panels):
        draw_reach(ax, attends, sees, pixel, patch_size, title)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_receptive_fields(maps, pixel, suptitle=None, dpi=80):
    """`maps`: {name: (H, W) tensor of |d y / d x|}; each drawn on a log scale, exact zeros white,
    the output pixel circled in red."""
    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 3.8), dpi=dpi, layout="constrained")
    for ax, (name, grad) in zip(np.atleast_1d(axes), maps.items()):
        g = grad.detach().double().numpy()
        nonzero = g[g > 0]
        shown = np.ma.masked_where(g <= 0, g)
        cmap = plt.get_cmap("viridis").with_extremes(bad="white")
        im = ax.imshow(shown, cmap=cmap, norm=LogNorm(vmin=nonzero.min(), vmax=nonzero.max()))
        ax.scatter([pixel[1]], [pixel[0]], s=60, facecolors="none", edgecolors=RED, linewidths=1.5)
        H, W = g.shape
        ax.set_title(f"{name}\n{(g > 0).sum()}/{H * W} input pixels reach y[c=0, {pixel[0]}, {pixel[1]}]", fontsize=9)
        ax.set_xlabel("input column j")
        ax.set_ylabel("input row i")
        fig.colorbar(im, ax=ax, shrink=0.8, label="|∂y/∂x| (log scale)")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# ---------------------------------------------------------------- widgets and their static twins
LAYOUT_FRAMES = [(8, 8, 2, 2), (8, 8, 4, 4), (8, 8, 2, 4), (6, 9, 3, 3), (6, 9, 2, 3), (12, 12, 2, 2),
                 (12, 12, 4, 4), (9, 9, 2, 2)]


def patch_explorer(max_size=16):
    """Sliders for the map size (H, W) and the patch size (ph, pw): the map coloured by position and
    its (P, N) table. Needs a running kernel; `patch_layout_animation` is its static twin."""
    from ipywidgets import IntSlider, interactive

    def show(H=8, W=8, ph=2, pw=2):
        plot_unfold(H, W, (ph, pw))
        plt.show()

    return interactive(
        show,
        H=IntSlider(8, 2, max_size, description="H"),
        W=IntSlider(8, 2, max_size, description="W"),
        ph=IntSlider(2, 1, 4, description="patch h"),
        pw=IntSlider(2, 1, 4, description="patch w"),
    )


def patch_layout_animation(frames=LAYOUT_FRAMES, dpi=60, interval=1600):
    """`patch_explorer` as a matplotlib animation: one frame per (H, W, ph, pw) in `frames`."""
    fig, (ax_map, ax_table) = plt.subplots(
        1, 2, figsize=(9, 3.6), dpi=dpi, gridspec_kw={"width_ratios": [1, 1.6]}, layout="constrained"
    )

    def update(k):
        H, W, ph, pw = frames[k]
        Hp, Wp = padded_size(H, W, (ph, pw))
        note = "" if (Hp, Wp) == (H, W) else f" (resized from {H}×{W})"
        ax_map.clear()
        ax_table.clear()
        draw_patch_grid(ax_map, Hp, Wp, (ph, pw), Hp * Wp <= 144, f"{Hp}×{Wp} map{note}, {ph}×{pw} patches")
        draw_unfolded(ax_table, Hp, Wp, (ph, pw), True, f"(P, N) = ({ph * pw}, {(Hp // ph) * (Wp // pw)})")
        return []

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    plt.close(fig)
    return anim


def _reach_masks(H, W, patch_size, pixel, kernel_size):
    attends = attention_partners(H, W, patch_size, pixel)
    return attends, conv_reach(attends, kernel_size)


def reach_explorer(H=8, W=8, kernel_size=3):
    """Sliders for the pixel (i, j) and the patch size: whom it attends to (blue) and, through the
    k x k conv before attention, which pixels reach it (shaded). Static twin: `reach_animation`."""
    from ipywidgets import IntSlider, interactive

    def show(i=3, j=4, patch=2):
        Hp, Wp = padded_size(H, W, patch)
        attends, sees = _reach_masks(Hp, Wp, patch, (i, j), kernel_size)
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=80, layout="constrained")
        draw_reach(ax, attends, sees, (i, j), patch)
        plt.show()

    return interactive(
        show, i=IntSlider(3, 0, H - 1), j=IntSlider(4, 0, W - 1), patch=IntSlider(2, 1, 4, description="patch")
    )


def reach_animation(H=8, W=8, frames=None, kernel_size=3, dpi=65, interval=1200):
    """The red pixel moves (and the patch size changes): blue = whom it attends to, shaded = who reaches
    it through the k x k conv. `frames` is a list of (i, j, patch_size)."""
    if frames is None:
        frames = [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2), (3, 4, 2), (3, 4, 4), (5, 6, 4), (2, 2, 4)]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=dpi, layout="constrained")

    def update(k):
        i, j, patch = frames[k]
        attends, sees = _reach_masks(H, W, patch, (i, j), kernel_size)
        ax.clear()
        draw_reach(ax, attends, sees, (i, j), patch, f"patch {patch}×{patch}, pixel ({i},{j}):\n"
                   f"attends to {int(attends.sum())}, reached by {int(sees.sum())}/{H * W}")
        return []

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    plt.close(fig)
    return anim


def receptive_field_explorer(fns, x):
    """Sliders for the output pixel (i, j): the receptive field |d y[0, 0, i, j] / dx| of each module
    in `fns` ({name: callable}) on input x (1, C, H, W). Static twin: `receptive_field_animation`."""
    from ipywidgets import IntSlider, interactive

    H, W = x.shape[-2:]

    def show(i=H // 2, j=W // 2):
        plot_receptive_fields({name: input_gradient(fn, x, (i, j)) for name, fn in fns.items()}, (i, j))
        plt.show()

    return interactive(show, i=IntSlider(H // 2, 0, H - 1), j=IntSlider(W // 2, 0, W - 1))


def receptive_field_animation(fns, x, pixels, dpi=65, interval=1200):
    """`receptive_field_explorer` as an animation: one frame per output pixel in `pixels`."""
    names = list(fns)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(axes)
    grads = [[input_gradient(fns[name], x, pixel).double().numpy() for name in names] for pixel in pixels]
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")

    def update(k):
        pixel = pixels[k]
        for ax, name, g in zip(axes, names, grads[k]):
            ax.clear()
            nonzero = g[g > 0]
            ax.imshow(np.ma.masked_where(g <= 0, g), cmap=cmap, norm=LogNorm(vmin=nonzero.min(), vmax=nonzero.max()))
            ax.scatter([pixel[1]], [pixel[0]], s=60, facecolors="none", edgecolors=RED, linewidths=1.5)
            ax.set_title(f"{name}: {(g > 0).sum()}/{g.size} pixels reach {tuple(pixel)}", fontsize=9)
            ax.set_xlabel("input column j")
            ax.set_ylabel("input row i")
        return []

    anim = animation.FuncAnimation(fig, update, frames=len(pixels), interval=interval, blit=False)
    plt.close(fig)
    return anim


# ---------------------------------------------------------------- chapter 6: the paper's table, from data
def _stage_description(stage):
    mv2 = f"MV2 ×{stage.num_mv2}" + (f" (first stride {stage.stride})" if stage.stride != 1 and stage.num_mv2 > 1
                                      else f", stride {stage.stride}")
    return mv2 + (f" + MobileViT block (L={stage.depth})" if stage.transformer_dim is not None else "")


def architecture_table_html(configs, input_size=256, parameters=None):
    """The paper's architecture table (Mehta & Rastegari 2022) built from
    `configs` (MobileViTConfig objects): one column per network, one row per layer group, the output
    size computed from the strides. `parameters`: optional {config name: count} for a last row.
    Returns an HTML string (display it with IPython.display.HTML)."""
    configs = list(configs)
    first = configs[0]
    for cfg in configs[1:]:
        same = [(s.num_mv2, s.stride, s.transformer_dim is None, s.depth) for s in cfg.stages]
        if same != [(s.num_mv2, s.stride, s.transformer_dim is None, s.depth) for s in first.stages]:
            raise ValueError(f"{cfg.name} has another stage layout than {first.name}: one table cannot show both")
    size = input_size // 2
    rows = [("input", f"{input_size}×{input_size}", [str(c.in_chans) for c in configs])]
    rows.append(("stem: 3×3 conv, stride 2", f"{size}×{size}", [str(c.stem_channels) for c in configs]))
    for k, stage in enumerate(first.stages):
        size //= stage.stride
        cells = []
        for cfg in configs:
            s = cfg.stages[k]
            cells.append(f"{s.channels}" + (f" (d={s.transformer_dim})" if s.transformer_dim is not None else ""))
        rows.append((f"stages.{k}: {_stage_description(stage)}", f"{size}×{size}", cells))
    rows.append(("1×1 conv", f"{size}×{size}", [str(c.final_channels) for c in configs]))
    rows.append(("global pool → linear", "1×1", [str(c.num_classes) for c in configs]))
    rows.append(("MV2 expansion ratio", "", [f"{c.expand_ratio:g}" for c in configs]))
    if parameters is not None:
        rows.append(("parameters", "", [f"{parameters[c.name]:,}" for c in configs]))
    table = html_table(["layer", "output size"] + [c.name for c in configs],
                       [[layer, out] + cells for layer, out, cells in rows])
    return (
        table + "<p style='font-size:smaller'>Channels per network; d = transformer width of the stage's"
        " MobileViT block, L = its number of transformer layers.</p>"
    )


_CELL = "padding:2px 8px;text-align:{align};"


def html_table(header, rows):
    """A small HTML table from a header (list of str) and rows (lists of values): the first column
    left-aligned, the others right-aligned, a rule under the header. Deterministic text, so nbval
    can compare it."""
    esc = html.escape

    def cells(values, tag, extra=""):
        return "".join(
            f"<{tag} style='{_CELL.format(align='left' if k == 0 else 'right;white-space:nowrap')}{extra}'>"
            f"{esc(str(v))}</{tag}>"
            for k, v in enumerate(values)
        )

    head = cells(header, "th", "border-bottom:1px solid #888;")
    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return (
        "<table style='border-collapse:collapse;margin:0.5em 0;font-size:0.9em'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def plot_cost_comparison(names, macs, latency_ms, params, dpi=80):
    """Bars of multiply-adds and measured latency side by side, and latency against multiply-adds."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=dpi, layout="constrained")
    x = np.arange(len(names))
    colors = [POSITION_COLORS[2 * k % len(POSITION_COLORS)] for k in range(len(names))]
    axes[0].bar(x, np.array(macs) / 1e6, color=colors)
    axes[0].set_ylabel("multiply-adds (M)")
    axes[0].set_title("multiply-adds, one image")
    axes[1].bar(x, latency_ms, color=colors)
    axes[1].set_ylabel("latency (ms, median)")
    axes[1].set_title("CPU latency, batch 1 (this machine)")
    for ax in axes[:2]:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
        ax.set_xlabel("network")
    axes[2].scatter(np.array(macs) / 1e6, latency_ms, s=np.array(params) / 3e4, color=colors)
    for name, m, t in zip(names, macs, latency_ms):
        axes[2].annotate(name, (m / 1e6, t), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axes[2].set_xlabel("multiply-adds (M)")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_title("latency against multiply-adds\n(marker area ∝ parameters)")
    return fig
