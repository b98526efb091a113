"""Cross-references resolve, and notebook Markdown reads the same in the book, Jupyter and Colab.

- Every "chapter N" (also "chapters 4 and 5", "chapters 2 to 5", "chapters 4-6") written in a
  notebook, a Markdown page of the book, README.md, pyproject.toml or the package's docstrings and
  comments names a chapter that exists at test time: a file chapters/NN_*.ipynb.
- Every link to a page of the course resolves: a relative link in a book page to a file that exists,
  a link to the published book (https://ORG.github.io/REPO/..., from repository.url in _config.yml)
  to a notebook or page of the repository.
- Notebook Markdown has no MyST syntax (roles such as {cite}`key` or {term}`MV2`, directives,
  substitutions, targets) and no relative links to other pages: Jupyter and Colab show the first
  as raw text, and Colab cannot follow the second. Cite as text with a link, e.g.
  "Mehta & Rastegari (2022, [arXiv:2110.02178](https://arxiv.org/abs/2110.02178))", and link other
  pages with their address in the published book.

Runs in `bash scripts/test.sh` (step "pytest tests/"); needs no kernel.
"""

import functools
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import _nbtools  # noqa: E402

NOTEBOOKS = _nbtools.find_notebooks()
BOOK_PAGES = sorted((ROOT / "book").glob("*.md"))
OTHER_TEXT = [ROOT / "README.md", ROOT / "pyproject.toml"] + sorted((ROOT / "mobilevit_edu").rglob("*.py"))

# "chapter 3", "Chapters 4 and 5", "chapters 2 to 5", "chapters 4–6", "chapters 1, 2 and 3"; a number
# followed by ×, x or % is a size or a share, not a chapter ("chapter 4, 8×8 maps")
_NUMBER = r"\d+(?!\d)(?!\s*[×x%])"
_JOIN = r"\s*(,|and|or|to|through|–|—|-)\s*"
CHAPTER_REF = re.compile(rf"\b[Cc]hapters?\s+(\d+)((?:{_JOIN}{_NUMBER})*)")
RANGE_WORDS = ("to", "through", "–", "—", "-")
# [text](target): the target up to the first space or closing parenthesis
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MYST_PATTERNS = {
    "a MyST role (e.g. {cite}`key`, {term}`word`)": re.compile(r"(?<![\\\w])\{[A-Za-z][\w:+.-]*\}`[^`\n]*`?"),
    "a MyST directive (e.g. ```{note})": re.compile(r"^\s*(?:`{3,}|~{3,}|:{3,})\s*\{[\w:+.-]+\}", re.MULTILINE),
    "a MyST substitution ({{ name }})": re.compile(r"\{\{\s*[\w.-]+\s*\}\}"),
    "a MyST target ((label)=)": re.compile(r"^\([\w.:-]+\)=\s*$", re.MULTILINE),
}


def existing_chapters():
    """The chapter numbers for which chapters/NN_*.ipynb exists now."""
    return {int(p.name[:2]) for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")}


def chapter_numbers(text):
    """[(number, line)] of every chapter `text` refers to, ranges expanded ("chapters 2 to 4" -> 2, 3, 4)."""
    found = []
    for match in CHAPTER_REF.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        numbers = [int(match.group(1))]
        for word, number in re.findall(rf"{_JOIN}({_NUMBER})", match.group(2)):
            number = int(number)
            if word in RANGE_WORDS and number > numbers[-1]:
                numbers += list(range(numbers[-1] + 1, number + 1))
            else:
                numbers.append(number)
        found += [(n, line) for n in numbers]
    return found


def _without_code(markdown):
    """`markdown` without its fenced code blocks (```python ... ```, not ```{directive}) and inline
    code spans (`x{0}`); a role's backtick follows its closing brace ({cite}`key`): not a span."""
    text = re.sub(r"^[ \t]*(`{3,}|~{3,})(?![ \t]*\{).*?^[ \t]*\1[ \t]*$", "", markdown,
                  flags=re.MULTILINE | re.DOTALL)
    # left to right, so that a role's backticks are taken as the role's, never as a span's
    return re.sub(r"(\{[A-Za-z][\w:+.-]*\}`[^`\n]*`)|(?<!`)`(?!`)[^`\n]+`(?!`)",
                  lambda m: m.group(1) or "", text)


def myst_syntax(markdown):
    """[(what, snippet)] of the MyST-only syntax in `markdown`, outside code spans and blocks."""
    text = _without_code(markdown)
    found = []
    for what, pattern in MYST_PATTERNS.items():
        found += [(what, m.group(0).strip()) for m in pattern.finditer(text)]
    return found


def published_book():
    """The published book's address, e.g. https://mobilevit-edu.github.io/mobilevit-from-scratch/"""
    url, _ = _nbtools.repository()
    org, repo = url[len("https://github.com/"):].split("/")[:2]
    return f"https://{org.lower()}.github.io/{repo}/"


@functools.lru_cache(maxsize=None)
def _texts(path):
    """[(where, text, is_notebook_markdown)] of a file: one entry per notebook cell, else the file."""
    rel = _nbtools.relpath(path)
    if path.suffix == ".ipynb":
        return [(f"{rel} cell {cell.get('id', i)}", cell.source, cell.cell_type == "markdown")
                for i, cell in enumerate(_nbtools.read(path).cells)]
    return [(rel, path.read_text(encoding="utf-8"), False)]


def _id(path):
    return _nbtools.relpath(path)


# ------------------------------------------------------------------------ the rules, on examples
def test_chapter_numbers_reads_lists_and_ranges():
    text = "See chapter 3.\nChapters 4 and 5, chapters 2 to 4, chapters 7–9, chapter 10's and chapters 1, 6 or 8"
    assert [n for n, _ in chapter_numbers(text)] == [3, 4, 5, 2, 3, 4, 7, 8, 9, 10, 1, 6, 8]
    assert chapter_numbers("a chapter, the chapters") == []
    assert [n for n, _ in chapter_numbers("(chapter 4, 8×8 maps) and chapter 6, 25 % of it")] == [4, 6]
    assert [line for _, line in chapter_numbers("x\n\nchapter 2")] == [3]


def test_myst_rule_rejects_roles_and_directives_and_accepts_plain_markdown():
    assert len(myst_syntax("see {cite}`a` and {term}`MV2 block`, `code`, {doc}`b`")) == 3
    for bad in ["see {cite}`mehta2022mobilevit`", "an {term}`MV2 block`", "```{note}\nhi\n```",
                ":::{admonition} x\n:::", "at {{ repository_url }}", "(sec-patches)=\n# Patches",
                "{numref}`fig-1`"]:
        assert myst_syntax(bad), f"not caught: {bad!r}"
    for good in ["Mehta & Rastegari (2022, [arXiv:2110.02178](https://arxiv.org/abs/2110.02178))",
                 "$H_\\text{out}$ and `x[{0}]`", "$\\mathrm{softmax}(QK^\\top)$ `code`",
                 "```python\nd = {'a': 1}\n```", "<details><summary>Show answer</summary>\n\nYes.\n\n</details>"]:
        assert not myst_syntax(good), f"wrongly caught: {good!r}: {myst_syntax(good)}"


# ------------------------------------------------------------------------ the course's files
@pytest.mark.parametrize("path", NOTEBOOKS + BOOK_PAGES + OTHER_TEXT, ids=_id)
def test_every_chapter_reference_names_an_existing_chapter(path):
    """"chapter N" must name a chapter that exists: chapters/NN_*.ipynb. Fix: the right number, or
    no reference until that chapter lands."""
    chapters = existing_chapters()
    wrong = []
    for where, text, _ in _texts(path):
        for number, line in chapter_numbers(text):
            if number not in chapters:
                wrong.append(f"{where}, line {line}: chapter {number}")
    assert not wrong, (f"references to chapters that do not exist (there are chapters "
                       f"{sorted(chapters)}): " + "; ".join(wrong))


@pytest.mark.parametrize("path", NOTEBOOKS + BOOK_PAGES + [ROOT / "README.md"], ids=_id)
def test_links_to_course_pages_resolve(path):
    """A link to the published book names a notebook or page of the repository; a relative link in a
    book page names a file that exists."""
    book = published_book()
    wrong = []
    for where, text, _ in _texts(path):
        for target in MARKDOWN_LINK.findall(_without_code(text)):
            target = target.split("#")[0]
            if target.startswith(book):
                page = target[len(book):]
                stem = page[: -len(".html")] if page.endswith(".html") else page.rstrip("/")
                if not any((ROOT / f"{stem}{ext}").is_file() for ext in (".ipynb", ".md")) and stem:
                    wrong.append(f"{where}: {target} (no {stem}.ipynb or {stem}.md)")
            elif target and not re.match(r"^[a-z][a-z+.-]*:", target) and path.suffix == ".md":
                if not (path.parent / target).exists():
                    wrong.append(f"{where}: {target} (no such file)")
    assert not wrong, "links that lead nowhere: " + "; ".join(wrong)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_markdown_has_no_myst_syntax(path):
    """Jupyter and Colab show MyST roles and directives as raw text. Fix: cite as text with a link,
    e.g. Mehta & Rastegari (2022, [arXiv:2110.02178](https://arxiv.org/abs/2110.02178)); a glossary
    word as plain text (or a link to the glossary page); an admonition as a bold lead-in or an HTML
    <details> block."""
    wrong = []
    for where, text, is_markdown in _texts(path):
        if is_markdown:
            wrong += [f"{where}: {what}: {snippet[:60]!r}" for what, snippet in myst_syntax(text)]
    assert not wrong, "MyST syntax in notebook Markdown: " + "; ".join(wrong)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebooks_link_to_pages_by_their_published_address(path):
    """A relative link (../exercises/02_mv2_block.ipynb) works in the book and in Jupyter, but leads
    nowhere in Colab, which opens one notebook on its own. Fix: the page's address in the published
    book, e.g. https://ORG.github.io/REPO/exercises/02_mv2_block.html"""
    wrong = []
    for where, text, is_markdown in _texts(path):
        if not is_markdown:
            continue
        for target in MARKDOWN_LINK.findall(text):
            if not re.match(r"^([a-z][a-z+.-]*:|#)", target):
                wrong.append(f"{where}: {target}")
    assert not wrong, (f"relative links in notebook Markdown (use {published_book()}<folder>/<name>.html): "
                       + "; ".join(wrong))
