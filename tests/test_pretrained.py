"""Chapter 8's loading path, offline: timm-format weight files load into our network and give timm's
outputs, the "download" goes through the same code, and a missing connection is one clear error."""

import time

import pytest
import torch
from torch.testing import assert_close

import mobilevit_edu as me
from mobilevit_edu import pretrained
from mobilevit_edu.checks import randomize_batchnorm
from mobilevit_edu.pretrained import WeightsUnavailableError

timm = pytest.importorskip("timm")
huggingface_hub = pytest.importorskip("huggingface_hub")
safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are small: one thread is as fast, and much steadier when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_timm(name="mobilevit_xxs", seed=0):
    """timm's network with random weights and random BatchNorm statistics (no layer is an identity)."""
    torch.manual_seed(seed)
    return randomize_batchnorm(timm.create_model(name, pretrained=False), torch.Generator().manual_seed(seed)).eval()


@pytest.fixture(scope="module")
def timm_files(tmp_path_factory):
    """timm's random XXS and its weights saved as the Hub serves them: model.safetensors and pytorch_model.bin."""
    folder = tmp_path_factory.mktemp("hub")
    reference = random_timm()
    state_dict = {k: v.contiguous() for k, v in reference.state_dict().items()}
    safetensors_torch.save_file(state_dict, str(folder / "model.safetensors"))
    torch.save(state_dict, folder / "pytorch_model.bin")
    return reference, folder


@pytest.fixture
def no_cache(monkeypatch):
    """Nothing in the local Hugging Face cache."""
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)


def images(batch=1, size=(128, 128)):  # small: the loading path is what is tested, not the size
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_weights_file_in_timm_format_gives_timm_outputs(timm_files, filename):
    reference, folder = timm_files
    model = me.mobilevit_xxs(pretrained=True, weights=folder / filename)
    assert not model.training
    x = images(batch=2)
    with torch.no_grad():
        assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
        x = images(size=(96, 160))  # the last stage's 3x5 map is not a multiple of the patch size
        assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_weights_alone_means_pretrained(timm_files):
    reference, folder = timm_files
    model = me.mobilevit_xxs(weights=str(folder / "model.safetensors"))
    assert torch.equal(model.stem.conv.weight, reference.stem.conv.weight)


def test_download_path_end_to_end(timm_files, monkeypatch, no_cache):
    """pretrained=True without a file: the Hub's answer (here the saved file) goes through the same code."""
    reference, folder = timm_files
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        return str(folder / filename)

    monkeypatch.setattr(pretrained, "hub_unreachable_reason", lambda *args, **kwargs: "")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = me.mobilevit_xxs(pretrained=True)
    assert asked == [("timm/mobilevit_xxs.cvnets_in1k", "model.safetensors")]
    x = images()
    with torch.no_grad():
        assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    assert len(model.class_names) == 1000 and model.class_names[0].startswith("tench")
    assert model.preprocessing == pretrained.IMAGENET_PREPROCESSING


def test_cached_weights_are_used_without_a_connection(timm_files, monkeypatch):
    reference, folder = timm_files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo_id, filename, **kwargs: str(folder / filename))
    model = me.mobilevit_xxs(pretrained=True)
    assert torch.equal(model.head.weight, reference.head.fc.weight)


def _assert_one_clear_error(error, name="mobilevit_xxs"):
    message = str(error)
    assert "internet connection" in message
    assert f"{name}(pretrained=True, weights='path/to/model.safetensors')" in message
    assert f"https://huggingface.co/timm/{name}.cvnets_in1k" in message
    # no chained traceback from the download library
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_offline_is_one_clear_error_and_fast(monkeypatch, no_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def must_not_download(*args, **kwargs):
        raise AssertionError("hf_hub_download must not be called offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", must_not_download)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        me.mobilevit_xxs(pretrained=True)
    assert time.perf_counter() - start < 2.0
    _assert_one_clear_error(info.value)
    assert info.value.reason == "HF_HUB_OFFLINE is set"


def test_a_failing_download_library_becomes_one_clear_error(monkeypatch, no_cache):
    def failing_download(*args, **kwargs):
        raise ConnectionError("Max retries exceeded with url: /timm/... (Caused by NameResolutionError)")

    monkeypatch.setattr(pretrained, "hub_unreachable_reason", lambda *args, **kwargs: "")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(WeightsUnavailableError) as info:
        me.mobilevit_s(pretrained=True)
    _assert_one_clear_error(info.value, "mobilevit_s")
    assert "ConnectionError" in info.value.reason and "pytorch_model.bin" in info.value.reason


def test_unreachable_hub_is_detected_within_the_timeout(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    reason = pretrained.hub_unreachable_reason("http://127.0.0.1:9", timeout=1.0)  # the discard port: closed
    assert reason.startswith("127.0.0.1:9 cannot be reached")
    assert time.perf_counter() - start < 2.0


def test_weights_of_another_network_are_named(timm_files, tmp_path):
    xs_file = tmp_path / "xs.bin"
    torch.save(timm.create_model("mobilevit_xs", pretrained=False).state_dict(), xs_file)
    with pytest.raises(ValueError, match=r"do not fit mobilevit_xxs: .*wrong shape.*another network"):
        me.mobilevit_xxs(weights=xs_file)


def test_our_own_state_dict_and_checkpoint_dicts_load(tmp_path):
    torch.manual_seed(0)
    ours = me.mobilevit_xxs().eval()
    torch.save(ours.state_dict(), tmp_path / "ours.pth")
    torch.save({"state_dict": ours.state_dict(), "note": "a checkpoint"}, tmp_path / "checkpoint.pt")
    for name in ("ours.pth", "checkpoint.pt"):
        loaded = me.mobilevit_xxs(weights=tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ours.state_dict().values()))


def test_clear_errors_for_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_classes=1000, got num_classes=10"):
        me.mobilevit_xxs(num_classes=10, pretrained=True, weights=tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="weights: no file at"):
        me.mobilevit_xxs(weights=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="name must be one of"):
        pretrained.load_pretrained("mobilevit_m")
    (tmp_path / "list.bin").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.bin")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        me.mobilevit_xxs(weights=tmp_path / "list.bin")


def test_preprocess_equals_timms_transform():
    """Our PIL-only preprocessing gives exactly what timm's transform for these weights gives."""
    from matplotlib import cbook
    from PIL import Image

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    config = timm.data.resolve_data_config({}, model=timm.create_model("mobilevit_xxs", pretrained=False))
    transform = timm.data.create_transform(**config)
    with Image.open(path) as image:
        expected = transform(image.convert("RGB")).unsqueeze(0)
    x = pretrained.preprocess(path)
    assert x.shape == (1, 3, 256, 256) and pretrained.IMAGENET_PREPROCESSING.resize_size == 284
    assert torch.equal(x, expected)
    bgr = pretrained.preprocess(path, pretrained.Preprocessing(channel_order="BGR"))
    assert torch.equal(bgr, x.flip(1))
    with pytest.raises(ValueError, match="channel_order"):
        pretrained.preprocess(path, pretrained.Preprocessing(channel_order="GBR"))
    with pytest.raises(TypeError, match="PIL image or a path"):
        pretrained.preprocess(torch.rand(3, 8, 8))


def test_top_k_is_sorted_softmax():
    names = tuple(f"class {i}" for i in range(10))
    logits = torch.arange(10.0)
    top = pretrained.top_k(logits[None], names, k=3)
    assert [n for n, _ in top] == ["class 9", "class 8", "class 7"]
    assert top[0][1] == pytest.approx(float(logits.softmax(0)[9]))
    with pytest.raises(ValueError, match="one image"):
        pretrained.top_k(torch.zeros(2, 10), names)
    with pytest.raises(ValueError, match="10 classes but class_names has 9"):
        pretrained.top_k(logits, names[:9])


def test_stem_channel_order():
    w = torch.randn(16, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    assert pretrained.stem_channel_order(w, w.clone()) == "same"
    assert pretrained.stem_channel_order(w, w[:, [2, 1, 0]]) == "flipped"
    assert pretrained.stem_channel_order(w, w[:, [1, 0, 2]]) == "different"
    assert pretrained.stem_channel_order(w, w[:8]) == "different"


def test_apple_stem_offline_is_one_clear_error(monkeypatch, no_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=r"apple/mobilevit-xx-small is downloaded .* internet connection") as info:
        pretrained.apple_stem_weight("mobilevit_xxs")
    assert info.value.__cause__ is None


def test_apple_stem_is_read_from_its_checkpoint(tmp_path, monkeypatch, no_cache):
    stem = torch.randn(16, 3, 3, 3)
    torch.save({pretrained.APPLE_STEM_KEY: stem, "classifier.weight": torch.zeros(2, 2)}, tmp_path / "pytorch_model.bin")

    def fake_download(repo_id, filename, **kwargs):
        assert repo_id == "apple/mobilevit-small"
        if filename != "pytorch_model.bin":
            raise FileNotFoundError(filename)  # this repository has no model.safetensors: the next file is tried
        return str(tmp_path / filename)

    monkeypatch.setattr(pretrained, "hub_unreachable_reason", lambda *args, **kwargs: "")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert torch.equal(pretrained.apple_stem_weight("mobilevit_s"), stem)
