"""Without grpcio, serve and every grpc:// client name the pip line and create nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tunecli.engine.storage import GRPC_INSTALL


@pytest.fixture
def no_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment where ``import grpc`` fails, as after pip install --no-deps."""
    monkeypatch.setitem(sys.modules, "grpc", None)


@pytest.mark.usefixtures("no_grpc")
@pytest.mark.parametrize("command", [
    ["serve", "--storage", "sqlite:///served.db", "--port", "13999"],
    ["list", "--storage", "grpc://127.0.0.1:13999"],
    ["worker", "tiny", "--storage", "grpc://127.0.0.1:13999", "--wait", "10m"],
])
def test_a_missing_grpcio_is_one_line_with_the_pip_line(cli, command, tmp_path: Path) -> None:
    result = cli(*command)
    assert result.exit_code == 2, result.output
    assert GRPC_INSTALL in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2
    assert list(tmp_path.iterdir()) in ([], [tmp_path / ".cache"])
