"""CPU threads per trial: the usable cores, other work on them, the model's size, overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_STUDY, stored
from tunecli.trainer import threads


@pytest.fixture(autouse=True)
def _threads_restored(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with no override and gets the process's thread count back."""
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.FIXED_VARIABLE, raising=False)
    monkeypatch.delenv(threads.SHARE_VARIABLE, raising=False)
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch: pytest.MonkeyPatch, cores: int, others: float) -> None:
    """A machine with ``cores`` usable cores and ``others`` of them busy with other work."""
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "_load", type("Load", (), {"cores": lambda self: others})())


def test_an_idle_machine_gives_a_large_model_every_core(monkeypatch) -> None:
    _machine(monkeypatch, 4, 0.0)
    assert threads.choose("auto", 1e9) == threads.Choice(4, "4 usable cores")


def test_cores_busy_with_other_work_are_left_to_it(monkeypatch) -> None:
    _machine(monkeypatch, 2, 1.0)
    choice = threads.choose("auto", 1e9)
    assert choice.threads == 1 and "1.0 busy with other work" in choice.why
    _machine(monkeypatch, 4, 1.8)
    assert threads.choose("auto", 1e9).threads == 2
    _machine(monkeypatch, 2, 0.2)  # a little background work is not worth a core
    assert threads.choose("auto", 1e9).threads == 2


def test_a_small_model_trains_on_one_thread(monkeypatch) -> None:
    _machine(monkeypatch, 8, 0.0)
    choice = threads.choose("auto", threads.SMALL_WORK / 2)
    assert choice.threads == 1 and "gains nothing from a second" in choice.why


def test_workers_on_one_machine_share_its_cores(monkeypatch) -> None:
    _machine(monkeypatch, 8, 0.0)
    monkeypatch.setenv(threads.SHARE_VARIABLE, "4")
    choice = threads.choose("auto", 1e9)
    assert choice.threads == 2 and "shared by 4 workers" in choice.why


def test_the_variable_wins_over_the_study_file(monkeypatch) -> None:
    _machine(monkeypatch, 2, 1.5)
    assert threads.choose(2, 1.0) == threads.Choice(2, "fixed by trainer.threads")
    monkeypatch.setenv(threads.FIXED_VARIABLE, "3")
    assert threads.choose(2, 1.0) == threads.Choice(3, "fixed by TUNECLI_THREADS=3")


def test_a_cgroup_quota_caps_the_usable_cores(monkeypatch, tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    affinity = len(os.sched_getaffinity(0))
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == affinity
    quota.write_text("50000 100000\n")  # half a core: one thread
    assert threads.usable_cores() == 1


def test_other_processes_cpu_time_is_seen_and_our_own_is_not() -> None:
    """A busy child counts as other work once it has run half a second on our cores."""
    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        before = threads._OtherLoad._reading()
        start = cpu_seconds(child.pid)
        while cpu_seconds(child.pid) - start < 0.5:
            time.sleep(0.01)
        sum(i * i for i in range(200_000))  # our own work in the window, not counted
        after = threads._OtherLoad._reading()
        child_seconds = cpu_seconds(child.pid) - start
    finally:
        child.kill()
        child.wait()
    assert before is not None and after is not None
    others = (after[0] - before[0]) - (after[1] - before[1])
    assert others >= child_seconds - 0.05


def test_a_search_says_its_choice_and_stores_it_with_each_trial(cli, write_study,
                                                                monkeypatch) -> None:
    monkeypatch.setenv(threads.FIXED_VARIABLE, "1")
    result = cli("search", write_study())
    assert result.exit_code == 0, result.output
    assert "CPU threads: 1 per trial, fixed by TUNECLI_THREADS=1" in result.output
    done = [t for t in stored() if t.state.name == "COMPLETE"]
    assert done and all(t.user_attrs["threads"] == 1 for t in done)


def test_auto_says_how_it_chooses(cli, write_study) -> None:
    result = cli("search", write_study(), "--n-trials", "1")
    assert result.exit_code == 0, result.output
    assert "CPU threads: up to" in result.output
    assert "trainer.threads or TUNECLI_THREADS fixes it" in result.output
    # the tiny study's model is small: one thread
    assert stored()[0].user_attrs["threads"] == 1


def test_a_thread_count_below_one_is_bad_input(cli, write_study) -> None:
    path = write_study(TINY_STUDY.replace("  epochs: 3\n", "  epochs: 3\n  threads: 0\n"))
    result = cli("search", path)
    assert result.exit_code == 2
    assert "trainer.threads" in result.output and "whole number from 1" in result.output
