"""Style and types are checked with the tests, so a lint or type error fails CI: ruff with
fastapi-cli's rule selection over the whole tree, mypy strict (pydantic plugin) over the
package. Both are configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", "tunecli", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = _run("mypy", "--cache-dir", "/dev/null")
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_and_functions_stay_small() -> None:
    """No module over 500 lines, no function over 60: a reader finds one concept per module.
    500, not less: a concept is never split to meet the number (#36)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "tunecli").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 500:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and node.end_lineno - node.lineno + 1 > 60:  # type: ignore[operator]
                too_long.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert too_long == []
