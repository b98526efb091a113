"""What every exercise check shares: how it reports, how it calls the student's code, how it compares.

A check runs the student's function or class on several cases against the package's reference and
- prints one line starting with "✓" when every case is right;
- prints "not implemented yet" (and does not raise) while the stub still raises NotImplementedError,
  so that a blank exercise notebook runs from top to bottom; when grading (the environment variable
  MOBILEVIT_EDU_GRADING is set), a blank answer raises CheckFailed instead, so it earns no points;
- raises `CheckFailed` (an AssertionError) whose message says, in words, which case is wrong and how.
"""

import ast
import contextlib
import inspect
import os
import textwrap

import torch
from torch import nn

# Set (to anything) when grading, e.g. MOBILEVIT_EDU_GRADING=1 nbgrader autograde ...: a check whose
# exercise is still blank then fails instead of printing "not implemented yet".
GRADING_ENV = "MOBILEVIT_EDU_GRADING"


class CheckFailed(AssertionError):
    """The student's answer is wrong; the message says which case, what came and what was expected."""


def run_check(name, body, success):
    """Run `body()` (which raises CheckFailed on a wrong answer) and report in one line.

    `name` is what is being checked, `success` the sentence printed after "✓" when it passes.
    """
    try:
        body()
    except NotImplementedError:
        if os.environ.get(GRADING_ENV):  # grading (nbgrader): an unanswered exercise earns nothing
            raise CheckFailed(f"{name}: not answered (the exercise still raises NotImplementedError)") from None
        print(f"… {name}: not implemented yet. Replace `raise NotImplementedError` with your code and run this cell again.")
        return
    print(f"✓ {name}: {success}")


def call(fn, *args, case):
    """Call the student's `fn(*args)`; an exception other than NotImplementedError becomes a CheckFailed
    that names the case, so the student sees which input broke their code."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as error:  # the student's code crashed: say where, keep the original as the cause
        raise CheckFailed(f"{case}: your code raised {type(error).__name__}: {error}") from error


def expect_close(actual, expected, case, atol=1e-5, rtol=1e-4, hints=()):
    """Raise CheckFailed unless `actual` is a tensor of `expected`'s shape and values.

    `hints` is a list of (predicate, sentence): for a wrong answer, the first predicate(actual, expected)
    that is true adds its sentence to the message (e.g. "did you swap P and N?").
    """
    if not isinstance(actual, torch.Tensor):
        raise CheckFailed(f"{case}: expected a torch.Tensor, got {type(actual).__name__}")
    hint = _first_hint(actual, expected, hints)
    if actual.shape != expected.shape:
        message = f"{case}: your output has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}"
        if sorted(actual.shape) == sorted(expected.shape) and not hint:
            hint = "the same sizes in another order: are two dimensions swapped?"
        raise CheckFailed(message + (f". Hint: {hint}" if hint else ""))
    if actual.dtype != expected.dtype:
        raise CheckFailed(f"{case}: your output has dtype {actual.dtype}; expected {expected.dtype}")
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        diff = (actual - expected).abs()
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        message = (
            f"{case}: the shape {tuple(actual.shape)} is right but the values are not:"
            f" largest difference {diff.max().item():.3g} at index {where}"
            f" (yours {actual[where].item():.5g}, expected {expected[where].item():.5g})"
        )
        if actual.flatten().sort().values.allclose(expected.flatten().sort().values, atol=atol, rtol=rtol) and not hint:
            hint = "you have the right numbers in the wrong places: check the order of your reshape/rearrange"
        raise CheckFailed(message + (f". Hint: {hint}" if hint else ""))


def expect_number(actual, expected, case, what, variants=()):
    """Raise CheckFailed unless the number `actual` equals `expected` (an int, or a tuple of ints).

    `variants` is a list of (value, sentence): what a typical mistake gives and what to say about it.
    A sentence is added only when exactly one mistake gives the student's value, so that the hint is
    right whenever it fires (two mistakes that give the same number on this case name neither).
    """
    if isinstance(expected, tuple):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            raise CheckFailed(f"{case}: expected {len(expected)} numbers {what}, got {actual!r}")
        actual = tuple(actual)
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    if actual == expected:
        return
    shown = lambda v: f"{v:,}" if isinstance(v, int) else repr(v)  # noqa: E731
    message = f"{case}: your {what} is {shown(actual)}; expected {shown(expected)}"
    matches = {sentence for value, sentence in variants if value == actual and value != expected}
    if len(matches) == 1:
        message += f". Hint: {matches.pop()}"
    raise CheckFailed(message)


def matching_hint(actual, variants, atol=1e-5, rtol=1e-4):
    """The sentence of the (tensor, sentence) variant that `actual` equals, or "" when none does or when
    variants with different sentences do (then naming one could be wrong)."""
    if not isinstance(actual, torch.Tensor):
        return ""
    matches = {sentence for tensor, sentence in variants
               if actual.shape == tensor.shape and torch.allclose(actual, tensor, atol=atol, rtol=rtol)}
    return matches.pop() if len(matches) == 1 else ""


def expect_close_or_name_mistake(actual, expected, case, variants, atol=1e-5, rtol=1e-4):
    """`expect_close`, and when `actual` is wrong, name the plausible mistake it equals: `variants()`
    gives (tensor, sentence) pairs, one per typical mistake, and is only computed for a wrong answer
    (see `matching_hint`)."""
    right = isinstance(actual, torch.Tensor) and actual.shape == expected.shape and torch.allclose(
        actual, expected, atol=atol, rtol=rtol)
    if right:
        hint = ""
    else:
        with torch.no_grad():
            hint = matching_hint(actual, variants(), atol, rtol)
    expect_close(actual, expected, case, atol=atol, rtol=rtol, hints=[(lambda a, e: True, hint)] if hint else ())


def with_closing_hint(step, closing):
    """Run `step()`; if it fails with a message that has no hint (no typical mistake recognised),
    add `closing`: what to re-read."""
    try:
        step()
    except CheckFailed as failure:
        if "Hint: " in str(failure):
            raise
        raise CheckFailed(f"{str(failure).rstrip('.')}. Hint: {closing}") from failure.__cause__


class ForbiddenCall(Exception):
    """Raised inside the student's code when it calls a function the exercise forbids."""


@contextlib.contextmanager
def forbid(targets, what):
    """Replace each `(owner, name)` attribute in `targets` by a function that records the call and
    raises ForbiddenCall, for the duration of the block; `what` names them in the message."""
    calls, saved = [], []

    def forbidden(*args, **kwargs):
        calls.append(what)
        raise ForbiddenCall(f"the exercise forbids {what}")

    for owner, name in targets:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, forbidden)
    try:
        yield calls
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def calls_by_name(fn, names):
    """The names in `names` that `fn`'s source calls (`conv2d(...)`, `F.conv2d(...)`, `nn.Conv2d(...)`),
    found by parsing the source, so that comments and docstrings do not count. [] when the source
    cannot be read (a lambda inside an expression, a builtin)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in names and name not in found:
                found.append(name)
    return found


def _first_hint(actual, expected, hints):
    for predicate, sentence in hints:
        try:
            if predicate(actual, expected):
                return sentence
        except Exception:  # a hint that cannot be evaluated on this output gives no hint
            continue
    return ""


def load_reference_weights(student, reference, case):
    """Copy `reference`'s weights into the student's module (strictly, by name) or say what does not fit."""
    try:
        student.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        raise CheckFailed(
            f"{case}: the reference weights do not fit your module; keep the submodule names and sizes"
            f" that the skeleton's __init__ gives. PyTorch says: {error}"
        ) from error


def randomize_batchnorm(module, generator):
    """Give every BatchNorm in `module` random running statistics and affine parameters, so that
    BN (in eval mode) is not the identity and a mistake around it changes the output."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.5)
    return module
