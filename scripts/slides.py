#!/usr/bin/env python3
"""Lecture decks for the projector, and one deck per chapter for self-study: `bash scripts/slides.sh`.

Builds into _build/slides/ (or --out):
- the lecture decks, `lecture-90.slides.html` and `lecture-45.slides.html`, written for a projector
  (one idea per slide, the chapter's prose in the speaker notes, key `s`). Their source is
  book/lectures/lecture-90.yml and lecture-45.yml: per slide a title, at most five bullets or a
  formula, an optional code listing of at most 15 lines, a takeaway line, speaker notes, and what the
  slide takes from the executed chapters (a figure, a table, a printed output, a number). Each of
  those is found by a selector, the chapter plus a piece of the source of the cell that made it:
      figure: {chapter: 09_deployment, cell: "Where the time of one block goes"}
  A selector that matches no cell, or more than one, fails the build and names the candidates, so a
  re-executed chapter updates the decks and an edited chapter cannot silently break them. Numbers
  come from printed outputs the same way: `values: {name: {chapter, cell, pattern}}`, used as
  `{{name}}` in the text; the pattern must match exactly once. The lecture sources are YAML beside
  the book's pages, never pages of the book: the slide text is not shown twice;
- a PDF of each lecture deck (`lecture-90.pdf`, `lecture-45.pdf`), printed by headless Chromium from
  reveal.js's print view (?print-pdf), one page per slide, when Chromium is installed;
- one reveal.js deck per chapter, `NN_slug.slides.html`, from the chapter's committed cells and their
  `slideshow` metadata, for self-study: a slide that would run past the slide area is split (a cell
  that does not fit beside the previous ones starts a sub-slide) and what is still too tall is scaled
  to fit;
- `index.html`, the list of decks, and `lib/`, the JavaScript the decks load (reveal.js, require.js,
  jQuery, MathJax 2, Font Awesome 4 for the animation buttons), copied from vendor/slides/lib/ (made by
  scripts/slides_assets.sh from the npm registry). No deck requests anything from the internet.

Usage:
    python scripts/slides.py                  # build every deck (and the PDFs) into _build/slides/
    python scripts/slides.py --out /tmp/decks --chapters 04_patches   # one chapter deck (+ the lecture decks)
    python scripts/slides.py --check          # build, then measure every slide of every deck in headless
                                              # Chromium with no network (scripts/check_slides.py)
"""

import argparse
import base64
import copy
import html
import math
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
LECTURES = ROOT / "book" / "lectures"
CHAPTERS = ROOT / "chapters"
DEFAULT_OUT = ROOT / "_build" / "slides"

# The slide area of every deck (reveal.js scales it to the window): 16:9 at 1280×720.
WIDTH, HEIGHT = 1280, 720
# What a lecture slide may hold (book/lectures/*.yml); the build refuses more.
MAX_BULLETS = 5
MAX_CODE_LINES = 15
MAX_CODE_COLUMNS = 78
MAX_OUTPUT_LINES = 8

# matplotlib's animation player (to_jshtml) links Font Awesome 4 from a CDN for its buttons
FONT_AWESOME_CDN = re.compile(r"https://maxcdn\.bootstrapcdn\.com/font-awesome/[0-9.]+/css/font-awesome\.min\.css")
FONT_AWESOME_LOCAL = "lib/font-awesome/css/font-awesome.min.css"
HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class LectureError(ValueError):
    """A lecture source that cannot be built: names the file, the slide and what is wrong."""


# ---------------------------------------------------------------------------------------------
# Chapter decks (self-study): the chapters' cells as they are
# ---------------------------------------------------------------------------------------------

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
    c.SlidesExporter.reveal_scroll = False  # no scroll bar inside a slide: the template fits it instead
    c.SlidesExporter.reveal_width = str(WIDTH)
    c.SlidesExporter.reveal_height = str(HEIGHT)
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


def estimated_lines(cell):
    """A rough height of a cell on a chapter slide, in lines of text (a figure counts 14)."""
    if cell.cell_type == "markdown":
        return sum(max(1, math.ceil(len(line) / 90)) for line in cell.source.splitlines()) + 1
    hidden_input = {"remove-input", "hide-input"} & set(_nbtools.tags(cell))
    lines = 0 if hidden_input else len(cell.source.splitlines()) + 1
    if "remove-output" in _nbtools.tags(cell):
        return lines
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if output.get("output_type") == "stream":
            lines += len(output.get("text", "").splitlines())
        elif "image/png" in data:
            lines += 14
        elif "text/html" in data:
            lines += min(20, 1 + str(data["text/html"]).count("<tr"))
        elif "text/plain" in data:
            lines += len(str(data["text/plain"]).splitlines())
    return lines


def split_long_slides(nb, budget=18):
    """A copy of `nb` in which a cell that would make its slide taller than about `budget` lines
    starts a sub-slide (a vertical slide below it): the chapter deck keeps the chapter's order and
    every cell, without slides that run off the screen. Cells the author made slides stay slides."""
    nb = copy.deepcopy(nb)
    used = 0
    for cell in nb.cells:
        if "remove-cell" in _nbtools.tags(cell):
            continue
        kind = cell.metadata.get("slideshow", {}).get("slide_type", "-")
        lines = estimated_lines(cell)
        if kind in ("slide", "subslide"):
            used = lines
        elif kind in ("-", "fragment") and used and used + lines > budget:
            cell.metadata.setdefault("slideshow", {})["slide_type"] = "subslide"
            used = lines
        elif kind not in ("skip", "notes"):
            used += lines
    return nb


def write_deck(nb, path, title):
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = FONT_AWESOME_CDN.sub(FONT_AWESOME_LOCAL, body)
    path.write_text(body, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Lecture decks: book/lectures/*.yml, with what they show selected from the executed chapters
# ---------------------------------------------------------------------------------------------

class Chapters:
    """The executed chapters, read once, and the selectors a lecture source uses on them."""

    def __init__(self, folder=CHAPTERS):
        self.folder = Path(folder)
        self._read = {}

    def notebook(self, chapter):
        if chapter not in self._read:
            path = self.folder / f"{chapter}.ipynb"
            if not path.exists():
                known = sorted(p.stem for p in self.folder.glob("*.ipynb"))
                raise LectureError(f"no chapter {chapter!r} (chapters/{chapter}.ipynb); the chapters: {known}")
            self._read[chapter] = _nbtools.read(path)
        return self._read[chapter]

    def cell(self, selector):
        """The one code cell of `selector['chapter']` whose source contains `selector['cell']`."""
        if not isinstance(selector, dict) or not {"chapter", "cell"} <= set(selector):
            raise LectureError(f"a selector needs 'chapter' and 'cell' (a piece of the cell's source), got {selector!r}")
        chapter, needle = selector["chapter"], selector["cell"]
        found = [c for c in self.notebook(chapter).cells if c.cell_type == "code" and needle in c.source]
        if len(found) != 1:
            what = "no code cell" if not found else f"{len(found)} code cells"
            firsts = [c.source.strip().splitlines()[0][:60] for c in found]
            raise LectureError(f"{chapter}: {what} whose source contains {needle!r}"
                               + (f" (they start: {firsts}); make the piece longer" if found else
                                  "; the cell was edited or removed: update the selector"))
        return found[0]

    def figure(self, selector):
        """(PNG as base64, alt text) of the selected cell's figure (`index`: which, when it draws several)."""
        cell = self.cell(selector)
        images = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        index = selector.get("index", 0)
        if not images or index >= len(images):
            raise LectureError(f"{selector['chapter']}: the cell {selector['cell']!r} has {len(images)} figure(s),"
                               f" asked for figure {index}: was the chapter executed?")
        alt = selector.get("alt") or cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
        if not alt.strip():
            raise LectureError(f"{selector['chapter']}: the figure of {selector['cell']!r} has no alt text"
                               " (cell metadata mystnb.image.alt, or `alt:` in the lecture source)")
        png = images[index]
        return (png if isinstance(png, str) else base64.b64encode(png).decode()).replace("\n", ""), alt

    def table(self, selector):
        """The HTML table the selected cell displays (the first <table> of its outputs)."""
        cell = self.cell(selector)
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            match = re.search(r"<table.*?</table>", text, flags=re.S)
            if match:
                return match.group(0)
        raise LectureError(f"{selector['chapter']}: the cell {selector['cell']!r} displays no HTML table")

    def text(self, selector):
        """The text the selected cell printed (streams and plain-text results)."""
        cell = self.cell(selector)
        parts = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "text/plain" in output.get("data", {}) and not {"text/html", "image/png"} & set(output["data"]):
                parts.append(str(output["data"]["text/plain"]) + "\n")
        return "".join(parts)

    def value(self, selector):
        """The number (or words) the selector's `pattern` finds in the cell's printed text: its first
        group, or the whole match. It must match exactly once."""
        pattern = selector.get("pattern")
        if not pattern:
            raise LectureError(f"the value selector {selector!r} has no 'pattern' (a regular expression)")
        text = self.text(selector)
        matches = list(re.finditer(pattern, text))
        if len(matches) != 1:
            raise LectureError(f"{selector['chapter']}: the pattern {pattern!r} matches {len(matches)} times in what"
                               f" the cell {selector['cell']!r} printed (must be once): {text[:300]!r}")
        match = matches[0]
        return match.group(1) if match.groups() else match.group(0)

    def source_lines(self, selector):
        """The selected cell's source, or `lines: [first, last]` of it (1-based, inclusive)."""
        lines = self.cell(selector).source.rstrip().splitlines()
        if "lines" in selector:
            first, last = selector["lines"]
            if not 1 <= first <= last <= len(lines):
                raise LectureError(f"{selector['chapter']}: lines {first}-{last} of the cell {selector['cell']!r},"
                                   f" which has {len(lines)}")
            lines = lines[first - 1:last]
        return lines


def _protect_math(text):
    """Markdown would read `_` and `*` inside $…$ as emphasis: swap the math out, then back."""
    stash = []

    def keep(match):
        stash.append(match.group(0))
        return f"XMATHX{len(stash) - 1}XMATHX"

    text = re.sub(r"\$\$.+?\$\$|\$[^$\n]+?\$", keep, text, flags=re.S)
    return text, stash


def _restore_math(rendered, stash):
    return re.sub(r"XMATHX(\d+)XMATHX", lambda m: html.escape(stash[int(m.group(1))], quote=False), rendered)


def markdown_html(text, inline=False):
    """Markdown (CommonMark) to HTML, leaving $…$ and $$…$$ for MathJax."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    text, stash = _protect_math(text)
    rendered = md.renderInline(text) if inline else md.render(text)
    return _restore_math(rendered, stash)


def highlight(code):
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return pyg_highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))


def pygments_css():
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="friendly").get_style_defs(".reveal pre code")


def png_size(png_b64):
    """(width, height) of a PNG given as base64, from its IHDR header."""
    head = base64.b64decode(png_b64[:44])
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise LectureError("a figure output is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def text_lines(text, width_chars):
    return sum(max(1, math.ceil(len(line) / width_chars)) for line in str(text).splitlines() or [""])


def figure_box(slide, side):
    """The room (width, height) in px left for a slide's figure: the slide area (1200×680 inside its
    padding) less the title, the takeaway, the citation and, unless beside them, the bullets."""
    height = HEIGHT - 40 - 80  # padding, title
    if slide.get("takeaway"):
        height -= 30 + 46 * text_lines(slide["takeaway"], 62)
    if slide.get("cite"):
        height -= 12 + 32 * text_lines(slide["cite"], 95)
    if side:
        return (WIDTH - 80) * 0.56 - 14, height - 10
    for bullet in slide.get("bullets") or []:
        height -= 14 + 45 * text_lines(re.sub(r"\$[^$]*\$", "xxxx", bullet), 62)
    if slide.get("math"):
        height -= 110
    return WIDTH - 80, height - 10


def strip_comment(line):
    """`line` without a trailing `# comment` (a # inside a string literal stays)."""
    for match in re.finditer(r"\s+#", line):
        before = line[:match.start()]
        if before.strip() and before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            return before.rstrip()
    return line


def fill(text, values, where):
    """`{{name}}` in `text` replaced by the slide's values; an unknown name is an error."""
    def one(match):
        name = match.group(1)
        if name not in values:
            raise LectureError(f"{where}: {{{{{name}}}}} is not among the slide's values {sorted(values)}")
        return values[name]

    return PLACEHOLDER.sub(one, text or "")


SLIDE_KEYS = {"title", "bullets", "math", "figure", "table", "grid", "code", "output", "takeaway", "notes", "values",
              "cite", "layout"}


def render_slide(slide, chapters, where):
    """One slide of a lecture source as a reveal.js <section> (str), and what it shows (dict)."""
    unknown = set(slide) - SLIDE_KEYS
    if unknown:
        raise LectureError(f"{where}: unknown key(s) {sorted(unknown)}; a slide has {sorted(SLIDE_KEYS)}")
    if not slide.get("title"):
        raise LectureError(f"{where}: a slide needs a title")
    if not slide.get("notes"):
        raise LectureError(f"{where}: a slide needs speaker notes (`notes:`, the chapter's prose for the lecturer)")
    values = {name: chapters.value(sel) for name, sel in (slide.get("values") or {}).items()}
    bullets = slide.get("bullets") or []
    if len(bullets) > MAX_BULLETS:
        raise LectureError(f"{where}: {len(bullets)} bullets, at most {MAX_BULLETS} on a projector slide")
    body = [f"<h2>{markdown_html(fill(slide['title'], values, where), inline=True)}</h2>"]
    shown = {"figures": 0, "code_lines": 0}
    side = slide.get("layout") == "side"  # figure on the right, bullets on the left
    text_parts = []
    if bullets:
        items = "".join(f"<li>{markdown_html(fill(b, values, where), inline=True)}</li>" for b in bullets)
        text_parts.append(f"<ul>{items}</ul>")
    if slide.get("math"):
        text_parts.append(f'<div class="formula">$${html.escape(slide["math"].strip(), quote=False)}$$</div>')
    visual = []
    if slide.get("figure"):
        png, alt = chapters.figure(slide["figure"])
        chapter = int(slide["figure"]["chapter"][:2])
        box_w, box_h = figure_box(slide, side and bool(text_parts))
        w, h = png_size(png)
        zoom = min(box_w / w, box_h / h, 2.0)
        visual.append(f'<figure><img class="chapter-figure" alt="{html.escape(alt)}" width="{int(w * zoom)}"'
                      f' height="{int(h * zoom)}" src="data:image/png;base64,{png}"></figure>')
        shown["figures"] += 1
        shown.setdefault("sources", []).append(chapter)
    if slide.get("table"):
        visual.append(f'<div class="chapter-table">{chapters.table(slide["table"])}</div>')
    if slide.get("grid"):  # a small table written in the lecture source (cited numbers)
        grid = slide["grid"]
        head = "".join(f"<th>{markdown_html(fill(h, values, where), inline=True)}</th>" for h in grid["header"])
        rows = "".join("<tr>" + "".join(f"<td>{markdown_html(fill(str(c), values, where), inline=True) or '—'}</td>"
                                        for c in row) + "</tr>" for row in grid["rows"])
        visual.append(f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>')
    if slide.get("code"):
        code = slide["code"]
        lines = chapters.source_lines(code) if isinstance(code, dict) else code.rstrip().splitlines()
        if isinstance(code, dict) and code.get("comments") is False:  # the notes say what the comments said
            lines = [strip_comment(line) for line in lines]
        if len(lines) > MAX_CODE_LINES:
            raise LectureError(f"{where}: {len(lines)} lines of code, at most {MAX_CODE_LINES} on a slide"
                               " (select `lines: [first, last]` of the cell)")
        wide = [line for line in lines if len(line) > MAX_CODE_COLUMNS]
        if wide:
            raise LectureError(f"{where}: a code line of {len(wide[0])} characters (at most {MAX_CODE_COLUMNS}): {wide[0]!r}")
        shown["code_lines"] = len(lines)
        visual.append(f'<pre><code class="python">{highlight(chr(10).join(lines))}</code></pre>')
    if slide.get("output"):
        sel = slide["output"]
        printed = chapters.text(sel).rstrip().splitlines()
        if "lines" in sel:
            first, last = sel["lines"]
            printed = printed[first - 1:last]
        if not printed or len(printed) > MAX_OUTPUT_LINES:
            raise LectureError(f"{where}: the printed output has {len(printed)} lines (1 to {MAX_OUTPUT_LINES};"
                               " select `lines: [first, last]`)")
        visual.append(f'<pre class="printed"><code>{html.escape(chr(10).join(printed))}</code></pre>')
    if side and text_parts and visual:
        body.append(f'<div class="side"><div class="side-text">{"".join(text_parts)}</div>'
                    f'<div class="side-visual">{"".join(visual)}</div></div>')
    else:
        body += text_parts + visual
    if slide.get("takeaway"):
        body.append(f'<p class="takeaway">{markdown_html(fill(slide["takeaway"], values, where), inline=True)}</p>')
    if slide.get("cite"):
        body.append(f'<p class="cite">{markdown_html(fill(slide["cite"], values, where), inline=True)}</p>')
    notes = markdown_html(fill(slide["notes"], values, where))
    classes = ["slide"] + (["with-figure"] if shown["figures"] else [])
    section_html = (f'<section class="{" ".join(classes)}">\n' + "\n".join(body)
                    + f'\n<aside class="notes">{notes}</aside>\n</section>')
    return section_html, shown


def load_lecture(path):
    """A lecture source, with every `use: <title>` slide replaced by the slide of that title in
    another lecture source of the same folder (so the 45-minute deck shares the 90-minute deck's text)."""
    path = Path(path)
    plan = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("title", "minutes", "parts"):
        if key not in plan:
            raise LectureError(f"{path.name}: no {key!r}")
    library = None
    for part in plan["parts"]:
        for index, slide in enumerate(part.get("slides", [])):
            if "use" not in slide:
                continue
            if library is None:
                library = {}
                for other in sorted(path.parent.glob("lecture-*.yml")):
                    if other != path:
                        for other_part in yaml.safe_load(other.read_text(encoding="utf-8"))["parts"]:
                            for s in other_part.get("slides", []):
                                if "title" in s:
                                    library.setdefault(s["title"], s)
            if slide["use"] not in library:
                raise LectureError(f"{path.name}, part {part['title']!r}: `use: {slide['use']}` names no slide of the"
                                   f" other lecture sources; their titles: {sorted(library)}")
            part["slides"][index] = copy.deepcopy(library[slide["use"]])
    return plan


def lecture_sections(plan, chapters, name="lecture"):
    """Every <section> of a lecture deck (title slide, per part a title slide and its slides)."""
    minutes = sum(part["minutes"] for part in plan["parts"])
    if minutes != plan["minutes"]:
        raise LectureError(f"{name}: the parts last {minutes} minutes, the lecture {plan['minutes']}")
    sections = [f'<section class="title-slide"><h1>{markdown_html(plan["title"], inline=True)}</h1>'
                f'<p class="subtitle">{markdown_html(plan.get("subtitle", ""), inline=True)}</p>'
                f'<p class="meta">{plan["minutes"]} minutes · {len(plan["parts"])} parts · press <kbd>s</kbd>'
                f" for the speaker notes</p>"
                f'<aside class="notes">{markdown_html(plan.get("notes", "The plan: book/lecturers.md."))}</aside></section>']
    start = 0
    for number, part in enumerate(plan["parts"], 1):
        where = f"{name}, part {number} ({part['title']})"
        end = start + part["minutes"]
        sections.append(f'<section class="part-slide"><p class="part-number">Part {number} · minutes {start}–{end}</p>'
                        f'<h1>{markdown_html(part["title"], inline=True)}</h1>'
                        + (f'<p class="story">{markdown_html(part["story"], inline=True)}</p>' if part.get("story") else "")
                        + f'<aside class="notes">{markdown_html(part.get("notes", part.get("story", "")))}</aside></section>')
        for index, slide in enumerate(part.get("slides", []), 1):
            html_section, _ = render_slide(slide, chapters, f"{where}, slide {index} ({slide.get('title', '?')})")
            sections.append(html_section)
        start = end
    return sections


def lecture_html(plan, sections):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / "lecture")), autoescape=False)
    return env.get_template("deck.html.j2").render(
        title=html.escape(plan["title"]), sections="\n".join(sections), width=WIDTH, height=HEIGHT,
        pygments_css=pygments_css())


def lecture_paths(folder=LECTURES):
    return sorted(Path(folder).glob("lecture-*.yml"))


def build_lecture(path, out, chapters=None):
    chapters = chapters or Chapters()
    plan = load_lecture(path)
    deck = out / f"{Path(path).stem}.slides.html"
    deck.write_text(lecture_html(plan, lecture_sections(plan, chapters, Path(path).name)), encoding="utf-8")
    return deck, plan


def visible_words(section_html):
    """Words a slide shows (its notes left out), from the HTML: a quick count for the build's summary."""
    text = re.sub(r'<aside class="notes">.*?</aside>', " ", section_html, flags=re.S)
    text = re.sub(r"<img[^>]*>", " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    return len(re.findall(r"[^\s]+", html.unescape(text)))


# ---------------------------------------------------------------------------------------------

def build(out, chapters=None, pdf=True, browser=None):
    """Build the decks into `out`; returns the paths written (lecture decks, chapter decks, PDFs, index)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "slides_assets.sh")], check=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "lib", ignore_errors=True)
    shutil.copytree(LIB, out / "lib", ignore=shutil.ignore_patterns(".installed-*"))
    written, entries = [], []
    source = Chapters()
    for path in lecture_paths():
        deck, plan = build_lecture(path, out, source)
        written.append(deck)
        entries.append((deck.name, f"The lecture, {plan['minutes']} minutes: {plan['title']}"
                                   f" (projector; PDF: {deck.name.replace('.slides.html', '.pdf')})"))
    paths = sorted(CHAPTERS.glob("*.ipynb"))
    if chapters:
        paths = [p for p in paths if p.stem in chapters]
    for path in paths:
        nb = _nbtools.read(path)
        title = next((h[1] for h in map(heading, nb.cells) if h and h[0] == 1), path.stem)
        deck = out / f"{path.stem}.slides.html"
        write_deck(split_long_slides(nb), deck, f"{int(path.stem[:2])}. {title}")
        written.append(deck)
        entries.append((deck.name, f"Chapter {int(path.stem[:2])}: {title} (self-study)"))
    items = "\n".join(f'  <li><a href="{name}">{html.escape(text)}</a></li>' for name, text in entries)
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MobileViT from scratch: slides</title></head>\n"
        "<body>\n<h1>MobileViT from scratch: slides</h1>\n"
        "<p>reveal.js decks that open without internet: the lectures (book/lectures/, figures and numbers from the"
        " executed chapters) and one deck per chapter. Keys: arrows to move, <kbd>s</kbd> for speaker notes,"
        " <kbd>f</kbd> for full screen.</p>\n"
        f"<ul>\n{items}\n</ul>\n</body></html>\n", encoding="utf-8")
    if pdf:
        import check_slides

        if check_slides.chromium():
            for deck in [p for p in written if p.name.startswith("lecture-")]:
                target = deck.with_name(deck.name.replace(".slides.html", ".pdf"))
                pages = check_slides.print_pdf(deck, target, browser)
                print(f"✓ {target.name}: {pages} pages")
                written.append(target)
        else:
            print("chromium is not installed: the lecture decks' PDFs are not printed (apt-get install chromium)")
    written.append(index)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the decks (default: _build/slides)")
    parser.add_argument("--chapters", nargs="*", help="only these chapter decks, by file stem (the lecture decks are always built)")
    parser.add_argument("--no-pdf", action="store_true", help="do not print the lecture decks to PDF")
    parser.add_argument("--check", action="store_true",
                        help="then measure every slide of every deck in headless Chromium, offline (scripts/check_slides.py)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    import check_slides

    # one headless Chromium prints the PDFs and measures the decks
    browser = check_slides.Browser() if check_slides.chromium() and (args.check or not args.no_pdf) else None
    try:
        written = build(out, args.chapters, pdf=not args.no_pdf, browser=browser)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        decks = [p for p in written if p.name.endswith(".slides.html")]
        print(f"✓ {len(decks)} deck(s) in {args.out} ({size / 2**20:.1f} MiB with lib/): open {out / 'index.html'}")
        if args.check:
            return check_slides.check(decks, out / "screenshots", browser=browser)
        return 0
    finally:
        if browser:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
