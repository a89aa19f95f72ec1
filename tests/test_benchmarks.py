"""The benchmark scripts that CI cannot time still run: each at its smallest size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_trainer import fake_mnist

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    fake_mnist(tmp_path / "root", "FashionMNIST", compress=False)
    out = tmp_path / "results.json"
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu",
                           "--data-root", str(tmp_path / "root"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["errors"] == {}
    assert results["device"] == "cpu"
    steps = [row["step"] for row in results["rows"]]
    assert set(steps) == {"tests", "trainer_speed", "fused", "measures", "trials_per_device",
                          "vs_plain"}
    assert steps.count("fused") == 2  # one study: alone and in groups of 2
    assert "| step | measurement | value |" in done.stdout
    assert "trials/min" in done.stdout and "passed" in done.stdout
