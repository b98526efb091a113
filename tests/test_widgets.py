"""Every explorer of the course builds, and redraws its figure when a slider moves, under the installed
ipywidgets: 8 in the course's environment, 7.7.1 in the Colab-like one (scripts/check_colab_install.py
runs this file there, with Colab's versions of ipywidgets, matplotlib and numpy).

No kernel here: `plt.show` is replaced by a recorder that keeps the PNG of each figure shown. An
explorer runs its callback once when built (ipywidgets 8) or when first displayed (7: the test calls
`update`, as the frontend's display does), then once for every new slider value. ipywidgets swallows a callback's exception outside a kernel, so a failing callback shows
here as a missing figure.
"""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")

from mobilevit_edu import viz_patches, widgets  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """The PNG bytes of every figure the explorers show, in order."""
    images = []
    plt.close("all")

    def record(*args, **kwargs):
        for number in plt.get_fignums():
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png", dpi=30)
            images.append(buffer.getvalue())
        plt.close("all")

    monkeypatch.setattr(plt, "show", record)
    return images


def sliders(explorer):
    """{argument name: slider} of an `interactive` (its children are the sliders, then the output)."""
    assert isinstance(explorer, ipywidgets.interactive)
    assert isinstance(explorer.children[-1], ipywidgets.Output)
    return {widget._kwarg: widget for widget in explorer.kwargs_widgets}  # _kwarg: in ipywidgets 7 and 8


def redraws(explorer, shown, moves):
    """Displayed, the explorer shows one figure; moving each slider of `moves` ({name: new value}) in
    turn must show exactly one new figure, different from the one before."""
    if not shown:  # ipywidgets 7 runs the callback when the widget is displayed, 8 when it is built
        explorer.update()
    assert len(shown) == 1, "the explorer drew no figure when displayed (did its callback fail?)"
    controls = sliders(explorer)
    for name, value in moves.items():
        before = len(shown)
        controls[name].value = value
        assert len(shown) == before + 1, f"moving {name} to {value} drew no figure (did the callback fail?)"
        assert shown[-1] != shown[-2], f"moving {name} to {value} left the figure unchanged"


def described(explorer):
    return {name: (s.description, s.min, s.max, s.value) for name, s in sliders(explorer).items()
            if isinstance(s, ipywidgets.IntSlider)}


def test_receptive_field_explorer_has_its_six_sliders_and_redraws(shown):
    explorer = widgets.receptive_field_explorer(size=(9, 12))
    assert described(explorer) == {
        "kernel_size": ("kernel", 1, 7, 3), "stride": ("stride", 1, 4, 1), "padding": ("padding", 0, 3, 0),
        "dilation": ("dilation", 1, 3, 1), "out_row": ("output row", 0, 14, 0), "out_col": ("output col", 0, 17, 0)}
    assert all(not s.continuous_update for s in sliders(explorer).values())
    redraws(explorer, shown, {"kernel_size": 5, "dilation": 2, "out_col": 2})


def test_attention_scale_explorer_redraws_for_another_head_size_and_draw(shown):
    explorer = widgets.attention_scale_explorer(num_tokens=16)
    assert described(explorer) == {"log2_d": ("log₂ d", 1, 11, 6), "seed": ("seed", 0, 20, 0)}
    redraws(explorer, shown, {"log2_d": 3, "seed": 1})


def test_attention_explorer_redraws_for_another_stage_head_and_pixel(shown):
    from mobilevit_edu.models import MINI, MobileViT

    model = MobileViT(MINI).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    explorer = widgets.attention_explorer(model, images)
    controls = sliders(explorer)
    assert isinstance(controls["stage"], ipywidgets.SelectionSlider)
    assert list(controls["stage"].options) == [2, 3]  # MINI's MobileViT blocks
    redraws(explorer, shown, {"stage": 3, "head": 0, "col": 3})


def test_patch_explorer_redraws_for_another_map_and_patch_size(shown):
    explorer = viz_patches.patch_explorer(max_size=16)
    assert described(explorer) == {"H": ("H", 2, 16, 8), "W": ("W", 2, 16, 8), "ph": ("patch h", 1, 4, 2),
                                   "pw": ("patch w", 1, 4, 2)}
    redraws(explorer, shown, {"H": 6, "ph": 3})


def test_reach_explorer_redraws_for_another_pixel_and_patch_size(shown):
    explorer = viz_patches.reach_explorer(H=8, W=8)
    redraws(explorer, shown, {"j": 1, "patch": 4})


def test_module_receptive_field_explorer_redraws_for_another_output_pixel(shown):
    conv = torch.nn.Conv2d(2, 2, 3, padding=1)
    explorer = viz_patches.receptive_field_explorer({"conv": conv}, torch.randn(1, 2, 9, 9))
    assert described(explorer) == {"i": ("i", 0, 8, 4), "j": ("j", 0, 8, 4)}
    redraws(explorer, shown, {"j": 7})


def test_the_notebook_progress_bar_is_a_widget_that_counts_to_the_end():
    """Chapter 7's progress bar: tqdm.auto is tqdm.notebook in a kernel, a bar made of ipywidgets."""
    from tqdm.notebook import tqdm

    bar = tqdm(range(5), desc="epochs")
    assert sum(1 for _ in bar) == 5
    progress = [w for w in bar.container.children if isinstance(w, ipywidgets.FloatProgress)]
    assert len(progress) == 1 and progress[0].max == 5 and progress[0].value == 5
