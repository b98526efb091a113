"""Every notebook of the course is in shape: Colab badge and install cell first, committed executed
(in one fresh run, as scripts/execute_notebooks.py leaves it), small, and part of the book; the book's
configuration keeps the promises the scripts rely on.

Runs in `bash scripts/test.sh` (step "pytest tests/"); needs no kernel.
"""

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import _nbtools  # noqa: E402
import stamp_colab  # noqa: E402

NOTEBOOKS = _nbtools.find_notebooks()
MAX_NOTEBOOK_BYTES = 3 * 1024 * 1024  # "no multi-megabyte outputs"


def _id(path):
    return _nbtools.relpath(path)


def test_there_is_at_least_one_notebook():
    assert ROOT / "book" / "setup.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_starts_with_colab_badge_and_install_cell(path):
    """The badge links to this notebook in Colab; the install cell installs mobilevit_edu from the
    repository of _config.yml only when it is missing. Fix: python scripts/stamp_colab.py"""
    url, branch = _nbtools.repository()
    rel = _nbtools.relpath(path)
    nb = _nbtools.read(path)
    assert len(nb.cells) >= 3, f"{rel} has fewer than 3 cells"
    badge, install = nb.cells[0], nb.cells[1]
    assert badge.cell_type == "markdown" and stamp_colab.BADGE_TAG in _nbtools.tags(badge), (
        f"{rel}: the first cell is not the Colab badge (tag {stamp_colab.BADGE_TAG}); run python scripts/stamp_colab.py")
    expected_link = f"https://colab.research.google.com/github/{url[len('https://github.com/'):]}/blob/{branch}/{rel}"
    assert f"[![Open In Colab]({stamp_colab.BADGE_SVG})]({expected_link})" in badge.source, (
        f"{rel}: the badge does not link to {expected_link}; run python scripts/stamp_colab.py")
    assert install.cell_type == "code" and stamp_colab.INSTALL_TAG in _nbtools.tags(install), (
        f"{rel}: the second cell is not the install cell (tag {stamp_colab.INSTALL_TAG}); run python scripts/stamp_colab.py")
    assert "import mobilevit_edu" in install.source and f"git+{url}@{branch}" in install.source
    # where the package is installed, the cell prints only its one-line environment report (it varies
    # from machine to machine: nbval does not compare it)
    assert "nbval-ignore-output" in _nbtools.tags(install), f"{rel}: the install cell is not tagged nbval-ignore-output"
    printed = "".join(o.get("text", "") for o in install.get("outputs", []) if o.get("output_type") == "stream")
    assert [o.get("output_type") for o in install.get("outputs", [])] in ([], ["stream"]) and printed.count("\n") <= 1, (
        f"{rel}: the install cell printed more than its environment report when executed: {printed!r}")
    assert not printed or printed.startswith("Python "), f"{rel}: unexpected install-cell output {printed!r}"
    # and nothing else differs from what the script writes (e.g. a stale URL)
    stamped = stamp_colab.stamp(_nbtools.read(path), rel, url, branch)
    assert _nbtools.skeleton(nb)[:2] == _nbtools.skeleton(stamped)[:2], f"{rel}: run python scripts/stamp_colab.py"
    # one badge and one install cell, not two
    for tag in (stamp_colab.BADGE_TAG, stamp_colab.INSTALL_TAG):
        assert sum(tag in _nbtools.tags(c) for c in nb.cells) == 1, f"{rel}: more than one cell tagged {tag}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_committed_executed(path):
    """Every code cell ran, in order, in one fresh kernel, and the notebook was normalised by
    scripts/execute_notebooks.py (no timing metadata, python3 kernel). Fix: run that script."""
    rel = _nbtools.relpath(path)
    nb = _nbtools.read(path)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, (
        f"{rel}: {counts.count(None)} code cell(s) never ran; run python scripts/execute_notebooks.py {rel}")
    assert counts == list(range(1, len(code) + 1)), (
        f"{rel}: execution counts {counts} are not 1..{len(code)}: not executed top to bottom by "
        f"scripts/execute_notebooks.py {rel}")
    for cell in nb.cells:
        assert "execution" not in cell.get("metadata", {}), f"{rel}: timing metadata left in cell {cell.get('id')}"
        if cell.cell_type == "code" and "raises-exception" not in _nbtools.tags(cell):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{rel}: cell {cell.get('id')} raised {errors[0].ename}: {errors[0].evalue}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{rel}: kernelspec is not python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_is_small(path):
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{_nbtools.relpath(path)} is {size / 2**20:.1f} MB: smaller figures (dpi ~100), fewer animation frames")


def _toc():
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def _toc_entries(toc):
    files, globs = [toc["root"]], []
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            if "glob" in node:
                globs.append(node["glob"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(toc.get("parts", toc.get("chapters", [])))
    return files, globs


def test_toc_globs_name_existing_folders():
    """_config.yml silences the "glob matched nothing" warning (for a course with no chapter yet),
    so a misspelt glob would go unnoticed: check each names a folder of the repository."""
    _, globs = _toc_entries(_toc())
    assert globs, "_toc.yml has no glob: chapters/* and exercises/* are expected"
    for pattern in globs:
        folder = pattern.rsplit("/", 1)[0]
        assert (ROOT / folder).is_dir(), f"_toc.yml globs {pattern!r} but there is no folder {folder}/"


def test_every_page_is_in_the_book():
    """With only_build_toc_files, a page that is not in _toc.yml silently vanishes from the book."""
    import fnmatch

    files, globs = _toc_entries(_toc())
    listed = {f.rsplit(".", 1)[0] if f.endswith((".md", ".ipynb")) else f for f in files}
    pages = [p for folder in ("book", "chapters", "exercises") for p in sorted((ROOT / folder).glob("*"))
             if p.suffix in (".md", ".ipynb")]
    for page in pages:
        docname = _nbtools.relpath(page).rsplit(".", 1)[0]
        assert docname in listed or any(fnmatch.fnmatch(docname, g) for g in globs), f"{docname} is not in _toc.yml, so it is not in the book"
    for docname in listed:
        assert any((ROOT / f"{docname}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml lists {docname}, which does not exist"


def test_solutions_stay_out_of_the_book():
    files, globs = _toc_entries(_toc())
    assert not any(entry.startswith("solutions") for entry in files + globs)


def test_config_keeps_the_promises():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off", "notebooks are committed executed; the book must not run them"
    assert config["only_build_toc_files"] is True
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["sphinx"]["config"]["bibtex_default_style"] == "plain"
    url, branch = _nbtools.repository()
    assert url.startswith("https://github.com/") and branch


def test_repository_address_is_written_once():
    """The address lives in _config.yml only; scripts and pages read it from there (the notebooks'
    badges and install cells are generated from it by scripts/stamp_colab.py)."""
    url, _ = _nbtools.repository()
    org_repo = url[len("https://github.com/"):]
    skip_dirs = {".git", ".venv", "_build", "node_modules", ".pytest_cache", "__pycache__"}
    offenders = []
    paths = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.endswith(".egg-info")]
        paths += [Path(folder) / name for name in names]
    for path in paths:
        if path.suffix == ".ipynb" or path.stat().st_size > 1_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        count = text.count(org_repo)
        if path == ROOT / "_config.yml":
            assert count == 1, f"_config.yml should name {org_repo} exactly once (repository.url), not {count} times"
        elif count:
            offenders.append(_nbtools.relpath(path))
    assert not offenders, f"{org_repo} is written in {offenders}: read it from repository.url in _config.yml instead"


# ------------------------------------------------------------------ what the static book shows
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


def _displayed(cell):
    """The rich outputs (display_data, execute_result) of a code cell."""
    return [o for o in cell.get("outputs", []) if o.output_type in ("display_data", "execute_result")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_widgets_are_removed_from_the_book(path):
    """The book has no kernel: a slider there moves nothing. A cell that shows a widget is tagged
    remove-output (its static twin, an animation, follows it). Fix: add the tag remove-output."""
    rel = _nbtools.relpath(path)
    for cell in _nbtools.read(path).cells:
        if cell.cell_type == "code" and any(_nbtools.WIDGET_VIEW in o.get("data", {}) for o in _displayed(cell)):
            assert {"remove-output", "remove-cell"} & set(_nbtools.tags(cell)), (
                f"{rel}: cell {cell.get('id')} shows a widget but is not tagged remove-output: "
                "the book would show a dead control")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_images_have_alt_text(path):
    """Every figure the book shows has alt text, set as myst-nb reads it: the cell metadata
    {"mystnb": {"image": {"alt": "..."}}}. Fix: add it in the cell's metadata (a sentence that says
    what the figure shows, with its numbers)."""
    rel = _nbtools.relpath(path)
    for cell in _nbtools.read(path).cells:
        if cell.cell_type != "code" or {"remove-output", "remove-cell"} & set(_nbtools.tags(cell)):
            continue
        if any(mime in o.get("data", {}) for o in _displayed(cell) for mime in IMAGE_MIMES):
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert isinstance(alt, str) and alt.strip(), (
                f"{rel}: cell {cell.get('id')} shows an image without alt text (metadata mystnb.image.alt)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_animations_have_alt_text(path):
    """Every to_jshtml() animation is labelled for readers who cannot see it (a role="img" container
    with an aria-label and the frame's alt) and plays on its own, as
    mobilevit_edu.widgets.animation_html(anim, alt=...) writes it (_nbtools.animation_problems; the
    built book is read by the same rule in scripts/check_html.py). (matplotlib's own buttons carry
    aria-labels too, so a bare "aria-label" would prove nothing.) Fix: show the animation with
    animation_html(anim, alt="...") instead of HTML(anim.to_jshtml())."""
    rel = _nbtools.relpath(path)
    for cell in _nbtools.read(path).cells:
        if cell.cell_type != "code":
            continue
        for output in _displayed(cell):
            html_text = output.get("data", {}).get("text/html", "")
            if isinstance(html_text, list):
                html_text = "".join(html_text)
            problems = _nbtools.animation_problems(html_text)
            assert not problems, (
                f"{rel}: cell {cell.get('id')}: {'; '.join(problems)}: "
                "use mobilevit_edu.widgets.animation_html(anim, alt=...)")


def test_animation_rule_rejects_bare_to_jshtml():
    """The rule above against what it must reject (plain to_jshtml) and accept (animation_html)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    from mobilevit_edu.widgets import animation_html

    def make():
        fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
        return FuncAnimation(fig, lambda k: ax.set_title(str(k)), frames=2)

    bare = make()
    assert _nbtools.animation_problems(bare.to_jshtml()) == [
        "1 of 1 animation(s) without alt text on the frame",
        '1 of 1 animation(s) without a role="img" container with an aria-label',
        "1 of 1 animation(s) without autoplay",
    ]
    plt.close(bare._fig)
    assert _nbtools.animation_problems(animation_html(make(), alt="a title counting 0, 1").data) == []
    # a blank description is no description
    assert len(_nbtools.animation_problems(
        animation_html(make(), alt="x").data.replace('"x"', '" "'))) == 2
