"""budget.timeout holds: running trials stop at the next epoch boundary, stored and
checkpointed, and `tunecli resume` continues them from that epoch."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    TINY_STUDY,
    finished,
    gate_env,
    gated,
    stored,
    tunecli_command,
    wait_for_file,
)
from tunecli import attrs

# 19 batches an epoch; no pruning, so only the time limit can stop a trial early
SLOW = (TINY_STUDY.replace("n_samples: 300", "n_samples: 4000").replace("epochs: 3", "epochs: 30")
        .replace("n_trials: 6", "n_trials: 3, timeout: 2")
        .replace("type: median, n_startup_trials: 2", "type: none, n_startup_trials: 2"))


@pytest.mark.slow
def test_the_time_limit_cuts_running_trials_at_an_epoch_and_resume_continues_them(
        write_study, tmp_path: Path, subprocess_env) -> None:
    """(A fused group's members are cut the same way: tests/test_fused.py.)"""
    path = write_study(gated(SLOW))
    gate = tmp_path / "gate"
    # the first trial to train holds in its third epoch (batch 40) until released
    env = gate_env(subprocess_env, gate, hold_index=0, hold_at=40)
    proc = subprocess.Popen([*tunecli_command(), "search", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    wait_for_file(gate / "held-0", proc)
    held = time.monotonic()
    while time.monotonic() < held + 2.5:  # the run began before it held: its limit has passed
        time.sleep(0.1)
    (gate / "release-0").touch()
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert "the time limit (2s) was reached; 1 running trial was stopped" in output
    assert "tunecli resume continues it" in output and "resume: tunecli resume tiny" in output
    trials = stored()
    cut = [t for t in trials if str(t.user_attrs.get(attrs.FAIL_REASON, "")).startswith(
        attrs.TIME_LIMIT)]
    assert len(cut) == 1 and cut[0].number == 0
    assert sorted(cut[0].intermediate_values) == [1, 2, 3]  # it ended with its third epoch
    assert (tmp_path / ".tunecli" / "tiny" / "checkpoints" / "trial-0.pt").exists()
    assert finished(trials) == 0  # nothing else started after the limit

    resumed = subprocess.run([*tunecli_command(), "resume", "tiny", "--timeout", "10m"],
                             capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = stored()
    assert finished(trials) == 3
    retry = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) == 0]
    assert len(retry) == 1 and retry[0].params == cut[0].params
    assert min(retry[0].intermediate_values) == 4  # continued after the stored epoch
    assert retry[0].state.name == "COMPLETE" and max(retry[0].intermediate_values) == 30
