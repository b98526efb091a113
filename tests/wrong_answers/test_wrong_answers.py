"""The checks on a larger set of answers written as students would write them (issue 21): every wrong
answer rejected, at least 80 % with a hint that names the mistake, none with a hint that names a wrong one,
every right answer written another way accepted. The one-per-hint tests stay in tests/test_checks_*.py.

`python tests/wrong_answers/_measure.py -v` prints the figures per check and every message that does not
name its mistake."""

import pytest

import answers_detection
import answers_functions
import answers_modules
from _measure import measure

SETS = {**answers_modules.SETS, **answers_functions.SETS, **answers_detection.SETS}


@pytest.mark.parametrize("check_name", list(SETS))
def test_check_rejects_names_and_accepts(check_name):
    check, wrong, right = SETS[check_name]
    assert len(wrong) >= 10 and len(right) >= 2, "the set is too small to measure the check"
    figures = measure(check, wrong, right)
    problems = [f"{name}: [{verdict}] {message}" for name, verdict, message in figures["details"]
                if verdict in ("accepted!", "misleading", "right answer rejected")]
    assert figures["rejected"] == figures["wrong"], problems
    assert figures["misleading"] == 0, problems
    assert figures["accepted"] == figures["right"], problems
    assert figures["named"] >= 0.8 * figures["wrong"], [
        f"{name}: [{verdict}] {message}" for name, verdict, message in figures["details"] if verdict == "silent"]
