"""Printed outputs worth guarding stay what they were.

Notebooks are stored without outputs, so nbval (which compares against stored outputs)
has nothing to compare a `# NBVAL_CHECK_OUTPUT` cell with. This test gives the marker its
meaning: the book build executes every notebook (smoke mode), and the printed output of
each marked cell must equal the expectation stored in tests/expected_outputs.json.

After an intended change, refresh the expectations from a fresh build:
    make book && .venv/bin/python tests/test_expected_outputs.py _build/executed
"""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected_outputs.json"
MARKER = "# NBVAL_CHECK_OUTPUT"


def output_text(output: dict) -> str:
    """What an output says as text: printed text, or the plain-text form of a displayed
    result (a table of attention_lib.toolkit shows its rows there)."""
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    if output.get("output_type") in ("display_data", "execute_result"):
        return "".join(output.get("data", {}).get("text/plain", "")) + "\n"
    return ""


def marked_outputs(notebook: Path) -> dict[str, str]:
    """{cell id: printed text} of the marked cells of an executed notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    found = {}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(MARKER):
            found[cell["id"]] = "".join(output_text(o) for o in cell.get("outputs", []))
    return found


def marked_cell_ids(notebook: Path) -> set[str]:
    return {c["id"] for c in json.loads(notebook.read_text())["cells"]
            if c["cell_type"] == "code" and "".join(c["source"]).startswith(MARKER)}


def test_every_marked_cell_has_an_expectation():
    expected = json.loads(EXPECTED.read_text())
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        ids = marked_cell_ids(notebook)
        assert ids == set(expected.get(notebook.name, {})), (
            f"{notebook.name}: marked cells and tests/expected_outputs.json disagree; refresh it (see this file)")
        for text in expected.get(notebook.name, {}).values():
            assert text.strip(), f"{notebook.name}: an expected output is empty"


def test_marked_outputs_match_the_book_build(built_book):
    _, _, html = built_book
    executed = html.parent / "executed"
    if not executed.is_dir():
        pytest.skip(f"no executed notebooks next to {html}")
    expected = json.loads(EXPECTED.read_text())
    for name, cells in expected.items():
        outputs = marked_outputs(executed / name)
        for cell_id, text in cells.items():
            assert outputs.get(cell_id) == text, f"{name}, cell {cell_id}: printed output changed"


if __name__ == "__main__":
    source = Path(sys.argv[1])
    table = {}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if marked_cell_ids(notebook):
            table[notebook.name] = marked_outputs(source / notebook.name)
    EXPECTED.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {EXPECTED} ({sum(len(v) for v in table.values())} cells)")
