"""exercises/ is exactly what scripts/make_exercises.py generates from solutions/, and the generator
does what it promises (nbgrader-style regions, indentation, solution-only cells, outputs).

Runs in `bash scripts/test.sh` (step "pytest tests/"); needs no kernel.
"""

import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import _nbtools  # noqa: E402
import make_exercises  # noqa: E402
import stamp_colab  # noqa: E402

URL, BRANCH = "https://github.com/example-org/example-course", "main"


def test_exercises_are_generated_from_solutions():
    """The test the issue asks for: fails when exercises/ is not what the script would produce.
    Fix: python scripts/make_exercises.py --execute"""
    problems = make_exercises.differences()
    assert not problems, "\n".join(problems) + "\nFix: python scripts/make_exercises.py --execute"


# --- the generator itself ------------------------------------------------------------------------

def test_region_becomes_raise_at_its_indentation():
    source = (
        "def double(x):\n"
        "    \"\"\"Return 2x.\"\"\"\n"
        "    ### BEGIN SOLUTION\n"
        "    y = x * 2\n"
        "    return y\n"
        "    ### END SOLUTION\n"
        "\n"
        "print('after')"
    )
    text, changed = make_exercises.strip_solutions(source)
    assert changed
    assert text == (
        "def double(x):\n"
        "    \"\"\"Return 2x.\"\"\"\n"
        "    raise NotImplementedError(\"Your code here\")\n"
        "\n"
        "print('after')"
    )


def test_several_regions_and_top_level_and_no_trailing_newline():
    source = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\nclass A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 3\n        ### END SOLUTION"
    text, changed = make_exercises.strip_solutions(source)
    assert changed
    assert text == ('raise NotImplementedError("Your code here")\nb = 2\nclass A:\n    def f(self):\n'
                    '        raise NotImplementedError("Your code here")')


def test_cell_without_markers_is_unchanged():
    source = "x = 1  # ### BEGIN SOLUTION is only a marker on a line of its own\nprint(x)\n"
    assert make_exercises.strip_solutions(source) == (source, False)


@pytest.mark.parametrize("source", [
    "### BEGIN SOLUTION\nx = 1\n",                               # no END
    "x = 1\n### END SOLUTION\n",                                 # END without BEGIN
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",  # nested
])
def test_unbalanced_markers_are_an_error(source):
    with pytest.raises(make_exercises.MarkerError):
        make_exercises.strip_solutions(source)


def _solution_notebook():
    task = new_markdown_cell("# Demo\n\nWrite `double`.")
    task["id"] = "task"
    answer = new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                           execution_count=2, outputs=[new_output("stream", name="stdout", text="defined\n")])
    answer["id"] = "answer"
    check = new_code_cell("print(double(2) == 4)", execution_count=3,
                          outputs=[new_output("stream", name="stdout", text="True\n")])
    check["id"] = "check"
    figure = new_code_cell("plot_the_answer()", metadata={"tags": ["solution-only"]})
    figure["id"] = "figure"
    written = new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n")
    written["id"] = "written"
    nb = new_notebook(cells=[task, answer, check, figure, written])
    return stamp_colab.stamp(nb, "solutions/99_demo.ipynb", URL, BRANCH)


def test_make_exercise_generates_the_exercise():
    exercise = make_exercises.make_exercise(_solution_notebook(), "99_demo.ipynb", URL, BRANCH)
    ids = [c.get("id") for c in exercise.cells]
    assert ids == ["colab-badge", "colab-install", "generated-note", "task", "answer", "check", "written"]
    badge, install, note = exercise.cells[:3]
    assert f"/blob/{BRANCH}/exercises/99_demo.ipynb)" in badge.source  # the exercise's own Colab link
    assert f"git+{URL}@{BRANCH}" in install.source
    assert "solutions/99_demo.ipynb" in note.source and "generated" in note.source.lower()
    by_id = {c.id: c for c in exercise.cells}
    assert by_id["answer"].source == 'def double(x):\n    raise NotImplementedError("Your code here")'
    assert by_id["answer"].outputs == [] and by_id["answer"].execution_count is None  # changed: cleared
    assert by_id["check"].outputs[0]["text"] == "True\n"  # unchanged: copied (re-executing replaces it)
    assert by_id["written"].source == "Why?\n\nYOUR ANSWER HERE\n"
    nbformat.validate(exercise)


def test_make_exercise_is_deterministic():
    first = make_exercises.make_exercise(_solution_notebook(), "99_demo.ipynb", URL, BRANCH)
    second = make_exercises.make_exercise(_solution_notebook(), "99_demo.ipynb", URL, BRANCH)
    assert nbformat.writes(first) == nbformat.writes(second)


def _repo(tmp_path):
    """A minimal course repository in tmp_path with one solution and its generated exercise."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "exercises").mkdir()
    _nbtools.write(_solution_notebook(), tmp_path / "solutions" / "99_demo.ipynb")
    url, branch = _nbtools.repository(tmp_path)
    exercise = make_exercises.make_exercise(_nbtools.read(tmp_path / "solutions" / "99_demo.ipynb"), "99_demo.ipynb", url, branch)
    _nbtools.write(exercise, tmp_path / "exercises" / "99_demo.ipynb")
    return tmp_path


def test_check_passes_when_in_sync_even_with_other_outputs(tmp_path):
    root = _repo(tmp_path)
    assert make_exercises.differences(root) == []
    # executing the exercise changes outputs and counts, never what the check compares
    path = root / "exercises" / "99_demo.ipynb"
    nb = _nbtools.read(path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [new_output("stream", name="stdout", text="not implemented yet\n")]
            cell.execution_count = 7
    _nbtools.write(nb, path)
    assert make_exercises.differences(root) == []


def test_check_fails_on_a_hand_edited_exercise(tmp_path):
    root = _repo(tmp_path)
    path = root / "exercises" / "99_demo.ipynb"
    nb = _nbtools.read(path)
    nb.cells[4].source = "def double(x):\n    return 2 * x  # the answer, leaked"
    _nbtools.write(nb, path)
    problems = make_exercises.differences(root)
    assert len(problems) == 1 and "exercises/99_demo.ipynb differs" in problems[0]
    assert "-    return 2 * x  # the answer, leaked" in problems[0]  # a diff says what differs


def test_check_fails_on_a_changed_solution(tmp_path):
    root = _repo(tmp_path)
    path = root / "solutions" / "99_demo.ipynb"
    nb = _nbtools.read(path)
    nb.cells.append(new_markdown_cell("A new closing remark."))
    _nbtools.write(nb, path)
    assert make_exercises.differences(root)


def test_check_fails_on_missing_and_orphan_exercises(tmp_path):
    root = _repo(tmp_path)
    (root / "exercises" / "99_demo.ipynb").rename(root / "exercises" / "98_orphan.ipynb")
    problems = make_exercises.differences(root)
    assert any("exercises/99_demo.ipynb is missing" in p for p in problems)
    assert any("exercises/98_orphan.ipynb has no solutions/98_orphan.ipynb" in p for p in problems)
