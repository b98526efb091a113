#!/usr/bin/env python3
"""Open lecture decks in headless Chromium with the network unreachable, and check what renders.

For each deck (a file:// page, as a lecturer opens it from a USB stick), Chromium runs with every
host name unresolvable (but localhost) and a proxy that refuses, so nothing can leave the machine,
and records its network log. Then, from the rendered DOM (--dump-dom):
- reveal.js started (`.reveal` has the class `ready`) and the deck has its slides (`<section>`s);
- MathJax 2 typeset the math (CHTML elements, and as many as there are TeX sources), without the
  assistive MathML copy that Chromium would draw beside every formula;
- the figures are there (inline PNGs) and no image failed to load;
- the network log holds no request of the page to anything but local files (an http(s) URL is a
  failure: some script, style or font would be missing in a lecture hall without internet);
  Chromium's own background traffic (clock, updates) is not the deck's and is left out.
Screenshots of the first slides land in <out>/ (1280×800) for a person to look at.

Usage: python scripts/check_slides.py DECK.slides.html [...] [--out DIR]
(python scripts/slides.py --check builds the decks and runs this on the lecture deck and one chapter's.)
Exit 1 when a deck fails; 2 when Chromium is not installed.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--disable-quic",
    # no network: every name but localhost fails to resolve, and any proxied request is refused
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--proxy-server=http://127.0.0.1:9",
    "--virtual-time-budget=10000",
]


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(url, *extra, timeout=90):
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                                capture_output=True, text=True, timeout=timeout)
    return result.stdout


def requests_in_net_log(path):
    """Every URL the page asked for, from Chromium's --log-net-log JSON. The browser's own traffic
    (its clock, updates, accounts) is left out: its requests have no origin as initiator."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if not text.rstrip().endswith("}"):  # Chromium may leave the events list unterminated
        text = text.rstrip().rstrip(",") + "]}"
    urls = set()
    for event in json.loads(text).get("events", []):
        params = event.get("params") or {}
        if params.get("url") and "initiator" in params and params["initiator"] != "not an origin":
            urls.add(params["url"])
    return urls


def check_deck(deck, out):
    """Problems of one deck, as sentences ([] when it renders offline)."""
    problems = []
    url = deck.resolve().as_uri()
    with tempfile.TemporaryDirectory() as tmp:
        net_log = Path(tmp) / "net.json"
        dom = run_chromium(url, f"--log-net-log={net_log}", "--dump-dom")
        remote = sorted(u for u in requests_in_net_log(net_log) if re.match(r"(?i)(https?|wss?)://", u)
                        and not re.match(r"(?i)(https?|wss?)://(localhost|127\.0\.0\.1)[:/]", u))
    if remote:
        problems.append(f"asked the network for {len(remote)} URL(s): {', '.join(remote[:5])}")
    if not re.search(r'<div class="reveal[^"]*\bready\b', dom):
        problems.append("reveal.js did not start (no .reveal.ready): a script did not load")
    sections = dom.count("<section")
    if sections < 3:
        problems.append(f"only {sections} <section> slide(s)")
    sources = len(re.findall(r'<script type="math/tex', dom))
    typeset = len(re.findall(r'class="mjx-chtml', dom))
    if "$" in deck.read_text(encoding="utf-8") and sources == 0:
        problems.append("MathJax 2 did not run (no math/tex scripts): math shows as raw TeX")
    elif typeset < sources:
        problems.append(f"MathJax 2 typeset {typeset} of {sources} formula(s)")
    if 'class="MJX_Assistive_MathML' in dom:  # Chromium draws it: every formula would show twice
        problems.append("MathJax 2 wrote assistive MathML, which Chromium shows beside each formula")
    figures = dom.count('src="data:image/png')
    if figures == 0:
        problems.append("no figure (inline PNG) in the deck")
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for index in (0, 1):
        shot = out / f"{deck.name.replace('.slides.html', '')}-{index}.png"
        run_chromium(f"{url}#/{index}", f"--screenshot={shot}", "--window-size=1280,800")
        if shot.exists() and shot.stat().st_size > 0:
            shots.append(shot)
    if not shots:
        problems.append("Chromium wrote no screenshot")
    print(f"{'✓' if not problems else '✗'} {deck.name}: {sections} slides, {typeset}/{sources} formulas typeset,"
          f" {figures} figures, {len(remote)} remote request(s); screenshots: {', '.join(s.name for s in shots)}")
    return problems


def check(decks, out):
    if not chromium():
        print("chromium is not installed (Debian: apt-get install chromium): the offline deck check cannot run")
        return 2
    failed = False
    for deck in decks:
        for problem in check_deck(Path(deck), Path(out)):
            failed = True
            print(f"  ✗ {Path(deck).name}: {problem}")
    return 1 if failed else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("decks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("_build/slides/screenshots"))
    args = parser.parse_args(argv)
    return check(args.decks, args.out)


if __name__ == "__main__":
    sys.exit(main())
