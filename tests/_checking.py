"""What the tests of the exercise checks share (tests/test_checks_*.py): a right answer passes, a
blank one says "not implemented yet", a wrong one is rejected with a message naming the mistake."""

import pytest

from mobilevit_edu.checks import CheckFailed


def passes(check, answer, capsys):
    """`check(answer)` prints its "✓" line; returns what it printed."""
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("✓"), out
    return out


def is_stub(check, answer, capsys):
    """A blank answer (raising NotImplementedError) is reported, not raised."""
    check(answer)  # must not raise
    assert "not implemented yet" in capsys.readouterr().out


def rejects(check, answer, *fragments):
    """`check(answer)` raises CheckFailed whose message holds every fragment; returns the message."""
    with pytest.raises(CheckFailed) as info:
        check(answer)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def stub(*args, **kwargs):
    """A blank exercise: what the student's function does before they write it."""
    raise NotImplementedError("Your code here")
