"""Nothing lost: kill -9 mid-trial then resume, several workers on SQLite, PostgreSQL workers."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import optuna
import pytest

from tests.conftest import (
    TINY_STUDY,
    finished,
    gate_env,
    gated,
    grid_study,
    stored,
    tunecli_command,
    wait_for_file,
    with_sampler,
)

SLOW = TINY_STUDY.replace("n_samples: 300", "n_samples: 4000").replace("epochs: 3",
                                                                         "epochs: 30")


def test_kill_9_then_resume_continues_from_the_checkpoint(write_study, tmp_path: Path,
                                                           subprocess_env) -> None:
    path = write_study(gated(SLOW.replace("n_trials: 6", "n_trials: 3").replace(
        "type: median, n_startup_trials: 2", "type: none, n_startup_trials: 2")))
    # the second trial to train stops at batch 40 (after two epochs of 19 batches) and waits
    gate = tmp_path / "gate"
    env = gate_env(subprocess_env, gate, hold_index=1, hold_at=40)
    proc = subprocess.Popen([*tunecli_command(), "search", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, env=env)
    wait_for_file(gate / "held-1", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    lost = [t for t in stored() if t.state.name == "RUNNING"]
    assert len(lost) == 1 and lost[0].number == 1  # kill -9 leaves it RUNNING
    assert max(lost[0].intermediate_values) >= 2
    result = subprocess.run([*tunecli_command(), "resume", "tiny"], capture_output=True,
                            text=True, env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored()
    assert finished(trials) == 3
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["fail_reason"].startswith("lost")
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    # the retry continued after the last checkpointed epoch, so it reported fewer epochs
    assert min(retry[0].intermediate_values) > 1
    assert retry[0].user_attrs["history"][0]["epoch"] == 1  # full learning curve kept
    # finished trials' checkpoints are removed except the best one's
    left = list((tmp_path / ".tunecli" / "tiny" / "checkpoints").glob("*.pt"))
    assert len(left) <= 1
    # one definition of the counts: the lost trial is neither finished nor failed
    listing = subprocess.run([*tunecli_command(), "report", "tiny", "--format", "json"],
                             capture_output=True, text=True, env=subprocess_env, timeout=120)
    counts = json.loads(listing.stdout)["counts"]
    assert (counts["finished"], counts["failed"], counts["lost"]) == (3, 0, 1)


def test_four_workers_on_sqlite_end_with_exactly_n_trials(write_study, tmp_path: Path,
                                                          subprocess_env) -> None:
    path = write_study(gated(TINY_STUDY.replace("n_trials: 6", "n_trials: 14")))
    # each first trial waits until two workers train, so several certainly do
    env = gate_env(subprocess_env, tmp_path / "gate", meet=2)
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "4"],
                            capture_output=True, text=True, env=env, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "locked" not in out and "Traceback" not in out
    trials = stored()
    assert finished(trials) == 14
    assert not [t for t in trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) >= 2  # trials really ran in several processes


def test_grid_with_workers_never_repeats_a_point(write_study, subprocess_env) -> None:
    text = grid_study(widest=11)
    path = write_study(text.replace("n_trials: 6", "n_trials: 50"))
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "3"],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    points = [(t.params["lr"], t.params["width"]) for t in stored()
              if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(points) == sorted(set(points)) and len(points) == 8


@pytest.mark.postgres
@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc", "hyperopt-tpe"])
def test_postgres_workers_from_two_processes(write_study, postgres_url, subprocess_env,
                                             sampler: str) -> None:
    """Two separate `tunecli` processes (as on two machines) join one study on PostgreSQL."""
    path = write_study(gated(with_sampler(TINY_STUDY, sampler).replace("n_trials: 6",
                                                                       "n_trials: 10")))
    first = subprocess.run([*tunecli_command(), "search", str(path), "--storage", postgres_url,
                            "--n-trials", "1"], capture_output=True, text=True,
                           env=subprocess_env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "not-a-secret" not in first.stdout + first.stderr
    env = gate_env(subprocess_env, Path.cwd() / "gate", meet=2)
    procs = [subprocess.Popen([*tunecli_command(), "resume", "tiny", "--storage", postgres_url,
                               "--n-trials", "10"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    assert finished(trials) == 10
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    # two machines that joined the study at once drew no configuration twice
    points = [tuple(sorted(t.params.items())) for t in trials
              if not t.user_attrs.get("surplus")]  # a lost race: no parameters drawn
    assert len(points) == len(set(points))


@pytest.mark.postgres
def test_postgres_grid_from_two_processes_never_repeats_a_point(write_study, postgres_url,
                                                                subprocess_env) -> None:
    """Two `tunecli search` processes (as on two machines) share one grid on PostgreSQL."""
    path = write_study(gated(grid_study(widest=11).replace("n_trials: 6", "n_trials: 50")))
    first = subprocess.run([*tunecli_command(), "search", str(path), "--storage", postgres_url,
                            "--n-trials", "1"], capture_output=True, text=True,
                           env=subprocess_env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    env = gate_env(subprocess_env, Path.cwd() / "gate", meet=2)  # both certainly train
    procs = [subprocess.Popen([*tunecli_command(), "resume", "tiny", "--storage", postgres_url,
                               "--n-trials", "50"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    trials = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    points = [(t.params["lr"], t.params["width"]) for t in trials
              if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(points) == sorted(set(points)) and len(points) == 8
    assert len({t.user_attrs["worker"] for t in trials if t.params}) >= 2
