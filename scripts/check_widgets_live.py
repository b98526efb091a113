#!/usr/bin/env python3
"""Check the course's explorers (ipywidgets) live: in JupyterLab, in Chromium, with a running kernel.

The book shows the explorers' static twins (animations); nbval checks the notebooks' text. Neither shows
that a slider renders in a real frontend and that moving it redraws the figure. This command does:

1. copies chapters 1 and 3 into a temporary folder (JupyterLab saves what it runs: never the repository's
   notebooks) and starts JupyterLab headless from the course's environment (.venv: its kernel, its
   ipywidgets and the JupyterLab widget manager), on 127.0.0.1 with a random token, settings and
   workspaces in the temporary folder, nothing fetched (no news, no update check);
2. opens each notebook in headless Chromium (driven over the DevTools protocol on a pipe, as
   scripts/check_offline.py does; the network unreachable but for this machine), in a tab of its own,
   and runs, through JupyterLab's own command (`notebook:run-cell`, what Ctrl+Enter does), the cells
   the explorer needs: those that import, then the explorer's (--every-cell: every code cell up to the
   explorer's; the rest of the notebook is nbval's business);
3. checks that the explorer rendered: an ipywidgets `interactive` with its sliders (chapter 1: kernel,
   stride, padding, dilation, output row, output col; chapter 3: log₂ d, seed) and a figure;
4. drags the first slider's handle with the mouse (Chromium's input events, as a reader would), and
   checks that the slider's readout changed and that a NEW figure replaced the old one within 30 s;
5. saves screenshots of the explorer before and after into <out> (default _build/screenshots/widgets):
   look at them.
It stops JupyterLab and Chromium whatever happens. Exit status 1 when a check fails, 2 when Chromium is
missing (scripts/test.sh then skips this step with a message).

Usage:
    python scripts/check_widgets_live.py                 # chapters 1 and 3
    python scripts/check_widgets_live.py --out /tmp/shots --keep
Run it with the Python of .venv (scripts/test.sh does).
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402
from _nbtools import OFFLINE_FLAGS, DevToolsPipe  # noqa: E402

# notebook -> (a string of the explorer's cell, the sliders' descriptions in order)
NOTEBOOKS = {
    "chapters/01_conv_unfold.ipynb": ("receptive_field_explorer(",
                                      ["kernel", "stride", "padding", "dilation", "output row", "output col"]),
    "chapters/03_attention.ipynb": ("attention_scale_explorer(", ["log₂ d", "seed"]),
}
VIEWPORT = (1280, 1100)

# The explorer in the page: the output area that holds an ipywidgets `interactive` (.widget-interact).
EXPLORER_JS = r"""(() => {
  const box = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-interact');
  if (!box) return null;
  const sliders = [...box.querySelectorAll('.widget-slider, .widget-hslider')].filter(s => s.offsetParent);
  const img = box.querySelector('.widget-output img, .jp-OutputArea img');
  const handles = sliders.map(s => s.querySelector('.noUi-handle, .ui-slider-handle'));
  return {
    labels: sliders.map(s => (s.querySelector('.widget-label') || {}).textContent),
    readouts: sliders.map(s => { const r = s.querySelector('.widget-readout');
                                 return r ? (r.value !== undefined && r.value !== '' ? r.value : r.textContent) : null; }),
    handles: handles.map(h => { if (!h) return null; const r = h.getBoundingClientRect();
                                return {x: r.x + r.width / 2, y: r.y + r.height / 2}; }),
    tracks: sliders.map(s => { const t = s.querySelector('.noUi-target, .ui-slider, .slider-container');
                               if (!t) return null; const r = t.getBoundingClientRect();
                               return {left: r.left, right: r.right, y: r.top + r.height / 2}; }),
    image: img ? img.src.slice(-200) + ':' + img.src.length : null,
    imageShown: !!(img && img.complete && img.naturalWidth > 0),
    errors: [...box.querySelectorAll('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')]
              .map(e => e.textContent.slice(0, 300)),
    clip: (() => { box.scrollIntoView({block: 'start'}); const r = box.getBoundingClientRect();
                   return {x: Math.max(0, r.x - 8), y: Math.max(0, r.y - 8) + window.scrollY,
                           width: Math.min(r.width + 16, innerWidth), height: Math.min(r.height + 16, innerHeight)}; })(),
  };
})()"""

# Run, with JupyterLab's own command (`notebook:run-cell`, what Ctrl+Enter does), the notebook's code
# cells up to the one whose source holds `marker`: all of them with `every`, else the cells that import
# (the explorer's cell needs only those) and the explorer's cell; resolves to {ran, index, error}.
RUN_TO_JS = r"""(async (marker, every) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  const notebook = panel.content;
  const cells = notebook.widgets;
  const source = c => c.model.sharedModel.getSource();
  const target = cells.findIndex(c => c.model.type === 'code' && source(c).includes(marker));
  if (target < 0) return {ran: 0, index: -1, error: 'no cell holds ' + marker};
  let ran = 0;
  for (let index = 0; index <= target; index++) {
    const cell = cells[index];
    if (cell.model.type !== 'code') continue;
    if (!every && index !== target && !/^\s*(import|from) /m.test(source(cell))) continue;
    notebook.activeCellIndex = index;
    const ok = await app.commands.execute('notebook:run-cell');
    ran++;
    if (ok === false) return {ran, index, error: 'cell ' + index + ' failed'};
  }
  notebook.activeCellIndex = target;
  cells[target].node.scrollIntoView();
  return {ran, index: target, error: null};
})"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root, port, token, home):
    """JupyterLab of this Python's environment on 127.0.0.1:port, serving `root`; returns the process."""
    env = dict(os.environ)
    for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                      ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                      ("IPYTHONDIR", "ipython")):
        env[name] = str(home / sub)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]  # the 'pypi' manager would query PyPI
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    log = open(home / "jupyterlab.log", "w")
    return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for_lab(port, token, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as answer:
                return json.load(answer)
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("JupyterLab did not answer within 60 s")


def drag(browser, session, start, end):
    """Press the mouse at `start`, move to `end` in a few steps, release: a reader dragging a handle."""
    def mouse(kind, x, y, buttons):
        browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                  "buttons": buttons, "clickCount": 1}, session)
    mouse("mouseMoved", start["x"], start["y"], 0)
    mouse("mousePressed", start["x"], start["y"], 1)
    for k in range(1, 6):
        mouse("mouseMoved", start["x"] + (end["x"] - start["x"]) * k / 5, start["y"], 1)
    mouse("mouseReleased", end["x"], start["y"], 0)


def check_notebook(browser, session, base, token, rel, out_dir, every=False):
    """Open `rel` in JupyterLab, run it to its explorer, check and move the explorer; (problems, summary)."""
    marker, labels = NOTEBOOKS[rel]
    name = Path(rel).stem
    start = time.monotonic()
    browser.send("Page.navigate", {"url": f"{base}/lab/tree/{Path(rel).name}?token={token}&reset"}, session)
    browser.wait_until(session, "!!(window.jupyterapp && jupyterapp.shell.currentWidget &&"
               " jupyterapp.shell.currentWidget.content && jupyterapp.shell.currentWidget.content.widgets &&"
               " jupyterapp.shell.currentWidget.content.widgets.length)", 60, f"{rel} did not open in JupyterLab")
    opened = time.monotonic() - start
    run = browser.evaluate(session, f"{RUN_TO_JS}({json.dumps(marker)}, {json.dumps(every)})", timeout=300,
                   await_promise=True)
    if run["error"]:
        return [f"{rel}: {run['error']}"], f"{rel}: {run['error']}"
    ran = time.monotonic() - start - opened
    state = browser.wait_until(session, f"(() => {{ const s = {EXPLORER_JS}; return s && s.imageShown &&"
                       f" s.labels.length >= {len(labels)} ? s : null; }})()", 60,
                       f"{rel}: the explorer (sliders and a figure) did not render")
    problems = []
    if state["labels"] != labels:
        problems.append(f"{rel}: the sliders are {state['labels']}, expected {labels}")
    if state["errors"]:
        problems.append(f"{rel}: the explorer printed errors: {state['errors']}")
    before_png = out_dir / f"{name}-explorer-before.png"
    browser.screenshot(session, before_png, state["clip"])
    state = browser.evaluate(session, EXPLORER_JS)  # positions after scrolling the explorer into view
    handle, track = state["handles"][0], state["tracks"][0]
    if not handle or not track:
        return problems + [f"{rel}: no handle to drag on the first slider"], f"{rel}: no slider handle"
    target = {"x": handle["x"] + (track["right"] - handle["x"]) * 0.45, "y": handle["y"]}
    drag(browser, session, handle, target)
    moved = time.monotonic()
    before = state
    try:
        after = browser.wait_until(session, f"(() => {{ const s = {EXPLORER_JS}; return s && s.imageShown &&"
                           f" s.image !== {json.dumps(before['image'])} ? s : null; }})()", 30,
                           f"{rel}: moving the slider '{labels[0]}' did not redraw the figure")
    except TimeoutError as error:
        browser.screenshot(session, out_dir / f"{name}-explorer-after.png", before["clip"])
        return problems + [str(error)], f"{rel}: no redraw"
    redraw = time.monotonic() - moved
    time.sleep(0.3)  # let the new image settle before the screenshot
    after = browser.evaluate(session, EXPLORER_JS)
    browser.screenshot(session, out_dir / f"{name}-explorer-after.png", after["clip"])
    if after["readouts"][0] == before["readouts"][0]:
        problems.append(f"{rel}: the slider's readout did not change ({before['readouts'][0]})")
    if after["errors"]:
        problems.append(f"{rel}: the explorer printed errors after the move: {after['errors']}")
    summary = (f"{rel}: opened in {opened:.1f} s, {run['ran']} code cells run in {ran:.1f} s; sliders "
               f"{', '.join(after['labels'])}; '{labels[0]}' dragged {before['readouts'][0]} -> "
               f"{after['readouts'][0]}: new figure in {redraw:.1f} s; {before_png.name}, {name}-explorer-after.png")
    return problems, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(_nbtools.ROOT / "_build" / "screenshots" / "widgets"),
                        help="where to save the screenshots (default: _build/screenshots/widgets)")
    parser.add_argument("--notebook", action="append", choices=sorted(NOTEBOOKS),
                        help="only these notebooks (default: all of them)")
    parser.add_argument("--chromium", help="the Chromium executable (default: chromium on PATH)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (JupyterLab's log)")
    parser.add_argument("--every-cell", action="store_true", help="run every code cell before the explorer's"
                        " (default: the cells that import, then the explorer's: about 20 s less)")
    args = parser.parse_args(argv)

    start = time.monotonic()
    chromium = _nbtools.find_chromium(args.chromium)
    if not chromium:
        print(_nbtools.CHROMIUM_MISSING, file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="widgets-live-"))
    root = tmp / "notebooks"
    root.mkdir()
    notebooks = args.notebook or list(NOTEBOOKS)
    for rel in notebooks:
        shutil.copy2(_nbtools.ROOT / rel, root / Path(rel).name)
    port, token = free_port(), base64.b32encode(os.urandom(15)).decode().lower()
    lab = start_lab(root, port, token, tmp)
    browser = None
    problems = []
    try:
        status = wait_for_lab(port, token, lab)
        print(f"JupyterLab {status.get('version', '')} of {sys.prefix} on 127.0.0.1:{port}: up in "
              f"{time.monotonic() - start:.1f} s")
        browser = DevToolsPipe(chromium, OFFLINE_FLAGS)
        for rel in notebooks:
            # a tab per notebook: leaving a JupyterLab page asks "leave the page?", which would block
            target, session = browser.open_tab(VIEWPORT)
            try:
                found, summary = check_notebook(browser, session, f"http://127.0.0.1:{port}", token, rel, out_dir,
                                                args.every_cell)
            except (TimeoutError, RuntimeError) as error:
                found, summary = [str(error)], f"{rel}: {error}"
            try:
                browser.send("Target.closeTarget", {"targetId": target}, timeout=10)
            except (TimeoutError, RuntimeError):
                pass
            print(("  ✗ " if found else "  ✓ ") + summary, flush=True)
            problems += found
    finally:
        if browser:
            browser.close()
        lab.terminate()
        try:
            lab.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
        if args.keep or problems:
            print(f"  JupyterLab's log: {tmp / 'jupyterlab.log'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"screenshots in {out_dir}; {time.monotonic() - start:.1f} s")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"✓ the explorers of {' and '.join(notebooks)} render in JupyterLab and redraw when a slider moves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
