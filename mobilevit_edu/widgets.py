"""Interactive explorers of chapters 1-3, each with a static twin that still moves in the book.

- `receptive_field_explorer()` / `receptive_field_animation()` (chapter 1): kernel size, stride,
  padding and dilation against which input pixels feed one output pixel, and the output size.
- `attention_scale_explorer()` / `attention_scale_animation()` (chapter 3): one attention row for
  a head size d, with and without the 1/sqrt(d) scale.

The explorers need a running kernel (Jupyter, Colab); the animations are matplotlib
`FuncAnimation`s: show them with `animation_html(anim, alt="what it shows")`, which renders the
frames into the page. The explorers use only what ipywidgets 7.7 and 8 both have (`interactive`,
`IntSlider`, `SelectionSlider`): Colab ships ipywidgets 7.7.1 and shows ipywidgets 8 as a
third-party widget, so the course works with either (tests/test_widgets.py runs under both).
"""

import re
from html import escape as html_escape

import matplotlib.pyplot as plt
import torch
from matplotlib.animation import FuncAnimation

from .viz import draw_attention_rows, draw_receptive_field, plot_receptive_field, receptive_field_title

# (kernel_size, stride, padding, dilation, (out_row, out_col)) for the static animation
RECEPTIVE_FIELD_TOUR = [
    (3, 1, 0, 1, (0, 0)),
    (3, 1, 0, 1, (0, 1)),
    (3, 1, 0, 1, (1, 1)),
    (3, 1, 0, 1, (6, 9)),
    (3, 1, 1, 1, (0, 0)),  # "same" padding: the output keeps the input's size
    (3, 1, 1, 1, (4, 6)),
    (3, 2, 1, 1, (0, 0)),  # stride 2 halves the output
    (3, 2, 1, 1, (0, 1)),
    (3, 2, 1, 1, (2, 3)),
    (3, 1, 2, 2, (0, 0)),  # dilation 2: a 5x5 footprint with 9 taps
    (3, 1, 2, 2, (4, 6)),
    (5, 1, 2, 1, (4, 6)),
    (5, 2, 2, 1, (2, 3)),
    (1, 1, 0, 1, (4, 6)),  # 1x1: one pixel, all channels
    (4, 4, 0, 1, (1, 1)),  # kernel = stride: non-overlapping patches, ViT's patch embedding
]


def animation_html(anim, alt, autoplay=True):
    """The animation as HTML with its frames inline (`to_jshtml`), for the static book; closes the figure.

    `alt` describes the animation for readers who cannot see it: it becomes the frame image's `alt`
    and the `aria-label` of a `role="img"` container around the player.
    With `autoplay`, it starts playing (in a loop) as soon as the page has loaded, instead of
    waiting for the reader to press play; the controls still pause and step it.
    """
    from IPython.display import HTML

    if not isinstance(alt, str) or not alt.strip():
        raise ValueError(f"alt must be a non-empty description of the animation, got {alt!r}")
    html = anim.to_jshtml()
    plt.close(anim._fig)
    label = html_escape(alt.strip(), quote=True)
    html = re.sub(r"<img id=", f'<img alt="{label}" id=', html, count=1)
    html = f'<div class="mobilevit-animation" role="img" aria-label="{label}">\n{html}\n</div>'
    match = re.search(r"\banim([0-9a-f]{32})\b", html)
    if autoplay and match:
        # to_jshtml creates the JS object `anim<id>` in a setTimeout(..., 0); start it after that
        html += (
            "\n<script language=\"javascript\">\n"
            f"  setTimeout(function() {{ if (typeof anim{match.group(1)} !== 'undefined')"
            f" {{ anim{match.group(1)}.play_animation(); }} }}, 500);\n"
            "</script>\n"
        )
    return HTML(html)


def receptive_field_explorer(size=(9, 12)):
    """Sliders for kernel size, stride, padding, dilation and the output pixel; redraws the figure."""
    import ipywidgets as widgets

    def show(kernel_size=3, stride=1, padding=0, dilation=1, out_row=0, out_col=0):
        fig = plot_receptive_field(size, kernel_size, stride, padding, dilation, (out_row, out_col))
        plt.show()

    slider = dict(continuous_update=False)
    return widgets.interactive(
        show,
        kernel_size=widgets.IntSlider(3, 1, 7, description="kernel", **slider),
        stride=widgets.IntSlider(1, 1, 4, description="stride", **slider),
        padding=widgets.IntSlider(0, 0, 3, description="padding", **slider),
        dilation=widgets.IntSlider(1, 1, 3, description="dilation", **slider),
        out_row=widgets.IntSlider(0, 0, size[0] + 5, description="output row", **slider),
        out_col=widgets.IntSlider(0, 0, size[1] + 5, description="output col", **slider),
    )


def receptive_field_animation(size=(9, 12), tour=RECEPTIVE_FIELD_TOUR, interval=1200, dpi=65):
    """The explorer's static twin: a FuncAnimation that steps through `tour` (see RECEPTIVE_FIELD_TOUR)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), dpi=dpi, layout="constrained")

    def frame(i):
        kernel_size, stride, padding, dilation, out_pos = tour[i]
        out_size = draw_receptive_field(axes, size, kernel_size, stride, padding, dilation, out_pos)
        fig.suptitle(receptive_field_title(kernel_size, stride, padding, dilation, out_size))
        return list(axes)

    frame(0)
    return FuncAnimation(fig, frame, frames=len(tour), interval=interval)


# ------------------------------------------------------------------------------------------- chapter 3
def attention_row(d, num_tokens=16, seed=0):
    """One attention row for random q, k with N(0, 1) entries of size d: (scaled, unscaled), each (N,)."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(d, generator=generator)
    k = torch.randn(num_tokens, d, generator=generator)
    scores = k @ q  # (N,), each with variance d
    return (scores / d**0.5).softmax(0), scores.softmax(0)


def attention_scale_explorer(num_tokens=16):
    """Slider for the head size d (and the random draw): one attention row with and without the scale."""
    import ipywidgets as widgets

    def show(log2_d=6, seed=0):
        d = 2**log2_d
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
        draw_attention_rows(axes, *attention_row(d, num_tokens, seed), d)
        fig.suptitle(f"one query against {num_tokens} keys, head size d = {d}")
        plt.show()

    slider = dict(continuous_update=False)
    return widgets.interactive(
        show,
        log2_d=widgets.IntSlider(6, 1, 11, description="log₂ d", **slider),
        seed=widgets.IntSlider(0, 0, 20, description="seed", **slider),  # "random draw" is cut off in JupyterLab
    )


def attention_scale_animation(num_tokens=16, dims=(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), interval=1000, dpi=65):
    """The explorer's static twin: the head size d grows frame by frame."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=dpi, layout="constrained")

    def frame(i):
        d = dims[i]
        draw_attention_rows(axes, *attention_row(d, num_tokens), d)
        fig.suptitle(f"one query against {num_tokens} keys, head size d = {d}")
        return list(axes)

    frame(0)
    return FuncAnimation(fig, frame, frames=len(dims), interval=interval)


# ------------------------------------------------------------------------------------------- chapter 8
def _attention_panel(ax, model, image, stage, layer, head, pixel):
    """Draw whom `pixel` of stage `stage`'s MobileViT block attends to (layer, head; head None = mean)."""
    from .explain import attention_map, local_representation, mobilevit_blocks, transformer_grid
    from .viz import draw_attention_overlay

    block = mobilevit_blocks(model)[stage]
    y = local_representation(model, image[None], stage)
    grid = transformer_grid(block, y)
    pixel = (min(pixel[0], grid[0] - 1), min(pixel[1], grid[1] - 1))
    amap = attention_map(block, y, pixel, layer=layer, head=head)
    stride = image.shape[-2] // grid[0]
    which = "mean of the heads" if head is None else f"head {head}"
    draw_attention_overlay(ax, image, amap, pixel, stride,
                           f"stages.{stage}, layer {layer}, {which}\npixel {pixel} of {grid[0]}×{grid[1]}:"
                           f" largest weight {float(amap.max()):.2f}")


def attention_explorer(model, images):
    """Sliders for the image, the MobileViT block (stage), its transformer layer, the head (-1: mean of
    the heads) and the pixel: whom the pixel attends to, drawn on the image. `images` is (B, 3, H, W).
    Needs a running kernel; `attention_animation` is its static twin."""
    import ipywidgets as widgets

    from .explain import mobilevit_blocks

    blocks = mobilevit_blocks(model)
    stages = sorted(blocks)
    max_layers = max(len(b.transformer) for b in blocks.values())
    max_heads = max(b.transformer[0].attn.num_heads for b in blocks.values())

    def show(image=0, stage=stages[0], layer=0, head=-1, row=0, col=0):
        fig, ax = plt.subplots(figsize=(4.6, 4.8), dpi=80, layout="constrained")
        layer = min(layer, len(blocks[stage].transformer) - 1)
        _attention_panel(ax, model, images[image], stage, layer, None if head < 0 else head, (row, col))
        plt.show()

    slider = dict(continuous_update=False)
    return widgets.interactive(
        show,
        image=widgets.IntSlider(0, 0, len(images) - 1, description="image", **slider),
        stage=widgets.SelectionSlider(options=stages, value=stages[0], description="stage", **slider),
        layer=widgets.IntSlider(0, 0, max_layers - 1, description="layer", **slider),
        head=widgets.IntSlider(-1, -1, max_heads - 1, description="head (-1: mean)", **slider),
        row=widgets.IntSlider(0, 0, images.shape[-2] - 1, description="pixel row", **slider),
        col=widgets.IntSlider(0, 0, images.shape[-1] - 1, description="pixel col", **slider),
    )


def attention_animation(model, image, frames, interval=1400, dpi=65):
    """`attention_explorer`'s static twin for one (3, H, W) image: one frame per (stage, layer, head, pixel)
    in `frames` (head None: the mean of the heads)."""
    fig, ax = plt.subplots(figsize=(4.4, 4.6), dpi=dpi, layout="constrained")

    def frame(k):
        stage, layer, head, pixel = frames[k]
        _attention_panel(ax, model, image, stage, layer, head, pixel)
        return [ax]

    frame(0)
    return FuncAnimation(fig, frame, frames=len(frames), interval=interval)
