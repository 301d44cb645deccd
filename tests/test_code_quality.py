"""The package is lint-clean, formatted and type-checks, as configured in pyproject.toml.

Run by the README's test command, so CI holds every change to it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ["graphswarm", "graphs", "tools", "tests"]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ruff() -> str:
    found = shutil.which("ruff")
    if found is None:
        pytest.skip('ruff is not installed: pip install -e ".[dev]"')
    return found


def test_ruff_finds_nothing_to_fix(ruff):
    checked = run(ruff, "check", *CODE)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_code_is_formatted(ruff):
    formatted = run(ruff, "format", "--check", *CODE)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_the_package_type_checks():
    pytest.importorskip("mypy", reason='mypy is not installed: pip install -e ".[dev]"')
    checked = run(sys.executable, "-m", "mypy")
    assert checked.returncode == 0, checked.stdout[-5000:] + checked.stderr
