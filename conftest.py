"""pytest configuration for the whole repository (tests/ has its own conftest.py for the package tests).

Two changes to nbval, both active only when nbval is (`pytest --nbval ...`, scripts/nbval.sh):

1. Trailing semicolons. nbval (0.10 and 0.11) sends each cell to the kernel with `store_history=False`,
   and IPython then ignores a trailing `;`: `torch.manual_seed(0);` shows `<torch._C.Generator at 0x...>`
   under nbval although the executed notebook (Jupyter, Colab, scripts/execute_notebooks.py) shows
   nothing, and strict nbval fails with "Unexpected output fields from running code: {'text/plain'}".
   Known and open upstream: nbval issue #194 and IPython issue #14162. Here nbval executes cells the
   way Jupyter does (store_history=True), so a trailing semicolon means the same everywhere.

2. Floating-point outputs within a stated tolerance (issue 19; book/authoring.md, "How nbval compares").
   The notebooks are executed on one CPU and checked on another instruction set (scripts/nbval.sh), so
   the last digits of a loss or an accuracy may differ. A code cell whose metadata has

       "tolerance": {"abs": A, "rel": R, "why": "where the tolerance comes from"}

   has its text outputs (stdout/stderr, text/plain, text/html, text/markdown) compared number by number:
   every number is parsed from the committed and the new text (after nbval_sanitize.cfg) and each pair
   must satisfy |new - old| <= A + R*|old|, while the text between the numbers must be identical and
   the count of numbers equal. Everything else about the cell (which outputs, how many, other MIME
   types) nbval compares as usual. Cells without the key are compared exactly, as nbval always does.

   Also for every cell: nbval never compares PNG/JPEG images; here their number and kind per cell must
   match the committed ones, and each PNG's width and height in pixels within 10 % (the bytes are
   still not compared).
"""

import base64
import binascii
import copy
import math
import re
import struct

TOLERANCE_KEY = "tolerance"
# The outputs a tolerance applies to: the stream names (after nbval's transform) and text MIME types.
TOLERANT_DATA_KEYS = ("text/plain", "text/html", "text/markdown")
# A decimal number as Python, NumPy and torch print them: 3, -0.25, 1., .5, 2.9e-09, 1E+3, and with
# thousands separators as f"{n:,}" prints them: 25,076 and 1,234.5 (one number each; "2, 3" is two).
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def parse_tolerance(metadata):
    """The cell's tolerance as (abs, rel, why), or None when the cell has no "tolerance" key.

    Raises ValueError, naming what is wrong, when the key is there but malformed.
    """
    if TOLERANCE_KEY not in metadata:
        return None
    spec = metadata[TOLERANCE_KEY]
    example = '{"abs": 0.03, "rel": 0, "why": "seeds agree within 0.01 across ISAs"}'
    if not isinstance(spec, dict):
        raise ValueError(f'cell metadata "tolerance" must be an object like {example}, got {spec!r}')
    unknown = set(spec) - {"abs", "rel", "why"}
    if unknown:
        raise ValueError(f'cell metadata "tolerance" has unknown keys {sorted(unknown)}; expected abs, rel, why')
    values = []
    for name in ("abs", "rel"):
        value = spec.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f'cell metadata "tolerance": "{name}" must be a finite number >= 0, got {value!r}')
        values.append(float(value))
    if values == [0.0, 0.0]:
        raise ValueError('cell metadata "tolerance": "abs" and "rel" are both 0; drop the key to compare exactly')
    why = spec.get("why")
    if not isinstance(why, str) or not why.strip():
        raise ValueError(
            'cell metadata "tolerance" needs "why": one sentence saying where the tolerance comes from '
            f"(the measured spread across instruction sets / thread counts / seeds), got {why!r}"
        )
    return values[0], values[1], why.strip()


def _context(text, start, end, width=30):
    """The text around text[start:end], for a failure message (shown with repr: on one line)."""
    return text[max(0, start - width):end + width]


def compare_with_tolerance(committed, new, abs_tol, rel_tol):
    """Compare two output texts number by number; return the problems found ([] when they agree).

    The numbers (NUMBER) of both texts are paired in order; each pair must satisfy
    |new - old| <= abs_tol + rel_tol * |old|. The text around and between the numbers must be
    identical, so a changed word, a missing line or an extra number is a problem too.
    """
    old_numbers = list(NUMBER.finditer(committed))
    new_numbers = list(NUMBER.finditer(new))
    old_between = NUMBER.split(committed)
    new_between = NUMBER.split(new)
    if len(old_numbers) != len(new_numbers):
        return [
            f"the committed output has {len(old_numbers)} numbers, the new one {len(new_numbers)} "
            f"(committed {committed[:200]!r}, new {new[:200]!r})"
        ]
    for i, (old_text, new_text) in enumerate(zip(old_between, new_between)):
        if old_text != new_text:
            where = "before the first number" if i == 0 else f"after number {i}"
            return [f"the text {where} differs: committed {old_text[:200]!r}, new {new_text[:200]!r}"]
    problems = []
    for i, (old_match, new_match) in enumerate(zip(old_numbers, new_numbers), start=1):
        old, value = float(old_match.group().replace(",", "")), float(new_match.group().replace(",", ""))
        allowed = abs_tol + rel_tol * abs(old)
        if not abs(value - old) <= allowed:  # `not <=` so that nan fails too
            problems.append(
                f"number {i} ({_context(committed, old_match.start(), old_match.end())!r}): committed "
                f"{old_match.group()}, new {new_match.group()}, |difference| {abs(value - old):.3g} > "
                f"tolerance abs {abs_tol:g} + rel {rel_tol:g} * {abs(old):g} = {allowed:.3g}"
            )
    return problems


def _text_slots(outputs):
    """The text outputs a tolerance applies to: {key: [(output, where, text), ...]} in output order.

    `key` is the stream name (stdout, stderr) or the MIME type, as nbval groups them; `where` says
    how to put a text back ("text" for a stream, else the MIME type inside output["data"]).
    """
    slots = {}
    for output in outputs:
        if output.get("output_type") == "stream":
            slots.setdefault(output["name"], []).append((output, "text", output["text"]))
        for key in TOLERANT_DATA_KEYS:
            if key in output.get("data", {}):
                text = output["data"][key]
                slots.setdefault(key, []).append((output, key, "".join(text) if isinstance(text, list) else text))
    return slots


def _png_size(data):
    """(width, height) of a base64 PNG, from its IHDR chunk; None when it is not a PNG."""
    if isinstance(data, list):
        data = "".join(data)
    try:
        head = base64.b64decode("".join(data[:64].split())[:32])
    except (binascii.Error, ValueError):
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24:
        return None
    return struct.unpack(">II", head[16:24])


def image_summary(outputs):
    """The images of a cell's outputs as a list of ("image/png", (width, height)) / ("image/jpeg", None)."""
    images = []
    for output in outputs:
        data = output.get("data", {})
        if "image/png" in data:
            images.append(("image/png", _png_size(data["image/png"])))
        if "image/jpeg" in data:
            images.append(("image/jpeg", None))
    return images


# A figure's size in pixels may move a little with its data: the inline backend crops to the drawn
# extent (bbox_inches="tight"), so a tick label one character longer (e.g. a latency axis on another
# machine) widens it by a few pixels (measured: 508 -> 522 px, 2.8 %). A missing panel or another
# figsize moves it by more.
IMAGE_SIZE_TOLERANCE = 0.10


def images_match(committed, new):
    """Same number and kinds of images, and each PNG's width and height within IMAGE_SIZE_TOLERANCE."""
    if [kind for kind, _ in committed] != [kind for kind, _ in new]:
        return False
    for (_, old_size), (_, new_size) in zip(committed, new):
        if (old_size is None) != (new_size is None):
            return False
        if old_size is not None and any(abs(n - o) > IMAGE_SIZE_TOLERANCE * o for o, n in zip(old_size, new_size)):
            return False
    return True


def pytest_configure(config):
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    from nbval import kernel, plugin

    def execute_cell_input(self, cell_input, allow_stdin=None):
        return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)

    kernel.RunningKernel.execute_cell_input = execute_cell_input

    nbval_compare_outputs = plugin.IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        """nbval's comparison, with the cell's tolerance applied to its numbers, and images counted."""
        self.comparison_traceback = []
        committed_images, new_images = image_summary(ref), image_summary(test)
        if not images_match(committed_images, new_images):
            self.comparison_traceback.append(
                f"images differ: committed {committed_images}, new {new_images} (kind and (width, height) "
                f"in pixels, each within {IMAGE_SIZE_TOLERANCE:.0%}; the bytes are not compared)"
            )
            return False
        try:
            tolerance = parse_tolerance(self.cell.metadata)
        except ValueError as error:
            self.raise_cell_error(f"bad tolerance metadata: {error}")
        if tolerance is None:
            return nbval_compare_outputs(self, test, ref, skip_compare)
        abs_tol, rel_tol, why = tolerance
        test = copy.deepcopy(test)
        new_slots, committed_slots = _text_slots(test), _text_slots(ref)
        for key, committed in committed_slots.items():
            new = new_slots.get(key, [])
            if len(new) != len(committed):
                continue  # a missing or extra output: nbval's own comparison below reports it
            for (output, where, new_text), (_, _, committed_text) in zip(new, committed):
                problems = compare_with_tolerance(self.sanitize(committed_text), self.sanitize(new_text), abs_tol, rel_tol)
                if problems:
                    self.comparison_traceback.append(
                        f"output '{key}' differs beyond the cell's tolerance (abs {abs_tol:g}, rel {rel_tol:g}; "
                        f"why: {why}):"
                    )
                    self.comparison_traceback.extend("  " + problem for problem in problems)
                    return False
                # Equal within the tolerance: nbval's exact comparison sees the committed text.
                if where == "text":
                    output["text"] = committed_text
                else:
                    output["data"][where] = committed_text
        return nbval_compare_outputs(self, test, ref, skip_compare)

    plugin.IPyNbCell.compare_outputs = compare_outputs
