"""Smoke tests of the figure helpers and widgets of chapters 1-3: each figure has a title and
labelled axes (or its axes switched off), and the explorers and animations build."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mobilevit_edu import viz, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_titled_and_labelled(fig):
    assert isinstance(fig, Figure)
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert title or all(ax.get_title() for ax in axes), "the figure has no title"
    for ax in axes:
        if ax.axison:
            assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes: {ax.get_title()!r}"
        else:
            assert ax.get_title(), "an image without axes must say what it shows in its title"


def test_sample_image_is_an_rgb_tensor_in_0_1():
    image = viz.sample_image((28, 24))
    assert image.shape == (3, 28, 24) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1


def test_plot_unfold_patches():
    image = viz.sample_image((24, 16))
    fig = viz.plot_unfold_patches(image, kernel_size=8)
    assert_titled_and_labelled(fig)
    assert "L = 3×2 = 6" in fig.axes[1].get_title()


def test_plot_unfold_matrix():
    image = viz.sample_image((16, 16))
    fig = viz.plot_unfold_matrix(F.unfold(image[None], 4, stride=4), kernel_size=4)
    assert_titled_and_labelled(fig)
    assert "(48, 16)" in fig.axes[0].get_title()


@pytest.mark.parametrize("settings", [(3, 1, 0, 1), (3, 2, 1, 2), (5, 1, 2, 1), (7, 1, 0, 3)])
def test_plot_receptive_field(settings):
    fig = viz.plot_receptive_field((9, 12), *settings)
    assert_titled_and_labelled(fig)


def test_receptive_field_reports_the_output_size_and_a_kernel_that_does_not_fit():
    fig, axes = plt.subplots(1, 2)
    assert viz.draw_receptive_field(axes, (9, 12), 3, stride=2, padding=1) == (5, 6)
    assert viz.draw_receptive_field(axes, (4, 4), 3, dilation=3) is None
    assert "does not fit" in viz.receptive_field_title(3, 1, 0, 3, None)


def test_plot_conv_memory():
    assert_titled_and_labelled(viz.plot_conv_memory(["a", "b"], [100, 200], [900, 450]))


def test_plot_separable_saving():
    channels = [8, 16, 32]
    assert_titled_and_labelled(viz.plot_separable_saving(channels, [1 / (1 / c + 1 / 9) for c in channels]))


def test_plot_manifold_embeddings():
    spiral = np.random.default_rng(0).normal(size=(20, 2))
    recovered = {"ReLU": [spiral, spiral], "SiLU": [spiral, spiral]}
    fig = viz.plot_manifold_embeddings(spiral, recovered, [2, 3], ["ReLU", "SiLU"])
    assert_titled_and_labelled(fig)
    assert len(fig.axes) == 6


def test_plot_attention_entropy():
    assert_titled_and_labelled(viz.plot_attention_entropy([2, 4, 8], [3.5, 3.6, 3.7], [3.0, 2.5, 2.0], num_tokens=64))


def test_plot_attention_cost():
    tokens = [64, 128, 256]
    fig = viz.plot_attention_cost(tokens, [1e-4, 4e-4, 1.6e-3], [1e-4, 2e-4, 8e-4],
                                  [2 * n * n * 4 for n in tokens], [n * 1024 for n in tokens], head_dim=64)
    assert_titled_and_labelled(fig)
    ax_time, ax_mem = fig.axes
    # each time series has its slope-2 line through its largest point
    measured, line = ax_time.lines[0].get_ydata(), ax_time.lines[1].get_ydata()
    assert line[-1] == measured[-1] and line[0] == measured[-1] / 16
    # the reference matrix is N²·4 bytes, in MiB
    assert list(ax_mem.lines[2].get_ydata()) == [n * n * 4 / 2**20 for n in tokens]


def test_attention_row_is_a_distribution_and_saturates_without_the_scale():
    scaled, unscaled = widgets.attention_row(1024, num_tokens=16)
    assert torch.allclose(scaled.sum(), torch.tensor(1.0)) and torch.allclose(unscaled.sum(), torch.tensor(1.0))
    assert unscaled.max() > 0.9 > scaled.max()


@pytest.mark.parametrize("make", [widgets.receptive_field_animation, widgets.attention_scale_animation])
def test_animations_render_to_html_with_at_most_16_frames(make):
    anim = make()
    assert len(list(anim.new_frame_seq())) <= 16
    for i in range(2):  # draw two frames: each frame has a title and labelled axes
        anim._func(i)
        assert_titled_and_labelled(anim._fig)
    html = widgets.animation_html(anim, alt='frames of "the" <figure>').data
    assert "<script" in html and "anim" in html
    # the description reaches readers of the static page, escaped, on the frame and on its container
    assert 'alt="frames of &quot;the&quot; &lt;figure&gt;"' in html
    assert 'role="img" aria-label="frames of &quot;the&quot; &lt;figure&gt;"' in html
    assert ".play_animation()" in html  # it starts on its own


@pytest.mark.parametrize("alt", [None, "", "   "])
def test_animation_html_requires_a_description(alt):
    anim = widgets.receptive_field_animation()
    with pytest.raises(ValueError, match="alt must be a non-empty description"):
        widgets.animation_html(anim, alt=alt)


@pytest.mark.parametrize("make", [widgets.receptive_field_explorer, widgets.attention_scale_explorer])
def test_explorers_build(make):
    explorer = make()
    assert len(explorer.children) >= 3  # sliders and the output area
