#!/usr/bin/env python3
"""Execute notebooks in place, reproducibly, so that they can be committed with their outputs.

Each notebook runs top to bottom in a fresh `python3` kernel of the current environment (the
Python running this script), with its own folder as working directory, a 600 s timeout per cell,
and a fixed environment: PYTHONHASHSEED=0, OMP_NUM_THREADS=2, MKL_NUM_THREADS=2 and
OMP_WAIT_POLICY=PASSIVE (the same values scripts/test.sh exports for nbval; the last one changes no
result: OpenMP threads sleep instead of spinning while they wait, which otherwise makes a run
10-500x slower whenever another process holds a core). Seeding torch/numpy is the notebook's job
(`torch.manual_seed(0)` in its first cells).

The outputs are stored, and the notebook is normalised so that running this twice on the same
machine writes the same bytes:
- execution counts renumbered 1, 2, 3, ... over the code cells that ran;
- no `execution` timing metadata in cells; kernelspec set to python3; no Python patch version in
  `language_info` (it would change from machine to machine);
- consecutive stream outputs of the same stream merged (how the kernel splits them varies);
- the random ids of matplotlib `to_jshtml()` animations and of ipywidgets models replaced by ids
  derived from the notebook's name, so the saved HTML and widget state do not change every run;
- written with nbformat (sorted keys, one-space indent), cell ids added where missing.

A notebook whose cell raises (except cells tagged `raises-exception`) is NOT written: the error is
shown, the other notebooks still run, and the script exits 1. Exercises are executed too: their
blank stubs must run to the end, the checks printing "not implemented yet".

Usage:
    python scripts/execute_notebooks.py                      # every notebook in book/, chapters/,
                                                             # solutions/, exercises/
    python scripts/execute_notebooks.py chapters/01_conv.ipynb exercises/01_conv.ipynb
"""

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402

KERNEL_ENV = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}
CELL_TIMEOUT = 600

# matplotlib's to_jshtml(): ids like `_anim_img<32 hex>`, `_anim_slider<32 hex>`, `anim<32 hex>`
_ANIM_ID = re.compile(r"(?:_anim_[a-z_0-9]*|anim)([0-9a-f]{32})")
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _stable_id(name, kind, index, length=32):
    return hashlib.sha256(f"{name}:{kind}:{index}".encode()).hexdigest()[:length]


def _merge_streams(outputs):
    merged = []
    for output in outputs:
        if (output.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == output.get("name")):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def _replace_everywhere(obj, mapping):
    """Replace each key of `mapping` by its value in every string (and dict key) of a JSON tree."""
    if not mapping:
        return obj
    pattern = re.compile("|".join(re.escape(k) for k in mapping))
    def fix(s):
        return pattern.sub(lambda m: mapping[m.group(0)], s)
    def walk(node):
        if isinstance(node, str):
            return fix(node)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return type(node)((fix(k), walk(v)) for k, v in node.items())
        return node
    return walk(obj)


def normalise(nb, name):
    """Make an executed notebook's JSON depend only on what it computed (see the module docstring)."""
    nb.metadata["kernelspec"] = dict(_nbtools.STANDARD_KERNELSPEC)
    nb.metadata.get("language_info", {}).pop("version", None)
    count = 0
    anim_ids = {}
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is not None or cell.get("outputs"):
            count += 1
            cell["execution_count"] = count
        else:
            cell["execution_count"] = None
        cell["outputs"] = _merge_streams(cell.get("outputs", []))
        for output in cell["outputs"]:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = cell["execution_count"]
            for mime, value in output.get("data", {}).items():
                if mime == "text/html":
                    text = value if isinstance(value, str) else "".join(value)
                    for hex_id in _ANIM_ID.findall(text):
                        anim_ids.setdefault(hex_id, _stable_id(name, "anim", len(anim_ids)))
    # widget model ids: in the saved widget state (keys and IPY_MODEL_ references) and in the views
    widget_ids = {}
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    for model_id in state:
        widget_ids.setdefault(model_id, _stable_id(name, "widget", len(widget_ids)))
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            model_id = output.get("data", {}).get(_WIDGET_VIEW, {}).get("model_id")
            if model_id:
                widget_ids.setdefault(model_id, _stable_id(name, "widget", len(widget_ids)))
    mapping = {**anim_ids, **widget_ids}
    if mapping:
        nb = nbformat.from_dict(_replace_everywhere(nb, mapping))
    return nb


def execute(path, verbose=True):
    """Execute one notebook in place; return None on success, else the error text (nothing written)."""
    path = Path(path).resolve()
    nb = _nbtools.read(path)
    env = dict(os.environ, **KERNEL_ENV)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",  # jupyter_client runs the "python" of this kernelspec as sys.executable
        resources={"metadata": {"path": str(path.parent)}},  # the kernel's working directory
        record_timing=False,
        allow_errors=False,  # cells tagged raises-exception may still raise
        store_widget_state=True,
    )
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        return str(error)
    except Exception as error:  # a kernel that died, a timeout, ...
        return f"{type(error).__name__}: {error}"
    _nbtools.write(normalise(nb, path.name), path)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks (default: every notebook in %s)" % ", ".join(_nbtools.NOTEBOOK_DIRS))
    args = parser.parse_args(argv)

    paths = [Path(p) for p in args.paths] or _nbtools.find_notebooks()
    missing = [str(p) for p in paths if not p.is_file() or p.suffix != ".ipynb"]
    if missing:
        print("not a notebook: " + ", ".join(missing), file=sys.stderr)
        return 2
    if not paths:
        print("no notebooks found in " + ", ".join(_nbtools.NOTEBOOK_DIRS))
        return 0
    failed = []
    start = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        error = execute(path)
        took = time.perf_counter() - t0
        if error is None:
            print(f"executed {path} ({took:.1f} s)", flush=True)
        else:
            failed.append(str(path))
            print(f"FAILED {path} ({took:.1f} s), not written:\n{error}\n", file=sys.stderr, flush=True)
    print(f"{len(paths) - len(failed)} executed, {len(failed)} failed in {time.perf_counter() - start:.1f} s")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
