"""The house rules that tools check: imports run one way and never in a circle (import-linter's contracts in
pyproject.toml), and the code is formatted and linted by the pinned ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def test_imports_run_down_the_floors_never_in_a_circle_and_inference_never_imports_training():
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_the_package_root_holds_only_entry_points():
    """Infrastructure lives in amg.core, stages in their packages: the root shows the floors, not loose modules."""
    modules = sorted(path.name for path in (ROOT / "amg").glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "live.py", "pipeline.py", "stages.py"]


def test_the_code_is_linted_and_formatted():
    for args in (["check", "amg", "tests", "benchmarks"], ["format", "--check", "amg", "tests", "benchmarks"]):
        result = subprocess.run([_tool("ruff"), *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
