"""The book reads offline and the Colab path is checked: the pieces, tested without a browser or network.

- book/_ext/offline_book.py swaps the Colab badge for the book's copy and drops the CDN Font Awesome
  link of matplotlib's animations (on a real `to_jshtml`);
- the configuration serves MathJax 3 from the book and loads no widget scripts;
- scripts/check_offline.py judges what a page requested and showed as it should;
- scripts/check_colab_install.py finds what the notebooks import and what torch brings along;
- the glossary's 繁體中文 table covers every glossary entry.
The browser run itself is `python scripts/check_offline.py` and the Colab run
`python scripts/check_colab_install.py` (both steps of scripts/test.sh).
"""

import json
import re
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest
import yaml
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import check_colab_install  # noqa: E402
import check_offline  # noqa: E402
import offline_book  # noqa: E402
import stamp_colab  # noqa: E402


def _sphinx_config():
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]


def _document(*children):
    document = new_document("test", get_default_settings(Parser))
    for child in children:
        document += child
    return document


def _jshtml():
    fig, ax = plt.subplots(figsize=(1, 1))
    line, = ax.plot([0, 1], [0, 1])
    anim = FuncAnimation(fig, lambda i: line.set_ydata([0, i]), frames=2)
    html = anim.to_jshtml()
    plt.close(fig)
    return html


def test_the_book_swaps_exactly_the_badge_that_stamp_colab_writes_for_its_own_copy():
    assert offline_book.REMOTE_BADGE == stamp_colab.BADGE_SVG
    local = ROOT / offline_book.LOCAL_BADGE.lstrip("/")
    assert local.is_file() and "Open in Colab" in local.read_text(encoding="utf-8")
    badge = nodes.image(uri=stamp_colab.BADGE_SVG, alt="Open In Colab")
    other = nodes.image(uri="https://example.org/figure.svg")
    document = _document(nodes.paragraph("", "", nodes.reference("", "", badge, refuri="https://colab"), other))
    offline_book.OfflineAssets(document).apply()
    assert badge["uri"] == offline_book.LOCAL_BADGE and badge["alt"] == "Open In Colab"
    assert other["uri"] == "https://example.org/figure.svg", "only the Colab badge is swapped"


def test_the_cdn_font_awesome_link_of_a_matplotlib_animation_is_dropped_and_nothing_else():
    html = _jshtml()
    assert re.search(r"https?://[^\"']*font-awesome", html), "matplotlib's player no longer links Font Awesome?"
    raw = nodes.raw("", html, format="html")
    offline_book.OfflineAssets(_document(raw)).apply()
    after = raw.astext()
    assert "font-awesome" not in after and "://" not in after.replace("http://www.w3.org", "")
    assert after == offline_book.FONT_AWESOME_LINK.sub("", html)
    assert 'id="_anim_img' in after and "fa fa-play" in after, "the player and its icons stay"
    text = nodes.raw("", html, format="latex")  # not HTML: left alone
    offline_book.OfflineAssets(_document(text)).apply()
    assert text.astext() == html


def test_mathjax_3_is_served_by_the_book_and_no_widget_script_is_loaded():
    config = _sphinx_config()["config"]
    path = config["mathjax_path"]
    assert "://" not in path, f"mathjax_path {path} is a URL: the book would need the network"
    assert config["html_static_path"] == ["vendor/book/static"]
    assert config["nb_ipywidgets_js"] == {}
    script = (ROOT / "scripts" / "book_assets.sh").read_text(encoding="utf-8")
    # book_assets.sh copies es5/<file> into static/mathjax/, which the book serves as _static/mathjax/
    assert path.startswith("mathjax/") and f'"$src/{path[len("mathjax/"):]}" static/mathjax/' in script
    lock = json.loads((ROOT / "vendor" / "book" / "package-lock.json").read_text(encoding="utf-8"))
    version = lock["packages"]["node_modules/mathjax"]["version"]
    assert version.startswith("3."), f"mathjax {version}: version 4 moved es5/tex-chtml.js"
    assert _sphinx_config()["local_extensions"] == {"offline_book": "book/_ext"}
    assert not (ROOT / "_static").exists(), "a _static/ folder makes Jupyter Book inject all its .js into every page"


def _events(session="S", *entries):
    events = []
    for i, (url, status, failed) in enumerate(entries):
        rid = str(i)
        events.append({"sessionId": session, "method": "Network.requestWillBeSent",
                       "params": {"requestId": rid, "request": {"url": url}}})
        if failed:
            events.append({"sessionId": session, "method": "Network.loadingFailed",
                           "params": {"requestId": rid, "errorText": failed, "canceled": failed == "canceled"}})
        else:
            events.append({"sessionId": session, "method": "Network.responseReceived",
                           "params": {"requestId": rid, "response": {"url": url, "status": status}}})
    return events


def test_offline_check_flags_requests_that_leave_the_machine_and_local_files_that_fail():
    local = "http://127.0.0.1:8000"
    events = _events("S",
                     (f"{local}/chapters/01.html", 200, None),
                     ("data:image/png;base64,AAAA", 200, None),
                     (f"{local}/favicon.ico", 404, None),  # Chromium asks for it by itself
                     (f"{local}/_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff", 404, None),
                     ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", 0, "net::ERR_NAME_NOT_RESOLVED"),
                     (f"{local}/_images/a.png", 0, "net::ERR_CONNECTION_RESET"),
                     (f"{local}/_images/b.png", 0, "canceled"))
    events += _events("another tab", ("https://elsewhere.example/", 200, None))
    problems, requests = check_offline.network_problems(events, "S")
    assert requests == 7
    assert problems == [
        "a request left the machine: https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        f"HTTP 404 for {local}/_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
        f"failed to load {local}/_images/a.png (net::ERR_CONNECTION_RESET)",
    ]
    assert check_offline.network_problems(_events("S", (f"{local}/x.html", 200, None)), "S") == ([], 1)


def _report(**changes):
    report = dict(title="t", mathjax=True, version="3.2.2", math=3, mathElements=3, raw=[],
                  images=[{"src": "a.png", "alt": "", "ok": True, "frame": False}],
                  animations=1, playing=1, buttons=9, blankButtons=0, search=None, ms=10)
    report.update(changes)
    return report


@pytest.mark.parametrize("changes, expected", [
    ({}, None),
    ({"mathjax": False, "math": 0}, "but MathJax did not load"),
    ({"math": 0}, "typeset nothing"),
    ({"raw": ["\\(k_h = 4\\)"]}, "raw TeX left in the text"),
    ({"images": [{"src": "f.png", "alt": "frame", "ok": False, "frame": True}]}, "animation frame does not show"),
    ({"playing": 0}, "1 of 1 animation(s) not playing"),
    ({"blankButtons": 9}, "without an icon"),
    ({"search": 0}, "the search found nothing"),
    ({"search": 4}, None),
    ({"mathjax": False, "math": 0, "mathElements": 0}, None),  # a page without math needs no MathJax
])
def test_offline_check_judges_what_the_page_shows(changes, expected):
    problems = check_offline.page_problems(_report(**changes))
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_colab_check_lists_the_third_party_modules_the_notebooks_import(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%config InlineBackend.figure_formats = ['png']\nimport os, torch\n"
                                  "from mobilevit_edu.checks import check_mv2\nfrom . import local\n!pip list"),
        nbformat.v4.new_markdown_cell("import markdown_is_not_code"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nif True:\n    from einops import rearrange"),
        nbformat.v4.new_code_cell("this is not python ("),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert check_colab_install.imported_modules([path]) == dict.fromkeys(
        ["torch", "mobilevit_edu", "matplotlib", "einops"], "nb.ipynb")


def test_colab_stack_follows_requirements_into_extras():
    found = check_colab_install.closure(["torchvision"])
    assert {"torchvision", "torch", "numpy", "pillow"} <= set(found)
    # torch asks for some packages with extras (on Linux x86_64: cuda-toolkit[cudart,...]): what
    # those extras require is part of the stack too, or pip would install it again in the fresh venv
    Requirement, name_of = check_colab_install.Requirement, check_colab_install.canonicalize_name
    for line in found["torch"].requires or []:
        wanted = Requirement(line)
        if not wanted.extras or (wanted.marker and not wanted.marker.evaluate({"extra": ""})):
            continue
        assert name_of(wanted.name) in found, f"{wanted.name} (torch needs it) is not in the stack"
        installed = {name_of(d.metadata["Name"]) for d in check_colab_install.metadata.distributions()}
        for sub in found[name_of(wanted.name)].requires or []:
            needed = Requirement(sub)
            if needed.marker and any(needed.marker.evaluate({"extra": e}) for e in wanted.extras):
                if name_of(needed.name) in installed:
                    assert name_of(needed.name) in found, f"{needed.name} (from {line}) is missing"


def _glossary_entries(text):
    """The glossary directive's entries: lists of the names of each (names at column 0)."""
    block = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    entries, current = [], []
    for line in block.splitlines():
        if line and not line[0].isspace():
            current.append(line.strip())
        elif line.strip() and current:
            entries.append(current)
            current = []
    return entries


def test_the_traditional_chinese_table_covers_every_glossary_entry():
    text = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    table = text.split("## 繁體中文對照", 1)[1]
    rows = [line.split("|")[1:4] for line in table.splitlines() if line.startswith("| {term}")]
    named = set()
    for english, _, _ in rows:  # {term}`name` or {term}`text <name>`
        target = re.search(r"\{term\}`([^`]+)`", english).group(1)
        named.add(re.search(r"<([^>]+)>$", target).group(1) if target.endswith(">") else target.strip())
    missing = [entry[0] for entry in _glossary_entries(text) if not named & set(entry)]
    assert not missing, f"glossary entries without a row in the 繁體中文 table at the end of book/glossary.md: {missing}"
    assert all(chinese.strip() for _, chinese, _ in rows), "a row without its 繁體中文 term"
