#!/usr/bin/env python3
"""Every figure and animation of the chapters as files, for lecturers' own slides.

Reads the committed, executed chapters (nothing is re-run, so the files are exactly what the book
shows) and writes into _build/figures/ (or --out):
- each figure (a PNG output) as `chNN_<section>_<k>.png`;
- each animation (a matplotlib player, widgets.animation_html) as `chNN_<section>_<k>.gif`, its
  frames at the player's own rate, looping, and its first frame as `..._<k>.png`;
- `README.md`: a table of every file with its chapter, section, and its alt text (what the figure
  shows, written for readers who cannot see it: a caption to reuse).
<section> is the slug of the heading the figure sits under; k counts the figures of that section.

Usage:
    python scripts/export_figures.py                 # into _build/figures/
    python scripts/export_figures.py --out /tmp/figs chapters/04_patches.ipynb
"""

import argparse
import base64
import html
import io
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402

ROOT = _nbtools.ROOT
HEADING = re.compile(r"^#{1,6}\s+(.*\S)\s*$", re.MULTILINE)
# to_jshtml writes each frame as a JS string continued over lines (a backslash before each newline)
FRAME = re.compile(r'frames\[(\d+)\] = "data:image/png;base64,([A-Za-z0-9+/=\\\n]+)"')
INTERVAL = re.compile(r"new Animation\(frames, img_id, slider_id, (\d+(?:\.\d+)?)")
ALT = re.compile(r'<img alt="([^"]*)" id="_anim_img')


def slug(text, limit=40):
    text = re.sub(r"\$[^$]*\$", "", text)  # formulas make poor file names
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return text[:limit].rstrip("-") or "intro"


def figures(nb):
    """(section heading, kind, payload, alt) for every figure and animation, in reading order."""
    section = "intro"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = HEADING.search(cell.source)
            if found:
                section = found.group(1)
            continue
        if cell.cell_type != "code" or "remove-cell" in _nbtools.tags(cell):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
                yield section, "png", base64.b64decode(data["image/png"]), alt
            elif "_anim_img" in data.get("text/html", ""):
                text = data["text/html"]
                match = ALT.search(text)
                yield section, "animation", text, html.unescape(match.group(1)) if match else ""


def animation_frames(text):
    """The PNG frames (bytes) of a to_jshtml player and its interval in ms."""
    frames = sorted((int(i), base64.b64decode(re.sub(r"[\\\n]", "", b))) for i, b in FRAME.findall(text))
    interval = INTERVAL.search(text)
    return [f for _, f in frames], float(interval.group(1)) if interval else 200.0


def export(paths, out):
    from PIL import Image

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = []
    for path in paths:
        chapter = int(path.name[:2])
        counts = {}
        for section, kind, payload, alt in figures(_nbtools.read(path)):
            key = slug(section)
            counts[key] = counts.get(key, 0) + 1
            stem = f"ch{chapter:02d}_{key}_{counts[key]}"
            if kind == "png":
                (out / f"{stem}.png").write_bytes(payload)
                files = [f"{stem}.png"]
            else:
                frames, interval = animation_frames(payload)
                if not frames:
                    continue
                images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
                images[0].save(out / f"{stem}.gif", save_all=True, append_images=images[1:],
                               duration=int(interval), loop=0, optimize=True)
                (out / f"{stem}.png").write_bytes(frames[0])
                files = [f"{stem}.gif", f"{stem}.png"]
            rows.append((files, chapter, path.stem, section, alt))
    lines = [
        "# Figures of *MobileViT from scratch*",
        "",
        "Every figure and animation of the chapters, exported from the committed notebooks by",
        "`python scripts/export_figures.py` (MIT licence, like the course: cite the course when you reuse them).",
        "An animation comes as a looping GIF and its first frame as a PNG. The description is the alt",
        "text the book gives the figure: use it as a caption or as your slide's alt text.",
        "",
        "| file | chapter | section | what it shows |",
        "|---|---|---|---|",
    ]
    for files, chapter, stem, section, alt in rows:
        cell = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines.append(f"| {' · '.join(f'[{f}]({f})' for f in files)} | {chapter} (`{stem}`) | {cell(section)} | {cell(alt) or '(no description)'} |")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="chapter notebooks (default: every chapter)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "figures")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "chapters").glob("*.ipynb"))
    rows = export(paths, args.out)
    animations = sum(1 for files, *_ in rows if files[0].endswith(".gif"))
    print(f"✓ {len(rows)} figures ({animations} animations as GIF) from {len(paths)} chapter(s) in {args.out};"
          f" listed with their descriptions in {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
