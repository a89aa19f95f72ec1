"""Several worker processes on one machine sharing one study.

Each worker is ``tunecli resume NAME --worker`` in its own process (and process group), so a
worker is exactly what a second machine would run; the budget check in ``study.run`` makes them
stop together at ``n_trials`` finished trials. GPUs are shared out through
``CUDA_VISIBLE_DEVICES``; each worker's trials take their share of the cores.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from tunecli.errors import EXIT_INTERRUPTED, SpecError

__all__ = ["plan", "problem", "run_workers"]


def plan(workers: int | None, devices: str | None, per_device: int) -> list[dict[str, str]]:
    """One environment per worker: which GPU it sees and how many workers share its CPU."""
    gpu_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else []
    if gpu_list and not all(d.isdigit() for d in gpu_list):
        raise SpecError(f"'{devices}' is not a list of GPU numbers", source="--devices",
                        fix="Write e.g. --devices 0,1.")
    count = workers if workers is not None else max(1, len(gpu_list) * per_device)
    if count < 1:
        raise SpecError("needs at least 1 worker", source="--workers", fix="Write --workers 2.")
    from tunecli.trainer.threads import SHARE_VARIABLE  # torch: imported when workers start

    envs = []
    for i in range(count):
        env = {SHARE_VARIABLE: str(count)}  # each worker's trials take their share of cores
        if gpu_list:
            env["CUDA_VISIBLE_DEVICES"] = gpu_list[(i // per_device) % len(gpu_list)]
        envs.append(env)
    return envs


def run_workers(name: str, url: str, envs: list[dict[str, str]], extra_args: list[str],
                on_line: Callable[[str], None] | None = None,
                on_tick: Callable[[], None] | None = None) -> list[int]:
    """Start the workers, forward Ctrl-C/SIGTERM to them, wait; their exit codes (negative:
    ended by that signal; EXIT_INTERRUPTED in the list when the user interrupted).

    ``on_line``: each line a worker prints (its trial lines), so the parent shows them above
    its own live view; ``on_tick``: called about once a second while they run (the view)."""
    command = [sys.executable, "-m", "tunecli", "resume", name, "--storage", url, "--worker",
               *extra_args]
    piped = {"stdout": subprocess.PIPE, "text": True, "bufsize": 1} if on_line else {}
    unbuffered = {"PYTHONUNBUFFERED": "1"} if on_line else {}  # lines as they are printed
    procs = [subprocess.Popen(command, env={**os.environ, **env, **unbuffered},
                              start_new_session=True, **piped)  # type: ignore[call-overload]
             for env in envs]
    readers = [threading.Thread(target=_relay, args=(proc.stdout, on_line), daemon=True)
               for proc in procs if on_line is not None and proc.stdout is not None]
    for reader in readers:
        reader.start()
    interrupted = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            running = [proc for proc in procs if proc.poll() is None]
            if not running:
                break
            if on_tick is not None:
                on_tick()
            # a signal runs `forward`, then the wait goes on (PEP 475)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running[0].wait(timeout=_TICK_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for reader in readers:
        reader.join()
    codes = [proc.returncode for proc in procs]
    return [*codes, EXIT_INTERRUPTED] if interrupted else codes


_TICK_SECONDS = 1.0


def _relay(stream: Any, on_line: Callable[[str], None]) -> None:
    for line in stream:
        on_line(line.rstrip("\n"))


def problem(codes: list[int], counts: dict[str, int], n_trials: int | None,
            may_end_early: bool) -> tuple[str, bool]:
    """What went wrong in a run with workers ("" if nothing), and whether the run failed.

    A worker killed by a signal has a negative exit code, so no "worst code" arithmetic: each
    code is read for what it says. The run failed when the budget, checked in the storage
    itself, was not reached (``may_end_early``: a timeout or an exhausted grid may end it short
    of ``n_trials`` when no worker failed); a dead worker whose trial the others finished is
    only worth a warning.
    """
    reasons = []
    for index, code in enumerate(codes):
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            reasons.append(f"worker {index + 1} was killed by {name}")
        elif code:
            reasons.append(f"worker {index + 1} exited with code {code}")
    met = n_trials is not None and counts["finished"] >= n_trials
    failed = not met and (bool(reasons) or (n_trials is not None and not may_end_early))
    if failed and n_trials is not None:
        reasons.insert(0, f"{counts['finished']} of {n_trials} trials finished")
    return "; ".join(reasons), failed
