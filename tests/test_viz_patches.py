"""Figures, widgets and animations of chapters 4-6: what they compute is right, and they draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import mobilevit_edu as me  # noqa: E402
from mobilevit_edu import viz_patches as vp  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_pixel_layout_follows_unfold_patches():
    position, patch = vp.pixel_layout(4, 6, (2, 3))
    # pixel (i, j): position (i % 2) * 3 + j % 3 in patch (i // 2) * 2 + j // 3
    for i in range(4):
        for j in range(6):
            assert position[i, j] == (i % 2) * 3 + j % 3
            assert patch[i, j] == (i // 2) * 2 + j // 3


def test_attention_partners_are_the_same_position_in_every_patch():
    mask = vp.attention_partners(8, 8, 2, (3, 4))
    assert mask.sum() == 16
    assert all(mask[i, j] for i in range(1, 8, 2) for j in range(0, 8, 2))


def test_attention_partners_equal_the_gradient_of_the_global_representation():
    torch.manual_seed(0)
    block = me.MobileViTBlock(8, 16, depth=1).eval()
    x = torch.randn(1, 16, 8, 8)
    for patch in (2, 4):
        block.patch_size = (patch, patch)
        seen = vp.input_gradient(block.global_rep, x, (3, 4)) > 0
        assert torch.equal(seen, vp.attention_partners(8, 8, patch, (3, 4)))
        through_conv = vp.input_gradient(lambda t: block.global_rep(block.local_rep(t)), x[:, :8], (3, 4)) > 0
        assert torch.equal(through_conv, vp.conv_reach(vp.attention_partners(8, 8, patch, (3, 4)), 3))


def test_conv_reach_of_a_2x2_lattice_covers_the_map_but_a_4x4_one_does_not():
    assert vp.conv_reach(vp.attention_partners(8, 8, 2, (3, 4))).all()
    assert vp.conv_reach(vp.attention_partners(8, 8, 4, (3, 4))).sum() == 25


def test_padded_size():
    assert vp.padded_size(7, 9, 2) == (8, 10)
    assert vp.padded_size(8, 9, (2, 3)) == (8, 9)


def test_figures_draw():
    assert len(vp.plot_unfold(8, 8, 2).axes) == 2
    assert "resized from 7×9" in vp.plot_unfold(7, 9, 2).axes[0].get_title()
    assert len(vp.plot_image_unfold(torch.rand(3, 8, 12), 2).axes) == 5
    a = vp.attention_partners(6, 6, 2, (1, 1))
    assert len(vp.plot_reach([(a, None, (1, 1), 2, None), (a, vp.conv_reach(a), (1, 1), 2, "t")]).axes) == 2
    maps = {"a": torch.rand(6, 6), "b": torch.zeros(6, 6).index_fill_(0, torch.tensor([2]), 1.0)}
    assert len(vp.plot_receptive_fields(maps, (2, 2)).axes) == 4  # two images, two colour bars
    fig = vp.plot_cost_comparison(["a", "b"], [1e6, 2e6], [1.0, 3.0], [1e5, 2e5])
    assert len(fig.axes) == 3


def test_animations_have_few_small_frames():
    anim = vp.patch_layout_animation(frames=vp.LAYOUT_FRAMES[:2])
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == 2
    assert len(vp.LAYOUT_FRAMES) <= 16
    anim = vp.reach_animation(frames=[(0, 0, 2), (3, 4, 4)])
    assert anim.to_jshtml().count("data:image/png;base64") == 2
    torch.manual_seed(0)
    block = me.MobileViTBlock(4, 8, depth=1).eval()
    anim = vp.receptive_field_animation({"block": block}, torch.randn(1, 4, 6, 6), [(0, 0), (3, 3)])
    assert anim.to_jshtml().count("data:image/png;base64") == 2


def test_widgets_build():
    pytest.importorskip("ipywidgets")
    assert len(vp.patch_explorer().children) == 5  # four sliders and the output
    assert len(vp.reach_explorer().children) == 4
    torch.manual_seed(0)
    block = me.MobileViTBlock(4, 8, depth=1).eval()
    assert len(vp.receptive_field_explorer({"block": block}, torch.randn(1, 4, 6, 6)).children) == 3


def test_architecture_table_is_built_from_the_configs():
    html = vp.architecture_table_html([me.XXS, me.XS, me.S], parameters={"mobilevit_xxs": 1, "mobilevit_xs": 2, "mobilevit_s": 3})
    for text in ("48 (d=64)", "96 (d=144)", "160 (d=240)", ">320</td>", ">640</td>", "8×8", "MV2 ×3 (first stride 2)"):
        assert text in html
    assert html.count("<tr>") == 12  # header + input, stem, 5 stages, 1x1 conv, pool, expansion, parameters


def test_architecture_table_refuses_configs_with_different_layouts():
    import dataclasses

    other = dataclasses.replace(me.XXS, stages=me.XXS.stages[:4] + (dataclasses.replace(me.XXS.stages[4], depth=1),))
    with pytest.raises(ValueError, match="another stage layout"):
        vp.architecture_table_html([me.XXS, other])


def test_html_table_escapes():
    assert "&lt;b&gt;" in vp.html_table(["x"], [["<b>"]])


def test_animations_render_with_alt_text_through_animation_html():
    from mobilevit_edu.widgets import animation_html

    html = animation_html(vp.patch_layout_animation(frames=vp.LAYOUT_FRAMES[:2]), alt="two layouts").data
    assert 'role="img" aria-label="two layouts"' in html and '<img alt="two layouts"' in html
    assert html.count("data:image/png;base64") == 2
