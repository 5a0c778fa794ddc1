"""Shared test configuration.

Every notebook run from the tests (nbval, papermill, the book build) uses smoke mode:
the parameters cell of each notebook reads ATTENTION_LIB_SMOKE=1.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ["ATTENTION_LIB_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """Folder of the interpreter running the tests (the project's .venv under make test)."""
    return Path(sys.executable).parent
