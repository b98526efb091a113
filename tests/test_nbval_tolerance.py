"""The notebooks' test compares floating-point printouts within a cell's stated tolerance (conftest.py, issue 19).

These call the comparison directly (no kernel), so they pin its behaviour in milliseconds: numbers within
|new - old| <= abs + rel*|old| pass, anything else (a number outside, changed words, a number more or
fewer, malformed metadata) fails; and every notebook's "tolerance" metadata is well formed.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("repo_conftest", ROOT / "conftest.py")
repo_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(repo_conftest)
compare = repo_conftest.compare_with_tolerance
parse_tolerance = repo_conftest.parse_tolerance


def test_numbers_within_the_tolerance_pass():
    assert compare("val accuracy 0.902, loss 0.31\n", "val accuracy 0.915, loss 0.29\n", 0.03, 0) == []
    assert compare("error 2.9e-09", "error 4.1e-09", 1e-6, 0) == []
    assert compare("1000.0 images/s", "1040.0 images/s", 0, 0.05) == []


def test_a_number_outside_the_tolerance_fails_and_the_message_names_it():
    problems = compare("val accuracy 0.902, loss 0.31\n", "val accuracy 0.500, loss 0.31\n", 0.03, 0)
    assert len(problems) == 1
    message = problems[0]
    assert "number 1" in message and "0.902" in message and "0.500" in message and "abs 0.03" in message


def test_abs_and_rel_add_up():
    # allowed = 0.01 + 0.1 * 2.0 = 0.21
    assert compare("x 2.0", "x 2.2", 0.01, 0.1) == []
    assert compare("x 2.0", "x 2.25", 0.01, 0.1) != []


def test_changed_text_between_numbers_fails():
    problems = compare("train accuracy 0.90", "val accuracy 0.90", 0.03, 0)
    assert problems and "before the first number" in problems[0]
    problems = compare("loss 0.31 (EMA)\n", "loss 0.31 (no EMA)\n", 0.03, 0)
    assert problems and "after number 1" in problems[0]


def test_an_integer_is_a_number_too():
    assert compare("epoch 3: 0.90", "epoch 4: 0.90", 0.03, 0) != []


def test_a_different_count_of_numbers_fails():
    problems = compare("IoU 0.81 0.77", "IoU 0.81 0.77 0.12", 0.03, 0)
    assert problems and "2 numbers" in problems[0] and "3" in problems[0]


def test_thousands_separators_make_one_number_and_a_shape_stays_two():
    assert compare("disc pixels 25,076", "disc pixels 25,081", 10, 0) == []
    assert compare("disc pixels 25,076", "disc pixels 25,981", 10, 0) != []
    assert compare("shape (2, 3)", "shape (2, 4)", 0.5, 0) != []


def test_nan_where_a_number_was_fails():
    assert compare("loss 0.31", "loss nan", 0.03, 0) != []


def test_scientific_and_plain_notation_parse_as_numbers():
    assert compare("max abs diff 1.1e-02", "max abs diff 0.0e+00", 0.02, 0) == []
    assert compare("max abs diff 1.1e-02", "max abs diff 0.0e+00", 0.005, 0) != []


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ({"abs": 0.01}, '"why"'),
        ({"abs": 0.01, "why": "  "}, '"why"'),
        ({"abs": -0.01, "why": "spread"}, '"abs"'),
        ({"rel": "0.1", "why": "spread"}, '"rel"'),
        ({"abs": float("nan"), "why": "spread"}, '"abs"'),
        ({"abs": True, "why": "spread"}, '"abs"'),
        ({"abs": 0, "rel": 0, "why": "spread"}, "both 0"),
        ({"abs": 0.01, "why": "spread", "relative": 0.1}, "unknown keys"),
        (0.01, "must be an object"),
    ],
)
def test_bad_tolerance_metadata_is_refused_with_a_clear_message(spec, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_tolerance({"tolerance": spec})


def test_good_tolerance_metadata_is_read():
    assert parse_tolerance({}) is None
    assert parse_tolerance({"tolerance": {"abs": 0.03, "why": "measured"}}) == (0.03, 0.0, "measured")
    assert parse_tolerance({"tolerance": {"abs": 0, "rel": 1e-3, "why": "measured"}}) == (0.0, 1e-3, "measured")


def test_png_size_is_read_from_the_header():
    # a 1x1 PNG
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    assert repo_conftest.image_summary([{"data": {"image/png": png}}]) == [("image/png", (1, 1))]


def test_images_count_and_size_are_compared_not_their_bytes():
    match = repo_conftest.images_match
    png = [("image/png", (508, 302))]
    assert match(png, [("image/png", (522, 302))])  # a tick label wider: 2.8 %
    assert not match(png, [("image/png", (640, 302))])  # another figure size
    assert not match(png, [])  # the figure is missing
    assert not match(png, png + png)  # an extra figure
    assert not match(png, [("image/jpeg", None)])


def _notebooks():
    return sorted(p for folder in ("chapters", "solutions", "exercises", "book") for p in (ROOT / folder).glob("*.ipynb"))


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_tolerance_in_the_notebooks_is_well_formed(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        try:
            parse_tolerance(cell.get("metadata", {}))
        except ValueError as error:
            pytest.fail(f"{path.relative_to(ROOT)} code cell {index} (nbval's 'Cell {index}'): {error}")


def test_nbval_applies_the_cell_tolerance(tmp_path):
    """End to end, one small kernel: the hook is installed in nbval, and it passes / fails the right cells."""
    import shutil
    import subprocess
    import sys

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbval")

    def cell(printed, committed, tolerance):
        code = nbformat.v4.new_code_cell(f"print({printed!r})")
        code.execution_count = 1
        code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=committed + "\n")]
        if tolerance is not None:
            code.metadata["tolerance"] = tolerance
        return code

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        cell("val accuracy 0.915", "val accuracy 0.902", {"abs": 0.03, "why": "test"}),  # within: passes
        cell("val accuracy 0.700", "val accuracy 0.902", {"abs": 0.03, "why": "test"}),  # outside: fails
        cell("val accuracy 0.915", "val accuracy 0.902", None),  # no tolerance: exact, fails
        cell("shape (2, 3)", "shape (2, 3)", None),  # exact and equal: passes
    ]
    nbformat.write(notebook, tmp_path / "tolerance.ipynb")
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval",
         "--nbval-current-env", "--color=no", "-rA", "tolerance.ipynb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    report = result.stdout + result.stderr
    outcome = {f"Cell {i}": ("PASSED" if f"PASSED tolerance.ipynb::Cell {i}" in report else "FAILED") for i in range(4)}
    assert outcome == {"Cell 0": "PASSED", "Cell 1": "FAILED", "Cell 2": "FAILED", "Cell 3": "PASSED"}, report
    assert "committed 0.902, new 0.700" in report and "abs 0.03" in report, report
