#!/usr/bin/env python3
r"""Read the built book as a reader without internet would (a lecture hall, a train).

Serves <build>/html on 127.0.0.1 (as check_html.py does) and opens pages in ONE headless Chromium
in which every other host is unreachable: host names do not resolve (--host-resolver-rules) and
every connection that is not to this machine goes to a dead proxy (--proxy-server=127.0.0.1:9).
The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe; no extra
Python package). For each page it
- records every request the page makes: a request to any other host fails the check (offline it
  would be a missing script, image or font), as does a local request that fails or answers an
  error (say, a MathJax font missing from the book's copy);
- waits for MathJax, then checks that the math is typeset: MathJax's <mjx-container> elements are
  there and no raw \( or \[ is left in the text (code and outputs aside);
- checks that every image shows (loaded, not broken), animation frames included, that every
  animation plays, and that the icons of its buttons are drawn; on the search page, that the
  search finds something;
- takes screenshots into <out>/: the top of the page, and, when the page has them, the first
  displayed equation and the first animation (look at them).
Then it opens the glossary from file:// (a reader who opens _build/html/index.html from a USB stick)
with the same checks, and prints the size of the site and of its MathJax.

Pages: the welcome pages (English and 繁體中文), the glossary, every chapter, the first exercise and
the search page with a query (search reads its index from the book), plus any --page.
Chromium's own background traffic (updates, ...) is not the book's: only the pages' requests are
checked.

Usage:
    python scripts/check_offline.py                     # the book in _build/ (bash scripts/book.sh)
    python scripts/check_offline.py --build /tmp/x/_build --page book/setup.html
Exit status 1 when a page fetches from elsewhere or does not render; 2 when Chromium is missing.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402
from _nbtools import OFFLINE_FLAGS, DevToolsPipe, find_chromium  # noqa: E402,F401 (also importable from here)
from check_html import serve  # noqa: E402

VIEWPORT = (1280, 1000)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
LOCAL_SCHEMES = {"data", "blob", "about", "file", "chrome", "chrome-extension", "devtools"}
MATHJAX_WAIT_MS = 15000
FILE_PAGE = "book/glossary.html"

# What the page shows, read in the page once MathJax is done (returns JSON).
REPORT_JS = r"""
(async () => {
  const started = Date.now();
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, new Promise(r => setTimeout(r, %(wait)d))]);
  }
  // animations start 500 ms after their script ran (widgets.animation_html)
  const playersNow = () => Object.keys(window).filter(k => /^anim[0-9a-f]{32}$/.test(k)).map(k => window[k]);
  const frames = document.querySelectorAll("[id^=_anim_img]").length;
  for (let waited = 0; frames && waited < 3000; waited += 50) {
    const players = playersNow();
    if (players.length >= frames && players.every(p => p.timer)) break;
    await new Promise(r => setTimeout(r, 50));
  }
  // the search page lists its results as it reads searchindex.js
  const searching = location.pathname.endsWith("/search.html") && new URLSearchParams(location.search).get("q");
  const results = () => document.querySelectorAll("#search-results li").length;
  for (let waited = 0, last = -1, still = 0; searching && waited < 3000 && still < 5; waited += 50) {
    const now = results();  // done when there are results and their number stopped changing
    still = now && now === last ? still + 1 : 0;
    last = now;
    await new Promise(r => setTimeout(r, 50));
  }
  const skip = new Set(["SCRIPT", "STYLE", "PRE", "CODE", "TEXTAREA", "NOSCRIPT", "MJX-CONTAINER"]);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode(node) {
    for (let e = node.parentElement; e; e = e.parentElement) {
      // (code, outputs, and the search's text snippets, which are never typeset, online either)
      if (skip.has(e.tagName) || e.classList.contains("output") || e.id === "search-results") {
        return NodeFilter.FILTER_REJECT;
      }
    }
    return NodeFilter.FILTER_ACCEPT;
  }});
  while (walker.nextNode()) {
    const text = walker.currentNode.nodeValue;
    if (/\\\(|\\\[/.test(text)) raw.push(text.trim().slice(0, 80));
  }
  const images = [...document.images].map(img => ({
    src: (img.currentSrc || img.src).slice(0, 120), alt: img.alt.slice(0, 60),
    ok: img.complete && img.naturalWidth > 0, frame: img.id.startsWith("_anim_img")}));
  const players = playersNow();
  const buttons = [...document.querySelectorAll(".mobilevit-animation button, .animation button")];
  const blankButtons = buttons.filter(b => {
    const icon = b.querySelector("svg, i");
    if (!icon) return !b.textContent.trim();
    if (icon.tagName.toLowerCase() === "svg") return false;
    const before = getComputedStyle(icon, "::before").content;
    return !before || before === "none" || before === "normal" || before === '""';
  }).length;
  const math = document.querySelectorAll("mjx-container");
  return JSON.stringify({
    title: document.title, mathjax: !!(window.MathJax && MathJax.version), version: window.MathJax && MathJax.version,
    math: math.length, mathElements: document.querySelectorAll(".math").length, raw,
    images, animations: players.length, playing: players.filter(p => p.timer).length,
    buttons: buttons.length, blankButtons, search: searching ? results() : null, ms: Date.now() - started,
  });
})()
"""


def is_local(url):
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.hostname or "") in LOCAL_HOSTS


def network_problems(events, session):
    """Requests of the page (from the DevTools events) that left the machine, failed or got an error."""
    requests, problems = {}, []
    for event in events:
        if event.get("sessionId") != session:
            continue
        params = event.get("params", {})
        method = event.get("method")
        if method == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            url = params["response"]["url"]
            # (Chromium asks every site for /favicon.ico by itself; the book has none)
            if status >= 400 and is_local(url) and urlsplit(url).path != "/favicon.ico":
                problems.append(f"HTTP {status} for {url}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = requests.get(params["requestId"], "?")
            if is_local(url):
                problems.append(f"failed to load {url} ({params.get('errorText')})")
    outside = sorted({url for url in requests.values() if not is_local(url)})
    problems[:0] = [f"a request left the machine: {url}" for url in outside]
    return problems, len(requests)


def page_problems(report):
    """What the page's own report (REPORT_JS) says is wrong."""
    problems = []
    if report["mathElements"] and not report["mathjax"]:
        problems.append(f"{report['mathElements']} math element(s) but MathJax did not load")
    elif report["mathElements"] and not report["math"]:
        problems.append("MathJax loaded but typeset nothing (no <mjx-container>)")
    problems += [f"raw TeX left in the text: {text!r}" for text in report["raw"][:5]]
    for image in report["images"]:
        if not image["ok"]:
            what = "animation frame" if image["frame"] else "image"
            problems.append(f"{what} does not show: {image['src']} (alt {image['alt']!r})")
    if report["playing"] < report["animations"]:
        problems.append(f"{report['animations'] - report['playing']} of {report['animations']} animation(s) not playing")
    if report.get("search") == 0:
        problems.append("the search found nothing (is searchindex.js served?)")
    if report["blankButtons"]:
        problems.append(f"{report['blankButtons']} of {report['buttons']} animation button(s) without an icon")
    return problems


def screenshot(browser, session, path, clip_js=None):
    """Save the viewport (or the region that clip_js returns as {x, y, width, height}) as PNG; False
    when there is no such region."""
    clip = None
    if clip_js:  # scrolls the region into view: capturing beyond the viewport re-lays out the whole page
        clip = browser.evaluate(session, clip_js)
        if not clip:
            return False
    else:
        browser.evaluate(session, "window.scrollTo(0, 0)")
    browser.screenshot(session, path, clip, optimize_for_speed=True)
    return True


CLIP_AROUND = """(() => {
  const e = document.querySelector(%s);
  if (!e) return null;
  const top = Math.max(0, e.getBoundingClientRect().top + window.scrollY - %d);
  window.scrollTo(0, top);
  const r = e.getBoundingClientRect();
  return {x: 0, y: window.scrollY + r.top - %d, width: %d, height: Math.min(window.innerHeight, r.height + 2 * %d)};
})()"""


def check_page(browser, session, url, name, out_dir):
    """Open `url`, check it as a reader without network would see it; (problems, one-line summary)."""
    browser.events.clear()
    opened = time.monotonic()
    browser.send("Page.navigate", {"url": url}, session)
    browser.wait_event("Page.loadEventFired", session, timeout=60)
    result = browser.send("Runtime.evaluate", {
        "expression": REPORT_JS % {"wait": MATHJAX_WAIT_MS},
        "awaitPromise": True, "returnByValue": True}, session, timeout=MATHJAX_WAIT_MS / 1000 + 30)
    if "exceptionDetails" in result:
        return [f"{name}: the page check raised {result['exceptionDetails'].get('text')}"], ""
    report = json.loads(result["result"]["value"])
    problems, n_requests = network_problems(browser.events, session)
    problems += page_problems(report)

    shots = []
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace(".html", "")).strip("_")
    if screenshot(browser, session, out_dir / f"{stem}.png"):
        shots.append(f"{stem}.png")
    width = VIEWPORT[0]
    if screenshot(browser, session, out_dir / f"{stem}-math.png",
                  CLIP_AROUND % ('"mjx-container[display=\\"true\\"]"', 150, 150, width, 150)):
        shots.append(f"{stem}-math.png")
    if screenshot(browser, session, out_dir / f"{stem}-animation.png",
                  CLIP_AROUND % ('".mobilevit-animation"', 20, 20, width, 20)):
        shots.append(f"{stem}-animation.png")
    found = "" if report.get("search") is None else f"{report['search']} search result(s), "
    summary = (f"{name}: {report['math']} formula(s) typeset, {len(report['images'])} image(s), "
               f"{report['animations']} animation(s) playing {report['playing']}, {found}{n_requests} request(s), "
               f"{time.monotonic() - opened:.1f} s; screenshots {', '.join(shots)}")
    return [f"{name}: {p}" for p in problems], summary


def default_pages(html):
    """The welcome pages, the glossary, every chapter and the first exercise of the built book, and its
    search page with a query (offline search reads searchindex.js)."""
    pages = ["book/intro.html", "book/zh-tw.html", "book/glossary.html"]
    pages += [p.relative_to(html).as_posix() for p in sorted((html / "chapters").glob("*.html"))]
    pages += [p.relative_to(html).as_posix() for p in sorted((html / "exercises").glob("*.html"))][:1]
    return pages + ["search.html?q=attention"]


def folder_size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(_nbtools.ROOT / "_build"), help="the build folder that holds html/ (default: _build)")
    parser.add_argument("--out", help="where to save the screenshots (default: <build>/screenshots/offline)")
    parser.add_argument("--page", action="append", default=[], help="another page to check (path in the site)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH)")
    args = parser.parse_args(argv)

    start = time.monotonic()
    html = (Path(args.build) / "html").resolve()
    if not (html / "index.html").exists():
        print(f"no book in {html}: build it first (bash scripts/book.sh)", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    if not chromium:
        print(_nbtools.CHROMIUM_MISSING, file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else Path(args.build) / "screenshots" / "offline"
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = default_pages(html) + args.page
    missing = [p for p in pages if not (html / p.split("?")[0]).exists()]
    if missing:
        print("not in the built book: " + ", ".join(missing), file=sys.stderr)
        return 1

    server, base = serve(html)
    browser = DevToolsPipe(chromium, OFFLINE_FLAGS)
    problems = []
    try:
        _, session = browser.open_tab(VIEWPORT, ("Page", "Network", "Runtime"))
        print(f"serving {html} at {base}; the network is unreachable for the browser "
              f"({browser.send('Browser.getVersion')['product']})")
        urls = [(base + page, page) for page in pages]
        # and a page opened from disk: the glossary, the page with the most formulas for its weight
        # (what could differ under file:// is MathJax loading its fonts and extensions)
        urls.append(((html / FILE_PAGE).as_uri(), "file:" + FILE_PAGE))
        for url, name in urls:
            found, summary = check_page(browser, session, url, name, out_dir)
            print(("  ✗ " if found else "  ✓ ") + summary)
            problems += found
    finally:
        browser.close()
        server.shutdown()

    import resource

    used = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(u.ru_utime + u.ru_stime for u in used)
    mathjax = html / "_static" / "mathjax"
    print(f"site: {folder_size(html) / 1e6:.1f} MB in {sum(1 for f in html.rglob('*') if f.is_file())} files"
          f" (MathJax {folder_size(mathjax) / 1e6:.1f} MB); screenshots in {out_dir}; {time.monotonic() - start:.1f} s"
          f" ({cpu:.1f} s of CPU time, Chromium included)")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"✓ {len(urls)} page(s) read offline: math typeset, images and animations shown, no request left the machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
