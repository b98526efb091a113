#!/usr/bin/env python3
"""Look at the built book as a reader would: headless Chromium, screenshots, and checks.

Serves <build>/html over http://127.0.0.1:<free port> (http.server in a thread), opens pages in
Debian's headless Chromium and, for each page,
- checks that the server answers 200;
- dumps the rendered DOM (--dump-dom) and checks that the expected heading is there and, on
  notebook pages, that the "Open in Colab" launch link of this very notebook is there;
- takes a screenshot (1280×2000) into _build/screenshots/<page>.png and checks that it is not
  blank: more than 1 % of its pixels differ from the background colour (with Pillow; without it
  the pixel check is skipped and says so).
The pages: the welcome page, the setup notebook, the first chapter and the first exercise (when
there are some), the Chinese page book/zh-tw (when the book has it), plus any page given with --page.

The Chinese page is also read glyph by glyph: a probe page served beside the book opens it in an
iframe and, for every distinct CJK character of its text (the sidebar included), draws the character
on a canvas in the font the page gives it and compares the pixels with those of U+10FFFD, a code
point no font has (Chromium's missing-glyph box). Any character drawn as that box fails the check:
the machine lacks a font for Traditional Chinese (scripts/test.sh and check_html.sh install Debian's
fonts-wqy-microhei with chromium). A page with no CJK characters at all fails too.

Before the browser, and without it, every notebook page of the book is read as built HTML and must
- carry the "Open in Colab" launch link of its own notebook;
- hold no live widget (a `widget-view` output): sliders do nothing in a static page, so widget
  outputs are tagged `remove-output` and a moving twin (an animation) follows them;
- start every animation on its own (the `play_animation()` call of widgets.animation_html) and
  describe it for screen readers (`aria-label`).

Usage:
    python scripts/check_html.py                      # the book in _build/ (bash scripts/book.sh)
    python scripts/check_html.py --build /tmp/x/_build --page chapters/01_conv.html
    python scripts/check_html.py --static-only        # only the HTML checks, no browser
Exit status 1 when a page is missing, blank or broken; 2 when Chromium is not installed (and
--static-only was not given; scripts/check_html.sh installs it).
"""

import argparse
import functools
from html import unescape
import http.server
import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402

# The shared headless flags (_nbtools), and a budget of virtual time for each page's scripts to settle.
CHROMIUM_FLAGS = _nbtools.HEADLESS_FLAGS + ["--virtual-time-budget=5000"]
WINDOW = "1280,2000"
# The page in Traditional Chinese whose glyphs are checked (cjk_problems), and the probe page that checks
# them: served at PROBE_PATH beside the book (same origin, so it can read the page in its iframe).
CJK_PAGE = "book/zh-tw.html"
PROBE_PATH = "__cjk_glyph_probe__.html"
PROBE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>CJK glyph probe</title></head>
<body><pre id="result">pending</pre>
<iframe id="page" src="%(page)s" style="width:1280px;height:2000px"></iframe>
<script>
// For every distinct CJK character in the page's text: draw it on a canvas in the font of the element
// that holds it, and compare the pixels with U+10FFFD drawn in that font (no font has that code point,
// so it is drawn as the missing-glyph box). Equal pixels: the character is a box on this machine.
const CJK = /[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]/u;
const MISSING = String.fromCodePoint(0x10FFFD);
const canvas = document.createElement("canvas");
canvas.width = canvas.height = 64;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
function pixels(font, text) {
  ctx.clearRect(0, 0, 64, 64);
  ctx.font = font;
  ctx.fillStyle = "black";
  ctx.fillText(text, 8, 44);
  return ctx.getImageData(0, 0, 64, 64).data.join(",");
}
document.getElementById("page").addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
  const seen = new Map();  // character -> font
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const ch of node.data) {
      if (CJK.test(ch) && !seen.has(ch)) {
        const style = doc.defaultView.getComputedStyle(node.parentElement);
        seen.set(ch, `${style.fontStyle} ${style.fontWeight} 32px ${style.fontFamily}`);
      }
    }
  }
  const missing = [];
  for (const [ch, font] of seen) {
    if (pixels(font, ch) === pixels(font, MISSING)) missing.push(ch);
  }
  document.getElementById("result").textContent =
    "CJK-GLYPHS " + JSON.stringify({checked: seen.size, missing: missing.join("")});
});
</script></body></html>
"""


def default_pages():
    """(path in the site, texts that must be in the DOM, notebook path whose Colab link must be there):
    the welcome page, the setup notebook, and the first chapter and exercise when there are some."""
    pages = [
        ("book/intro.html", ["MobileViT from scratch", "Who it is for", "How to read it"], None),
        ("book/setup.html", ["Setup", "mobilevit_xxs"], "book/setup.ipynb"),
    ]
    for folder in ("chapters", "exercises"):
        notebooks = _nbtools.find_notebooks([folder])
        if notebooks:
            rel = _nbtools.relpath(notebooks[0])
            pages.append((rel[: -len(".ipynb")] + ".html", [], rel))
    if (_nbtools.ROOT / CJK_PAGE.replace(".html", ".md")).exists():
        pages.append((CJK_PAGE, ["繁體中文導讀"], None))
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.lstrip("/") != PROBE_PATH:
            return super().do_GET()
        body = (PROBE_HTML % {"page": "/" + CJK_PAGE}).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Chromium drops connections it no longer needs (e.g. when --virtual-time-budget ends):
        # not a problem of the page, so no traceback for that.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(directory):
    """Start a static server for `directory` on a free port of 127.0.0.1; return (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def run_chromium(chromium, args, timeout=120):
    return _nbtools.run_chromium(chromium, args, CHROMIUM_FLAGS, timeout)


def pixel_problem(png):
    """None when the screenshot shows something; else what is wrong. Needs Pillow."""
    from PIL import Image

    with Image.open(png) as image:
        gray = image.convert("L")
        histogram = gray.histogram()
        width, height = gray.size
    total = width * height
    background = max(histogram)
    if background == total:
        return "the screenshot is one uniform colour (a blank page)"
    if (total - background) / total < 0.01:
        return f"only {100 * (total - background) / total:.2f} % of the pixels differ from the background (an almost blank page)"
    return None


def static_problems(html_dir, url, branch):
    """Problems of the built notebook pages, read as files: Colab link, live widgets, animations."""
    org_repo = url[len("https://github.com/"):]
    problems, pages = [], 0
    for notebook in _nbtools.find_notebooks(["book", "chapters", "exercises"]):
        rel = _nbtools.relpath(notebook)
        page = html_dir / (rel[: -len(".ipynb")] + ".html")
        if not page.exists():
            problems.append(f"{rel}: not in the built book ({page} is missing)")
            continue
        pages += 1
        text = page.read_text(encoding="utf-8")
        link = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{rel}"
        if link not in text:
            problems.append(f"{rel}: no Colab launch link {link}")
        if _nbtools.WIDGET_VIEW in text:
            problems.append(f"{rel}: a live widget is in the static page (tag its cell remove-output"
                            " and show an animation after it)")
        problems += [f"{rel}: {problem} (use widgets.animation_html(anim, alt=...))"
                     for problem in _nbtools.animation_problems(text)]
    print(f"  {pages} notebook page(s) read: Colab links, no live widgets, animations described and playing"
          + ("" if problems else ", ok"))
    return problems


def cjk_problems(chromium, base):
    """Problems of the Chinese page's glyphs: characters drawn as missing-glyph boxes (PROBE_HTML)."""
    dom = run_chromium(chromium, ["--dump-dom", base + PROBE_PATH])
    found = re.search(r"CJK-GLYPHS (\{.*?\})", unescape(dom.stdout))
    if dom.returncode != 0 or not found:
        return [f"{CJK_PAGE}: the glyph probe gave no result (exit {dom.returncode}): {dom.stderr.strip()[-500:]}"]
    result = json.loads(found.group(1))
    if result["checked"] == 0:
        return [f"{CJK_PAGE}: no CJK characters found in the rendered page, so its glyphs cannot be checked"]
    if result["missing"]:
        return [f"{CJK_PAGE}: {len(result['missing'])} of {result['checked']} CJK characters render as "
                f"missing-glyph boxes ({result['missing'][:40]}): no font for Traditional Chinese "
                "(as root: apt-get install fonts-wqy-microhei)"]
    print(f"  {CJK_PAGE}: all {result['checked']} distinct CJK characters have glyphs (none drawn as the missing-glyph box), ok")
    return []


def check_page(chromium, base, page, texts, notebook, out_dir, url, branch):
    problems = []
    address = base + page
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            if response.status != 200:
                return [f"{page}: HTTP {response.status}"]
    except Exception as error:
        return [f"{page}: cannot be fetched ({error}); is it in the book?"]

    dom = run_chromium(chromium, ["--dump-dom", address])
    if dom.returncode != 0 or not dom.stdout.strip():
        return [f"{page}: chromium --dump-dom failed (exit {dom.returncode}): {dom.stderr.strip()[-500:]}"]
    for text in texts:
        if text not in dom.stdout:
            problems.append(f"{page}: the rendered page does not contain {text!r}")
    if notebook:
        org_repo = url[len("https://github.com/"):]
        link = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{notebook}"
        if link not in dom.stdout:
            problems.append(f"{page}: no Colab launch link {link}")

    png = out_dir / (page.replace("/", "_").replace(".html", ".png"))
    png.unlink(missing_ok=True)
    shot = run_chromium(chromium, [f"--screenshot={png}", f"--window-size={WINDOW}", address])
    if shot.returncode != 0 or not png.exists() or png.stat().st_size == 0:
        problems.append(f"{page}: no screenshot (exit {shot.returncode}): {shot.stderr.strip()[-500:]}")
        return problems
    try:
        import PIL  # noqa: F401
    except ImportError:
        print(f"  {page}: pixel check SKIPPED (Pillow is not installed)")
    else:
        problem = pixel_problem(png)
        if problem:
            problems.append(f"{page}: {problem} ({png})")
    print(f"  {page}: screenshot {png} ({png.stat().st_size // 1024} KB)" + ("" if problems else ", ok"))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(_nbtools.ROOT / "_build"), help="the build folder that holds html/ (default: _build)")
    parser.add_argument("--out", default=str(_nbtools.ROOT / "_build" / "screenshots"), help="where to save the screenshots (default: _build/screenshots)")
    parser.add_argument("--page", action="append", default=[], help="another page to check (path in the site, e.g. chapters/01_conv.html)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH)")
    parser.add_argument("--static-only", action="store_true", help="only read the built HTML; no browser")
    args = parser.parse_args(argv)

    html = Path(args.build) / "html"
    if not (html / "index.html").exists():
        print(f"no book in {html}: build it first (bash scripts/book.sh)", file=sys.stderr)
        return 1
    url, branch = _nbtools.repository()
    problems = static_problems(html, url, branch)
    if args.static_only:
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        print("✓ the built notebook pages pass the HTML checks (no browser: --static-only)")
        return 0
    chromium = _nbtools.find_chromium(args.chromium)
    if not chromium:
        print(_nbtools.CHROMIUM_MISSING, file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = default_pages() + [(p, [], None) for p in args.page]

    server, base = serve(html)
    print(f"serving {html} at {base}; {Path(chromium).name}: "
          + subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip())
    try:
        for page, texts, notebook in pages:
            problems += check_page(chromium, base, page, texts, notebook, out_dir, url, branch)
        if any(page == CJK_PAGE for page, _, _ in pages):
            problems += cjk_problems(chromium, base)
    finally:
        server.shutdown()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"✓ {len(pages)} page(s) render: headings, Colab links and non-blank screenshots in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
