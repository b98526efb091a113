"""What every exercise check shares: how it reports, how it calls the student's code, how it compares.

A check runs the student's function or class on several cases against the package's reference and
- prints one line starting with "✓" when every case is right;
- prints "not implemented yet" (and does not raise) while the stub still raises NotImplementedError,
  so that a blank exercise notebook runs from top to bottom; when grading (the environment variable
  MOBILEVIT_EDU_GRADING is set), a blank answer raises CheckFailed instead, so it earns no points;
- raises `CheckFailed` (an AssertionError) whose message says, in words, which case is wrong and how.

A hint names a mistake only when the evidence singles it out (the student's output equals what that one mistake
gives); otherwise it says where the answer differs and which section to re-read. For modules, `trace_hint` finds
the first submodule whose input differs from the reference's and describes that input.
"""

import ast
import contextlib
import inspect
import math
import os
import textwrap

import torch
import torch.nn.functional as F
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
        where = _unravel(int(diff.argmax()), diff.shape)
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
    raises ForbiddenCall, for the duration of the block; `what` names them in the message (None: each is
    recorded as owner.name, e.g. "fusion.fuse_conv_bn_eval")."""
    calls, saved = [], []

    def forbidding(owner, name):
        label = what or f"{getattr(owner, '__name__', type(owner).__name__).rsplit('.', 1)[-1]}.{name}"

        def forbidden(*args, **kwargs):
            calls.append(label)
            raise ForbiddenCall(f"the exercise forbids {label}")

        return forbidden

    for owner, name in targets:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, forbidding(owner, name))
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


def _unravel(index, shape):
    """The multi-index of flat `index` in `shape` (torch.unravel_index imports sympy on its first call: 2-3 s)."""
    where = []
    for size in reversed(tuple(shape)):
        where.append(index % size)
        index //= size
    return tuple(reversed(where))


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


# ------------------------------------------------------------ where a student's module parts from the reference
# The module checks (chapters 2, 3 and 5) run the student's module and the reference with the same weights and
# record, through hooks, the input and output of every submodule call. The first submodule whose input differs
# is where the two forwards part; what the student's input is instead is then described from tensors both runs
# know (the block's input x, the outputs of submodules, an activation of one, the sum or concatenation of two),
# so that a hint states what the student's code did, not what a list of known mistakes guesses.

# (name, function): the activations a student might write instead of the skeleton's; the response to negative
# inputs tells them apart (ReLU and ReLU6 clip to 0, SiLU and GELU dip below 0 by different amounts).
ACTIVATIONS = [
    ("SiLU", F.silu),
    ("ReLU", F.relu),
    ("ReLU6", F.relu6),
    ("GELU", F.gelu),
    ("GELU (tanh approximation)", lambda t: F.gelu(t, approximate="tanh")),
    ("Hardswish", F.hardswish),
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
]
ACTIVATION_TYPES = {nn.SiLU: "SiLU", nn.ReLU: "ReLU", nn.ReLU6: "ReLU6", nn.GELU: "GELU", nn.Hardswish: "Hardswish"}
TRANSPARENT = (nn.Identity, nn.Dropout, nn.Dropout2d)  # leaves whose skipping changes nothing in eval mode


def _leaves(module):
    """(name, submodule) of every leaf submodule (no children) that computes something."""
    return [(name, m) for name, m in module.named_modules()
            if name and not any(True for _ in m.children()) and not isinstance(m, TRANSPARENT)]


class Call:
    """One call of a submodule during a forward: its name, its input and output (copies)."""

    def __init__(self, name, module, inputs):
        self.name, self.module, self.input, self.output = name, module, inputs, None


@contextlib.contextmanager
def recording(module):
    """Record every call of `module`'s leaf submodules in order, as a list of `Call`s."""
    calls, handles = [], []

    def copy(value):
        if isinstance(value, (tuple, list)):
            value = next((v for v in value if isinstance(v, torch.Tensor)), None)
        return value.detach().clone() if isinstance(value, torch.Tensor) else None

    for name, m in _leaves(module):
        def pre(mod, args, name=name):
            calls.append(Call(name, mod, copy(args)))

        def post(mod, args, output, name=name):
            for c in reversed(calls):
                if c.name == name and c.output is None:
                    c.output = copy(output)
                    break

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _close(a, b, atol=1e-5, rtol=1e-4):
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a, b, atol=atol, rtol=rtol)))


def _output_name(call):
    kind = ACTIVATION_TYPES.get(type(call.module))
    return f"the output of `self.{call.name}`" + (f" ({kind})" if kind else "")


def describe(t, pool, atol=1e-5, rtol=1e-4, _depth=0):
    """A true description of the tensor `t` from `pool`, a list of (description, tensor): equal to one of
    them, an activation of one, the sum of two, or their concatenation along the channels; "" if none."""
    if not isinstance(t, torch.Tensor):
        return ""
    for text, v in pool:
        if _close(t, v, atol, rtol):
            return text
    same_shape = [(text, v) for text, v in pool if v.shape == t.shape]
    for text, v in same_shape:  # all the activations that give t, when several agree on these values
        acts = [act for act, f in ACTIVATIONS if _close(t, f(v), atol, rtol)]
        if acts:
            agree = f" (they agree on these values)" if len(acts) > 1 else ""
            return f"{' or '.join(acts)} of {text}{agree}"
    for text, v in same_shape:  # a multiple of one of them: a missing or extra scale
        c = float((t * v).sum() / (v * v).sum().clamp(min=1e-12))
        if not math.isclose(c, 1.0, rel_tol=1e-3) and _close(t, c * v, atol, rtol):
            return f"{c:.4g} times {text}"
    for i, (text_a, a) in enumerate(same_shape):
        for text_b, b in same_shape[i + 1:]:
            if _close(t, a + b, atol, rtol):
                return f"the sum of {text_a} and {text_b}"
    if t.dim() >= 2 and _depth == 0:  # a concatenation along the channels of a known tensor and a described one
        for text_a, a in pool:
            if a.dim() != t.dim() or a.shape[0] != t.shape[0] or a.shape[2:] != t.shape[2:] or a.shape[1] >= t.shape[1]:
                continue
            ca = a.shape[1]
            if _close(t[:, :ca], a, atol, rtol):
                rest = describe(t[:, ca:], pool, atol, rtol, _depth=1)
                if rest:
                    return f"the concatenation [{text_a}, {rest}] along the channels"
            if _close(t[:, t.shape[1] - ca:], a, atol, rtol):
                rest = describe(t[:, :t.shape[1] - ca], pool, atol, rtol, _depth=1)
                if rest:
                    return f"the concatenation [{rest}, {text_a}] along the channels"
    return ""


def _first_difference(actual, expected):
    diff = (actual - expected).abs()
    where = _unravel(int(diff.argmax()), diff.shape)
    return f"largest difference {diff.max().item():.3g} at index {where} (yours {actual[where].item():.5g}," \
           f" expected {expected[where].item():.5g})"


def trace_hint(student_calls, reference_calls, x, actual, expected, section, probes=None, atol=1e-5, rtol=1e-4):
    """Where the student's forward parts from the reference's, from the recorded submodule calls, as a hint.

    The submodules are visited in the reference's order; the first one the student calls with another input
    is the place. The hint says what the student's input is (described from tensors both runs know) and what
    the reference's is; when the student skipped a submodule the reference calls before that point, it says so.
    When every submodule gets the right input, the difference comes after the last one: the hint describes the
    student's output. `probes(name, student_calls)` may add (description, tensor) candidates for a step that
    has no submodule (inline attention, say). When nothing describes the difference, the hint says where it
    is and which section to re-read, never more."""
    seen = {}
    student_by_key = {}
    for c in student_calls:
        k = seen.get(c.name, 0)
        seen[c.name] = k + 1
        student_by_key[(c.name, k)] = c
    counts = {}
    skipped, previous = [], None
    pool = [("x (the block's input)", x)]
    reference_pool = [("x (the block's input)", x)]
    for r in reference_calls:
        k = counts.get(r.name, 0)
        counts[r.name] = k + 1
        s = student_by_key.get((r.name, k))
        if s is None:
            skipped.append(r.name)
            reference_pool.append((_output_name(r), r.output))
            continue
        if not _close(s.input, r.input, atol, rtol):
            return _describe_input(r, s, previous, skipped, pool, reference_pool, student_calls, reference_calls, section,
                                   probes, atol, rtol)
        pool.append((_output_name(s), s.output))
        reference_pool.append((_output_name(r), r.output))
        previous = r.name
    # every submodule got the right input: the difference is after the last one
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return ""
    pool += [(_output_name(c), c.output) for c in student_calls if c.output is not None]
    theirs = describe(expected, reference_pool, atol, rtol)
    yours = describe(actual, pool + [(f"the package's output, {theirs}" if theirs else "the package's output", expected)],
                     atol, rtol)
    unused = [name for name in skipped]
    after = f"`self.{previous}`" if previous else "the last submodule"
    text = f"every submodule gets the right input, so your forward parts from the package's after {after}"
    called = [c.name for c in reference_calls]
    extra = [(name, seen[name], counts.get(name, 0)) for name in seen if seen[name] > counts.get(name, 0)]
    return _explain(text, "your output", yours, theirs, unused, section, called=called, extra=extra)


def _describe_input(r, s, previous, skipped, pool, reference_pool, student_calls, reference_calls, section, probes,
                    atol, rtol):
    where = f"the input of `self.{r.name}`"
    called = [c.name for c in reference_calls]
    student_pool = pool + [(_output_name(c), c.output) for c in student_calls if c.output is not None]
    reference_pool = list(reference_pool)
    if probes is not None:
        student_pool = student_pool + probes(r.name, student_calls)
        reference_pool = reference_pool + probes(r.name, reference_calls)
    if not isinstance(s.input, torch.Tensor) or s.input.shape != r.input.shape:
        shape = tuple(s.input.shape) if isinstance(s.input, torch.Tensor) else None
        text = f"{where} has shape {shape}; the package's block gives it {tuple(r.input.shape)}"
        yours = describe(s.input, student_pool, atol, rtol)
        return _explain(text, "it", yours, describe(r.input, reference_pool, atol, rtol), skipped, section,
                        called=called)
    text = f"your forward parts from the package's at {where}" + (f", after `self.{previous}`" if previous else "")
    yours = describe(s.input, student_pool, atol, rtol)
    theirs = describe(r.input, reference_pool, atol, rtol)
    return _explain(text, "yours", yours, theirs, skipped, section, s.input, r.input, called)


def _grouped(skipped, called):
    """The skipped submodule names, a whole parent named once when all of its called leaves were skipped."""
    out = []
    for name in skipped:
        parts = name.split(".")
        for n in range(1, len(parts) + 1):
            prefix = ".".join(parts[:n])
            if all(c in skipped for c in called if c == prefix or c.startswith(prefix + ".")):
                break
        if prefix not in out:
            out.append(prefix)
    return out


def _explain(text, subject, yours, theirs, skipped, section, actual=None, expected=None, called=(), extra=()):
    parts = [text]
    if yours and theirs and yours != theirs:
        parts.append(f"{subject} is {yours}; the package's is {theirs}")
        if theirs.startswith("the sum of x") and yours in theirs:
            parts.append("you forgot the residual (the sum with x)")
        elif yours.startswith("the sum of x") and theirs in yours:
            parts.append("there is no residual (no sum with x) at this point")
        else:
            expected_act = next((kind for kind in ACTIVATION_TYPES.values() if f"({kind})" in theirs), "")
            applied = next((act for act, _ in sorted(ACTIVATIONS, key=lambda a: -len(a[0]))
                            if f"{act} of " in yours or f"{act} or " in yours), "")
            if expected_act and applied and applied != expected_act:
                applied = yours[yours.index(applied):].split(" of ", 1)[0]  # "ReLU or ReLU6" when they agree
                parts.append(f"you apply {applied} where the skeleton applies {expected_act}")
    elif yours and yours != theirs:
        parts.append(f"{subject} is {yours}")
    elif theirs:
        parts.append(f"the package's is {theirs}")
        if actual is not None and expected is not None:
            parts.append("in it, the " + _first_difference(actual, expected))
    elif actual is not None and expected is not None:
        parts.append("in it, the " + _first_difference(actual, expected))
    if extra:
        parts.append("; ".join(f"your forward calls `self.{name}` {n} times, the package's {m}" for name, n, m in extra))
    if skipped:
        names = ", ".join(f"`self.{name}`" for name in _grouped(skipped, called))
        parts.append(f"your forward never calls {names}, which the package's calls before this point")
    parts.append(f"re-read {section}")
    return "; ".join(parts)


def traced_call(module, x, case):
    """`call(module, x)` with every leaf submodule call recorded: (output, calls)."""
    with recording(module) as calls:
        try:
            output = call(module, x, case=case)
        except CheckFailed as error:
            error.calls = calls  # which submodules ran before the crash, for its hint
            raise
    return output, calls


def expect_module_output(actual, expected, case, variants, student_calls, reference_calls, x, section,
                         probes=None, atol=1e-5, rtol=1e-4):
    """`expect_close` for a module's output. A wrong output gets the hint of the one known mistake it equals
    (`variants()`, see `matching_hint`), else the place where the student's forward parts from the reference's
    (`trace_hint`), with `section` the part of the chapter to re-read."""
    if isinstance(actual, torch.Tensor) and _close(actual, expected, atol, rtol):
        return
    with torch.no_grad():
        hint = matching_hint(actual, variants(), atol, rtol) if variants is not None else ""
        if not hint:
            hint = trace_hint(student_calls, reference_calls, x, actual, expected, section, probes, atol, rtol)
    expect_close(actual, expected, case, atol=atol, rtol=rtol, hints=[(lambda a, e: True, hint)] if hint else ())
