#!/usr/bin/env python3
"""Open the book's page "Run it in your browser" (book/run_in_browser.md) as a reader without internet.

Serves <build>/html on 127.0.0.1 (scripts/check_html.py's server) and opens the page in ONE headless
Chromium in which every other host is unreachable (scripts/_nbtools.py's OFFLINE_FLAGS: host names do
not resolve, every other connection goes to a dead proxy), driven over the DevTools protocol. The page
runs chapter 7's networks with ONNX Runtime Web and writes its self-test's JSON into the element
#mobilevit-demo-result. The check fails unless that JSON says
- "ok": true, with "max_abs_diff" (largest difference from PyTorch's embedded output) <= 1e-3,
- a positive "latency_ms" and "backend": "wasm",
and no request of the page left the machine or failed. It prints the JSON, then takes screenshots of
the page at a phone's viewport (390 x 844) and a desktop's (1280 x 800) into
<build>/screenshots/browser_demo/ (look at them), after drawing a new random pair once at each size.

The ImageNet part appears only in the book built online (it needs the downloaded weights), so the check
also opens a copy of the page (hard links of <build>/html, in a temporary folder) whose ImageNet part holds a
stand-in: MobileViT-XXS with random weights, exported by scripts/browser_demo_assets.py as the online build
exports the real one. It gives the page's file input a 284 x 284 photo (the size that timm's resize leaves
as it is, so the page's canvas and mobilevit_edu.pretrained.preprocess see the same pixels) and fails
unless the page's top-5 are PyTorch's classes with probabilities within 1e-4 (screenshot imagenet.png).

Usage:
    python scripts/check_browser_demo.py                       # the book in _build/ (bash scripts/book.sh)
    python scripts/check_browser_demo.py --build /tmp/x/_build
Exit status 1 when the page fails, 2 when Chromium is missing.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402
from _nbtools import OFFLINE_FLAGS, DevToolsPipe, find_chromium  # noqa: E402
from check_html import serve  # noqa: E402
from check_offline import network_problems  # noqa: E402

PAGE = "book/run_in_browser.html"
MAX_ABS_DIFF = 1e-3
WAIT_S = 30  # for the self-test (it takes well under a second once ONNX Runtime Web has loaded)
VIEWPORTS = {"phone": (390, 844, True), "desktop": (1280, 800, False)}
RESULT_JS = "(document.getElementById('mobilevit-demo-result') || {}).textContent || ''"
TOP5_JS = "(document.getElementById('demo-top5') || {dataset: {}}).dataset.result || ''"
PHOTO_SIZE = 284  # floor(256 / 0.9): timm's resize keeps it, the centre crop takes 256 x 256 of it
TOP5_TOLERANCE = 1e-4  # float32 in WebAssembly against float32 in PyTorch, on the same pixels


def result_problems(result):
    """What is wrong with the self-test's JSON (a dict)."""
    problems = []
    if result.get("ok") is not True:
        problems.append(f"the self-test did not report ok: {result}")
    diff = result.get("max_abs_diff")
    if not isinstance(diff, (int, float)) or not diff <= MAX_ABS_DIFF:
        problems.append(f"max_abs_diff is {diff!r}, expected a number <= {MAX_ABS_DIFF}")
    latency = result.get("latency_ms")
    if not isinstance(latency, (int, float)) or not latency > 0:
        problems.append(f"latency_ms is {latency!r}, expected a positive number")
    if result.get("backend") != "wasm":
        problems.append(f"backend is {result.get('backend')!r}, expected 'wasm'")
    if not isinstance(result.get("threads"), int) or result["threads"] < 1:
        problems.append(f"threads is {result.get('threads')!r}, expected a positive int")
    return problems


def stand_in_model():
    """MobileViT-XXS with random weights (seed 0) in the place of the ImageNet weights, with the same
    `preprocessing` as `load_pretrained` gives and class names "stand-in class 0" ... "stand-in class 999"
    (timm's names would cost 4 s of importing timm, and would dress random answers as real ones). Fresh BatchNorm statistics (mean 0,
    variance 1) leave a random network almost blind to its input (a BGR photo moves its top-5
    probabilities by 1e-7), so the statistics are first measured on 8 other smooth random photos, and
    the head is scaled by 30: then a wrong channel order, a one-pixel shift or /256 instead of /255 in the
    page changes the top-5 classes or their probabilities by 0.01 or more."""
    import torch
    from torch import nn

    from mobilevit_edu.models import CONFIGS, MobileViT
    from mobilevit_edu.pretrained import IMAGENET_PREPROCESSING

    torch.manual_seed(0)
    model = MobileViT(CONFIGS["mobilevit_xxs"])
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # running statistics = the plain average over the batches seen
    size = IMAGENET_PREPROCESSING.input_size
    with torch.no_grad():
        model.train()(torch.cat([photo_tensor(seed, size) for seed in range(1, 9)]))
        model.head.weight.mul_(30)
    model.class_names = tuple(f"stand-in class {i}" for i in range(model.config.num_classes))
    model.preprocessing = IMAGENET_PREPROCESSING
    return model.eval()


def photo_tensor(seed, size):
    """A smooth random RGB image, (1, 3, size, size) in [0, 1]: a 6 x 6 grid of random colours, resized bicubic."""
    import numpy as np
    import torch
    from PIL import Image

    colours = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    pixels = np.array(Image.fromarray(colours).resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0)


def photo(path):
    """The photo the check gives the page: photo_tensor(0, 284) as a PNG at `path`."""
    from PIL import Image

    pixels = photo_tensor(0, PHOTO_SIZE)[0].mul(255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)


def expected_top5(model, path):
    """PyTorch's top-5 (class index, probability) for the photo, prepared by mobilevit_edu.pretrained.preprocess."""
    import torch

    from mobilevit_edu.pretrained import preprocess

    with torch.inference_mode():
        probabilities = model(preprocess(path, model.preprocessing)).softmax(-1)[0]
    values, indices = probabilities.topk(5)
    return list(zip(indices.tolist(), values.tolist()))


def top5_problems(got, expected):
    """What differs between the page's top-5 (list of {index, probability}) and PyTorch's."""
    if [g.get("index") for g in got] != [i for i, _ in expected]:
        return [f"the page's top-5 classes are {[g.get('index') for g in got]}, PyTorch's {[i for i, _ in expected]}"]
    worst = max(abs(g["probability"] - p) for g, (_, p) in zip(got, expected))
    if not worst <= TOP5_TOLERANCE:
        return [f"the page's top-5 probabilities differ from PyTorch's by {worst:.2g} (allowed {TOP5_TOLERANCE})"]
    return []


def prepare_stand_in(html, folder):
    """Make the copy of the page with the stand-in ImageNet part in `folder` (see the module's docstring):
    returns (the copy's html folder, the photo's path, PyTorch's top-5 for it). Runs in a thread while
    the book's own page is checked: most of it is importing torch and exporting the network."""
    sys.path.insert(0, str(_nbtools.ROOT))
    from browser_demo_assets import imagenet_part

    copy = Path(folder) / "html"
    shutil.copytree(html, copy, copy_function=os.link)  # hard links: no 70 MB copy
    demo_dir = copy / "_static" / "browser_demo"
    model = stand_in_model()
    demo = json.loads((demo_dir / "demo.json").read_text())
    demo["imagenet"] = imagenet_part(demo_dir, model=model)
    (demo_dir / "demo.json").unlink()  # a hard link to the build's file: replace it, do not write through it
    (demo_dir / "demo.json").write_text(json.dumps(demo))
    picture = Path(folder) / "photo.png"
    photo(picture)
    return copy, picture, expected_top5(model, picture)


def check_imagenet_stand_in(browser, prepared, out_dir):
    """The ImageNet part as the book built online shows it, on the copy `prepared` by prepare_stand_in:
    returns (problems, a sentence for the log)."""
    copy, picture, expected = prepared
    server, base = serve(copy)
    try:
        _, session = browser.open_tab(VIEWPORTS["phone"][:2], ("Page", "Network", "Runtime", "DOM"))
        width, height, mobile = VIEWPORTS["phone"]
        browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                            "deviceScaleFactor": 1, "mobile": mobile}, session)
        browser.send("Page.navigate", {"url": base + PAGE}, session)
        try:
            browser.wait_until(session, "!!document.getElementById('demo-photo')", WAIT_S,
                               "the ImageNet part's file input", interval=0.1)
            root = browser.send("DOM.getDocument", {}, session)["root"]["nodeId"]
            node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "#demo-photo"}, session)["nodeId"]
            browser.send("DOM.setFileInputFiles", {"files": [str(picture)], "nodeId": node}, session)
            got = json.loads(browser.wait_until(session, TOP5_JS, WAIT_S, "#demo-top5 filled", interval=0.1))
        except TimeoutError as error:
            return [f"ImageNet part (stand-in network): {error}"], ""
        problems = [f"ImageNet part (stand-in network): {p}" for p in top5_problems(got, expected)]
        found, _ = network_problems(browser.events, session)
        problems += found
        browser.evaluate(session, "document.getElementById('demo-imagenet').scrollIntoView(); 0")
        browser.screenshot(session, out_dir / "imagenet.png")
    finally:
        server.shutdown()
    worst = max((abs(g["probability"] - p) for g, (_, p) in zip(got, expected)), default=float("nan"))
    return problems, (f"ImageNet part (stand-in XXS, random weights): top-5 {[i for i, _ in expected]} as PyTorch's, "
                      f"probabilities within {worst:.1e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(_nbtools.ROOT / "_build"), help="the build folder that holds html/")
    parser.add_argument("--out", help="where to save the screenshots (default: <build>/screenshots/browser_demo)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    html = (Path(args.build) / "html").resolve()
    if not (html / PAGE).exists():
        print(f"no {PAGE} in {html}: build the book first (bash scripts/book.sh)", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    if not chromium:
        print(_nbtools.CHROMIUM_MISSING, file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else Path(args.build) / "screenshots" / "browser_demo"
    out_dir.mkdir(parents=True, exist_ok=True)

    stand_in_folder = tempfile.mkdtemp(dir=html.parent, prefix="imagenet-stand-in-")
    preparing = ThreadPoolExecutor(1).submit(prepare_stand_in, html, stand_in_folder)
    server, base = serve(html)
    browser = DevToolsPipe(chromium, OFFLINE_FLAGS)
    problems = []
    try:
        _, session = browser.open_tab(VIEWPORTS["desktop"][:2], ("Page", "Network", "Runtime"))
        browser.events.clear()
        browser.send("Page.navigate", {"url": base + PAGE}, session)
        browser.wait_event("Page.loadEventFired", session, timeout=60)
        try:
            text = browser.wait_until(session, RESULT_JS, WAIT_S, "#mobilevit-demo-result filled by the self-test",
                                      interval=0.1)
        except TimeoutError:
            text = ""
        if not text:
            problems.append(f"#mobilevit-demo-result stayed empty for {WAIT_S} s")
        else:
            print(f"self-test: {text}")
            try:
                result = json.loads(text)
                problems += result_problems(result)
                native = json.loads((html / "_static" / "browser_demo" / "demo.json").read_text())
                native = native["networks"]["mobilevit_mini"]["native"]
                if isinstance(result.get("latency_ms"), (int, float)):
                    print(f"mobilevit_mini, 1 thread: Chromium (wasm) {result['latency_ms']:.2f} ms, native ONNX Runtime "
                          f"{native['onnxruntime_ms']:.2f} ms ({result['latency_ms'] / native['onnxruntime_ms']:.1f}x), "
                          f"PyTorch {native['pytorch_ms']:.2f} ms ({result['latency_ms'] / native['pytorch_ms']:.1f}x);"
                          " the native figures were measured at build time on this machine")
            except json.JSONDecodeError:
                problems.append(f"#mobilevit-demo-result is not JSON: {text[:200]!r}")
        found, n_requests = network_problems(browser.events, session)
        problems += found
        shots = []
        for name, (width, height, mobile) in VIEWPORTS.items():
            browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                "deviceScaleFactor": 1, "mobile": mobile}, session)
            browser.evaluate(session, "document.getElementById('demo-random').click(); 0")
            time.sleep(0.3)  # the two networks answer in a few milliseconds
            browser.evaluate(session, "document.getElementById('mobilevit-demo').scrollIntoView(); 0")
            browser.screenshot(session, out_dir / f"{name}.png")
            shots.append(f"{name}.png")
        found, sentence = check_imagenet_stand_in(browser, preparing.result(), out_dir)
        problems += found
        if sentence:
            print(sentence)
            shots.append("imagenet.png")
    finally:
        browser.close()
        server.shutdown()
        preparing.exception()  # (let it finish before its folder goes)
        shutil.rmtree(stand_in_folder, ignore_errors=True)
    if problems:
        print("\n".join(f"✗ {PAGE}: {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"✓ {PAGE}: self-test ok, {n_requests} request(s), none left the machine; screenshots "
          f"{', '.join(shots)} in {out_dir}; {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
