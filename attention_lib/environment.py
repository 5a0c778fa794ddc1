# Hand-written support module (not generated from a notebook).
"""The book's environment: the Jupyter Book floor, and the lock that `.venv` installs.

``requirements/lock.txt`` (``make lock``, uv pip compile) holds the exact version of every
package of the book and the tests, for every platform (lines may carry environment markers).
``make book`` / ``make test`` install exactly that set into ``.venv`` and then run this
module as a script (it imports neither torch nor the package), which fails, with what
differs, when

* the Jupyter Book that runs is not 1.x from 1.0.4.post1 on: Jupyter Book 2 is another
  program that ignores ``_config.yml`` and ``_toc.yml`` without an error, and an older 1.0.x
  comes with an older Sphinx;
* the environment is not the lock (a package missing, another version, one too many).

``python attention_lib/environment.py --write-conda environment.yml`` writes the conda
environment that states the same versions (``make lock`` runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
JUPYTER_BOOK_FLOOR = "1.0.4.post1"
# Installed but never locked: pip comes with every venv (python -m venv), and the project
# itself is the lock's editable line (`-e .`).
NOT_LOCKED = {"pip", "attention-lib"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?$")


def canonicalize_name(name: str) -> str:
    """A distribution's name as PEP 503 compares it (``Foo_Bar`` and ``foo-bar`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_jupyter_book(version: str | None = None) -> str:
    """The installed Jupyter Book's version; a RuntimeError saying what to do unless it is 1.x >= the floor."""
    from packaging.version import Version

    if version is None:
        try:
            version = metadata.version("jupyter-book")
        except metadata.PackageNotFoundError:
            raise RuntimeError("Jupyter Book is not installed: the book needs jupyter-book>=1.0.4.post1,<2 "
                               "(make venv installs it from requirements/lock.txt)") from None
    parsed = Version(version)
    if parsed.major >= 2:
        raise RuntimeError(f"Jupyter Book {version} is installed, but this book is a Jupyter Book 1 project: "
                           "Jupyter Book 2 ignores _config.yml and _toc.yml and would build something else "
                           "without an error. Install jupyter-book>=1.0.4.post1,<2 (make venv does).")
    if parsed < Version(JUPYTER_BOOK_FLOOR):
        raise RuntimeError(f"Jupyter Book {version} is older than the book's floor {JUPYTER_BOOK_FLOOR} "
                           "(older 1.0.x releases bring an older Sphinx): install jupyter-book>=1.0.4.post1,<2")
    return version


def lock_entries(path: Path = LOCK) -> list[tuple[str, str, str | None]]:
    """Every pinned line of a lock file: (canonical name, version, marker or None)."""
    entries = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}: not a pinned requirement (name==version ; marker): {line!r}")
        name, version, marker = match.groups()
        entries.append((canonicalize_name(name), version, marker))
    return entries


def locked(path: Path = LOCK, environment: dict | None = None) -> dict[str, str]:
    """{name: version} of the lock's lines whose markers hold here (or in ``environment``)."""
    from packaging.markers import Marker

    result = {}
    for name, version, marker in lock_entries(path):
        if marker is None or Marker(marker).evaluate(environment):
            if name in result and result[name] != version:
                raise ValueError(f"{path}: {name} is locked twice for this platform ({result[name]}, {version})")
            result[name] = version
    return result


def installed() -> dict[str, str]:
    """{name: version} of every distribution this interpreter sees (its environment)."""
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def differences(lock: dict[str, str], present: dict[str, str]) -> list[str]:
    """What differs between the lock and an environment, one line each (empty: they are the same)."""
    from packaging.version import Version

    lines = []
    for name in sorted(set(lock) | set(present)):
        if name in NOT_LOCKED:
            continue
        if name not in present:
            lines.append(f"{name}=={lock[name]} is locked but not installed")
        elif name not in lock:
            lines.append(f"{name} {present[name]} is installed but not in the lock")
        elif Version(present[name]) != Version(lock[name]):
            lines.append(f"{name} {present[name]} is installed, the lock says {lock[name]}")
    return lines


def unmet_requirements(extras: tuple[str, ...] = ("book", "test"), lock: dict[str, str] | None = None) -> list[str]:
    """The requirements of pyproject.toml (runtime and ``extras``) that the lock's versions do not meet:
    pyproject.toml changed without ``make lock``."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = locked() if lock is None else lock
    names = canonicalize_name(project["name"])
    wanted, todo, seen = [], [None, *extras], set()
    while todo:  # follow self-references such as "attention_lib[notebooks]"
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["dependencies"] if extra is None else project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == names:
                todo.extend(requirement.extras)
            else:
                wanted.append(requirement)
    problems = []
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = lock.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement} is required by pyproject.toml but not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} is required by pyproject.toml, the lock has {version}")
    return problems


def conda_environment(path: Path = LOCK) -> str:
    """environment.yml: conda provides Python and pip, pip installs the lock's exact versions."""
    lines = [
        "# Conda environment for Attention in Vision, written by `make lock` from",
        "# requirements/lock.txt: the same exact versions as .venv (do not edit by hand).",
        "#   conda env create -f environment.yml && conda activate attention-in-vision",
        "# then, in the repository, `python -m pytest` (the Makefile's targets use .venv).",
        "name: attention-in-vision",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        "      - -e .",
    ]
    for name, version, marker in lock_entries(path):
        line = f"{name}=={version}" + (f" ; {marker}" if marker else "")
        lines.append(f"      - \"{line}\"")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python attention_lib/environment.py", description=__doc__.split("\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock file (default: requirements/lock.txt)")
    parser.add_argument("--write-conda", type=Path, metavar="FILE",
                        help="write the conda environment of the lock to FILE and stop")
    parser.add_argument("--no-lock", action="store_true",
                        help="check only Jupyter Book (an environment of the latest versions, not the lock)")
    args = parser.parse_args(argv)
    if args.write_conda:
        args.write_conda.write_text(conda_environment(args.lock))
        print(f"wrote {args.write_conda} from {args.lock}")
        return 0
    try:
        version = check_jupyter_book()
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.no_lock:
        print(f"Jupyter Book {version}")
        return 0
    problems = differences(locked(args.lock), installed()) + unmet_requirements(lock=locked(args.lock))
    if problems:
        print(f"error: this environment ({sys.prefix}) is not {args.lock.name}:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print("make venv installs the lock; after changing pyproject.toml, make lock re-resolves it", file=sys.stderr)
        return 1
    print(f"Jupyter Book {version}; the environment is exactly {args.lock.name} ({len(locked(args.lock))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
