"""Exercise 8's checks and the package code they compare with (mobilevit_edu.explain): the right answer
passes, a stub is "not implemented yet", and hand-written wrong answers are rejected with the hint that
names the mistake (softmax axis or none, patches and positions swapped, the matrix's column, ...)."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import mobilevit_edu as me
from mobilevit_edu import checks, explain
from mobilevit_edu.models import MobileViT, MobileViTConfig, StageConfig

from _checking import passes, rejects, stub


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are small: one thread is as fast, and much steadier when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ hand-written attention_weights
def tokens_of(block, y, across="patches"):
    pattern = "b p n d -> (b p) n d" if across == "patches" else "b p n d -> (b n) p d"
    return rearrange(me.unfold_patches(y, block.patch_size), pattern)


def make_weights(across="patches", softmax_dim=-1, softmax=True, scale="head", norm=True, earlier_layers=True):
    """An attention_weights(block, y, layer) written out by hand, with one switchable mistake."""

    def attention_weights(block, y, layer):
        tokens = tokens_of(block, y, across)
        if earlier_layers:
            for earlier in block.transformer[:layer]:
                tokens = earlier(tokens)
        this = block.transformer[layer]
        x = this.norm1(tokens) if norm else tokens
        q, k, _ = rearrange(this.attn.qkv(x), "b n (three h e) -> three b h n e", three=3, h=this.attn.num_heads)
        scores = q @ k.transpose(-2, -1)
        if scale == "head":
            scores = scores / q.shape[-1] ** 0.5
        elif scale == "d":
            scores = scores / x.shape[-1] ** 0.5
        return scores.softmax(dim=softmax_dim) if softmax else scores

    return attention_weights


def test_attention_weights_right_answer_passes(capsys):
    passes(checks.check_attention_weights, make_weights(), capsys)


def test_attention_weights_stub_is_not_implemented_yet(capsys):
    checks.check_attention_weights(stub)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, fragment", [
    (dict(softmax=False), "you forgot the softmax"),
    (dict(softmax_dim=-2), "softmax runs over the wrong axis"),
    (dict(scale=None), "you forgot the scale"),
    (dict(scale="d"), "head size e = d / heads, not the model width d"),
    (dict(norm=False), "pre-norm"),
    (dict(earlier_layers=False), "layers 0 .. layer-1"),
    (dict(across="pixels"), "patches and positions swapped"),
])
def test_attention_weights_mistakes_are_named(mistake, fragment):
    rejects(checks.check_attention_weights, make_weights(**mistake), fragment)


def test_attention_weights_keys_as_queries_is_rejected():
    """k @ qᵀ: the transposed scores; a softmax over its rows is no answer the check may accept."""

    def transposed(block, y, layer):
        return make_weights()(block, y, layer).transpose(-2, -1)

    rejects(checks.check_attention_weights, transposed, "the values are not")


def test_attention_weights_shape_hints():
    rejects(checks.check_attention_weights, lambda b, y, l: make_weights()(b, y, l)[None], "drop the batch dimension")
    rejects(checks.check_attention_weights, lambda b, y, l: make_weights()(b, y, l).mean(1), "keep the heads apart")


def test_attention_weights_crash_names_the_case():
    def crashes(block, y, layer):
        return block.transformer[layer].attn.qkv(y)  # (1, d, H, W) straight into a Linear: shapes do not fit

    rejects(checks.check_attention_weights, crashes, "case '8x8 map, 2x2 patches, layer 0'", "your code raised")


# ------------------------------------------------------------------ hand-written attention_map
def _pair(patch):
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


def make_map(row=True, p_order="rows", n_order="rows", place_at="p", swap=False, heads="one"):
    """An attention_map(weights, pixel, size, patch_size, head) by hand, with one switchable mistake."""

    def attention_map(weights, pixel, size, patch_size, head):
        (H, W), (ph, pw), (i, j) = size, _pair(patch_size), pixel
        p = (i % ph) * pw + (j % pw) if p_order == "rows" else (j % pw) * ph + (i % ph)
        n = (i // ph) * (W // pw) + (j // pw) if n_order == "rows" else (j // pw) * (H // ph) + (i // ph)
        if swap:
            p, n = n, p
        chosen = weights[p, head] if heads == "one" else weights[p].mean(0)  # (N, N)
        weights_of_patches = chosen[n] if row else chosen[:, n]  # (N,)
        out = torch.zeros(H, W)
        grid = weights_of_patches.reshape(H // ph, W // pw)
        if place_at == "p":
            out[p // pw::ph, p % pw::pw] = grid
        else:
            out[0::ph, 0::pw] = grid
        return out

    return attention_map


def test_attention_map_right_answer_passes(capsys):
    passes(checks.check_attention_map, make_map(), capsys)


def test_attention_map_stub_is_not_implemented_yet(capsys):
    checks.check_attention_map(stub)
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, fragment", [
    (dict(row=False), "wrong axis: you took column n"),
    (dict(heads="mean"), "you averaged the heads"),
    (dict(place_at="first pixel"), "same position p"),
    (dict(p_order="columns"), "position inside the patch is numbered row by row"),
    (dict(n_order="columns"), "patches are numbered row by row"),
    (dict(swap=True), "patches and positions swapped"),
])
def test_attention_map_mistakes_are_named(mistake, fragment):
    rejects(checks.check_attention_map, make_map(**mistake), fragment)


def test_attention_map_returns_only_the_row():
    def row_only(weights, pixel, size, patch_size, head):
        (H, W), (ph, pw), (i, j) = size, _pair(patch_size), pixel
        p, n = (i % ph) * pw + (j % pw), (i // ph) * (W // pw) + (j // pw)
        return weights[p, head, n]

    rejects(checks.check_attention_map, row_only, "place each on its patch's pixel at position p")


def test_show_attention_maps_waits_for_both_functions(capsys):
    import matplotlib

    matplotlib.use("Agg")
    torch.manual_seed(0)
    block = me.MobileViTBlock(8, 16, 1).eval()
    y, image = torch.randn(1, 16, 4, 4), torch.rand(3, 32, 32)
    assert checks.show_attention_maps(stub, make_map(), block, y, image, (1, 2), 8) is None
    assert "not implemented yet" in capsys.readouterr().out
    fig = checks.show_attention_maps(make_weights(), make_map(), block, y, image, (1, 2), 8)
    assert len(fig.axes) == 4 and "head 0" in fig.axes[0].get_title()


# ------------------------------------------------------------------ the package code behind the checks
def small_mobilevit():
    config = MobileViTConfig(
        name="test", stages=(StageConfig(8, 1, 1), StageConfig(16, 1, 2), StageConfig(16, 1, 2, 24, 2),
                             StageConfig(24, 1, 2, 32, 2), StageConfig(32, 1, 2, 32, 1)),
        expand_ratio=2.0, final_channels=64, num_classes=2)
    torch.manual_seed(0)
    return checks.randomize_batchnorm(MobileViT(config), torch.Generator().manual_seed(0)).eval()


def test_block_attention_is_what_the_forward_pass_uses(monkeypatch):
    """explain.block_attention recomputes, from the block's modules, exactly the attention that the
    fused kernel applies during the forward pass (captured from F.scaled_dot_product_attention)."""
    model = small_mobilevit()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    captured, fused = [], F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        captured.append((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1))
        return fused(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        model.features(x)
    monkeypatch.undo()
    blocks = explain.mobilevit_blocks(model)
    assert sorted(blocks) == [2, 3, 4]
    calls = iter(captured)
    for stage, block in blocks.items():
        y = explain.local_representation(model, x, stage)
        for layer in range(len(block.transformer)):
            expected = next(calls)  # (B*P, heads, N, N)
            actual = explain.block_attention(block, y, layer)
            torch.testing.assert_close(actual.flatten(0, 1), expected, atol=1e-6, rtol=1e-5)


def test_attention_map_sits_on_one_position_and_sums_to_one():
    model = small_mobilevit()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    y = explain.local_representation(model, x, 2)  # (1, 24, 8, 8)
    block = explain.mobilevit_blocks(model)[2]
    for pixel in [(0, 0), (3, 5), (7, 2)]:
        amap = explain.attention_map(block, y, pixel, layer=1, head=2)
        assert amap.shape == (8, 8) and float(amap.sum()) == pytest.approx(1.0, abs=1e-5)
        support = amap > 0
        assert support.sum() == 16
        assert support[pixel[0] % 2::2, pixel[1] % 2::2].all()  # exactly the pixels at the pixel's position p
    with pytest.raises(ValueError, match="outside the 8x8 map"):
        explain.attention_map(block, y, (8, 0))
    with pytest.raises(ValueError, match="head must be in 0..3"):
        explain.attention_map(block, y, (0, 0), head=4)
    with pytest.raises(ValueError, match="layer must be in 0..1"):
        explain.attention_map(block, y, (0, 0), layer=2)
    with pytest.raises(ValueError, match=r"stages with a MobileViT block, \[2, 3, 4\]"):
        explain.local_representation(model, x, 1)


def test_attention_map_on_a_resized_map():
    """A 5x7 map is resized to 6x8 before the transformer: the map is given on that grid."""
    torch.manual_seed(0)
    block = me.MobileViTBlock(8, 16, 1).eval()
    y = torch.randn(1, 16, 5, 7)
    amap = explain.attention_map(block, y, (5, 7))
    assert amap.shape == (6, 8) and float(amap.sum()) == pytest.approx(1.0, abs=1e-5)


def test_effective_receptive_field_of_a_convolution():
    """A 3x3 convolution's output pixel depends on exactly its 3x3 window, with |weight| summed over channels."""
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    images = torch.rand(3, 2, 9, 9)
    erf = explain.effective_receptive_field(conv, images, pixel=(4, 6))
    expected = torch.zeros(9, 9)
    # d(sum over output channels)/dx: per input channel c the kernel summed over outputs, then |.| summed over c
    expected[3:6, 5:8] = sum(conv.weight.detach()[:, c].sum(0).abs() for c in range(2))
    torch.testing.assert_close(erf, expected)
    centre = explain.effective_receptive_field(conv, images)
    assert centre[3:6, 3:6].gt(0).all() and centre.gt(0).sum() == 9
    with pytest.raises(ValueError, match=r"\(B, C, h, w\) map"):
        explain.effective_receptive_field(lambda x: x.mean(dim=(2, 3)), images)


# ------------------------------------------------------------------ chapter 8's figures and explorer
def test_chapter_8_figures_have_titles_and_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevit_edu import viz, widgets

    model = small_mobilevit()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = model.features(images[:1])
    fig = viz.plot_feature_maps(images[0], features, channels=3)
    assert fig._suptitle.get_text() and len(fig.axes) == 5 * 4
    block = explain.mobilevit_blocks(model)[2]
    y = explain.local_representation(model, images[:1], 2)
    fig = viz.plot_attention_overlays(images[0], [(explain.attention_map(block, y, (2, 3)), (2, 3), 8, None)], "title")
    ax = fig.axes[0]
    assert ax.get_title().startswith("pixel (2, 3)") and ax.get_xlabel() and ax.get_ylabel()
    erfs = {name: explain.effective_receptive_field(lambda x: model.features(x)[4], images) for name in ("a", "b")}
    fig = viz.plot_effective_receptive_fields(erfs, (32, 32))
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax.get_label() != "<colorbar>")
    fig = viz.plot_top_k(images[0], [("tench, Tinca tinca", 0.7), ("goldfish", 0.2)])
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["goldfish", "tench"]
    explorer = widgets.attention_explorer(model, images)
    assert [c.description for c in explorer.children[:6]] == ["image", "stage", "layer", "head (-1: mean)", "pixel row", "pixel col"]
    anim = widgets.attention_animation(model, images[0], [(2, 0, None, (0, 0)), (3, 0, 1, (1, 1)), (4, 0, None, (9, 9))])
    html = widgets.animation_html(anim, alt="a tour").data
    assert html.count("data:image/png") == 3
    plt.close("all")


def test_gradient_share_within_rises_to_one():
    from mobilevit_edu.viz import gradient_share_within

    erf = torch.zeros(5, 5)
    erf[2, 2], erf[2, 4], erf[0, 0] = 2.0, 1.0, 1.0
    assert gradient_share_within(erf, (2, 2), [0, 1, 2, 3]) == [0.5, 0.5, 0.75, 1.0]
