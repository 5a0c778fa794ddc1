# Hand-written support module (not generated from a notebook).
"""Releases of the book: the steps of .github/workflows/release.yml that are not git or GitHub.

A release is made from main by the release workflow (Actions, "release", Run workflow)
once ``pyproject.toml``'s version is raised and ``CHANGELOG.md`` has a section for it:

* ``check``: the version is new (no tag ``v<version>`` yet) and CHANGELOG.md describes it;
* ``notes``: print that section (the release's notes);
* ``pin REF``: make every notebook's first cell install the library of ``REF`` (the tag)
  instead of the default branch's, so that a released chapter opened in Colab runs the code
  it was written with. The workflow commits this on a release commit that only the tag
  points to; main keeps installing from main.

Run as a script (``python attention_lib/release.py check``): it imports neither torch nor
the package.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_URL = "git+https://github.com/attention-in-vision/attention-in-vision"


def version(root: Path = ROOT) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def changelog_section(release: str, root: Path = ROOT) -> str:
    """The text under ``## [<release>]`` (or ``## <release>``) of CHANGELOG.md; a ValueError when absent or empty."""
    text = (root / "CHANGELOG.md").read_text()
    heading = re.compile(rf"^## \[?{re.escape(release)}\]?(?:\s|$).*$", re.MULTILINE)
    match = heading.search(text)
    if match is None:
        raise ValueError(f"CHANGELOG.md has no section `## [{release}] - YYYY-MM-DD`: describe the release first")
    following = re.search(r"^## ", text[match.end():], re.MULTILINE)
    body = text[match.end(): match.end() + following.start() if following else len(text)].strip()
    if not body:
        raise ValueError(f"CHANGELOG.md's section for {release} is empty")
    return body


def check(root: Path = ROOT, tags: list[str] | None = None) -> str:
    """The tag to make, ``v<version>``, after checking that it is new and described."""
    release = version(root)
    if not re.fullmatch(r"\d+\.\d+\.\d+", release):
        raise ValueError(f"pyproject.toml's version {release!r} is not MAJOR.MINOR.PATCH")
    tag = f"v{release}"
    if tags is None:
        tags = subprocess.run(["git", "tag", "--list"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    if tag in tags:
        raise ValueError(f"{tag} is already released: raise the version in pyproject.toml (and CHANGELOG.md)")
    changelog_section(release, root)
    return tag


def pin_install_cells(ref: str, root: Path = ROOT) -> list[Path]:
    """Point the first cell of every notebook at ``INSTALL_URL@ref``; the notebooks changed."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", ref):
        raise ValueError(f"not a git reference: {ref!r}")
    changed = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = notebook["cells"][0]
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if f'{INSTALL_URL}"' not in source:
            raise ValueError(f"{path.name}: the first cell does not install {INSTALL_URL}")
        source = source.replace(f'{INSTALL_URL}"', f'{INSTALL_URL}@{ref}"')
        # Keep the stored form (nbformat writes a list of lines; a string is valid too).
        cell["source"] = source.splitlines(keepends=True) if isinstance(cell["source"], list) else source
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python attention_lib/release.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="print the tag to make, v<version>, after checking it is new and described")
    commands.add_parser("notes", help="print CHANGELOG.md's section for the version")
    pin = commands.add_parser("pin", help="make every notebook's first cell install the library of REF")
    pin.add_argument("ref")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(check())
        elif args.command == "notes":
            print(changelog_section(version()))
        else:
            for path in pin_install_cells(args.ref):
                print(f"pinned {path.relative_to(ROOT)} to {args.ref}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
