"""What the notebook scripts share: where the notebooks are, the repository address, reading and
writing notebooks in one stable form, and the "skeleton" of a notebook (what the sync checks compare).

Also what a static page may show: the rules for widgets and animations in HTML, which the tests
apply to notebook outputs and check_html.py to the built book.

And the one way the browser checks start headless Chromium (find_chromium, run_chromium for a one-shot
page, DevToolsPipe for a browser driven over the DevTools protocol, with open_tab, evaluate, wait_until
and screenshot).

Not a command; imported by execute_notebooks.py, stamp_colab.py, make_exercises.py, the check_*.py
scripts and the tests.
"""

import base64
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIRS = ("book", "chapters", "solutions", "exercises")

# Cell metadata that Jupyter front ends change while a notebook is viewed or run: not part of what a
# notebook *is*, so the sync checks ignore it.
VOLATILE_CELL_METADATA = {"execution", "collapsed", "scrolled", "jupyter", "editable", "deletable", "trusted"}

STANDARD_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

# A live ipywidgets view: in a static page it is a control that moves nothing.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# The frame <img> of matplotlib's to_jshtml player, one per animation.
ANIMATION_FRAME = 'id="_anim_img'


def animation_problems(html_text):
    """What the animations in `html_text` lack, as widgets.animation_html(anim, alt=...) writes them:
    a described frame (alt), a labelled role="img" container, and the call that starts playing.
    [] when every animation has all three (or there is none)."""
    frames = html_text.count(ANIMATION_FRAME)
    if not frames:
        return []
    lacking = {
        "alt text on the frame": len(re.findall(r'<img alt="[^"]*[^"\s][^"]*" ' + ANIMATION_FRAME, html_text)),
        'a role="img" container with an aria-label': len(
            re.findall(r'<div class="mobilevit-animation" role="img" aria-label="[^"]*[^"\s][^"]*"', html_text)),
        "autoplay": html_text.count(".play_animation(); }"),
    }
    return [f"{frames - found} of {frames} animation(s) without {what}"
            for what, found in lacking.items() if found < frames]


def find_notebooks(folders=NOTEBOOK_DIRS, root=ROOT):
    """Every `*.ipynb` directly inside each folder (as the globs of _toc.yml see them), sorted."""
    found = []
    for folder in folders:
        found += sorted(p for p in (Path(root) / folder).glob("*.ipynb") if p.is_file())
    return found


def relpath(path, root=ROOT):
    """The notebook's path relative to the repository root, with forward slashes."""
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def repository(root=ROOT):
    """(url, branch) from `repository:` in _config.yml: the one place the address is written."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch", "main")
    if not url:
        raise SystemExit("_config.yml has no repository.url")
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    return url, branch


def read(path):
    """Read a notebook as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def upgrade_cell_ids(nb, name):
    """Give the notebook nbformat 4.5 cell ids where they are missing, deterministically.

    Ids are derived from the notebook's name and the cell's position so that running a script twice
    writes the same bytes (nbformat's own ids are random).
    """
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        nb.nbformat_minor = 5
    seen = set()
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id")
        if not cell_id or cell_id in seen or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cell_id):
            cell_id = hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:8]
            while cell_id in seen:
                cell_id = hashlib.sha1(cell_id.encode()).hexdigest()[:8]
            cell["id"] = cell_id
        seen.add(cell_id)
    return nb


def write(nb, path):
    """Validate and write a notebook in the stable form nbformat gives (sorted keys, indent 1)."""
    upgrade_cell_ids(nb, Path(path).name)
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def tags(cell):
    return list(cell.get("metadata", {}).get("tags", []))


def skeleton(nb):
    """What a notebook *is*, without what running it produces: per cell its type, id, source and
    metadata (less the keys front ends change). The exercise and Colab checks compare these."""
    cells = []
    for cell in nb.cells:
        metadata = {k: v for k, v in cell.get("metadata", {}).items() if k not in VOLATILE_CELL_METADATA}
        cells.append({"cell_type": cell.cell_type, "id": cell.get("id"), "source": cell.source, "metadata": metadata})
    return cells


def skeleton_diff(actual, expected, actual_name, expected_name):
    """A unified diff (text) between two skeletons, cell by cell; empty when they are equal."""
    import difflib

    def lines(cells):
        out = []
        for index, cell in enumerate(cells):
            metadata = json.dumps(cell["metadata"], sort_keys=True, ensure_ascii=False)
            out.append(f"--- cell {index} [{cell['cell_type']}] id={cell['id']} metadata={metadata}\n")
            out += [line + "\n" for line in cell["source"].splitlines()]
        return out

    return "".join(difflib.unified_diff(lines(actual), lines(expected), actual_name, expected_name))


# --- Headless Chromium: the launcher every browser check shares -----------------------------------

# Flags that work on this kind of machine (as root, no GPU): without the background-networking ones it
# stalls on refused connections.
HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
# A browser for which the network is unreachable, driven over --remote-debugging-pipe (DevToolsPipe):
# no host name resolves but localhost's, and any connection to another machine (an IP address, say)
# goes to a proxy that nobody answers (port 9, discard).
OFFLINE_FLAGS = HEADLESS_FLAGS + [
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-default-browser-check",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--remote-debugging-pipe",
]
CHROMIUM_MISSING = "chromium is not installed: bash scripts/check_html.sh installs it (Debian, as root)"


def find_chromium(explicit=None):
    """The Chromium executable: `explicit` if given and found, else chromium on PATH; None if none."""
    for candidate in [explicit, "chromium", "chromium-browser", "/usr/bin/chromium"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def run_chromium(chromium, args, flags=HEADLESS_FLAGS, timeout=120):
    """Run Chromium once with `flags` + `args` (--dump-dom URL, --screenshot=FILE URL, ...) in a fresh
    profile; the CompletedProcess (text output captured)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium, *flags, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


class DevToolsPipe:
    """A headless Chromium driven over --remote-debugging-pipe: JSON messages ending in NUL bytes,
    commands written to its fd 3, answers and events read from its fd 4. `flags` must hold
    --remote-debugging-pipe (OFFLINE_FLAGS does). close() stops it."""

    def __init__(self, chromium, flags=OFFLINE_FLAGS):
        import fcntl  # (POSIX only: imported here so that the notebook helpers above import anywhere)

        self.profile = tempfile.mkdtemp(prefix="chromium-offline-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # the child's ends, moved above 9 so that the shell's 3<&N 4>&M cannot clobber one another
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        os.set_inheritable(child_r, True)
        os.set_inheritable(child_w, True)
        shell = f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", shell, "bash", chromium, *flags, f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(child_r)
        os.close(child_w)
        self.write_fd, self.read_fd = to_chrome_w, from_chrome_r
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe (exit {self.process.poll()})")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=None, timeout=30):
        """Send one DevTools command and wait for its answer (events read meanwhile go to .events)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method, session, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._read_message(deadline))

    def open_tab(self, viewport, domains=("Page", "Runtime")):
        """A new blank tab of `viewport` = (width, height) CSS pixels, with these DevTools domains enabled
        (add "Network" to see its requests in .events); returns (target id, session id)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in domains:
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": viewport[0], "height": viewport[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        return target, session

    def evaluate(self, session, expression, timeout=30, await_promise=False):
        """The value of the JavaScript `expression` in the tab (returned by value); RuntimeError when the
        page raises."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise}, session, timeout=timeout)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise RuntimeError(f"the page raised {details.get('exception', {}).get('description') or details.get('text') or details}")
        return answer["result"].get("value")

    def wait_until(self, session, expression, timeout, what, interval=0.25):
        """Evaluate `expression` in the tab every `interval` seconds until its value is truthy; return that
        value. TimeoutError naming `what` when `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{what}: not within {timeout} s")

    def screenshot(self, session, path, clip=None, optimize_for_speed=False):
        """Save the tab's viewport (or `clip` = {x, y, width, height} of the page) as a PNG at `path`."""
        params = {"format": "png"}
        if optimize_for_speed:
            params["optimizeForSpeed"] = True
        if clip:
            params["clip"] = dict(clip, scale=1)
        data = self.send("Page.captureScreenshot", params, session, timeout=60)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
