"""The command runner: any program, ``trainer.command: "python train.py --lr {lr}"``, one
process per trial.

The command is split as a shell would split it, then each word's ``{name}`` is replaced (a
value never splits a word; no shell runs); ``python`` is the Python tunecli runs in. The
process starts in the study file's folder with the trial in its environment
(``TUNECLI_PARAMS`` as JSON, ``TUNECLI_TRIAL_DIR``, ``TUNECLI_RESUME_EPOCH``,
``TUNECLI_DEVICE``, ``TUNECLI_SEED``, ``TUNECLI_EPOCHS``, ``TUNECLI_METRICS_FILE``). It
reports each epoch as a JSON line on standard output, or in the file
``TUNECLI_METRICS_FILE`` names: ``{"epoch": 3, "val_accuracy": 0.91}``; a JSON line without
``epoch`` gives the final metrics. Everything else it prints goes to the trial's log file
(``.tunecli/NAME/logs/trial-N.log`` beside the storage; its path is the trial's
``log_file``). A pruned, cut or interrupted trial's process group gets SIGTERM, then SIGKILL
after ``trainer.stop_grace`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna

from tunecli import attrs
from tunecli.engine.search.runners.own_code import OwnTrial
from tunecli.errors import SpecError, TrialFailed

if TYPE_CHECKING:
    from tunecli.engine.search.kit import RunnerKit
    from tunecli.spec.models import StudySpec

__all__ = ["check", "train"]

# "python" in a command is the Python tunecli runs in (its environment's packages), as a
# user who installed both in one environment expects; give a path for another one.
_PYTHON = ("python", "python3")
_ERROR_LINES = 5        # the last lines of standard error a failed trial's reason quotes
_POLL = 0.2             # seconds between looks at the metrics file and the trial's time


def check(spec: StudySpec) -> None:
    """The command's program exists (on PATH, or a file beside the study): a SpecError
    otherwise, before anything runs."""
    command = spec.trainer.command
    assert command is not None
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise SpecError(f"cannot split the command ({exc})", path="trainer.command",
                        fix="Close the quotes.") from None
    if not words:
        raise SpecError("the command is empty", path="trainer.command",
                        fix='Write the program and its arguments, e.g. "python train.py".')
    program = words[0]
    beside = Path(spec.base_dir or ".") / program
    if "{" in program or shutil.which(program) or ("/" in program and beside.is_file()):
        return
    raise SpecError(f"program {program!r} is not on PATH", path="trainer.command",
                    fix="Install it, give its path, or activate the environment that has it.")


def train(kit: RunnerKit, trial: optuna.Trial, params: dict[str, Any]) -> float | list[float]:
    """Run the command for one trial: its value(s); what stopped it is raised."""
    own = OwnTrial(kit, trial, params)
    log_path = kit.log_file(trial)
    metrics_file = own.checkpoint_dir / f"trial-{trial.number}.metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    trial.set_user_attr(attrs.LOG_FILE, str(log_path))
    words = [word.format_map(own.fields()) for word in shlex.split(kit.spec.trainer.command
                                                                     or "")]
    if words[0] in _PYTHON:
        words[0] = sys.executable
    env = {**os.environ, **own.environment(), "TUNECLI_METRICS_FILE": str(metrics_file),
           "PYTHONUNBUFFERED": "1"}
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(words)}\n")
        log.flush()
        try:
            process = subprocess.Popen(words, cwd=kit.spec.base_dir or None, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, bufsize=1,
                                       start_new_session=True)
        except OSError as exc:
            raise TrialFailed(f"cannot start {words[0]!r}: {exc.strerror}") from None
        trial.set_user_attr(attrs.PID, process.pid)
        watch = _Watch(process, log, metrics_file)
        try:
            with kit.signals.interruptible():
                final = _follow(watch, own)
        except BaseException:
            _stop(process, kit.spec.trainer.stop_grace, log)
            raise
        finally:
            watch.close()
            own.store_history()
    if watch.problems:
        trial.set_user_attr(attrs.OUTPUT_PROBLEMS, watch.problems[:5])
    code = process.returncode
    if code != 0:
        said = " / ".join(watch.errors) or "nothing on standard error"
        raise TrialFailed(f"the command exited with code {code}: {said}")
    if not own.last and not final:
        raise TrialFailed(f"the command printed no metric: print a JSON line after each "
                          f"epoch, e.g. {{\"epoch\": 1, \"{own.metric}\": 0.9}} (or write it "
                          f"to the file $TUNECLI_METRICS_FILE names)")
    return own.finish(kit, final)


def _follow(watch: _Watch, own: OwnTrial) -> dict[str, float] | None:
    """Report each epoch the process prints until it ends; its final metrics, if any."""
    final: dict[str, float] | None = None
    while True:
        try:
            record = watch.records.get(timeout=_POLL)
        except queue.Empty:
            record = None
        if record is None:  # a pause, or an output closed
            watch.read_file()
            own.check_time()
            if watch.ended():
                return final
            continue
        epoch = record.pop("epoch", None)
        if epoch is None:
            final = {**(final or {}), **record}
        else:
            own.report(epoch, **record)


class _Watch:
    """The process's outputs, read by threads: metrics records in a queue, everything else in
    the log; the last lines of standard error kept for a failure's reason."""

    def __init__(self, process: subprocess.Popen[str], log: TextIO, metrics_file: Path) -> None:
        self.process = process
        self.log = log
        self.lock = threading.Lock()
        self.records: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.errors: deque[str] = deque(maxlen=_ERROR_LINES)
        self.problems: list[str] = []
        self.metrics_file = metrics_file
        self.file_offset = 0
        self.file_lines = 0
        self.readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                        for stream, name in ((process.stdout, "stdout"),
                                             (process.stderr, "stderr"))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: Any, name: str) -> None:
        for number, line in enumerate(stream, 1):
            text = line.rstrip("\n")
            if name == "stdout" and text.lstrip().startswith("{") \
                    and self._record(text, f"standard output line {number}"):
                continue
            with self.lock:
                self.log.write(f"{text}\n" if name == "stdout" else f"[stderr] {text}\n")
                self.log.flush()
            if name == "stderr" and text.strip():
                self.errors.append(text.strip())
        self.records.put(None)  # this output closed: the process is ending

    def _record(self, text: str, where: str) -> bool:
        """Queue a metrics record; a line that is not one is named and logged, never fatal."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            self._problem(f"{where}: not JSON ({exc.msg}), ignored")
            return False
        if not isinstance(record, dict):
            self._problem(f"{where}: not a JSON object, ignored")
            return False
        self.records.put(record)
        return True

    def _problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)
            self.log.write(f"[tunecli] {text}\n")
            self.log.flush()

    def read_file(self) -> None:
        """New whole lines of the metrics file, if the program writes one."""
        try:
            with self.metrics_file.open(encoding="utf-8") as file:
                file.seek(self.file_offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        end = chunk.rfind("\n") + 1
        self.file_offset += len(chunk[:end].encode("utf-8"))
        for line in chunk[:end].splitlines():
            self.file_lines += 1
            if line.strip():
                self._record(line, f"{self.metrics_file.name} line {self.file_lines}")

    def ended(self) -> bool:
        """The process exited, its outputs are read and every record was taken."""
        if any(r.is_alive() for r in self.readers):
            return False
        try:
            self.process.wait(timeout=_POLL)
        except subprocess.TimeoutExpired:
            return False
        self.read_file()
        return self.records.empty()

    def close(self) -> None:
        for reader in self.readers:
            reader.join(timeout=5)


def _stop(process: subprocess.Popen[str], grace: float, log: TextIO) -> None:
    """SIGTERM to the trial's process group, SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with contextlib.suppress(ValueError):
        log.write(f"[tunecli] killed after {grace:g} s without exiting on SIGTERM\n")
