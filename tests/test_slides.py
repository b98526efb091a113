"""The lecture kit: the lecture sources (book/lectures/*.yml) build from the executed chapters through
selectors that fail loudly, hold what a projector slide may hold, follow book/lecturers.md's plans and
are not pages of the book; chapter decks keep every section a slide and split what would run off.
(Every slide is measured in headless Chromium, offline, by the test command's slides step.)"""

import base64
import json
import re
import statistics
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_slides  # noqa: E402
import slides  # noqa: E402

LECTURES = {path.stem: slides.load_lecture(path) for path in slides.lecture_paths()}
GUIDE = (ROOT / "book" / "lecturers.md").read_text(encoding="utf-8")
# a 1×1 PNG, as a chapter's figure output would hold it
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a1d8e1b20000000049454e44ae426082")).decode()


def _nb(*sources):
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(s) if s.startswith("#") or s.startswith("text") else nbformat.v4.new_code_cell(s)
        for s in sources])


@pytest.fixture
def chapters(tmp_path):
    """A folder with one executed chapter: a figure with alt text, a printout, a long cell."""
    figure = nbformat.v4.new_code_cell("plot_saving(channels)", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})])
    figure.metadata["mystnb"] = {"image": {"alt": "The saving against the channels."}}
    bare = nbformat.v4.new_code_cell("plot_bare()", outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})])
    printed = nbformat.v4.new_code_cell("print(ratio)  # the one", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="standard / separable = 7.89\nC = 64 and C = 64\n")])
    long = nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(20)))
    twin = nbformat.v4.new_code_cell("print(ratio)  # again")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Demo"), figure, bare, printed, long, twin])
    nbformat.write(nb, tmp_path / "02_demo.ipynb")
    return slides.Chapters(tmp_path)


def test_a_section_runs_to_the_next_heading_of_its_level():
    nb = _nb("# Title", "text intro", "## One", "x = 1", "### One.a", "y = 2", "## Two", "z = 3")
    assert [c.source for c in slides.section(nb, "one")] == ["## One", "x = 1", "### One.a", "y = 2"]
    assert [c.source for c in slides.section(nb, "Two")] == ["## Two", "z = 3"]
    assert [c.source for c in slides.section(nb, "Title")] == ["# Title", "text intro"]


def test_a_missing_section_names_the_headings_there_are():
    with pytest.raises(ValueError, match=r"no section whose heading starts with 'Three'.*'One', 'Two'"):
        slides.section(_nb("## One", "## Two"), "Three", "demo")


def test_a_selector_takes_the_figure_and_its_alt_text(chapters):
    png, alt = chapters.figure({"chapter": "02_demo", "cell": "plot_saving("})
    assert png == PNG and alt == "The saving against the channels."
    assert slides.png_size(png) == (1, 1)


def test_a_selector_that_matches_no_cell_or_several_fails_and_says_why(chapters):
    with pytest.raises(slides.LectureError, match=r"no code cell whose source contains 'plot_gone\('.*update the selector"):
        chapters.cell({"chapter": "02_demo", "cell": "plot_gone("})
    with pytest.raises(slides.LectureError, match=r"2 code cells whose source contains 'print\(ratio\)'.*longer"):
        chapters.cell({"chapter": "02_demo", "cell": "print(ratio)"})
    with pytest.raises(slides.LectureError, match=r"no chapter '99_none'.*02_demo"):
        chapters.cell({"chapter": "99_none", "cell": "x"})


def test_a_figure_without_alt_text_is_refused(chapters):
    with pytest.raises(slides.LectureError, match="no alt text"):
        chapters.figure({"chapter": "02_demo", "cell": "plot_bare()"})


def test_a_number_comes_from_the_printout_and_must_match_once(chapters):
    cell = {"chapter": "02_demo", "cell": "# the one"}
    assert chapters.value({**cell, "pattern": r"separable = ([0-9.]+)"}) == "7.89"
    with pytest.raises(slides.LectureError, match="matches 2 times"):
        chapters.value({**cell, "pattern": r"C = 64"})
    with pytest.raises(slides.LectureError, match="matches 0 times"):
        chapters.value({**cell, "pattern": r"C = 128"})


def _slide(**extra):
    return {"title": "A slide", "notes": "What the lecturer says.", **extra}


def test_a_slide_fills_its_numbers_and_keeps_its_notes_out_of_view(chapters):
    html, shown = slides.render_slide(_slide(
        bullets=["Saving {{ratio}}×, about $1/(1/C + 1/9)$"],
        values={"ratio": {"chapter": "02_demo", "cell": "# the one", "pattern": r"separable = ([0-9.]+)"}},
        figure={"chapter": "02_demo", "cell": "plot_saving("}), chapters, "test")
    assert "Saving 7.89×, about $1/(1/C + 1/9)$" in html  # math left for MathJax, untouched by Markdown
    assert 'alt="The saving against the channels."' in html and shown["figures"] == 1
    assert '<aside class="notes"><p>What the lecturer says.</p>' in html
    assert slides.visible_words(html) == 8  # title 2 + bullet 6 words: the notes do not count


@pytest.mark.parametrize("slide, message", [
    (_slide(bullets=["b"] * 6), "6 bullets, at most 5"),
    ({"title": "No notes"}, "needs speaker notes"),
    (_slide(code={"chapter": "02_demo", "cell": "x19 = 19"}), "20 lines of code, at most 15"),
    (_slide(code="y = " + "1 + " * 30 + "1"), "a code line of 125 characters (at most 78)"),
    (_slide(bullets=["{{missing}}"]), "not among the slide's values"),
    (_slide(colour="red"), "unknown key"),
])
def test_a_slide_that_would_not_fit_a_projector_is_refused(chapters, slide, message):
    with pytest.raises(slides.LectureError, match=re.escape(message)):
        slides.render_slide(slide, chapters, "test")


def test_a_code_listing_may_be_lines_of_a_chapter_cell_without_comments(chapters):
    html, shown = slides.render_slide(_slide(code={"chapter": "02_demo", "cell": "x19 = 19", "lines": [2, 4]}),
                                      chapters, "test")
    assert shown["code_lines"] == 3 and "x0" not in html and "x3" in html
    assert slides.strip_comment('out = f(x)  # (B, N, d)') == "out = f(x)"
    assert slides.strip_comment('print("# not a comment")') == 'print("# not a comment")'


@pytest.mark.parametrize("name", sorted(LECTURES))
def test_every_lecture_deck_builds_from_the_executed_chapters(name):
    """Every selector of the lecture source finds its one cell, every figure has alt text, every number
    its printout (raises, naming the slide and the cell, when a chapter changed)."""
    plan = LECTURES[name]
    sections = slides.lecture_sections(plan, slides.Chapters(), name)
    words = [slides.visible_words(s) for s in sections]
    assert statistics.median(words) <= 40, f"{name}: median {statistics.median(words)} visible words per slide"
    html = slides.lecture_html(plan, sections)
    images = re.findall(r'<img class="chapter-figure" alt="([^"]*)"', html)
    assert images and all(alt.strip() for alt in images)
    assert "XMATHX" not in html and "\ufffd" not in html


@pytest.mark.parametrize("name, minutes", [("lecture-90", 90), ("lecture-45", 45)])
def test_each_lecture_lasts_its_format(name, minutes):
    assert LECTURES[name]["minutes"] == minutes == sum(part["minutes"] for part in LECTURES[name]["parts"])


def test_the_guide_gives_each_part_of_the_90_minute_plan_with_its_minutes():
    start = 0
    for part in LECTURES["lecture-90"]["parts"]:
        end = start + part["minutes"]
        assert re.search(rf"\| {start}–{end} \| \*\*{re.escape(part['title'])}\*\*", GUIDE), (
            f"book/lecturers.md's plan has no row '{start}–{end} | **{part['title']}**' (book/lectures/lecture-90.yml)")
        start = end


def test_the_45_minute_deck_follows_the_variant_in_the_guide():
    variant = GUIDE[GUIDE.index("### The 45-minute variant"):GUIDE.index("## Homework")]
    start = 0
    for part in LECTURES["lecture-45"]["parts"]:
        end = start + part["minutes"]
        assert f"| {start}–{end} |" in variant, f"book/lecturers.md's 45-minute table has no row {start}–{end}"
        start = end


def test_the_lecture_sources_are_not_pages_of_the_book():
    """The slide text lives in YAML beside the book, never in a page: the book does not show it twice."""
    assert {p.suffix for p in (ROOT / "book" / "lectures").iterdir()} == {".yml"}
    assert "lectures" not in (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["only_build_toc_files"] is True


def test_decks_fetch_nothing_from_the_internet(tmp_path):
    plan = dict(LECTURES["lecture-45"], parts=LECTURES["lecture-45"]["parts"][3:4])
    plan["minutes"] = plan["parts"][0]["minutes"]
    text = slides.lecture_html(plan, slides.lecture_sections(plan, slides.Chapters(), "part"))
    nb = slides.split_long_slides(nbformat.read(ROOT / "chapters" / "04_patches.ipynb", as_version=4))
    slides.write_deck(nb, tmp_path / "deck.slides.html", "t")
    text += (tmp_path / "deck.slides.html").read_text(encoding="utf-8")
    loaded = re.findall(r'<(?:script|img|iframe)[^>]* src="([^"]+)"', text)  # what the pages load (not links)
    loaded += re.findall(r'<link[^>]* href="([^"]+)"', text) + re.findall(r"import [^;]* from '([^']+)'", text)
    loaded += re.findall(r'"([^"]*(?:reveal|notes)\.js)"', text)  # require()d by the chapter deck
    remote = [u for u in loaded if re.match(r"(https?:)?//", u)]
    assert not remote, f"a deck loads from the internet: {remote}"
    assert "lib/reveal.js/dist/reveal.js" in text and "lib/mathjax/MathJax.js" in text


def test_a_chapter_slide_too_long_for_the_screen_is_split_between_cells():
    cells = [nbformat.v4.new_markdown_cell("## Section", metadata={"slideshow": {"slide_type": "slide"}})]
    cells += [nbformat.v4.new_code_cell("\n".join(["x = 1"] * 8)) for _ in range(4)]
    split = slides.split_long_slides(nbformat.v4.new_notebook(cells=cells))
    kinds = [c.metadata.get("slideshow", {}).get("slide_type", "-") for c in split.cells]
    assert kinds[0] == "slide" and "subslide" in kinds[2:], kinds
    assert [c.source for c in split.cells] == [c.source for c in cells]  # nothing dropped or reordered


def test_pdf_pages_counts_page_objects_not_the_page_tree():
    assert check_slides.pdf_pages(b"<< /Type /Pages /Count 2 >> << /Type /Page >> << /Type/Page /Parent 1 0 R >>") == 2


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
    the metadata the whole chapter would be one slide. Fix: set the cell's Slide Type."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            inside = [line for line in cell.source.splitlines()[1:] if re.match(r"#{1,2}\s", line)]
            assert not inside, (f"{path.name}: the section {inside[0]!r} starts inside a cell: split the cell"
                                " there, so that the section can start a slide")
        found = slides.heading(cell)
        if found and found[0] <= 2:
            assert cell.metadata.get("slideshow", {}).get("slide_type") == "slide", (
                f"{path.name}: the section {found[1]!r} is not a slide (cell metadata slideshow.slide_type)")
