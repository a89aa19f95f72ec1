"""Lost trials, and how every view counts trials.

A trial is *lost* when its process stopped before the trial finished: Ctrl-C or SIGTERM (marked
``interrupted``), a killed process or a lost machine (marked ``lost``). A lost trial says nothing
about its configuration, so it is retried with the same parameters (up to ``MAX_RETRIES``
times), continuing from its last checkpoint, and it is counted apart from *failed* trials, whose
configuration did fail (NaN loss, out of memory, an error in user code).

Optuna only fails stale trials by heartbeat (RDB storages, after a grace period), and only when a
worker starts its next trial; a process on the same machine can tell at once that a worker
process is gone, because each trial stores its worker as ``host:pid``. Through Optuna's storage
proxy there is no heartbeat: a trial's process renews a lease instead (a count, every
``LEASE_EVERY`` seconds), and any process of the study that sees a lease unchanged for
``LAPSE_BEATS`` renewals, on its own clock (machines' clocks need not agree), retries the trial.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunecli import attrs
from tunecli.engine.store.optuna_internals import set_trial_user_attr

__all__ = [
    "HOST",
    "LAPSE_BEATS",
    "LEASE_EVERY",
    "MAX_RETRIES",
    "count_trials",
    "cut_waiting",
    "is_lost",
    "kind_of",
    "leased_elsewhere",
    "pid_alive",
    "queue_retries",
    "reap_lost_trials",
    "worker_id",
]

MAX_RETRIES = 3
# The machine a trial's worker names: the host name, or TUNECLI_HOST (containers that share a
# host name but not their processes: a pid seen from one means nothing in the other).
HOST = os.environ.get("TUNECLI_HOST") or socket.gethostname()
LEASE_EVERY = float(os.environ.get("TUNECLI_LEASE_EVERY") or 10.0)  # seconds between renewals
LAPSE_BEATS = 6  # a lease unchanged for this many renewals has lapsed: its machine is gone
# The lease of each other process's trial as this process last saw it change: study and trial
# -> (its count, this process's clock then).
_LEASES_SEEN: dict[tuple[str, int], tuple[object, float]] = {}


def worker_id() -> str:
    """What a trial stores as its worker, so another process can tell whether it still runs."""
    return f"{HOST}:{os.getpid()}"


def is_lost(trial: FrozenTrial) -> bool:
    """Failed because its process stopped, not because of its configuration."""
    return (trial.state == TrialState.FAIL
            and str(trial.user_attrs.get(attrs.FAIL_REASON, "lost")).startswith(attrs.LOST_REASONS))


def kind_of(trial: FrozenTrial) -> str | None:
    """complete | pruned | failed | lost | running | waiting; None for a surplus trial.

    Finished means complete + pruned, everywhere: the budget, progress, report, list and JSON.
    """
    if trial.user_attrs.get(attrs.SURPLUS):
        return None  # a worker lost the race for the last slot; never trained
    if trial.state == TrialState.FAIL:
        return "lost" if is_lost(trial) else "failed"
    return trial.state.name.lower()


def count_trials(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "lost": 0, "running": 0, "waiting": 0}
    for t in trials:
        kind = kind_of(t)
        if kind is not None:
            counts[kind] += 1
    counts["finished"] = counts["complete"] + counts["pruned"]
    return counts


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie (dead, not yet waited for by its parent,
    as a killed worker is until ``search --workers`` reaps it) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all we can know
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def reap_lost_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials whose worker process on this host is gone, or whose lease lapsed on
    another machine; queue their retries."""
    reaped = 0
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    lapsed = {t.number for t in _lapsed(study.study_name, running)}
    for trial in running:
        host, _, pid = str(trial.user_attrs.get(attrs.WORKER, "")).rpartition(":")
        gone = host == HOST and pid.isdigit() and int(pid) != os.getpid() \
            and not pid_alive(int(pid))
        if gone or trial.number in lapsed:
            try:
                set_trial_user_attr(study, trial.number, attrs.FAIL_REASON,
                                    attrs.LOST_WORKER if gone else attrs.LOST_LEASE)
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                reaped += 1
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                pass  # another process reaped it first
    optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials of other hosts
    queue_retries(study)
    return reaped


def leased_elsewhere(trials: Iterable[FrozenTrial]) -> int:
    """Running trials of other processes that renew a lease: this process can tell if their
    machine dies, so it waits for them rather than leave them unwatched."""
    me = worker_id()
    return sum(1 for t in trials if t.state == TrialState.RUNNING
               and attrs.LEASE in t.system_attrs and t.user_attrs.get(attrs.WORKER) != me)


def _lapsed(study_name: str, running: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials of other processes whose lease has not changed for ``LAPSE_BEATS`` renewals."""
    now, me, found = time.monotonic(), worker_id(), []
    for trial in running:
        lease = trial.system_attrs.get(attrs.LEASE)
        if not isinstance(lease, dict) or trial.user_attrs.get(attrs.WORKER) == me:
            continue
        key, beat = (study_name, trial.number), lease.get("beat")
        seen = _LEASES_SEEN.get(key)
        if seen is None or seen[0] != beat:
            _LEASES_SEEN[key] = (beat, now)
        elif now - seen[1] > LAPSE_BEATS * float(lease.get("every") or LEASE_EVERY):
            found.append(trial)
    return found


def cut_waiting(trials: list[FrozenTrial]) -> int:
    """Trials the time limit stopped whose retry waits in the queue (``resume`` continues
    them)."""
    cut = {t.number for t in trials
           if str(t.user_attrs.get(attrs.FAIL_REASON, "")).startswith(attrs.TIME_LIMIT)}
    return sum(1 for t in trials if t.state == TrialState.WAITING
               and t.user_attrs.get(attrs.REPLACES) in cut)


def queue_retries(study: optuna.Study) -> None:
    """Enqueue each lost trial once more with its parameters.

    A retry stores ``retry_of`` (the first trial of the configuration, whose checkpoint it
    continues) and ``replaces`` (the lost trial it stands in for, so it is queued only once).
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(attrs.REPLACES, t.user_attrs.get(attrs.RETRY_OF))
               for t in trials if attrs.RETRY_OF in t.user_attrs}
    attempts: dict[int, int] = {}
    for t in trials:
        if attrs.RETRY_OF in t.user_attrs:
            root = t.user_attrs[attrs.RETRY_OF]
            attempts[root] = attempts.get(root, 0) + 1
    for t in trials:
        if kind_of(t) != "lost":
            continue
        root = t.user_attrs.get(attrs.RETRY_OF, t.number)
        if t.number in retried or attempts.get(root, 0) >= MAX_RETRIES:
            continue
        study.enqueue_trial(t.params, user_attrs={attrs.RETRY_OF: root, attrs.REPLACES: t.number},
                            skip_if_exists=False)
        retried.add(t.number)
        attempts[root] = attempts.get(root, 0) + 1
