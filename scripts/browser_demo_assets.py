"""What the book's page "Run it in your browser" (book/run_in_browser.md) serves, made at build time.

    python scripts/browser_demo_assets.py [--out vendor/book/static/browser_demo] [--force]

scripts/book_assets.sh runs it after vendoring ONNX Runtime Web; _config.yml serves
vendor/book/static/ as the book's _static/, so the page finds everything under _static/browser_demo/:

- mobilevit_mini.onnx, cnn_mini.onnx: chapter 7's two trained networks (the checkpoints the package
  ships, mobilevit_edu/assets/*.pt) exported by `mobilevit_edu.deploy.export_onnx(..., batch_size=1,
  dynamo=False)` at chapter 7's resolution (40 x 40): the TorchScript exporter, because it takes 0.5 s
  of CPU per network where the dynamo exporter takes 5-9 s (the book build's time budget); both give
  the same numbers (tests/test_export.py), and ONNX Runtime checks it here against PyTorch;
- demo.json: what the page needs besides the networks: the task (resolution, mark size, palette,
  class names), each network's validation accuracy and parameters, a self-test input (a validation-like
  image drawn by `matching_marks`) with PyTorch's logits for it, the median latency of ONNX Runtime
  (Python, 1 thread) and of PyTorch (1 thread) on this machine when the book was built, and the bytes
  of every file the page loads;
- demo.js: the page's script (book/browser_demo.js), copied.
- mobilevit_xxs.onnx and the ImageNet class names, only when the ImageNet weights can be downloaded
  (`mobilevit_edu.pretrained`); otherwise demo.json says in one sentence why that part is missing.

Does nothing when its inputs (checkpoints, this script, demo.js, mobilevit_edu/deploy.py) have not
changed since the last run (a stamp file holds their hash); --force rebuilds anyway.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "vendor" / "book" / "static" / "browser_demo"
SCRIPT_JS = ROOT / "book" / "browser_demo.js"
NETWORKS = ("mobilevit_mini", "cnn_mini")
SELF_TEST_SEED = 2026  # matching_marks(1, 40, seed=...): not one of chapter 7's training or validation seeds
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def inputs_hash():
    parts = [Path(__file__), SCRIPT_JS, ROOT / "mobilevit_edu" / "deploy.py"]
    parts += [ROOT / "mobilevit_edu" / "assets" / f"{name}.pt" for name in NETWORKS]
    digest = hashlib.sha256()
    for path in parts:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def imagenet_part(out, try_download=True, model=None):
    """Export MobileViT-XXS with the ImageNet weights when they can be downloaded; else say why not.

    `model`: a network to export instead of downloading (it needs `class_names` and `preprocessing`, as
    `load_pretrained` gives them); scripts/check_browser_demo.py passes a stand-in with random weights to
    check the part offline, as the book built online would show it."""
    if model is None and not try_download:
        return {"available": False, "why": "This copy of the book was built without the ImageNet part "
                                           "(scripts/browser_demo_assets.py --no-imagenet)."}
    import torch

    from mobilevit_edu import deploy
    from mobilevit_edu.pretrained import WeightsUnavailableError, load_pretrained

    if model is None:
        try:
            model = load_pretrained("mobilevit_xxs")
        except (WeightsUnavailableError, ImportError) as error:
            reason = getattr(error, "reason", "") or type(error).__name__
            return {"available": False,
                    "why": "This copy of the book was built without internet access, so it does not contain "
                           f"MobileViT-XXS's ImageNet weights ({reason}); the book built online has them.".replace("..", ".")}
    size = model.preprocessing.input_size
    path = deploy.export_onnx(model, out / "mobilevit_xxs.onnx", image_size=size, batch_size=1, dynamo=False)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(SELF_TEST_SEED))
    with torch.inference_mode():
        expected = model(x)
        difference = (deploy.run_onnx(deploy.onnx_session(path, num_threads=1), x) - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())  # float32 rounding grows with the logits' size
    if difference > 1e-5 * scale:
        raise SystemExit(f"mobilevit_xxs: ONNX Runtime differs from PyTorch by {difference:.2g} on a random input "
                         f"(logits up to {scale:.3g}; allowed {1e-5 * scale:.2g})")
    p = model.preprocessing  # the page prepares a photo as mobilevit_edu.pretrained.preprocess does, from these
    return {"available": True, "file": path.name, "bytes": path.stat().st_size, "input_size": size,
            "preprocessing": {"crop_pct": p.crop_pct, "mean": list(p.mean), "std": list(p.std),
                              "channel_order": p.channel_order},
            "class_names": list(model.class_names)}


def build(out, imagenet=True):
    sys.path.insert(0, str(ROOT))
    import torch

    from mobilevit_edu import deploy
    from mobilevit_edu.data import COLOUR_NAMES, MATCH_CLASSES, PALETTE, matching_marks
    from mobilevit_edu.train import CHAPTER7_DATA, checkpoint_path, load_checkpoint

    torch.set_num_threads(1)
    resolution = CHAPTER7_DATA["resolution"]
    sample = matching_marks(1, resolution, seed=SELF_TEST_SEED)
    x = sample.tensors[0]  # (1, 3, R, R)
    out.mkdir(parents=True, exist_ok=True)
    networks = {}
    for name in NETWORKS:
        model, checkpoint = load_checkpoint(checkpoint_path(name))
        path = deploy.export_onnx(model, out / f"{name}.onnx", image_size=resolution, batch_size=1, dynamo=False)
        session = deploy.onnx_session(path, num_threads=1)
        with torch.inference_mode():
            expected = model(x)
            got = deploy.run_onnx(session, x)
            difference = (got - expected).abs().max().item()
            if difference > 1e-4:
                raise SystemExit(f"{name}: ONNX Runtime differs from PyTorch by {difference:.2g} on the self-test input")
            feed = {"image": x.numpy()}
            medians = deploy.measure_latencies(  # alternating rounds: both see the same machine state
                {"onnxruntime_ms": lambda: session.run(None, feed), "pytorch_ms": lambda: model(x)}, rounds=30, warmup=5)
            native = {key: seconds * 1e3 for key, seconds in medians.items()}
        networks[name] = {
            "file": path.name, "bytes": path.stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "val_accuracy": checkpoint["metrics"]["val_accuracy"],
            "self_test_logits": [float(v) for v in expected[0]],
            "native": native,
        }
    shutil.copyfile(SCRIPT_JS, out / "demo.js")
    ort_dir = out.parent / "ort"
    ort_bytes = {f: (ort_dir / f).stat().st_size for f in ORT_WEB_FILES if (ort_dir / f).exists()}
    demo = {
        "task": {"resolution": resolution, "mark_size": sample.mark_size, "noise": 0.1,
                 "palette": PALETTE.tolist(), "colour_names": list(COLOUR_NAMES), "classes": list(MATCH_CLASSES)},
        "self_test": {"input": [float(v) for v in x.flatten()], "shape": list(x.shape),
                      "label": MATCH_CLASSES[int(sample.tensors[1][0])], "tolerance": 1e-3},
        "networks": networks,
        "native_machine": f"{platform.machine()}, {os.cpu_count()} cores, 1 thread, load average "
                          f"{os.getloadavg()[0]:.1f} when measured; torch {torch.__version__}",
        "ort_web_bytes": ort_bytes,
        "imagenet": imagenet_part(out, imagenet),
    }
    (out / "demo.json").write_text(json.dumps(demo))
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    parser.add_argument("--no-imagenet", action="store_true", help="do not try to download the ImageNet weights")
    args = parser.parse_args(argv)
    start = time.monotonic()
    stamp = args.out / f".built-{inputs_hash()}"
    if stamp.exists() and not args.force:
        return 0
    if args.out.exists():
        shutil.rmtree(args.out)
    demo = build(args.out, imagenet=not args.no_imagenet)
    stamp.touch()
    sizes = ", ".join(f"{n['file']} {n['bytes'] / 1e3:.0f} kB" for n in demo["networks"].values())
    print(f"== browser demo in {args.out}: {sizes}; ImageNet part "
          f"{'included' if demo['imagenet']['available'] else 'left out (offline)'}; {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
