"""Your own training code as trials: a function (``trainer.function``) and any program
(``trainer.command``), on the one trial driver. Programs here are small Python scripts the
tests write; they never sleep to wait for tunecli, only to be stopped by it."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import stored, tunecli_command, wait_for_file

PROGRAM = textwrap.dedent('''\
    import json, os, signal, sys, time
    mode, lr = sys.argv[1], float(sys.argv[2])
    folder = os.environ["TUNECLI_TRIAL_DIR"]
    with open(os.path.join(folder, "resume-" + os.environ["TUNECLI_TRIAL"]), "w") as f:
        f.write(os.environ["TUNECLI_RESUME_EPOCH"])
    with open(".cuda", "w") as f:  # then renamed: a reader never sees half a file
        f.write(f"{os.getppid()} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")
    os.replace(".cuda", "cuda-" + os.environ["TUNECLI_TRIAL"])
    if mode == "meet":  # hold until three processes train a trial each
        while len({open(f).read().split()[0] for f in os.listdir(".")
                   if f.startswith("cuda-")}) < 3:
            time.sleep(0.05)
    if mode == "fail":
        print("the data file is missing", file=sys.stderr)
        sys.exit(1)
    if mode == "silent":
        print("hello")
        sys.exit(0)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for epoch in range(int(os.environ["TUNECLI_RESUME_EPOCH"]) + 1,
                       int(os.environ["TUNECLI_EPOCHS"]) + 1):
        if mode == "gate" and epoch == 2:
            while not os.path.exists("gate"):  # the test opens it once the time limit passed
                time.sleep(0.05)
        accuracy = 1 - abs(lr - 0.01) - 0.1 / epoch
        print(f"plain text of epoch {epoch}")
        print("{not json")
        print(json.dumps({"epoch": epoch, "val_accuracy": accuracy, "val_loss": 1 - accuracy}),
              flush=True)
        if accuracy < 0.5:
            time.sleep(600)  # a bad trial: it waits to be pruned (and stopped)
''')

STUDY = '''\
name: own
metric: val_accuracy
trainer:
  command: "python prog.py {mode} {lr}"
  epochs: 4
  stop_grace: 0.5
space:
  mode: {value: MODE}
  lr: {float: [0.001, 0.02]}
sampler: {type: tpe, seed: 0}
pruner: {type: median, n_startup_trials: 2}
budget: {n_trials: 4}
'''

FUNCTION = textwrap.dedent('''\
    def train(params, trial):
        with open(trial.checkpoint_dir / "resume", "w") as f:
            f.write(str(trial.resume_epoch))
        for epoch in range(trial.resume_epoch + 1, trial.epochs + 1):
            if params["lr"] > 0.5:
                raise ValueError("lr too large for this model")
            accuracy = 1 - abs(params["lr"] - 0.01) - 0.1 / epoch
            try:
                trial.report(epoch, val_accuracy=accuracy)
            except Exception:
                assert trial.should_stop
                raise
''')


def _study(tmp_path: Path, mode: str = "normal", **changes: str) -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    text = STUDY.replace("MODE", mode)
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "own.yaml"
    path.write_text(text)
    return path


def _bad_first(tmp_path: Path, lr: float = 0.6) -> Path:
    """Two good configurations, then one the median pruner stops after its first epoch."""
    path = tmp_path / "first.yaml"
    path.write_text(f"- {{lr: 0.01}}\n- {{lr: 0.012}}\n- {{lr: {lr}}}\n")
    return path


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_command_trials_report_each_epoch_and_a_pruned_ones_process_is_stopped(
        cli, tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.write_text(study.read_text().replace("lr: {float: [0.001, 0.02]}",
                                               "lr: {float: [0.001, 0.7]}"))
    result = cli("search", study, "--enqueue", _bad_first(tmp_path))
    assert result.exit_code == 0, result.output
    trials = stored(name="own")
    assert [t.state.name for t in trials[:3]] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 4
    pruned = trials[2]
    assert list(pruned.intermediate_values) == [1]
    assert _gone(pruned.user_attrs["pid"])  # it slept after epoch 1: tunecli stopped it
    best = trials[0]
    assert list(best.intermediate_values) == [1, 2, 3, 4]
    assert best.value == pytest.approx(1 - 0.1 / 4)
    assert [row["epoch"] for row in best.user_attrs["history"]] == [1, 2, 3, 4]
    log = Path(best.user_attrs["log_file"]).read_text()
    assert "prog.py normal 0.01" in log and "plain text of epoch 4" in log
    assert "standard output line 2: not JSON" in log  # named with its line, and ignored
    assert best.user_attrs["output_problems"][0].startswith("standard output line 2")


def test_a_program_that_ignores_sigterm_is_killed_after_the_grace(cli, tmp_path: Path) -> None:
    study = _study(tmp_path, "stubborn")
    study.write_text(study.read_text().replace("[0.001, 0.02]", "[0.001, 0.7]"))
    result = cli("search", study, "--enqueue", _bad_first(tmp_path), "--n-trials", "3")
    assert result.exit_code == 0, result.output
    pruned = stored(name="own")[2]
    assert pruned.state.name == "PRUNED"
    assert _gone(pruned.user_attrs["pid"])
    assert "killed after 0.5 s without exiting on SIGTERM" in \
        Path(pruned.user_attrs["log_file"]).read_text()


@pytest.mark.parametrize(("mode", "reason"), [
    ("fail", "the command exited with code 1: the data file is missing"),
    ("silent", "the command printed no metric: print a JSON line after each epoch, e.g. "
               '{"epoch": 1, "val_accuracy": 0.9}')])
def test_a_program_that_fails_or_reports_nothing_fails_its_trial(cli, tmp_path: Path,
                                                                  mode: str, reason: str) -> None:
    result = cli("search", _study(tmp_path, mode), "--n-trials", "2")
    assert result.exit_code == 1  # no trial completed
    trials = stored(name="own")
    assert {t.state.name for t in trials} == {"FAIL"}
    assert trials[0].user_attrs["fail_reason"].startswith(reason)
    assert reason.split(":")[0] in result.output


def test_a_metric_never_reported_fails_the_trial_naming_what_was(cli, tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.write_text(study.read_text().replace("metric: val_accuracy", "metric: val_f1"))
    result = cli("search", study, "--n-trials", "1")
    assert result.exit_code == 1
    reason = stored(name="own")[0].user_attrs["fail_reason"]
    assert "epoch 1 reported val_accuracy, val_loss but not 'val_f1'" in reason


def test_a_function_trial_is_pruned_fails_and_completes_as_built_in_ones(
        cli, tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(FUNCTION)
    study = _study(tmp_path)
    study.write_text(study.read_text()
                     .replace('command: "python prog.py {mode} {lr}"',
                              "function: mine.py:train")
                     .replace("[0.001, 0.02]", "[0.001, 0.7]")
                     .replace("n_trials: 4", "n_trials: 5"))
    configs = tmp_path / "first.yaml"
    configs.write_text("- {lr: 0.01}\n- {lr: 0.012}\n- {lr: 0.4}\n- {lr: 0.6}\n")
    result = cli("search", study, "--enqueue", configs)
    assert result.exit_code == 0, result.output
    trials = stored(name="own")
    assert [t.state.name for t in trials[:4]] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].value == pytest.approx(1 - 0.1 / 4)
    assert trials[3].user_attrs["fail_reason"] == "ValueError: lr too large for this model"
    assert "fail" in result.output and "lr too large" in result.output


@pytest.mark.parametrize(("change", "words"), [
    (("{lr}", "{learning_rate}"), "trainer.command: {learning_rate} is not a parameter of the "
                                  "space. Did you mean 'lr'?"),
    (("python prog.py", "no-such-program-here"), "trainer.command: program "
                                                 "'no-such-program-here' is not on PATH"),
    (('command: "python prog.py {mode} {lr}"', "function: mine.py:missing"),
     "trainer.function: mine.py has no function 'missing'"),
    (('command: "python prog.py {mode} {lr}"', "function: mine.py:one_argument"),
     "trainer.function: mine.py:one_argument cannot be called as train(params, trial)"),
    (("  epochs: 4", "  epochs: 4\n  model: cnn"), "trainer.model: is a setting of the "
                                                   "built-in trainer"),
])
def test_bad_own_code_is_one_line_before_anything_is_stored(cli, tmp_path: Path,
                                                           change: tuple[str, str],
                                                           words: str) -> None:
    (tmp_path / "mine.py").write_text("def one_argument(params):\n    pass\n")
    study = _study(tmp_path, **{change[0]: change[1]})
    result = cli("search", study)
    assert result.exit_code == 2
    assert words in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "tunecli.db").exists()


def test_tunecli_train_of_a_command_study_says_what_to_run_instead(cli, tmp_path: Path) -> None:
    assert cli("search", _study(tmp_path), "--n-trials", "1").exit_code == 0
    result = cli("train", "own")
    assert result.exit_code == 2
    assert "is trained by trainer.command, which tunecli train cannot retrain" in result.output


def _past_the_limit(url: str, name: str, seconds: float) -> bool:
    """Whether a trial stored its first epoch, ``seconds`` after it started (the run's time
    limit began before the trial)."""
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials()
    except KeyError:
        return False
    return any(t.intermediate_values and t.datetime_start is not None
               and (datetime.datetime.now() - t.datetime_start).total_seconds() > seconds
               for t in trials)


def test_the_time_limit_cuts_a_command_trial_and_resume_continues_it(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    study = _study(tmp_path, "gate", **{"n_trials: 4": "n_trials: 1",
                                        "type: tpe": "type: random"})
    search = subprocess.Popen([*tunecli_command(), "search", str(study), "--timeout", "1s"],
                              env=subprocess_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = "sqlite:///tunecli.db"
    trial_folder = tmp_path / ".tunecli" / "own" / "checkpoints" / "trial-0"
    wait_for_file(trial_folder, search)  # the storage made (no second process creating it)
    while not _past_the_limit(url, "own", 1.5):
        assert search.poll() is None, search.stdout.read()  # type: ignore[union-attr]
        time.sleep(0.05)
    (tmp_path / "gate").write_text("")  # epoch 2 ends past the time limit: the trial is cut
    out, _ = search.communicate(timeout=300)
    assert search.returncode == 0, out
    assert "stopped after its last stored epoch" in out
    cut = stored(name="own")[0]
    assert cut.state.name == "FAIL" and list(cut.intermediate_values) == [1, 2]
    assert _gone(cut.user_attrs["pid"])
    resumed = subprocess.run([*tunecli_command(), "resume", "own"], env=subprocess_env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    retry = [t for t in stored(name="own") if t.state.name == "COMPLETE"]
    assert len(retry) == 1 and list(retry[0].intermediate_values) == [3, 4]
    folder = tmp_path / ".tunecli" / "own" / "checkpoints" / "trial-0"
    assert (folder / f"resume-{retry[0].number}").read_text() == "2"


def test_workers_run_command_trials_to_exactly_the_budget_each_with_its_gpu(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    study = _study(tmp_path, **{"n_trials: 4": "n_trials: 8"})
    result = subprocess.run([*tunecli_command(), "search", str(study), "--devices", "0,1",
                             "--trials-per-device", "2"], env=subprocess_env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored(name="own")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 8
    seen: dict[str, set[str]] = {}
    for path in tmp_path.glob("cuda-*"):
        worker, device = path.read_text().split()
        seen.setdefault(worker, set()).add(device)
    assert seen and all(len(devices) == 1 for devices in seen.values())
    assert set().union(*seen.values()) <= {"0", "1"}
    assert len(seen) <= 4


def test_the_examples_run_as_a_command_and_as_a_function_with_the_same_values(
        cli, tmp_path: Path) -> None:
    examples = Path(__file__).parents[1] / "examples" / "own_code"
    values = {}
    for kind in ("command", "function"):
        result = cli("search", examples / f"{kind}.yaml", "--n-trials", "2",
                     "--set", "trainer.epochs=2")
        assert result.exit_code == 0, result.output
        values[kind] = [t.value for t in stored(name=f"digits-{kind}")]
    assert values["command"] == pytest.approx(values["function"])
    assert all(v > 0.5 for v in values["command"])


def test_several_objectives_take_the_metrics_your_code_reports(cli, tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.write_text(study.read_text().replace(
        "metric: val_accuracy\n", "objectives:\n  - {metric: val_accuracy, direction: maximize}\n"
                                  "  - {metric: val_loss, direction: minimize}\n")
                     .replace("[0.001, 0.02]", "[0.001, 0.7]"))
    result = cli("search", study, "--n-trials", "3", "--enqueue", _bad_first(tmp_path))
    assert result.exit_code == 0, result.output
    good, also_good, bad = stored(name="own")
    for trial in (good, also_good):
        accuracy, loss = trial.values
        assert loss == pytest.approx(1 - accuracy)
    # More accurate with a lower loss after one epoch: the third trial is dominated, and stopped
    assert bad.state.name == "PRUNED" and bad.user_attrs["epochs_done"] == 1
    assert sorted(bad.user_attrs["pruned_by"]) == [good.number, also_good.number]
    assert _gone(bad.user_attrs["pid"])


def test_constraints_bound_the_metrics_your_code_reports(cli, tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.write_text(study.read_text() + "constraints:\n  - val_loss <= 0.026\n")
    result = cli("search", study, "--enqueue", _bad_first(tmp_path, lr=0.011))
    assert result.exit_code == 0, result.output
    trials = {t.number: t for t in stored(name="own")}
    met, broken = trials[0].system_attrs, trials[2].system_attrs  # lr 0.01, 0.011
    assert met["constraints:val_loss <= 0.026"] <= 0 < broken["constraints:val_loss <= 0.026"]

    study.write_text(study.read_text().replace("val_loss <= 0.026", "val_f1 >= 0.5")
                     .replace("name: own", "name: own2"))
    result = cli("search", study, "--n-trials", "1")
    assert result.exit_code == 1
    assert ("it reported val_accuracy, val_loss but not 'val_f1', bound by the constraint "
            "'val_f1 >= 0.5'") in result.output


@pytest.mark.slow
def test_a_search_and_two_workers_behind_serve_run_command_trials_to_the_budget(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    from tests.test_cluster import _free_port, _serve

    study = _study(tmp_path, "meet", **{"n_trials: 4": "n_trials: 6"})
    port = _free_port()
    server = _serve(f"sqlite:///{tmp_path / 'tunecli.db'}", port, subprocess_env)
    proxy = f"grpc://127.0.0.1:{port}"
    try:  # the workers wait for the study; the search creates it and trains beside them
        processes = [subprocess.Popen([*tunecli_command(), *command], env=subprocess_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for command in (["worker", "own", "--storage", proxy, "--wait", "5m"],
                                     ["worker", "own", "--storage", proxy, "--wait", "5m"],
                                     ["search", str(study), "--storage", proxy])]
        outputs = [(p.wait(timeout=600), p.stdout.read() if p.stdout else "")
                   for p in processes]
        assert all(code == 0 for code, _ in outputs), outputs
    finally:
        server.terminate()
        server.wait(timeout=60)
    trials = stored(name="own")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 6
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert len({t.user_attrs.get("worker") for t in trials}) == 3
    assert all(Path(t.user_attrs["log_file"]).is_file() for t in trials)


def test_a_command_study_runs_without_importing_torch(tmp_path: Path,
                                                      subprocess_env: dict[str, str]) -> None:
    """A program that may not use torch does not pay its import (a second of every start)."""
    study = _study(tmp_path)
    check = ("import sys\nfrom tunecli.cli import main\nsys.argv = ['tunecli', 'search', "
             f"{str(study)!r}]\ntry:\n    main()\nfinally:\n"
             "    print('torch imported:', 'torch' in sys.modules)\n")
    ran = subprocess.run([sys.executable, "-c", check], env=subprocess_env, capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "torch imported: False" in ran.stdout
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in stored(name="own")) == 4
