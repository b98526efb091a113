#!/usr/bin/env python3
"""Give every notebook its "Open in Colab" badge and its install cell (idempotent).

Every notebook in book/, chapters/, solutions/ and exercises/ must start with two cells:

1. a markdown cell tagged `colab-badge`: the "Open in Colab" badge, linking to this very notebook
   (an exercise links to exercises/<name>.ipynb, its solution to solutions/<name>.ipynb);
2. a code cell tagged `colab-install` that installs the course package `mobilevit_edu` from the
   repository (git+URL@branch, or $MOBILEVIT_EDU_SOURCE: scripts/check_colab_install.py points it
   at a local snapshot) with the extra `course` (everything the notebooks import: matplotlib,
   ipywidgets, timm, tqdm, onnx, onnxscript, onnxruntime), only when `import mobilevit_edu` fails,
   as in a fresh Colab runtime. Every package the runtime already has keeps its version (a pip
   constraints file of them): Colab's ipywidgets 7.7.1, numpy, matplotlib and protobuf stay, and pip
   picks versions of the rest that fit (issue 27: onnx 1.23 would upgrade Colab's protobuf); only
   when nothing fits does it upgrade, and then it says in one sentence that the runtime must be
   restarted. When pip fails it names the likely causes, most likely first,
   instead of a traceback. Then it prints one line for bug reports (Python, torch, the package's
   version, threads, CPU or GPU): it differs from machine to machine, so the cell is tagged
   nbval-ignore-output. The book leaves the cell out (tag "remove-cell"): a reader of the book runs
   nothing, and the setup page explains the cell.

then the notebook's own content (its title first). The repository address and branch are read from
`repository.url` / `repository.branch` in _config.yml, the only place they are written.

Usage:
    python scripts/stamp_colab.py            # insert or update the two cells where needed
    python scripts/stamp_colab.py --check    # change nothing; exit 1 listing notebooks to stamp
    python scripts/stamp_colab.py chapters/01_conv.ipynb   # only these notebooks

Stamping adds no outputs, but a new or changed install cell has not run: re-execute every notebook
it stamped (scripts/execute_notebooks.py), or tests/test_notebooks_meta.py reports it unexecuted.
"""

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402

BADGE_TAG = "colab-badge"
INSTALL_TAG = "colab-install"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
# The badge and the install cell are not slides (jupyter nbconvert --to slides skips them).
SKIP_SLIDE = {"slide_type": "skip"}


def colab_url(url, branch, path):
    """The Colab address of `path` (relative to the repository root) in the GitHub repository `url`."""
    prefix = "https://github.com/"
    if not url.startswith(prefix):
        raise SystemExit(f"repository.url must be a GitHub address ({prefix}ORG/REPO), got {url}")
    org_repo = url[len(prefix):]
    return f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{path}"


def badge_cell(url, branch, path):
    source = f"[![Open In Colab]({BADGE_SVG})]({colab_url(url, branch, path)})"
    cell = nbformat.v4.new_markdown_cell(source, metadata={"tags": [BADGE_TAG], "slideshow": dict(SKIP_SLIDE)})
    cell["id"] = BADGE_TAG
    return cell


INSTALL_SOURCE = '''\
# Installs the course package `mobilevit_edu` when it is missing (in Colab, say), then says what runs.
import os, platform, subprocess, sys
try:
    import mobilevit_edu
except ImportError:
    import importlib, importlib.metadata, re, tempfile
    # the course's tests point MOBILEVIT_EDU_SOURCE at a local clone to try this very cell offline
    _source = os.environ.get("MOBILEVIT_EDU_SOURCE", "git+{url}@{branch}")
    print(f"installing mobilevit_edu from {{_source}} ...")
    # What this runtime has stays as it is (Colab: its numpy, matplotlib, ipywidgets 7, protobuf): pip
    # picks versions of the rest that fit, so nothing already loaded needs a restart.
    _had = {{d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions()
            if d.metadata["Name"] and re.fullmatch(r"[0-9][0-9a-z.+]*", d.version)}}
    _keep = os.path.join(tempfile.gettempdir(), "mobilevit_edu-keep.txt")
    with open(_keep, "w") as _file:
        _file.write("".join(f"{{name}}=={{version}}\\n" for name, version in _had.items()))
    _install = [sys.executable, "-m", "pip", "install", "-q", "--no-color", f"mobilevit_edu[course] @ {{_source}}"]
    _pip = subprocess.run(_install + ["-c", _keep], capture_output=True, text=True)
    if _pip.returncode != 0 and "ResolutionImpossible" in _pip.stderr:  # nothing fits: upgrade, and say so
        _pip = subprocess.run(_install, capture_output=True, text=True)
        _now = {{d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}}
        _changed = sorted(f"{{n}} {{v}} -> {{_now[n]}}" for n, v in _had.items() if _now.get(n, v) != v)
        if _changed:
            print(f"pip had to upgrade what this runtime had loaded or could load ({{', '.join(_changed)}}):"
                  " restart it (Colab: Runtime → Restart session), then run the notebook again.")
    if _pip.returncode == 0:
        importlib.invalidate_caches()
        import mobilevit_edu
    else:
        _lines = [line.strip() for line in _pip.stderr.splitlines() if line.strip()] or ["(nothing)"]
        _said = next((line for line in _lines if line.startswith(("fatal:", "ERROR:", "error:"))), _lines[-1])
        print(f"Could not install mobilevit_edu from {{_source}}. The likely causes, most likely first:\\n"
              "  1. the course's repository ({url}) is not (yet) a public repository,"
              " so pip cannot clone it;\\n"
              "  2. this runtime is offline (in Colab: Runtime → Disconnect and delete runtime, then run again);\\n"
              "  3. locally, without a network: run `pip install -e .` in a clone of the course instead.\\n"
              f"pip said: {{_said}}")
if "mobilevit_edu" in sys.modules:  # a short report, for bug reports: what this notebook runs on
    import torch
    _device = f"GPU ({{torch.cuda.get_device_name(0)}})" if torch.cuda.is_available() else "CPU"
    print(f"Python {{platform.python_version()}} · torch {{torch.__version__}} · mobilevit_edu"
          f" {{mobilevit_edu.__version__}} · {{torch.get_num_threads()}} threads · {{_device}}")'''


def install_cell(url, branch):
    source = INSTALL_SOURCE.format(url=url, branch=branch)
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INSTALL_TAG, "remove-cell", "nbval-ignore-output"], "slideshow": dict(SKIP_SLIDE)})
    cell["id"] = INSTALL_TAG
    return cell


def stamp(nb, path, url, branch):
    """Return `nb` with the badge (for `path`, relative to the repository root) and the install cell as
    its first two cells; any earlier badge or install cell (found by its tag) is replaced."""
    old_install = [c for c in nb.cells if INSTALL_TAG in _nbtools.tags(c)]
    rest = [c for c in nb.cells if not ({BADGE_TAG, INSTALL_TAG} & set(_nbtools.tags(c)))]
    install = install_cell(url, branch)
    if old_install and old_install[0].source == install.source:
        # unchanged: keep what running it produced (nothing, normally) and its execution count
        install["outputs"] = old_install[0].get("outputs", [])
        install["execution_count"] = old_install[0].get("execution_count")
    nb.cells = [badge_cell(url, branch, path), install] + rest
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks (default: every notebook in %s)" % ", ".join(_nbtools.NOTEBOOK_DIRS))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is not stamped")
    args = parser.parse_args(argv)

    url, branch = _nbtools.repository()
    paths = [Path(p) for p in args.paths] or _nbtools.find_notebooks()
    stale = []
    for path in paths:
        rel = _nbtools.relpath(path)
        nb = _nbtools.read(path)
        before = _nbtools.skeleton(nb)
        after = _nbtools.skeleton(stamp(_nbtools.read(path), rel, url, branch))
        if before == after:
            continue
        stale.append(rel)
        if args.check:
            print(_nbtools.skeleton_diff(before[:3], after[:3], rel, f"{rel} (stamped)"))
        else:
            _nbtools.write(stamp(nb, rel, url, branch), path)
            print(f"stamped {rel}")
    if args.check and stale:
        print(f"{len(stale)} notebook(s) lack the Colab badge or install cell, or have stale ones: {', '.join(stale)}\n"
              "Fix: python scripts/stamp_colab.py, then python scripts/execute_notebooks.py <those notebooks>")
        return 1
    if args.check:
        print(f"✓ {len(paths)} notebook(s) start with the Colab badge and the install cell for {url}@{branch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
