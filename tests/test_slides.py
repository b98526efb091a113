"""The lecture kit: the lecture deck's plan resolves to real chapter sections, the decks are built
from the chapters' cells with nothing fetched from the internet, and the guide agrees with the plan.
(The decks are opened in headless Chromium, offline, by the test command's slides step.)"""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import slides  # noqa: E402

PLAN = yaml.safe_load((ROOT / "book" / "lecture.yml").read_text(encoding="utf-8"))


def _nb(*sources):
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(s) if s.startswith("#") or s.startswith("text") else nbformat.v4.new_code_cell(s)
        for s in sources])


def test_a_section_runs_to_the_next_heading_of_its_level():
    nb = _nb("# Title", "text intro", "## One", "x = 1", "### One.a", "y = 2", "## Two", "z = 3")
    assert [c.source for c in slides.section(nb, "one")] == ["## One", "x = 1", "### One.a", "y = 2"]
    assert [c.source for c in slides.section(nb, "Two")] == ["## Two", "z = 3"]
    assert [c.source for c in slides.section(nb, "Title")] == ["# Title", "text intro"]


def test_a_missing_section_names_the_headings_there_are():
    with pytest.raises(ValueError, match=r"no section whose heading starts with 'Three'.*'One', 'Two'"):
        slides.section(_nb("## One", "## Two"), "Three", "demo")


def test_the_lecture_lasts_90_minutes():
    assert sum(part["minutes"] for part in PLAN["parts"]) == 90


@pytest.mark.parametrize("part", PLAN["parts"], ids=lambda p: p["title"][:30])
def test_every_section_of_the_lecture_plan_exists(part):
    for item in part.get("show", []):
        nb = nbformat.read(ROOT / "chapters" / f"{item['chapter']}.ipynb", as_version=4)
        for start in item["sections"]:
            assert slides.section(nb, start, item["chapter"])  # raises, naming the headings, if renamed


def test_the_guide_gives_each_part_of_the_plan_with_its_minutes():
    guide = (ROOT / "book" / "lecturers.md").read_text(encoding="utf-8")
    start = 0
    for part in PLAN["parts"]:
        end = start + part["minutes"]
        assert re.search(rf"\| {start}–{end} \| \*\*{re.escape(part['title'])}\*\*", guide), (
            f"book/lecturers.md's plan has no row '{start}–{end} | **{part['title']}**' (book/lecture.yml)")
        start = end


def test_the_lecture_deck_is_made_of_chapter_cells_with_their_outputs():
    nb = slides.lecture_notebook(PLAN)
    ids = [c["id"] for c in nb.cells]
    assert len(ids) == len(set(ids)), "cell ids of different chapters collide"
    assert sum(c.cell_type == "code" and bool(c.get("outputs")) for c in nb.cells) >= 5
    titles = [c.source for c in nb.cells if c.source.startswith("## Part ")]
    assert len(titles) == len(PLAN["parts"])


def test_decks_fetch_nothing_from_the_internet(tmp_path):
    nb = slides.lecture_notebook({"title": "t", "parts": PLAN["parts"][3:4]})
    deck = tmp_path / "deck.slides.html"
    slides.write_deck(nb, deck, "t")
    text = deck.read_text(encoding="utf-8")
    loaded = re.findall(r'<(?:script|img|iframe)[^>]* src="([^"]+)"', text)  # what the page loads (not links)
    loaded += re.findall(r'<link[^>]* href="([^"]+)"', text) + re.findall(r"import [^;]* from '([^']+)'", text)
    loaded += re.findall(r'"([^"]*(?:reveal|notes)\.js)"', text)  # require()d by the deck
    remote = [u for u in loaded if re.match(r"(https?:)?//", u)]
    assert not remote, f"the deck loads from the internet: {remote}"
    assert "lib/reveal.js/dist/reveal.js" in text and "lib/mathjax/MathJax.js" in text
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png', text)
    assert images and all(alt.strip() for alt in images), "a figure of the deck has no alt text"


def test_npm_assets_are_pinned_to_exact_versions():
    for name in ("slides",):
        package = json.loads((ROOT / "vendor" / name / "package.json").read_text(encoding="utf-8"))
        lock = json.loads((ROOT / "vendor" / name / "package-lock.json").read_text(encoding="utf-8"))
        for dep, version in package["dependencies"].items():
            assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"vendor/{name}: {dep} {version} is not an exact version"
            assert lock["packages"][f"node_modules/{dep}"]["version"] == version
    reveal = json.loads((ROOT / "vendor" / "slides" / "package.json").read_text())["dependencies"]["reveal.js"]
    assert reveal.split(".")[0] in ("4", "5"), "nbconvert's template needs reveal.js 4 or 5 (plugin/notes/notes.js)"


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_section_of_a_chapter_starts_a_slide(path):
    """A chapter's deck (scripts/slides.py) needs its title and `##` sections to be slides; without
    the metadata the whole chapter would be one scrolling slide. Fix: set the cell's Slide Type."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = [line for line in cell.source.splitlines()[1:] if re.match(r"#{1,2}\s", line)]
            assert not inside, (f"{path.name}: the section {inside[0]!r} starts inside a cell: split the cell"
                                " there, so that the section can start a slide (and the lecture deck can find it)")
        found = slides.heading(cell)
        if found and found[0] <= 2:
            assert cell.metadata.get("slideshow", {}).get("slide_type") == "slide", (
                f"{path.name}: the section {found[1]!r} is not a slide (cell metadata slideshow.slide_type)")
