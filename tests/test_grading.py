"""Grading with nbgrader: a blank exercise must fail its check, not pass it quietly."""

import pytest

from mobilevit_edu.checks._common import GRADING_ENV, CheckFailed, run_check


def _blank():
    raise NotImplementedError


def test_blank_answer_says_not_implemented_and_runs_on(monkeypatch, capsys):
    monkeypatch.delenv(GRADING_ENV, raising=False)
    run_check("unfold", _blank, "right")
    assert "not implemented yet" in capsys.readouterr().out


def test_blank_answer_fails_when_grading(monkeypatch):
    monkeypatch.setenv(GRADING_ENV, "1")
    with pytest.raises(CheckFailed, match="unfold: not answered"):
        run_check("unfold", _blank, "right")


def test_right_answer_passes_when_grading(monkeypatch, capsys):
    monkeypatch.setenv(GRADING_ENV, "1")
    run_check("unfold", lambda: None, "right")
    assert capsys.readouterr().out.startswith("✓ unfold: right")
