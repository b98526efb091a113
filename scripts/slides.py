#!/usr/bin/env python3
"""Lecture decks drawn from the chapters' own cells, opening offline: `bash scripts/slides.sh`.

Builds into _build/slides/ (or --out):
- one reveal.js deck per chapter, `NN_slug.slides.html`, from the chapter's committed, executed cells
  and their `slideshow` metadata (a figure is never copied by hand: it is the chapter's own output);
- the lecture deck, `lecture.slides.html`, which follows the 90-minute plan of book/lecturers.md:
  book/lecture.yml lists its parts (title, minutes) and, for each, the chapter sections it shows
  (by the start of their heading); each part opens with a title slide;
- `index.html`, the list of decks, and `lib/`, the JavaScript the decks load (reveal.js, require.js,
  jQuery, MathJax 2, Font Awesome 4 for the animation buttons), copied from vendor/slides/lib/ (made by
  scripts/slides_assets.sh from the npm registry). No deck requests anything from the internet.

The decks follow the book's tags: cells tagged remove-cell are left out, outputs tagged remove-output
(live widgets, which need a kernel) are dropped, and their animated twins stay.

Usage:
    python scripts/slides.py                  # build every deck into _build/slides/
    python scripts/slides.py --out /tmp/decks --chapters 04_patches   # one chapter deck (+ the lecture deck)
    python scripts/slides.py --check          # build, then open decks in headless Chromium with no
                                              # network and check slides, math and figures render
"""

import argparse
import copy
import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402

ROOT = _nbtools.ROOT
LIB = ROOT / "vendor" / "slides" / "lib"
TEMPLATES = ROOT / "scripts" / "templates"
LECTURE_PLAN = ROOT / "book" / "lecture.yml"
DEFAULT_OUT = ROOT / "_build" / "slides"

# matplotlib's animation player (to_jshtml) links Font Awesome 4 from a CDN for its buttons
FONT_AWESOME_CDN = re.compile(r"https://maxcdn\.bootstrapcdn\.com/font-awesome/[0-9.]+/css/font-awesome\.min\.css")
FONT_AWESOME_LOCAL = "lib/font-awesome/css/font-awesome.min.css"
HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


def exporter():
    """nbconvert's SlidesExporter, pointed at lib/ instead of CDNs and following the book's tags."""
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    c = Config()
    c.SlidesExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.SlidesExporter.template_name = "offline_reveal"
    c.SlidesExporter.reveal_url_prefix = "lib/reveal.js"
    c.SlidesExporter.require_js_url = "lib/requirejs/require.js"
    c.SlidesExporter.jquery_url = "lib/jquery/jquery.min.js"
    c.SlidesExporter.mathjax_url = "lib/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    c.SlidesExporter.reveal_theme = "white"  # its fonts ship with reveal.js ("simple" fetches Google Fonts)
    c.SlidesExporter.reveal_scroll = True  # a tall slide (a long cell) scrolls instead of overflowing
    c.SlidesExporter.exclude_input_prompt = True
    c.SlidesExporter.exclude_output_prompt = True
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = {"remove-cell"}
    c.TagRemovePreprocessor.remove_all_outputs_tags = {"remove-output"}
    c.TagRemovePreprocessor.remove_input_tags = {"remove-input", "hide-input"}
    return SlidesExporter(config=c)


def heading(cell):
    """(level, text) of the heading a markdown cell starts with, or None."""
    if cell.cell_type != "markdown" or not cell.source.strip():
        return None
    match = HEADING.match(cell.source.strip().splitlines()[0])
    return (len(match.group(1)), match.group(2)) if match else None


def section(nb, start, name="notebook"):
    """The cells of the section whose heading starts with `start` (case-insensitive): its heading
    cell and every cell up to the next heading of the same or a higher level (for the title, `#`,
    up to the next heading of any level: the chapter's opening)."""
    want = start.strip().lower()
    for index, cell in enumerate(nb.cells):
        found = heading(cell)
        if found and found[1].lower().startswith(want):
            level = found[0]
            cells = [cell]
            for other in nb.cells[index + 1:]:
                other_heading = heading(other)
                if other_heading and (level == 1 or other_heading[0] <= level):
                    break
                cells.append(other)
            return cells
    headings = [h[1] for h in map(heading, nb.cells) if h]
    raise ValueError(f"{name} has no section whose heading starts with {start!r}; its headings: {headings}")


def markdown_cell(source, slide_type="slide"):
    return nbformat.v4.new_markdown_cell(source, metadata={"slideshow": {"slide_type": slide_type}})


def lecture_notebook(plan, chapters_dir=ROOT / "chapters"):
    """The lecture deck as one notebook: a title slide, then per part a title slide and its sections."""
    cells = [markdown_cell(f"# {plan['title']}\n\n{plan.get('subtitle', '')}\n\n"
                           f"{sum(part['minutes'] for part in plan['parts'])} minutes, "
                           f"{len(plan['parts'])} parts, every slide a cell of the course's chapters.")]
    for number, part in enumerate(plan["parts"], 1):
        sources = []
        for item in part.get("show", []):
            path = chapters_dir / f"{item['chapter']}.ipynb"
            if not path.exists():
                raise ValueError(f"book/lecture.yml, part {number} ({part['title']}): no chapter {path.name}")
            sources.append((item, _nbtools.read(path)))
        where = ", ".join(f"chapter {int(item['chapter'][:2])}" for item, _ in sources)
        cells.append(markdown_cell(
            f"## Part {number} · {part['minutes']} min\n\n### {part['title']}\n\n{part.get('story', '')}\n\n"
            + (f"*From {where}.*" if where else "")))
        for item, nb in sources:
            for start in item["sections"]:
                chosen = [copy.deepcopy(c) for c in section(nb, start, item["chapter"])]
                for cell in chosen:  # ids are unique within a chapter, not across chapters
                    cell["id"] = f"{item['chapter'][:2]}-{cell.get('id', '')}"[:64]
                chosen[0].metadata.setdefault("slideshow", {})["slide_type"] = "slide"
                cells += [c for c in chosen if "remove-cell" not in _nbtools.tags(c)]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"title": plan["title"]})
    nb.metadata["kernelspec"] = dict(_nbtools.STANDARD_KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write_deck(nb, path, title):
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = FONT_AWESOME_CDN.sub(FONT_AWESOME_LOCAL, body)
    path.write_text(body, encoding="utf-8")


def build(out, chapters=None):
    """Build the decks into `out`; returns the paths written (chapter decks, lecture deck, index)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "slides_assets.sh")], check=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "lib", ignore_errors=True)
    shutil.copytree(LIB, out / "lib", ignore=shutil.ignore_patterns(".installed-*"))
    written = []
    paths = sorted((ROOT / "chapters").glob("*.ipynb"))
    if chapters:
        paths = [p for p in paths if p.stem in chapters]
    entries = []
    for path in paths:
        nb = _nbtools.read(path)
        title = next((h[1] for h in map(heading, nb.cells) if h and h[0] == 1), path.stem)
        deck = out / f"{path.stem}.slides.html"
        write_deck(nb, deck, f"{int(path.stem[:2])}. {title}")
        written.append(deck)
        entries.append((deck.name, f"Chapter {int(path.stem[:2])}: {title}"))
    plan = yaml.safe_load(LECTURE_PLAN.read_text(encoding="utf-8"))
    lecture = out / "lecture.slides.html"
    write_deck(lecture_notebook(plan), lecture, plan["title"])
    written.append(lecture)
    entries.insert(0, (lecture.name, f"The lecture: {plan['title']} (90 minutes, book/lecturers.md)"))
    items = "\n".join(f'  <li><a href="{name}">{html.escape(text)}</a></li>' for name, text in entries)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MobileViT from scratch: slides</title></head>\n"
        "<body>\n<h1>MobileViT from scratch: slides</h1>\n"
        "<p>reveal.js decks drawn from the chapters' own cells; they open without internet. "
        "Keys: arrows to move, <kbd>s</kbd> for speaker notes, <kbd>f</kbd> for full screen.</p>\n"
        f"<ul>\n{items}\n</ul>\n</body></html>\n", encoding="utf-8")
    written.append(index)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the decks (default: _build/slides)")
    parser.add_argument("--chapters", nargs="*", help="only these chapter decks, by file stem (the lecture deck is always built)")
    parser.add_argument("--check", action="store_true",
                        help="then open the lecture deck and one chapter deck in headless Chromium, offline, and check them")
    args = parser.parse_args(argv)
    written = build(args.out.resolve(), args.chapters)
    size = sum(f.stat().st_size for f in args.out.resolve().rglob("*") if f.is_file())
    print(f"✓ {len(written) - 1} deck(s) in {args.out} ({size / 2**20:.1f} MiB with lib/): open {args.out / 'index.html'}")
    if args.check:
        import check_slides

        decks = [p for p in written if p.name.endswith(".slides.html")]
        chosen = [decks[-1]] + [p for p in decks if "04_" in p.name or "05_" in p.name][:1]
        return check_slides.check(chosen, args.out.resolve() / "screenshots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
