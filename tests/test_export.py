"""The fixed-batch ONNX export (issue 23) and the build step of the browser page (scripts/browser_demo_assets.py)."""

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mobilevit_edu as me
from mobilevit_edu import deploy
from mobilevit_edu.checks import randomize_batchnorm

from _tiny import TINY  # a small MobileViT with every kind of block: the export tests share it

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny():
    return randomize_batchnorm(me.MobileViT(TINY), torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def exports(tiny, tmp_path_factory):
    """The dynamo exporter's files of `tiny` at 64 x 64: batch fixed to 1, and free (the default)."""
    folder = tmp_path_factory.mktemp("export")
    return {"fixed": deploy.export_onnx(tiny, folder / "fixed.onnx", image_size=64, batch_size=1),
            "free": deploy.export_onnx(tiny, folder / "free.onnx", image_size=64)}


def ort_optimized_ops(path):
    """Operator names of the graph ONNX Runtime actually runs (its extended, hardware-independent fusions)."""
    return [node.op_type for node in deploy.runtime_graph(path).node]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_fixed_batch_export_computes_what_the_model_computes(tiny, exports, tmp_path, dynamo):
    path = exports["fixed"] if dynamo else deploy.export_onnx(tiny, tmp_path / "t.onnx", image_size=64, batch_size=1, dynamo=False)
    session = deploy.onnx_session(path)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(deploy.run_onnx(session, x), tiny(x), atol=1e-4, rtol=1e-4)
    assert session.get_inputs()[0].shape == [1, 3, 64, 64]  # the batch is part of the file
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        deploy.run_onnx(session, torch.rand(2, 3, 64, 64))


def test_fixed_batch_lets_onnx_runtime_fuse_every_linear_layer_into_a_gemm(tiny, exports):
    linears = sum(isinstance(m, nn.Linear) for m in tiny.modules())
    fixed = ort_optimized_ops(exports["fixed"])
    free = ort_optimized_ops(exports["free"])
    assert fixed.count("Gemm") == linears  # qkv, proj, fc1, fc2 of each layer and the classifier
    assert free.count("Gemm") < linears  # with a free batch, MatMul and its bias Add stay apart
    assert fixed.count("Transpose") <= free.count("Transpose")


@pytest.mark.parametrize("batch_size", [0, -1, 1.0, True, "1"])
def test_export_onnx_rejects_a_batch_size_that_is_not_a_positive_int(tiny, tmp_path, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        deploy.export_onnx(tiny, tmp_path / "x.onnx", batch_size=batch_size)


def test_browser_demo_assets_embed_pytorchs_output_and_onnx_runtime_reproduces_it(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import browser_demo_assets

    out = tmp_path / "browser_demo"
    assert browser_demo_assets.main(["--out", str(out), "--no-imagenet"]) == 0
    demo = json.loads((out / "demo.json").read_text())
    assert (out / "demo.js").read_bytes() == (ROOT / "book" / "browser_demo.js").read_bytes()
    assert set(demo["networks"]) == {"mobilevit_mini", "cnn_mini"}
    x = torch.tensor(demo["self_test"]["input"]).reshape(demo["self_test"]["shape"])
    assert x.shape == (1, 3, 40, 40) and 0 <= x.min() and x.max() <= 1
    for name, network in demo["networks"].items():
        assert network["bytes"] == (out / network["file"]).stat().st_size
        model, _ = me.train.load_checkpoint(me.train.checkpoint_path(name))
        with torch.inference_mode():
            torch.testing.assert_close(torch.tensor(network["self_test_logits"]), model(x)[0], atol=1e-6, rtol=0)
        got = deploy.run_onnx(deploy.onnx_session(out / network["file"]), x)[0]
        assert (got - torch.tensor(network["self_test_logits"])).abs().max() <= demo["self_test"]["tolerance"] / 10
        assert network["native"]["onnxruntime_ms"] > 0 and network["native"]["pytorch_ms"] > 0
    why = demo["imagenet"]["why"]
    assert demo["imagenet"]["available"] is False and why.endswith(".") and ". " not in why  # one sentence
    before = (out / "demo.json").stat().st_mtime_ns
    assert browser_demo_assets.main(["--out", str(out), "--no-imagenet"]) == 0  # nothing changed: nothing done
    assert (out / "demo.json").stat().st_mtime_ns == before


def six_axis_transposes(path):
    """How many Transpose nodes of six axes the graph ONNX Runtime runs has (the einops unfold and fold)."""
    nodes = deploy.runtime_graph(path).node
    return sum(len(attribute.ints) == 6 for n in nodes if n.op_type == "Transpose" for attribute in n.attribute)


def test_export_gathers_pixels_instead_of_transposing_six_axes(tiny, exports, tmp_path):
    blocks = sum(type(m) is me.MobileViTBlock for m in tiny.modules())
    plain = deploy.export_onnx(tiny, tmp_path / "plain.onnx", image_size=64, batch_size=1, gather=False)
    assert six_axis_transposes(plain) == 2 * blocks  # one unfold and one fold per block
    assert six_axis_transposes(exports["fixed"]) == 0
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for path in (plain, exports["fixed"]):
            torch.testing.assert_close(deploy.run_onnx(deploy.onnx_session(path), x), tiny(x), atol=1e-4, rtol=1e-4)


def test_onnx_session_with_a_profile_prefix_writes_each_nodes_time(exports, tmp_path):
    session = deploy.onnx_session(exports["fixed"], num_threads=1, profile_prefix=tmp_path / "profile")
    deploy.run_onnx(session, torch.rand(1, 3, 64, 64))
    profile = Path(session.end_profiling())
    assert profile.parent == tmp_path and profile.name.startswith("profile")
    events = json.loads(profile.read_text())
    kernels = {e["args"]["op_name"] for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}
    assert {"Conv", "Gemm", "Gather"} <= kernels  # Gather: the unfold of deploy.gather_patches
