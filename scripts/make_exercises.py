#!/usr/bin/env python3
"""Generate exercises/ from solutions/ (nbgrader style), or check that they agree.

For each solutions/<name>.ipynb this writes exercises/<name>.ipynb:

- in code cells, every region from a line `### BEGIN SOLUTION` to a line `### END SOLUTION`
  (markers included) becomes one line `raise NotImplementedError("Your code here")` at the
  indentation of the `### BEGIN SOLUTION` line; in markdown cells it becomes `YOUR ANSWER HERE`
  (nbgrader does the same, so the solution notebooks double as nbgrader source notebooks);
- cells tagged `solution-only` are dropped (e.g. a cell that shows the answer's figure);
- the outputs and execution counts of the cells it changed are cleared, other cells are copied;
- the notebook starts with its Colab badge (pointing to exercises/<name>.ipynb) and install cell,
  as scripts/stamp_colab.py makes them, then a note saying it is generated from solutions/.

An exercise whose source is already what this script would write is left alone (its executed
outputs stay); an exercise without a solution is deleted. After writing, execute the written
exercises so that their check cells show "not implemented yet" (pass --execute to do it here):

    python scripts/execute_notebooks.py exercises/<name>.ipynb

Usage:
    python scripts/make_exercises.py             # (re)write the exercises that differ
    python scripts/make_exercises.py --execute   # ... and execute the ones written
    python scripts/make_exercises.py --check     # change nothing; exit 1 with a diff when
                                                 # exercises/ is not what this would write

The check compares sources only (cell types, ids, sources, tags and other metadata), never
outputs: the exercises are executed and committed with outputs of their own.
"""

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402
import stamp_colab  # noqa: E402

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = 'raise NotImplementedError("Your code here")'
MARKDOWN_STUB = "YOUR ANSWER HERE"
SOLUTION_ONLY_TAG = "solution-only"
NOTE_TAG = "generated-note"

_BEGIN_LINE = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*$")
_END_LINE = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")


class MarkerError(ValueError):
    """The solution markers of a cell do not pair up."""


def strip_solutions(source, stub=CODE_STUB):
    """Return (new_source, changed): every BEGIN..END SOLUTION region replaced by `stub`, indented
    like its BEGIN line. Raises MarkerError for an END without BEGIN, a BEGIN inside a region, or
    a BEGIN without END."""
    out, indent, changed = [], None, False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        begin, end = _BEGIN_LINE.match(line.rstrip("\r\n")), _END_LINE.match(line.rstrip("\r\n"))
        if begin:
            if indent is not None:
                raise MarkerError(f"line {number}: {BEGIN} inside a solution region (no {END} before it)")
            indent, changed = begin.group(1), True
            out.append(f"{indent}{stub}\n")
        elif end:
            if indent is None:
                raise MarkerError(f"line {number}: {END} without a {BEGIN} before it")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise MarkerError(f"{BEGIN} without a matching {END}")
    text = "".join(out)
    if not source.endswith("\n") and text.endswith("\n"):
        text = text[:-1]  # the cell ended on a marker line without a newline: so does the stub
    return text, changed


def note_cell(name, url, branch):
    text = (
        f"> **Exercise notebook.** Generated from [`solutions/{name}`]({url}/blob/{branch}/solutions/{name}) by "
        "`scripts/make_exercises.py`: edit the solution, not this file. Replace each "
        '`raise NotImplementedError("Your code here")` with your code and run the check under it.'
    )
    cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [NOTE_TAG]})
    cell["id"] = NOTE_TAG
    return cell


def make_exercise(solution_nb, name, url, branch):
    """The exercise notebook (in memory) generated from a solution notebook named `name`."""
    nb = nbformat.from_dict(solution_nb)  # a deep copy
    cells = []
    for index, cell in enumerate(nb.cells):
        cell_tags = set(_nbtools.tags(cell))
        if cell_tags & {SOLUTION_ONLY_TAG, stamp_colab.BADGE_TAG, stamp_colab.INSTALL_TAG, NOTE_TAG}:
            continue
        if cell.cell_type in ("code", "markdown"):
            try:
                source, changed = strip_solutions(cell.source, CODE_STUB if cell.cell_type == "code" else MARKDOWN_STUB)
            except MarkerError as error:
                raise MarkerError(f"solutions/{name}, cell {index} ({cell.get('id')}): {error}") from None
            if changed:
                cell.source = source
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
                cell.get("metadata", {}).pop("execution", None)
        cells.append(cell)
    nb.cells = [note_cell(name, url, branch)] + cells
    nb = stamp_colab.stamp(nb, f"exercises/{name}", url, branch)
    return _nbtools.upgrade_cell_ids(nb, name)


def plan(root=_nbtools.ROOT):
    """[(solution path, exercise path, generated notebook or None)] plus orphan exercise paths."""
    root = Path(root)
    url, branch = _nbtools.repository(root)
    solutions = _nbtools.find_notebooks(["solutions"], root)
    pairs = []
    for solution in solutions:
        exercise = root / "exercises" / solution.name
        pairs.append((solution, exercise, make_exercise(_nbtools.read(solution), solution.name, url, branch)))
    wanted = {s.name for s in solutions}
    orphans = [e for e in _nbtools.find_notebooks(["exercises"], root) if e.name not in wanted]
    return pairs, orphans


def differences(root=_nbtools.ROOT):
    """Human-readable problems: one entry per exercise that is missing, stale or orphaned."""
    pairs, orphans = plan(root)
    problems = []
    for solution, exercise, generated in pairs:
        rel = f"exercises/{exercise.name}"
        if not exercise.exists():
            problems.append(f"{rel} is missing (solutions/{solution.name} exists)")
            continue
        actual, expected = _nbtools.skeleton(_nbtools.read(exercise)), _nbtools.skeleton(generated)
        if actual != expected:
            diff = _nbtools.skeleton_diff(actual, expected, rel, f"{rel} (as generated from solutions/{solution.name})")
            problems.append(f"{rel} differs from what scripts/make_exercises.py generates:\n{diff}")
    for orphan in orphans:
        problems.append(f"exercises/{orphan.name} has no solutions/{orphan.name}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 when exercises/ differs")
    mode.add_argument("--execute", action="store_true", help="execute the exercises written (scripts/execute_notebooks.py)")
    args = parser.parse_args(argv)

    if args.check:
        problems = differences()
        if problems:
            print("\n".join(problems))
            print(f"{len(problems)} problem(s). Fix: python scripts/make_exercises.py --execute")
            return 1
        print(f"✓ exercises/ is what scripts/make_exercises.py generates from solutions/ ({len(plan()[0])} notebook(s))")
        return 0

    pairs, orphans = plan()
    written = []
    for solution, exercise, generated in pairs:
        if exercise.exists() and _nbtools.skeleton(_nbtools.read(exercise)) == _nbtools.skeleton(generated):
            continue
        exercise.parent.mkdir(exist_ok=True)
        _nbtools.write(generated, exercise)
        written.append(exercise)
        print(f"wrote exercises/{exercise.name} from solutions/{solution.name}")
    for orphan in orphans:
        orphan.unlink()
        print(f"deleted exercises/{orphan.name}: solutions/{orphan.name} is gone")
    if not written:
        print(f"exercises/ is up to date ({len(pairs)} notebook(s))")
    elif args.execute:
        import execute_notebooks
        return execute_notebooks.main([str(p) for p in written])
    else:
        print("now execute them: python scripts/execute_notebooks.py " + " ".join(f"exercises/{p.name}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
