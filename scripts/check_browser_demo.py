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

Usage:
    python scripts/check_browser_demo.py                       # the book in _build/ (bash scripts/book.sh)
    python scripts/check_browser_demo.py --build /tmp/x/_build
Exit status 1 when the page fails, 2 when Chromium is missing.
"""

import argparse
import json
import sys
import time
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
    finally:
        browser.close()
        server.shutdown()
    if problems:
        print("\n".join(f"✗ {PAGE}: {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"✓ {PAGE}: self-test ok, {n_requests} request(s), none left the machine; screenshots "
          f"{', '.join(shots)} in {out_dir}; {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
