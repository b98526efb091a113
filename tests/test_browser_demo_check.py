"""scripts/check_browser_demo.py judges the page's answers as it should (without a browser).

The browser run itself is `python scripts/check_browser_demo.py` (a step of scripts/test.sh); here: the
self-test's JSON and the ImageNet part's top-5 are accepted when right and rejected, with the reason,
when wrong.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_browser_demo  # noqa: E402

GOOD = {"ok": True, "max_abs_diff": 3.9e-7, "latency_ms": 9.8, "backend": "wasm", "threads": 1}
EXPECTED = [(546, 0.1308), (7, 0.1262), (111, 0.1107), (149, 0.1037), (88, 0.0546)]


def page_top5(pairs):
    return [{"index": i, "probability": p} for i, p in pairs]


def test_a_passing_self_test_has_no_problems():
    assert check_browser_demo.result_problems(GOOD) == []


def test_a_self_test_too_far_from_pytorch_is_rejected_with_its_difference():
    problems = check_browser_demo.result_problems(dict(GOOD, ok=False, max_abs_diff=0.2))
    assert len(problems) == 2 and "max_abs_diff is 0.2" in problems[1]


def test_a_self_test_without_latency_or_on_another_backend_is_rejected():
    problems = check_browser_demo.result_problems(dict(GOOD, latency_ms=None, backend="webgpu"))
    assert any("latency_ms is None" in p for p in problems) and any("'webgpu'" in p for p in problems)


def test_the_same_top5_within_tolerance_is_accepted():
    close = [(i, p + 5e-6) for i, p in EXPECTED]
    assert check_browser_demo.top5_problems(page_top5(close), EXPECTED) == []


def test_a_top5_in_another_order_is_rejected_naming_both():
    swapped = [EXPECTED[1], EXPECTED[0], *EXPECTED[2:]]
    [problem] = check_browser_demo.top5_problems(page_top5(swapped), EXPECTED)
    assert "[7, 546, 111, 149, 88]" in problem and "PyTorch's [546, 7, 111, 149, 88]" in problem


def test_probabilities_off_by_more_than_the_tolerance_are_rejected():
    off = [(i, p + 0.011) for i, p in EXPECTED]  # what /256 instead of /255 did to the stand-in
    [problem] = check_browser_demo.top5_problems(page_top5(off), EXPECTED)
    assert "differ from PyTorch's by 0.011" in problem
