#!/usr/bin/env python3
"""Try the Colab path of the course: the install cell in a Python that has what Colab has, nothing of the course.

In a fresh Colab runtime the first code cell of every notebook finds no `mobilevit_edu`, installs
`mobilevit_edu[course]` from the repository with pip (git+URL@branch), and the notebook runs. A
packaging mistake (a module missing from the wheel, an extra that does not exist, a notebook that
imports something the extras do not install) would only show there. This command does the same here:

1. a snapshot of the working tree (the files git tracks or would track, as a one-commit git
   repository in a temporary folder): what a clone would hold, untracked build leftovers aside;
2. a fresh virtual environment (`python -m venv --without-pip`) that has what a Colab runtime has
   before the install cell runs, as far as the course is concerned, through a .pth file and nothing
   else:
   - Colab's own versions of the packages the course touches, from scripts/colab_versions.txt
     (ipywidgets 7.7.1, numpy, matplotlib, pillow, tqdm, timm, huggingface_hub, einops, protobuf,
     Colab's ipykernel and IPython, and what they need): installed once with pip into a cache folder
     (~/.cache/mobilevit_edu/colab-seed-<hash of that file, Python, torch>; about 5 minutes the first
     time on this machine, nothing after);
   - torch, torchvision and pip of .venv and their dependencies (a folder of symlinks, code and
     .dist-info, so pip counts them as installed) instead of installing torch again (about 2
     minutes); Colab's torch differs (see colab_versions.txt).
   It checks that mobilevit_edu and onnx are NOT importable there before the run, and records
   `pip freeze`;
3. one chapter and one exercise notebook of the snapshot executed end to end in that environment
   (nbclient, a fresh kernel each, cwd = the notebook's folder) with MOBILEVIT_EDU_SOURCE =
   git+file://localhost<snapshot>@main: the install cell of the first one installs the package and
   every course dependency Colab lacks from PyPI (pip's cache makes that quick after the first time),
   the second one finds it installed; both must print the environment report. The default chapter,
   chapter 1, shows an explorer (ipywidgets) and an animation;
4. then, in that environment: `pip freeze` again, and every package of colab_versions.txt must have
   the version Colab has (the install cell upgraded or replaced nothing Colab ships: an upgrade of
   numpy, matplotlib or ipywidgets needs a restart in Colab, and ipywidgets 8 is a third-party
   widget there); every third-party module that ANY notebook of the course imports must be
   installed (a notebook importing what the `course` extra does not bring); mobilevit_edu must come
   from the venv; pip must not have installed torch or its dependencies again;
5. tests/test_widgets.py of the snapshot there (Colab's pytest): every explorer of the course builds
   and redraws under ipywidgets 7.7.1 and Colab's matplotlib.
It needs PyPI (or a pip index) and git, works in /dev/shm when that is a roomy RAM disk (deleting a
venv from a busy disk took half a minute), and prints a timing per phase.

Usage:
    python scripts/check_colab_install.py      # chapters/01_conv_unfold.ipynb + exercises/02_mv2_block.ipynb
    python scripts/check_colab_install.py --notebook chapters/01_conv_unfold.ipynb --notebook exercises/01_conv_unfold.ipynb
    python scripts/check_colab_install.py --keep   # keep the temporary folder (its path is printed)
Run it with the Python of .venv (scripts/test.sh does). Exit status 1 when a step fails.
"""

import argparse
import hashlib
import importlib.metadata as metadata
import platform
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _nbtools  # noqa: E402
import stamp_colab  # noqa: E402

# What a Colab runtime has before the install cell runs, as far as this course is concerned: Colab's
# versions of the packages in colab_versions.txt (the seed), and torch, torchvision and pip, taken
# from .venv with their dependencies (those the seed does not have).
COLAB_VERSIONS = Path(__file__).resolve().parent / "colab_versions.txt"
COLAB_STACK = ("torch", "torchvision", "pip")
# What only the install cell may bring: if one of these is importable before it runs, the test
# would not test the install.
NOT_BEFORE = ("mobilevit_edu", "onnx", "onnxruntime", "onnxscript")
# What must be there before, as in Colab
BEFORE = ("torch", "torchvision", "ipykernel", "ipywidgets", "matplotlib", "timm", "tqdm")
DEFAULT_NOTEBOOKS = ("chapters/01_conv_unfold.ipynb", "exercises/02_mv2_block.ipynb")
WIDGET_TESTS = "tests/test_widgets.py"
REPORT_START = "Python "


def closure(names):
    """The installed distributions `names` need, recursively, extras included (torch needs
    cuda-toolkit[cudart,...], say); markers are evaluated for this Python."""
    found, todo, seen = {}, [(name, "") for name in names], set()
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed (e.g. for another platform)
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo += [(requirement.name, "")] + [(requirement.name, e) for e in requirement.extras]
    return found


def colab_versions(path=COLAB_VERSIONS):
    """{canonical name: "name==version"} of colab_versions.txt (comments after '#')."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            name, _, version = spec.partition("==")
            if not version:
                raise SystemExit(f"{path}: expected name==version, got {line!r}")
            pins[canonicalize_name(name)] = spec
    return pins


def cache_home():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mobilevit_edu"


def colab_seed(pins, stack, stack_dists, tmp):
    """The folder (a cache, made once) that holds Colab's versions `pins` ({name: "name==version"}),
    installed by pip into a venv that sees `stack` (torch and its dependencies), so that pip leaves torch
    alone. Its name has a hash of the pins, this Python and torch: change one and it is made again."""
    torch_pins = [f"{name}=={stack_dists[name].version}" for name in ("torch", "torchvision")]
    key = hashlib.sha256("\n".join([*sorted(pins.values()), *torch_pins, sys.version, platform.machine()])
                         .encode()).hexdigest()[:16]
    seed = cache_home() / f"colab-seed-{key}"
    if (seed / ".complete").exists():
        return seed, False
    python, site = make_venv(tmp / "seed-venv", stack)
    constraints = tmp / "seed-constraints.txt"
    constraints.write_text("\n".join([*pins.values(), *torch_pins]) + "\n")
    # Colab's versions only: a version missing here fails loudly instead of picking another
    command = [str(python), "-m", "pip", "install", "-q", "--no-color", "--progress-bar", "off",
               "-c", str(constraints), *pins.values()]
    done = subprocess.run(command, capture_output=True, text=True, env=kernel_env(tmp / "seed-venv", ""), cwd=tmp)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install Colab's versions (scripts/colab_versions.txt):\n{done.stderr[-3000:]}")
    (site / "_colab_stack.pth").unlink()
    seed.parent.mkdir(parents=True, exist_ok=True)
    for old in seed.parent.glob("colab-seed-*"):  # seeds of older pins
        shutil.rmtree(old, ignore_errors=True)
    staging = seed.parent / f".{seed.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(site, staging, symlinks=True)
    (staging / ".complete").write_text(" ".join(command[3:]) + "\n")
    staging.rename(seed)
    return seed, True


def installed_versions(python, env, cwd):
    """{canonical name: "name==version"} from `pip freeze --all` in the environment of `python`."""
    done = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                          env=env, cwd=cwd, check=True)
    found = {}
    for line in done.stdout.splitlines():
        name = line.split("==")[0].split(" @ ")[0].strip()
        if name:
            found.setdefault(canonicalize_name(name), line.strip())
    return found


def link_stack(dists, folder):
    """Symlink into `folder` the top-level files and folders of every distribution (its packages,
    modules, shared libraries and .dist-info), as found in its RECORD; return how many links."""
    folder.mkdir(parents=True)
    linked = set()
    for dist in dists.values():
        site = Path(dist.locate_file(""))
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth") or top in linked:
                continue
            source = site / top
            if source.exists():
                (folder / top).symlink_to(source)
                linked.add(top)
    return len(linked)


def make_venv(where, *stack_dirs):
    """A venv without pip at `where` that sees the folders `stack_dirs`, in this order, through a .pth."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_colab_stack.pth").write_text("".join(f"{folder}\n" for folder in stack_dirs))
    return python, Path(site)


def snapshot(root, where):
    """Copy what git tracks or would track (not ignored) into `where` and commit it there, as branch main."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, check=True, capture_output=True).stdout.decode().split("\0")
    count = 0
    for rel in filter(None, listed):
        source = root / rel
        if source.is_file():
            target = where / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            count += 1
    git = ["git", "-c", "user.name=check_colab_install", "-c", "user.email=check@localhost",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot of the working tree"]):
        subprocess.run(git + args, cwd=where, check=True, capture_output=True)
    return count


def imported_modules(notebooks):
    """{top-level module: first notebook that imports it} over the code cells of `notebooks`, the
    standard library left out (IPython magics and shell lines are skipped)."""
    import ast

    found = {}
    for path in notebooks:
        for cell in _nbtools.read(path).cells:
            if cell.cell_type != "code":
                continue
            lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            try:
                tree = ast.parse("\n".join(lines))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names:
                        found.setdefault(top, path.name)
    return found


def fast_tmpdir(min_free=2 * 1024**3):
    """/dev/shm when it is a writable RAM disk with room for the venv (about 0.5 GB), else None (the
    system's temporary folder): writing and deleting thousands of files there takes seconds, not tens."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > min_free:
            return str(shm)
    except OSError:
        pass
    return None


def kernel_env(venv, source):
    """The kernel's environment: the fresh venv first on PATH, nothing of .venv, the course's source."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(Path(sys.prefix)))]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), MOBILEVIT_EDU_SOURCE=source,
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONHASHSEED="0",
               TMPDIR=str(venv.parent),  # pip's clone and build folders, next to the venv
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"), MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", "2"))
    return env


def run_notebook(path, python, env, timeout):
    """Execute the notebook at `path` in a fresh kernel of `python`; return (notebook, seconds, the
    CellExecutionError of the cell that failed or None)."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    spec_dir = Path(tempfile.mkdtemp(prefix="colab-kernels-"))
    (spec_dir / "colab").mkdir()
    (spec_dir / "colab" / "kernel.json").write_text(json.dumps({
        # -Xfrozen_modules=off: Colab's ipykernel 6.17 (debugpy) warns about frozen modules on every start
        "argv": [str(python), "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python", "env": env}))
    manager = KernelManager(kernel_name="colab", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)]))
    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    failure = None
    try:
        NotebookClient(nb, km=manager, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as error:  # the cells that ran keep their outputs: the install cell's says why
        failure = error
    finally:
        if manager.has_kernel:  # the client does not own a kernel manager it is given: stop it here
            manager.shutdown_kernel(now=True)
        shutil.rmtree(spec_dir, ignore_errors=True)
    return nb, time.monotonic() - start, failure


def cell_seconds(cell):
    """How long the cell ran (nbclient's timestamps), or 0.0."""
    from datetime import datetime

    stamps = cell.get("metadata", {}).get("execution", {})
    try:
        began = datetime.fromisoformat(stamps["iopub.status.busy"].replace("Z", "+00:00"))
        ended = datetime.fromisoformat(stamps["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (ended - began).total_seconds()


def install_cell_output(nb):
    cell = next(c for c in nb.cells if stamp_colab.INSTALL_TAG in _nbtools.tags(c))
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", action="append", help="a notebook to run, relative to the repository "
                        f"(default: {' and '.join(DEFAULT_NOTEBOOKS)}); the first one installs the package")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--tmpdir", help="where to make the temporary folder (default: /dev/shm when it is a"
                        " roomy RAM disk, else the system's temporary folder)")
    args = parser.parse_args(argv)
    notebooks = args.notebook or list(DEFAULT_NOTEBOOKS)

    total = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="colab-path-", dir=args.tmpdir or fast_tmpdir()))
    problems = []

    def phase(name, start):
        print(f"  {name}: {time.monotonic() - start:.1f} s", flush=True)

    try:
        start = time.monotonic()
        pins = colab_versions()
        all_dists = closure(COLAB_STACK)
        dists = {name: dist for name, dist in all_dists.items() if name not in pins}  # the seed has Colab's
        links = link_stack(dists, tmp / "colab-stack")
        seed, made = colab_seed(pins, tmp / "colab-stack", all_dists, tmp)
        phase(f"Colab's versions of {len(pins)} packages (scripts/colab_versions.txt): "
              f"{'installed into' if made else 'cached in'} {seed}", start)

        start = time.monotonic()
        python, site = make_venv(tmp / "venv", seed, tmp / "colab-stack")
        probe = subprocess.run([str(python), "-c", "import importlib.util as u; print("
                                f"[m for m in {list(BEFORE)!r} if not u.find_spec(m)], "
                                f"[m for m in {list(NOT_BEFORE)!r} if u.find_spec(m)])"],
                               capture_output=True, text=True, env=kernel_env(tmp / "venv", ""), cwd=tmp)
        if probe.returncode != 0 or probe.stdout.strip() != "[] []":
            print("the fresh environment lacks what Colab has or already has a part of the course ([missing] [present]): "
                  f"{probe.stdout}{probe.stderr}", file=sys.stderr)
            return 1
        before = installed_versions(python, kernel_env(tmp / "venv", ""), tmp)
        wrong = sorted(spec for name, spec in pins.items() if before.get(name) != spec)
        if wrong:
            print(f"the fresh environment does not have Colab's versions of: {', '.join(wrong)}"
                  f" (it has {', '.join(before.get(canonicalize_name(w.split('==')[0]), '-') for w in wrong)})",
                  file=sys.stderr)
            return 1
        shown = ", ".join(pins[n] for n in ("ipywidgets", "numpy", "matplotlib", "pillow", "tqdm", "timm",
                                               "huggingface-hub", "ipykernel") if n in pins)
        phase(f"fresh venv with Colab's {shown}, ... ({len(pins)} pinned) and the course's torch, "
              f"torchvision, pip ({len(dists)} distributions, {links} links)", start)

        start = time.monotonic()
        repo = tmp / "repo"
        files = snapshot(_nbtools.ROOT, repo)
        # file://localhost/...: pip (before 24) rejects a git+file:/// URL without a host
        source = f"git+file://localhost{repo.as_posix()}@main"
        # the install cell as scripts/stamp_colab.py writes it now (a changed cell is tried before the
        # notebooks are re-stamped and re-executed)
        url, branch = _nbtools.repository()
        for rel in notebooks:
            _nbtools.write(stamp_colab.stamp(_nbtools.read(repo / rel), rel, url, branch), repo / rel)
        phase(f"snapshot of the working tree ({files} files) as {source}", start)

        env = kernel_env(tmp / "venv", source)
        for i, rel in enumerate(notebooks):
            nb, took, failure = run_notebook(repo / rel, python, env, args.timeout)
            printed = install_cell_output(nb)
            install = next(c for c in nb.cells if stamp_colab.INSTALL_TAG in _nbtools.tags(c))
            others = [cell_seconds(c) for c in nb.cells if c.cell_type == "code" and c is not install]
            if failure:
                problems.append(f"{rel}: a cell failed in the Colab-like environment:\n{failure}")
            print(f"  {rel}: {'FAILED after' if failure else 'ran end to end in'} {took:.1f} s"
                  f" (install cell {cell_seconds(install):.1f} s, "
                  f"the {len(others)} other cells {sum(others):.1f} s);"
                  " its install cell printed:")
            print("".join(f"      | {line}\n" for line in printed.splitlines()), end="")
            report = [line for line in printed.splitlines() if line.startswith(REPORT_START)]
            if not report or "mobilevit_edu" not in report[-1]:
                problems.append(f"{rel}: the install cell printed no environment report")
            installing = "installing mobilevit_edu" in printed
            if i == 0 and not installing:
                problems.append(f"{rel}: the install cell did not install mobilevit_edu (was it already there?)")
            if i > 0 and installing:
                problems.append(f"{rel}: the install cell installed mobilevit_edu again")

        start = time.monotonic()
        after = installed_versions(python, env, tmp)
        changed = sorted(f"{spec} -> {after.get(name, 'removed')}" for name, spec in pins.items()
                         if after.get(name) != spec)
        problems += [f"the install cell changed what Colab ships: {c} (the course's requirement must accept"
                     " Colab's version: pyproject.toml)" for c in changed]
        added = sorted(set(after) - set(before))
        print(f"  pip freeze before and after the install cell: {len(pins) - len(changed)} of the {len(pins)}"
              f" packages Colab ships unchanged ({shown}, ...); new: {', '.join(after[n] for n in added) or 'nothing'}")
        # every notebook of the course, not only those run: what they import must now be installed
        wanted = imported_modules(_nbtools.find_notebooks(root=repo))
        probe = subprocess.run([str(python), "-c", "import importlib.util as u, sys; "
                                "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))", *wanted],
                               capture_output=True, text=True, env=env, cwd=tmp)
        missing = probe.stdout.split() if probe.returncode == 0 else list(wanted)
        print(f"  the {len(wanted)} packages the notebooks import are installed"
              + (f" except {', '.join(missing)}" if missing else f": {', '.join(sorted(wanted))}"))
        problems += [f"{wanted[m]} imports {m}, which mobilevit_edu[course] does not install"
                     " (add it to the course extra in pyproject.toml)" for m in missing]
        # what the install cell put into the venv itself (not the Colab stack it sees through the .pth)
        names = sorted(canonicalize_name(p.name.split("-")[0]) for p in site.glob("*.dist-info"))
        print(f"  the install cell added {len(names)} distributions: {', '.join(names)}")
        replaced = sorted(set(names) & (set(dists) | set(pins)))
        if replaced:
            problems.append(f"pip installed again what Colab already has: {', '.join(replaced)} (a requirement of"
                            " the course that Colab's versions do not satisfy?)")
        where = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('mobilevit_edu').origin)"],
                               capture_output=True, text=True, env=env, cwd=tmp)
        if not where.stdout.startswith(str(site)):
            problems.append(f"mobilevit_edu is not installed in the fresh venv: {where.stdout}{where.stderr}")
        phase("checks of the environment after the run", start)

        start = time.monotonic()
        tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", WIDGET_TESTS],
                               capture_output=True, text=True, env=env, cwd=repo)
        summary = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
        if tests.returncode != 0:
            problems.append(f"{WIDGET_TESTS} failed under Colab's versions:\n{tests.stdout[-4000:]}{tests.stderr[-2000:]}")
        phase(f"{WIDGET_TESTS} under {pins.get('ipywidgets')}, {pins.get('matplotlib')}: {summary}", start)
    except Exception as error:  # a cell that fails, pip, git: say which and how
        problems.append(f"{type(error).__name__}: {error}")
    finally:
        if args.keep:
            print(f"  kept {tmp}")
        else:
            start = time.monotonic()
            shutil.rmtree(tmp, ignore_errors=True)  # unlinks the stack's symlinks, never what they point to
            phase("clean-up", start)

    import resource

    used = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(u.ru_utime + u.ru_stime for u in used)
    print(f"  total: {time.monotonic() - total:.1f} s ({cpu:.1f} s of CPU time, kernels and pip included)")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print("✓ the Colab path works: the install cell installs mobilevit_edu[course] into a Python with Colab's"
          f" packages and changes none of them, {' and '.join(notebooks)} run end to end, and the explorers"
          " build under ipywidgets 7.7.1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
