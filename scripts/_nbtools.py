"""What the notebook scripts share: where the notebooks are, the repository address, reading and
writing notebooks in one stable form, and the "skeleton" of a notebook (what the sync checks compare).

Also what a static page may show: the rules for widgets and animations in HTML, which the tests
apply to notebook outputs and check_html.py to the built book.

Not a command; imported by execute_notebooks.py, stamp_colab.py, make_exercises.py, check_html.py
and the tests.
"""

import hashlib
import json
import re
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
