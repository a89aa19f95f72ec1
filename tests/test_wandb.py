"""--wandb: one Weights & Biases run per trial, written offline and read back from its files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.conftest import finished, stored

wandb = pytest.importorskip("wandb")
_BLOCK, _HEADER = 32768, 7  # the .wandb file is a LevelDB-style log after a 7-byte header


def records(path: Path) -> list[Any]:
    """Every record of an offline run's ``.wandb`` file, as W&B's own protobuf messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, pending = [], _HEADER, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if length == 0 and kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _key(item: Any) -> str:
    return str(item.key or "/".join(item.nested_key))


def _value(item: Any) -> Any:
    kind = item.WhichOneof("value")  # typed since wandb 0.2x, JSON before
    if kind is None:
        return json.loads(item.value_json)
    return None if kind == "none" else json.loads(item.json) if kind == "json" else getattr(
        item, kind)


def read_run(path: Path) -> dict[str, Any]:
    run: dict[str, Any] = {"history": {}, "summary": {}, "config": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, group=record.run.run_group,
                       project=record.run.project)
            run["config"].update({_key(i): json.loads(i.value_json)
                                  for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({_key(i): json.loads(i.value_json)
                                  for i in record.config.update})
        elif kind == "history":
            row = run["history"].setdefault(record.history.step.num, {})
            row.update({_key(i): _value(i) for i in record.history.item})
        elif kind == "summary":
            run["summary"].update({_key(i): json.loads(i.value_json)
                                   for i in record.summary.update})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def test_offline_runs_hold_each_trial(cli, write_study, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    result = cli("search", write_study(), "--wandb", "tuning")
    assert result.exit_code == 0, result.output
    trials = stored()
    files = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    runs = {run["name"]: run for run in map(read_run, files)}
    assert set(runs) == {f"tiny/trial-{t.number:04d}" for t in trials}
    for trial in trials:
        run = runs[f"tiny/trial-{trial.number:04d}"]
        assert run["group"] == "tiny" and run["project"] == "tuning"
        assert {k: run["config"][k] for k in trial.params} == trial.params
        assert run["config"]["trial"] == trial.number
        epochs = sorted(run["history"])
        assert epochs == sorted(trial.intermediate_values)
        assert [run["history"][e]["val_accuracy"] for e in epochs] == pytest.approx(
            [trial.intermediate_values[e] for e in epochs])
        assert {"train_loss", "val_loss", "epoch"} <= set(run["history"][epochs[0]])
        state = trial.state.name.lower()
        assert run["summary"]["state"] == state and run["summary"]["epochs"] == len(epochs)
        expected = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else \
            trial.intermediate_values[max(trial.intermediate_values)]
        assert run["summary"]["value"] == pytest.approx(expected)
        assert run["exit_code"] == 0


def test_missing_wandb_stops_before_anything_runs(cli, write_study, tmp_path: Path,
                                                  monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    result = cli("search", write_study(), "--wandb", "tuning")
    assert result.exit_code == 2
    assert "--wandb needs the wandb package" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "tunecli.db").exists()


def test_online_without_a_key_stops_before_anything_runs(write_study, tmp_path: Path,
                                                         subprocess_env) -> None:
    """W&B's default (online) and no key anywhere W&B looks: exit 2, one line, nothing stored.
    A real process, as W&B reads its settings once per process; nothing reaches the network."""
    from tests.conftest import tunecli_command

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("WANDB_")}
    env.update({"HOME": str(home), "NETRC": str(home / ".netrc"), "WANDB_MODE": "online",
                "WANDB_CONFIG_DIR": str(home / "wandb-config"), "WANDB_DIR": str(tmp_path)})
    result = subprocess.run([*tunecli_command(), "search", str(write_study()), "--wandb",
                             "tuning"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "wandb login" in lines[0] and "WANDB_MODE=offline" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "tunecli.db").exists()


class _FailingTracker:
    """A tracker whose server went away after the first trial."""

    calls = 0

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        type(self).calls += 1
        if type(self).calls > 1:
            raise ConnectionError("the W&B server went away")

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...

    def trial_finished(self, number: int, state: str, value: float | None) -> None: ...

    def discard(self, number: int) -> None: ...


def test_a_tracker_that_fails_mid_study_warns_once_and_the_study_goes_on(
        cli, write_study, monkeypatch) -> None:
    from tunecli.engine import tracking

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(tracking, "WandbLog", lambda *args: _FailingTracker())
    result = cli("search", write_study(), "--wandb", "tuning")
    assert result.exit_code == 0, result.output
    assert result.output.count("--wandb stopped logging (ConnectionError: the W&B server went "
                               "away)") == 1
    assert finished(stored()) == 6
