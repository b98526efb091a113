"""Measures a check on a set of answers: how many wrong ones it rejects, how many of those it names
rightly, how many get a hint that names a wrong mistake, how many right ones it accepts.

An answer set is a module with `SETS = {check_name: (check, wrong, right)}`, where `wrong` is a list of
(name, answer, fragments): the hint names the mistake when the message holds one of the fragments
(case-insensitive); `right` is a list of (name, answer), correct answers written another way.

A hint that does not name the mistake is *silent* when it only locates the difference (the checks' "your
forward parts from the package's at ...", "no typical mistake matches", the first differing value), and
*misleading* otherwise: it names a mistake the answer did not make."""

import contextlib
import io
import time

from mobilevit_edu.checks import CheckFailed

# Hints that only say where the difference is and what to re-read, naming no mistake, unless they go on to
# say what the student did (NAMING)
SILENT = ("no typical mistake matches", "your forward parts from the package's", "every submodule gets the right input")
NAMING = ("you apply", "you forgot", "there is no residual", "never calls")


def run(check, answer):
    """(outcome, message, seconds): outcome is "accepted", "stub" or "rejected"."""
    out = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out):
            check(answer)
    except CheckFailed as failure:
        return "rejected", str(failure), time.perf_counter() - start
    seconds = time.perf_counter() - start
    text = out.getvalue()
    return ("accepted" if text.startswith("✓") else "stub"), text, seconds


def classify(message, fragments):
    """"named", "silent" or "misleading" for a rejection message."""
    lowered = message.lower()
    if any(f.lower() in lowered for f in fragments):
        return "named"
    hint = message.split("Hint: ", 1)[1] if "Hint: " in message else ""
    if not hint or (any(hint.startswith(s) for s in SILENT) and not any(n in hint for n in NAMING)):
        return "silent"
    return "misleading"


def measure(check, wrong, right):
    """{"wrong", "rejected", "named", "misleading", "right", "accepted", "slowest", "details"}."""
    figures = dict(wrong=len(wrong), rejected=0, named=0, misleading=0, right=len(right), accepted=0, slowest=0.0,
                   details=[])
    for name, answer, fragments in wrong:
        outcome, message, seconds = run(check, answer)
        figures["slowest"] = max(figures["slowest"], seconds)
        verdict = classify(message, fragments) if outcome == "rejected" else "accepted!"
        if outcome == "rejected":
            figures["rejected"] += 1
            figures["named"] += verdict == "named"
            figures["misleading"] += verdict == "misleading"
        figures["details"].append((name, verdict, message))
    for name, answer in right:
        outcome, message, seconds = run(check, answer)
        figures["slowest"] = max(figures["slowest"], seconds)
        figures["accepted"] += outcome == "accepted"
        if outcome != "accepted":
            figures["details"].append((name, "right answer rejected", message))
    return figures


def report(sets, verbose=False):
    """Print one line per check (and every message that is not named, when verbose)."""
    for check_name, (check, wrong, right) in sets.items():
        f = measure(check, wrong, right)
        print(f"{check_name:32s} rejected {f['rejected']}/{f['wrong']}  named {f['named']}/{f['wrong']}"
              f"  misleading {f['misleading']}  accepted {f['accepted']}/{f['right']}  slowest {f['slowest']:.2f} s")
        if verbose:
            for name, verdict, message in f["details"]:
                if verdict != "named":
                    print(f"   [{verdict}] {name}: {message}\n")


if __name__ == "__main__":
    import argparse
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="*", default=["answers_modules", "answers_functions"])
    parser.add_argument("-v", action="store_true")
    args = parser.parse_args()
    for module in args.modules:
        report(importlib.import_module(module).SETS, args.v)
