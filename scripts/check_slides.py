#!/usr/bin/env python3
"""Measure every slide of every deck in headless Chromium, with the network unreachable.

Each deck is opened from disk (file://, as a lecturer opens it from a USB stick) in ONE headless
Chromium in which no host name resolves and every other connection goes to a dead proxy (the flags of
scripts/check_offline.py), driven over the DevTools protocol. For each deck:
- every request the page makes is recorded: one that leaves the machine fails the check;
- reveal.js started, MathJax 2 typeset every formula (and wrote no assistive MathML, which Chromium
  would draw beside each formula), every image loaded;
- every slide is shown in turn, at 1280×720 and at 1024×768, and measured: a slide whose content
  reaches below or beyond the slide area (reveal.js's width × height, which it scales to the window)
  overflows; the visible words (speaker notes left out), the longest code block (lines of a <pre>),
  the smallest text on the slide in screen pixels at 1280×720, the figures and their alt text.
Printed per deck: slides, overflowing, median words, longest code, smallest text, figures without alt.

Goals (fail the check):
- every deck: no overflowing slide, no request out, formulas typeset, figures loaded;
- lecture decks (`lecture-*.slides.html`, book/lectures/): also median <= 40 visible words per
  slide, no code block over 15 lines, no text under 24 px at 1280×720, every figure with alt text.
Screenshots of the lecture decks' slides (1280×720; every slide, or --shots N of them) land in <out>/.

Usage: python scripts/check_slides.py DECK.slides.html [...] [--out DIR] [--shots N]
(python scripts/slides.py --check builds the decks and runs this on all of them.)
Also `print_pdf(deck, pdf)`: the deck's reveal.js print view (?print-pdf) printed to PDF (used by
scripts/slides.py), one page per slide.
Exit 1 when a deck fails; 2 when Chromium is not installed.
"""

import argparse
import base64
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nbtools import OFFLINE_FLAGS, DevToolsPipe, find_chromium  # noqa: E402
from check_offline import network_problems  # noqa: E402

VIEWPORTS = [(1280, 720), (1024, 768)]
MIN_TEXT_PX = 24  # at 1280×720: readable from the back of a lecture hall
MAX_MEDIAN_WORDS = 40
MAX_CODE_LINES = 15
READY_TIMEOUT_S = 60

# Wait until reveal.js is ready and MathJax has typeset everything (returns what the deck loaded).
READY_JS = r"""
(async () => {
  const started = Date.now();
  const done = () => window.Reveal && Reveal.isReady && Reveal.isReady() &&
    (!window.MathJax || !MathJax.Hub || (MathJax.Hub.queue && MathJax.Hub.queue.pending === 0 &&
     !MathJax.Hub.queue.running && document.querySelectorAll('script[type^="math/tex"]').length <=
     document.querySelectorAll(".MathJax_CHTML").length + document.querySelectorAll(".MathJax_Error").length));
  while (!done() && Date.now() - started < %(timeout)d) await new Promise(r => setTimeout(r, 50));
  const images = [...document.images];
  return JSON.stringify({
    ready: !!(window.Reveal && Reveal.isReady && Reveal.isReady()),
    mathjax: !!window.MathJax,
    sources: document.querySelectorAll('script[type^="math/tex"]').length,
    typeset: document.querySelectorAll(".MathJax_CHTML").length,
    errors: document.querySelectorAll(".MathJax_Error, .mjx-merror").length,
    assistive: document.querySelectorAll(".MJX_Assistive_MathML").length,
    images: images.length, broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    ms: Date.now() - started,
  });
})()
"""

# Show every slide in turn and measure it (returns JSON: one record per slide).
MEASURE_JS = r"""
((fonts) => {
  const R = window.Reveal;
  R.configure({transition: "none", backgroundTransition: "none"});
  const {width: W, height: H} = R.getConfig();
  const area = document.querySelector(".reveal .slides");
  const out = [];
  const slides = R.getSlides();
  for (let n = 0; n < slides.length; n++) {
    const s = slides[n];
    const idx = R.getIndices(s);
    R.slide(idx.h, idx.v || 0);
    const a = area.getBoundingClientRect();
    const scale = a.height / H;  // screen pixels per slide pixel
    let bottom = 0, right = 0, minFont = 1e9, tiny = "";
    // the boxes that can reach the slide's edges: blocks, figures, code, tables, formulas, list items
    const boxes = s.querySelectorAll(":scope > *, :scope > * > *, .jp-Cell, .jp-OutputArea-output, img, pre, table," +
                                     " .MathJax_CHTML, li, p, h1, h2, h3, figure, .side > *");
    for (const e of boxes) {
      if (e.closest("aside.notes") || e.tagName === "SCRIPT" || e.tagName === "STYLE") continue;
      const r = e.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      bottom = Math.max(bottom, (r.bottom - a.top) / scale);
      right = Math.max(right, (r.right - a.left) / scale);
    }
    // horizontally clipped code: a <pre> whose lines are wider than its box
    const clipped = [...s.querySelectorAll("pre")].filter(p => !p.closest("aside.notes") &&
      (p.scrollWidth > p.clientWidth + 2 || [...p.querySelectorAll("code")].some(c => c.scrollWidth > c.clientWidth + 2))).length;
    // the smallest text: every visible text node's element (a formula counts by its own size, not its sub/superscripts)
    const walker = document.createTreeWalker(s, NodeFilter.SHOW_TEXT);
    while (fonts && walker.nextNode()) {
      const node = walker.currentNode;
      if (!node.nodeValue.trim()) continue;
      let e = node.parentElement;
      if (!e || e.closest("aside.notes, script, style")) continue;
      const math = e.closest(".MathJax_CHTML");
      if (math) e = math;
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const px = parseFloat(getComputedStyle(e).fontSize) * scale * (parseFloat(s.style.zoom) || 1);
      if (px < minFont) { minFont = px; tiny = (math ? "a formula" : node.nodeValue.trim().slice(0, 40)); }
    }
    const copy = s.cloneNode(true);
    copy.querySelectorAll("aside.notes, script, style, .MJX_Assistive_MathML").forEach(e => e.remove());
    copy.querySelectorAll(".MathJax_CHTML").forEach(e => e.replaceWith(" formula "));
    const words = (copy.textContent.match(/[^\s]+/g) || []).length;
    // text that did not render: a replacement character, or TeX left as it was typed
    const raw = /\uFFFD/.test(copy.textContent) ? "a replacement character (\uFFFD)" :
      (/\$[^$\s][^$]*\$/.test(copy.textContent) ? "raw TeX between $ signs" : "");
    const pres = [...s.querySelectorAll("pre")].filter(p => !p.closest("aside.notes"));
    const codeLines = Math.max(0, ...pres.map(p => p.textContent.replace(/\n+$/, "").split("\n").length));
    const imgs = [...s.querySelectorAll("img")];
    const title = (s.querySelector("h1, h2, h3") || {}).textContent || "";
    out.push({n: n + 1, h: idx.h, v: idx.v || 0, title: title.trim().slice(0, 60),
              bottom: Math.round(bottom), right: Math.round(right), scrollHeight: s.scrollHeight,
              overflow: bottom > H + 1 || right > W + 1 || clipped > 0, clipped,
              zoom: parseFloat(s.style.zoom) || 1, minFont: Math.round(minFont * 10) / 10, tiny, words, codeLines,
              raw, figures: imgs.length, noAlt: imgs.filter(i => !i.alt.trim()).length,
              broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length});
  }
  R.slide(0, 0);
  return JSON.stringify({width: W, height: H, slides: out});
})(%(fonts)s)
"""


def chromium():
    """The Chromium executable on PATH, or None (slides.py asks before printing the PDFs)."""
    return find_chromium()


class Browser:
    """One offline headless Chromium tab (DevTools over a pipe), reused for every deck."""

    def __init__(self):
        self.pipe = DevToolsPipe(chromium(), OFFLINE_FLAGS)
        _, self.session = self.pipe.open_tab(VIEWPORTS[0], ("Page", "Network", "Runtime"))

    def viewport(self, width, height):
        self.pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                              "deviceScaleFactor": 1, "mobile": False}, self.session)

    def evaluate(self, expression, timeout=60):
        return self.pipe.evaluate(self.session, expression, timeout, await_promise=True)

    def open(self, url):
        """Navigate, wait for reveal.js and MathJax; returns READY_JS's report."""
        self.pipe.events.clear()
        self.pipe.send("Page.navigate", {"url": url}, self.session)
        self.pipe.wait_event("Page.loadEventFired", self.session, timeout=READY_TIMEOUT_S)
        return json.loads(self.evaluate(READY_JS % {"timeout": READY_TIMEOUT_S * 1000}, timeout=READY_TIMEOUT_S + 10))

    def screenshot(self, path):
        self.pipe.screenshot(self.session, path)

    def close(self):
        self.pipe.close()


def pdf_pages(data):
    """The number of pages of a PDF (its page objects)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


def print_pdf(deck, target, browser=None):
    """Print `deck`'s reveal.js print view (?print-pdf: one page per slide, at the slide size) to
    `target` with headless Chromium, offline. Returns the number of pages."""
    own = browser is None
    browser = browser or Browser()
    try:
        browser.viewport(*VIEWPORTS[0])
        report = browser.open(Path(deck).resolve().as_uri() + "?print-pdf")
        if not report["ready"]:
            raise RuntimeError(f"{Path(deck).name}: reveal.js did not start in the print view")
        browser.evaluate("new Promise(r => setTimeout(r, 300))")  # reveal lays the pages out after ready
        data = browser.pipe.send("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True},
                                 browser.session, timeout=120)["data"]
    finally:
        if own:
            browser.close()
    raw = base64.b64decode(data)
    Path(target).write_bytes(raw)
    return pdf_pages(raw)


def summarise(name, records, lecture):
    """One line of measurements and the problems (sentences) of one deck at one viewport."""
    slides = len(records)
    over = [r for r in records if r["overflow"]]
    words = statistics.median(r["words"] for r in records) if records else 0
    code = max((r["codeLines"] for r in records), default=0)
    font = min((r["minFont"] for r in records), default=0)
    font_text = f"{font:g} px" if font < 1e8 else "not measured"
    no_alt = sum(r["noAlt"] for r in records)
    zoomed = [r for r in records if r["zoom"] < 1]
    problems = [f"slide {r['n']} ({r['title']!r}) overflows: content to {r['bottom']} px down / {r['right']} px"
                f" across{', code clipped' if r['clipped'] else ''}" for r in over]
    problems += [f"slide {r['n']} ({r['title']!r}): {r['broken']} image(s) did not load" for r in records if r["broken"]]
    problems += [f"slide {r['n']} ({r['title']!r}) shows {r['raw']}" for r in records if r["raw"]]
    if lecture:
        if words > MAX_MEDIAN_WORDS:
            problems.append(f"median {words:g} visible words per slide (goal <= {MAX_MEDIAN_WORDS})")
        problems += [f"slide {r['n']} ({r['title']!r}): a code block of {r['codeLines']} lines (at most {MAX_CODE_LINES})"
                     for r in records if r["codeLines"] > MAX_CODE_LINES]
        problems += [f"slide {r['n']} ({r['title']!r}): {r['noAlt']} figure(s) without alt text" for r in records if r["noAlt"]]
    line = (f"{slides} slides, {len(over)} overflowing, median {words:g} words, longest code {code} lines,"
            f" smallest text {font_text}, {sum(r['figures'] for r in records)} figures ({no_alt} without alt)")
    if zoomed:
        line += f", {len(zoomed)} scaled to fit (smallest ×{min(r['zoom'] for r in zoomed):.2f})"
    return line, problems


def check_deck(browser, deck, out, shots):
    """Problems of one deck (sentences) and its measurements."""
    deck = Path(deck)
    lecture = deck.name.startswith("lecture-")
    problems = []
    started = time.monotonic()
    browser.viewport(*VIEWPORTS[0])
    report = browser.open(deck.resolve().as_uri())
    opened = time.monotonic() - started
    net, n_requests = network_problems(browser.pipe.events, browser.session)
    problems += [p for p in net if "left the machine" in p or "failed" in p]
    if not report["ready"]:
        return [f"reveal.js did not start (a script did not load): {report}"], {}
    if report["typeset"] < report["sources"]:
        problems.append(f"MathJax typeset {report['typeset']} of {report['sources']} formula(s)")
    if report["errors"]:
        problems.append(f"{report['errors']} formula(s) with a TeX error")
    if report["assistive"]:
        problems.append("MathJax wrote assistive MathML, which Chromium shows beside each formula")
    if report["broken"]:
        problems.append(f"{report['broken']} of {report['images']} image(s) did not load")
    measured = {}
    for width, height in (VIEWPORTS if lecture else VIEWPORTS[:1]):  # chapter decks: 1280×720
        browser.viewport(width, height)
        browser.evaluate("Reveal.layout(), 0")
        fonts = "true" if lecture and (width, height) == VIEWPORTS[0] else "false"
        result = json.loads(browser.evaluate(MEASURE_JS % {"fonts": fonts}, timeout=120))
        line, found = summarise(deck.name, result["slides"], lecture and (width, height) == VIEWPORTS[0])
        if (width, height) != VIEWPORTS[0]:  # at 1024×768 only overflow counts
            found = [p for p in found if "overflows" in p]
        elif lecture:
            found += [f"slide {r['n']} ({r['title']!r}): text of {r['minFont']:g} px ({r['tiny']!r}),"
                      f" smaller than {MIN_TEXT_PX} px at 1280×720" for r in result["slides"] if r["minFont"] < MIN_TEXT_PX]
        measured[(width, height)] = (line, result["slides"])
        problems += [f"at {width}×{height}: {p}" for p in found]
    taken = []
    if lecture and out:
        out.mkdir(parents=True, exist_ok=True)
        browser.viewport(*VIEWPORTS[0])
        browser.evaluate("Reveal.layout(), 0")
        records = measured[VIEWPORTS[0]][1]
        chosen = records if shots is None else records[:: max(1, len(records) // max(1, shots))][:shots]
        for r in chosen:
            browser.evaluate(f"Reveal.slide({r['h']}, {r['v']}), 0")
            path = out / f"{deck.name.replace('.slides.html', '')}-{r['n']:02d}.png"
            browser.screenshot(path)
            taken.append(path)
    print(f"{'✓' if not problems else '✗'} {deck.name} ({time.monotonic() - started:.1f} s, opened in {opened:.1f} s, {n_requests} requests,"
          f" {report['typeset']}/{report['sources']} formulas)")
    for (width, height), (line, _) in measured.items():
        print(f"    {width}×{height}: {line}")
    if taken:
        print(f"    screenshots: {len(taken)} in {out} ({taken[0].name} …)")
    return problems, measured


def check(decks, out, shots=10, browser=None):
    if not chromium():
        print("chromium is not installed (Debian: apt-get install chromium): the offline deck check cannot run")
        return 2
    failed = False
    own = browser is None
    browser = browser or Browser()
    started = time.monotonic()
    try:
        for deck in decks:
            problems, _ = check_deck(browser, deck, Path(out), shots)
            for problem in problems:
                failed = True
                print(f"  ✗ {Path(deck).name}: {problem}")
    finally:
        if own:
            browser.close()
    print(f"{'✓' if not failed else '✗'} {len(decks)} deck(s) measured in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("_build/slides/screenshots"))
    parser.add_argument("--shots", type=int, default=12, help="screenshots per lecture deck (0: every slide)")
    args = parser.parse_args(argv)
    return check(args.decks, args.out, None if args.shots == 0 else args.shots)


if __name__ == "__main__":
    sys.exit(main())
