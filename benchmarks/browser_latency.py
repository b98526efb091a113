"""In-browser latency (ONNX Runtime Web, WebAssembly, headless Chromium) against native ONNX Runtime and
PyTorch on the same machine, measured in one run (issue 23, the book's page "Run it in your browser").

    python benchmarks/browser_latency.py [--runs 30]      (about a minute)

Needs ONNX Runtime Web from npm as the book ships it (vendor/book/static/ort/, made by bash
scripts/book_assets.sh, which the book's build runs) and Chromium. Serves a temporary folder on 127.0.0.1 with a copy of the book's ONNX Runtime Web, the ONNX
files and a small page that times a file; Chromium runs offline (scripts/_nbtools.py's OFFLINE_FLAGS).

Networks (batch 1, `deploy.export_onnx(..., batch_size=1)` as the page ships them):
- chapter 7's trained mobilevit_mini and cnn_mini at 40 x 40, the page's two networks;
- MobileViT-XXS at 256 x 256 (random weights), exported with the gather of `deploy.gather_patches` (the
  default) and with gather=False, to see whether the browser gains from it too.
For each: the browser's median of --runs runs after 5 warm-ups, timed by the page's own `timeRuns`
(book/browser_demo.js; wasm, 1 thread: what the page gets on a static host, which cannot give the
cross-origin isolation WebAssembly threads need), and in the same
run native ONNX Runtime with 1 thread and PyTorch with 1 thread (alternating rounds). The browser's
output is compared with PyTorch's for the same input. Ratios > 1: the browser is slower.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import _nbtools  # noqa: E402
from _nbtools import OFFLINE_FLAGS, DevToolsPipe, find_chromium  # noqa: E402
from check_html import serve  # noqa: E402

import mobilevit_edu as me  # noqa: E402
from mobilevit_edu import deploy  # noqa: E402
from mobilevit_edu.checks import randomize_batchnorm  # noqa: E402

PAGE = """<!doctype html><meta charset="utf-8"><title>ONNX Runtime Web timing</title>
<script type="module">
// the book's page's own timing (book/browser_demo.js, copied to demo/), on the same ONNX Runtime Web
import * as ort from "./ort/ort.wasm.min.mjs";
import { timeRuns } from "./demo/browser_demo.js";
window.timeFile = async (file, x, shape, runs, warmup) => {
  const session = await ort.InferenceSession.create(file, { executionProviders: ["wasm"] });
  const feeds = { image: new ort.Tensor("float32", Float32Array.from(x), shape) };
  const output = Array.from((await session.run(feeds)).logits.data);
  const median = await timeRuns(session, feeds, warmup, runs);
  return JSON.stringify({ median_ms: median, output, threads: ort.env.wasm.numThreads, onnxruntime_web: ort.env.versions.web });
};
window.ready = true;
</script>
"""


def networks(workdir):
    """[(label, PyTorch model, ONNX file, input)]: the page's two networks and XXS with and without the gather."""
    from mobilevit_edu.train import CHAPTER7_DATA, checkpoint_path, load_checkpoint

    rows = []
    size = CHAPTER7_DATA["resolution"]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for name in ("mobilevit_mini", "cnn_mini"):
        model, _ = load_checkpoint(checkpoint_path(name))
        path = deploy.export_onnx(model.eval(), workdir / f"{name}.onnx", image_size=size, batch_size=1, dynamo=False)
        rows.append((f"{name} {size}x{size}", model, path, x))
    xxs = randomize_batchnorm(me.mobilevit_xxs(), torch.Generator().manual_seed(0)).eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    for gather in (True, False):
        path = deploy.export_onnx(xxs, workdir / f"xxs_{gather}.onnx", batch_size=1, dynamo=False, gather=gather)
        rows.append((f"mobilevit_xxs 256x256, gather={gather}", xxs, path, x))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ort", default=str(ROOT / "vendor" / "book" / "static" / "ort"),
                        help="ONNX Runtime Web's files, as the book serves them (default: vendor/book/static/ort)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    ort_dir = Path(args.ort)
    if not (ort_dir / "ort.wasm.min.mjs").exists():
        raise SystemExit(f"no ONNX Runtime Web in {ort_dir}: run bash scripts/book_assets.sh first (npm)")
    chromium = find_chromium(args.chromium)
    if not chromium:
        raise SystemExit(_nbtools.CHROMIUM_MISSING)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread everywhere, batch 1,"
          f" {args.runs} runs after {args.warmup} warm-ups, load average {os.getloadavg()[0]:.1f} on"
          f" {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracing exporter warns about the shape checks it freezes
        workdir = Path(folder)
        shutil.copytree(ort_dir, workdir / "ort")
        (workdir / "demo").mkdir()
        shutil.copy(ROOT / "book" / "browser_demo.js", workdir / "demo" / "browser_demo.js")
        (workdir / "bench.html").write_text(PAGE)
        rows = networks(workdir)
        server, base = serve(workdir)
        browser = DevToolsPipe(chromium, OFFLINE_FLAGS)
        try:
            _, session = browser.open_tab((800, 600), ("Page", "Runtime"))
            browser.send("Page.navigate", {"url": base + "bench.html"}, session)
            browser.wait_until(session, "window.ready === true", 60, "the timing page's module loaded")
            in_browser = {}
            for label, _, path, x in rows:
                call = (f"timeFile({json.dumps(path.name)}, {json.dumps(x.flatten().tolist())},"
                        f" {json.dumps(list(x.shape))}, {args.runs}, {args.warmup})")
                in_browser[label] = json.loads(browser.evaluate(session, call, timeout=600, await_promise=True))
        finally:
            browser.close()
            server.shutdown()
        first = next(iter(in_browser.values()))
        print(f"ONNX Runtime Web {first['onnxruntime_web']} (wasm, {first['threads']} thread(s)) in {Path(chromium).name},"
              " timed by the book page's own timeRuns (book/browser_demo.js)")
        print(f"{'network':<36}{'browser ms':>11}{'native ORT ms':>14}{'PyTorch ms':>11}{'browser/ORT':>12}"
              f"{'browser/PyTorch':>16}{'max |diff|':>11}")
        for label, model, path, x in rows:
            session = deploy.onnx_session(path, num_threads=1)
            feed = {"image": x.numpy()}
            with torch.inference_mode():
                expected = model(x)
                native = deploy.interleaved_times({"ort": lambda: session.run(None, feed), "torch": lambda: model(x)},
                                                  rounds=args.runs, warmup=args.warmup)
            ort_ms, torch_ms = (statistics.median(native[k]) * 1e3 for k in ("ort", "torch"))
            browser_ms = in_browser[label]["median_ms"]
            diff = (torch.tensor(in_browser[label]["output"]).reshape(expected.shape) - expected).abs().max().item()
            print(f"{label:<36}{browser_ms:>11.2f}{ort_ms:>14.2f}{torch_ms:>11.2f}{browser_ms / ort_ms:>12.2f}"
                  f"{browser_ms / torch_ms:>16.2f}{diff:>11.1e}")
            if diff > 1e-3:
                raise SystemExit(f"{label}: the browser's output differs from PyTorch's by {diff:.2g}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
