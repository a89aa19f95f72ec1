"""How many CPU threads a trial trains with: the one place the choice is made.

torch's default (one thread per core, OpenMP threads that spin while they wait) is right only
for a large model on an idle machine. Beside other work, a thread whose core is taken stalls
every other thread at each operation's barrier, and a small model's operations are too short
to split at all. So each trial gets the cores this process may use (its CPU affinity and
cgroup quota), shared with the study's other workers on this machine, less the cores other
processes kept busy since the last look (before each epoch), and one thread for a model too
small to gain from a second. ``trainer.threads`` or ``TUNECLI_THREADS`` fixes the count
instead (the variable wins: it is set per machine). A trial's result can depend on the thread
count (a sum split over threads adds in another order), so the count is stored with each
trial; fix it to reproduce a value bit for bit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunecli.trainer.models import multiply_adds

__all__ = ["SMALL_WORK", "Choice", "choose", "describe", "step_work", "use"]

# Multiply-adds of one training step (a forward pass's, x the batch size) below which a
# second thread does not pay for its synchronisation (benchmarks/README.md: the crossover).
SMALL_WORK = 4_000_000
# Other processes' load, in cores, that is not yet worth giving a core up for.
_TOLERATED = 0.3
# The shortest time over which that load is measured, in seconds.
_WINDOW = 0.2
FIXED_VARIABLE = "TUNECLI_THREADS"
# Workers of one study started together on this machine (``--workers``): each takes its share.
SHARE_VARIABLE = "TUNECLI_WORKERS_HERE"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Choice:
    threads: int
    why: str


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


class _OtherLoad:
    """Cores kept busy by other processes since the previous look: the busy time of this
    process's cores in /proc/stat, less this process's own CPU time, over the wall time."""

    def __init__(self) -> None:
        self.last: tuple[float, float, float] | None = self._reading()
        self.estimate: float | None = None

    @staticmethod
    def _reading() -> tuple[float, float, float] | None:
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        mine = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        busy = 0
        for line in lines:
            fields = line.split()
            if fields and fields[0] in mine:
                ticks = [int(v) for v in fields[1:9]]
                busy += sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        own = os.times()
        hertz = os.sysconf("SC_CLK_TCK")
        return busy / hertz, own.user + own.system, own.elapsed

    def cores(self) -> float:
        """Busy cores of others since the last estimate; a window too short to tell keeps the
        last estimate (0 where /proc/stat cannot be read)."""
        now, before = self._reading(), self.last
        if now is None or before is None:
            return 0.0
        if now[2] - before[2] < _WINDOW:
            if self.estimate is not None:
                return self.estimate
            time.sleep(_WINDOW - (now[2] - before[2]))  # the first look needs its window
            now = self._reading() or now
        busy = (now[0] - before[0]) - (now[1] - before[1])
        self.estimate, self.last = max(0.0, busy / (now[2] - before[2])), now
        return self.estimate


# Its first look is when tunecli loads this module: the load is known by the first trial.
_load = _OtherLoad()


def _fixed(setting: int | str) -> tuple[int, str] | None:
    """The count the user fixed, and where: the variable wins over the study file."""
    raw = os.environ.get(FIXED_VARIABLE, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw), f"{FIXED_VARIABLE}={raw}"
    if isinstance(setting, int):
        return setting, "trainer.threads"
    return None


def _share() -> int:
    raw = os.environ.get(SHARE_VARIABLE, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def choose(setting: int | str, work_per_step: float) -> Choice:
    """The thread count for a step of ``work_per_step`` multiply-adds, and why."""
    fixed = _fixed(setting)
    if fixed is not None:
        return Choice(fixed[0], f"fixed by {fixed[1]}")
    cores, share = usable_cores(), _share()
    others = _load.cores()
    free = min(cores // share, int(cores - others + _TOLERATED))
    parts = [f"{cores} usable core{'s' if cores != 1 else ''}"]
    if share > 1:
        parts.append(f"shared by {share} workers")
    if others >= _TOLERATED:
        parts.append(f"{others:.1f} busy with other work")
    if work_per_step < SMALL_WORK and free > 1:
        parts.append(f"a step of {work_per_step / 1e6:.1f}M multiply-adds gains nothing "
                     "from a second")
        free = 1
    return Choice(max(1, free), ", ".join(parts))


def step_work(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
              device: torch.device) -> float:
    """Multiply-adds of one training step on the CPU (0 elsewhere: threads do not matter);
    unknown (a model that fails on zeros) is large."""
    if device.type != "cpu":
        return 0.0
    try:
        return float(multiply_adds(model, input_shape) * batch_size)
    except Exception:
        return math.inf


def use(setting: int | str, device: torch.device, work_per_step: float) -> int:
    """Set this process's threads for the next epoch on ``device``; the count. Asked before
    every epoch, so a trial gives cores up to work that starts beside it (and takes them back)."""
    if device.type != "cpu":
        return torch.get_num_threads()
    count = choose(setting, work_per_step).threads
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    return count


def describe(setting: int | str) -> str:
    """The start-up line: how threads are chosen in this run."""
    fixed = _fixed(setting)
    if fixed is not None:
        return f"CPU threads: {fixed[0]} per trial, fixed by {fixed[1]}"
    choice = choose(setting, math.inf)
    return (f"CPU threads: up to {choice.threads} per trial ({choice.why}; 1 for a step under "
            f"{SMALL_WORK / 1e6:.0f}M multiply-adds); trainer.threads or {FIXED_VARIABLE} "
            "fixes it")
