"""Instant feedback for the exercises: `check_*(your_function_or_class)`.

Each check prints "✓ ..." when your answer is right, "not implemented yet" while your stub still
raises NotImplementedError, and raises CheckFailed (an AssertionError) saying what is wrong otherwise.
"""

from ._common import CheckFailed
