"""Trust the search state: no configuration drawn twice by a restart, a worker or a machine;
options and --set agree; a study runs again from any folder; workers that die are noticed;
one definition of the counts; read-only commands create nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.conftest import (
    TINY_STUDY,
    finished,
    gate_env,
    gated,
    grid_study,
    stored,
    stored_spec,
    tunecli_command,
    wait_for_file,
    with_sampler,
)
from tests.test_trainer import fake_mnist
from tunecli.engine.store.recovery import pid_alive
from tunecli.engine.strategy.hyperopt_sampler import HyperoptTPESampler
from tunecli.engine.strategy.samplers import SAMPLER_FACTORIES as SAMPLERS
from tunecli.spec import ParamSpec

FAST = TINY_STUDY.replace("epochs: 3", "epochs: 1").replace("n_samples: 300", "n_samples: 120")


def points(trials: list, retries: bool = False) -> list[tuple]:
    """Each trial's configuration (a deliberate retry of a lost trial, and a worker's surplus
    trial, which draws nothing, left out)."""
    return [tuple(sorted(t.params.items())) for t in trials
            if not t.user_attrs.get("surplus")
            and (retries or ("retry_of" not in t.user_attrs and t.state.name != "WAITING"))]


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "grid"])
def test_resume_draws_no_configuration_twice(cli, write_study, name: str) -> None:
    path = write_study(with_sampler(FAST, name))
    assert cli("search", path, "--n-trials", "3").exit_code == 0
    result = cli("resume", "tiny", "--n-trials", "6")
    assert result.exit_code == 0, result.output
    drawn = points(stored())
    assert len(drawn) == 6 and len(set(drawn)) == 6, drawn


def test_a_run_from_scratch_is_reproducible_from_its_seed(cli, write_study) -> None:
    path = write_study(FAST)
    assert cli("search", path, "--n-trials", "4").exit_code == 0
    assert cli("search", path, "--n-trials", "4", "--name", "again").exit_code == 0
    assert points(stored()) == points(stored(name="again"))


def test_another_sampler_on_a_stored_study_draws_new_configurations(cli, write_study) -> None:
    path = write_study(with_sampler(FAST, "random"))
    assert cli("search", path, "--n-trials", "3").exit_code == 0
    result = cli("search", path, "--n-trials", "6", "--set", "sampler.type=qmc")
    assert result.exit_code == 0, result.output
    drawn = points(stored())
    assert len(drawn) == 6 and len(set(drawn)) == 6


@pytest.mark.parametrize("name", ["tpe", "random", "qmc", "hyperopt-tpe"])
def test_workers_draw_no_configuration_twice(write_study, tmp_path: Path, subprocess_env,
                                             name: str) -> None:
    path = write_study(gated(with_sampler(FAST, name).replace("n_trials: 6", "n_trials: 9")))
    env = gate_env(subprocess_env, tmp_path / "gate", meet=3)
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "3"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored()
    assert finished(trials) == 9 and len({t.user_attrs["worker"] for t in trials}) == 3
    drawn = points(trials)
    assert len(drawn) == len(set(drawn)), drawn


def test_a_configuration_waiting_to_be_taken_holds_its_place_in_the_budget(write_study) -> None:
    """A fused group enqueues a configuration, then asks for it; a trial another worker created
    in between counts it, or the study finishes one trial past its budget."""
    from tunecli import spec as spec_module
    from tunecli.engine.search.budget import Surplus, take_slot

    spec = spec_module.load(write_study(TINY_STUDY.replace("n_trials: 6", "n_trials: 3")))
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    for value in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.enqueue_trial({"lr": 0.01})  # trial 2: the group's, asked for next
    late = optuna.Trial(study, storage.create_new_trial(
        storage.get_study_id_from_name(study.study_name)))  # trial 3: another worker's
    with pytest.raises(Surplus):
        take_slot(late, spec)
    taken = study.ask()
    assert taken.number == 2 and take_slot(taken, spec) is None
    assert study.get_trials()[late.number].user_attrs == {"surplus": True}


# --- options and --set --------------------------------------------------------------------

@pytest.mark.parametrize(("args", "key", "expected"), [
    (["--set", "budget.n_trials=2"], ("budget", "n_trials"), 2),
    (["--set", "budget.n_trials=3", "--n-trials", "2"], ("budget", "n_trials"), 2),
    (["--set", "budget.timeout=1h"], ("budget", "timeout"), 3600.0),
    (["--set", "budget.timeout=1h", "--timeout", "600"], ("budget", "timeout"), 600.0),
    (["--set", "sampler.seed=7"], ("sampler", "seed"), 7),
    (["--set", "sampler.seed=7", "--seed", "3"], ("sampler", "seed"), 3),
    (["--set", "sampler.seed=null"], ("sampler", "seed"), None),
    (["--set", "trainer.data_root=null"], ("trainer", "data_root"), None),
])
def test_an_option_not_given_leaves_set_alone(cli, write_study, args, key, expected) -> None:
    text = FAST.replace("budget: {n_trials: 6}", "budget: {n_trials: 2}")
    result = cli("search", write_study(text), *args)
    assert result.exit_code == 0, result.output
    spec = stored_spec()
    assert spec[key[0]][key[1]] == expected
    assert finished(stored()) == (spec["budget"]["n_trials"])


def test_set_name_is_used_unless_name_is_given(cli, write_study) -> None:
    path = write_study(FAST)
    assert cli("search", path, "--n-trials", "1", "--set", "name=viaset").exit_code == 0
    assert cli("search", path, "--n-trials", "1", "--set", "name=viaset",
               "--name", "viaoption").exit_code == 0
    assert set(optuna.get_all_study_names("sqlite:///tunecli.db")) == {"viaset", "viaoption"}


# --- from another folder ------------------------------------------------------------------

MODEL = '''
from torch import nn
def build(params, input_shape, n_outputs):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], int(params["hidden"])),
                         nn.ReLU(), nn.Linear(int(params["hidden"]), n_outputs))
'''

PROJECT_STUDY = """\
name: proj
budget: {n_trials: 2}
sampler: {type: random, seed: 0}
pruner: {type: none}
trainer:
  dataset: {name: csv, path: data/table.csv}
  model: models/net.py:build
  epochs: 2
space:
  hidden: {int: [4, 16]}
  lr: {float: [1.0e-3, 1.0e-1], log: true}
"""


def _project(root: Path) -> Path:
    """A study whose model file and CSV are given relative to the study file."""
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "models" / "net.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3))
    rows = ["a,b,c,y"] + [f"{a},{b},{c},{int(a > 0)}" for a, b, c in x]
    (root / "data" / "table.csv").write_text("\n".join(rows))
    (root / "study.yaml").write_text(PROJECT_STUDY)
    return root / "study.yaml"


def test_a_study_runs_again_from_another_folder(cli, tmp_path: Path, monkeypatch) -> None:
    study_file = _project(tmp_path / "project")
    db = tmp_path / "runs.db"
    assert cli("search", study_file, "--storage", db).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("resume", "proj", "--storage", db, "--n-trials", "3")
    assert result.exit_code == 0, result.output
    assert finished(stored(f"sqlite:///{db}", "proj")) == 3
    trained = cli("train", "proj", "--storage", db)
    assert trained.exit_code == 0, trained.output
    assert cli("report", "proj", "--storage", db, "--export", "best.yaml").exit_code == 0
    shutil.move(str(tmp_path / "project"), str(tmp_path / "moved-away-is-fine-for-files"))
    monkeypatch.chdir(tmp_path)
    # the export names absolute files, so it runs from anywhere while they exist
    exported = (elsewhere / "best.yaml").read_text()
    assert "moved-away" not in exported and str(tmp_path / "project" / "models") in exported


def test_search_with_workers_from_another_folder(tmp_path: Path, subprocess_env) -> None:
    study_file = _project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([*tunecli_command(), "search", str(study_file), "--workers", "2",
                             "--n-trials", "3"], capture_output=True, text=True,
                            env=subprocess_env, cwd=elsewhere, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored(f"sqlite:///{elsewhere / 'tunecli.db'}", "proj")
    # a worker's surplus trial (it lost the race for the last slot, trained nothing) is no failure
    assert finished(trials) == 3 and not [t for t in trials if t.state.name == "FAIL"
                                          and not t.user_attrs.get("surplus")]


def test_a_data_root_given_by_option_is_stored(cli, tmp_path: Path, monkeypatch) -> None:
    fake_mnist(tmp_path / "root", "FashionMNIST", compress=False)
    text = (FAST.replace("dataset: {name: synthetic-classification, n_samples: 120, "
                         "n_features: 8, n_classes: 3}", "dataset: fashion-mnist")
            .replace("n_trials: 6", "n_trials: 1"))
    (tmp_path / "fm.yaml").write_text(text)
    result = cli("search", tmp_path / "fm.yaml", "--data-root", tmp_path / "root")
    assert result.exit_code == 0, result.output
    # the printed next commands run as printed, from another folder too, without the option
    assert "tunecli train tiny" in result.output and "tunecli report tiny" in result.output
    monkeypatch.chdir(tmp_path / "root")
    storage = tmp_path / "tunecli.db"
    assert cli("resume", "tiny", "--n-trials", "2", "--storage", storage).exit_code == 0
    assert cli("train", "tiny", "--storage", storage).exit_code == 0
    # and a missing data root names both ways to give one
    missing = cli("search", tmp_path / "fm.yaml", "--name", "other")
    assert missing.exit_code == 2
    assert "--data-root" in missing.output and "TUNECLI_DATA" in missing.output


# --- workers that die ---------------------------------------------------------------------

def kill_and_wait(pid: int) -> None:
    """kill -9, then wait until the process is really dead (gone or a zombie)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while pid_alive(pid):
        assert time.time() < deadline, f"process {pid} survived SIGKILL"
        time.sleep(0.01)


def two_held_workers(write_study, gate: Path, env: dict[str, str]) -> subprocess.Popen:
    """`search --workers 2` whose two first trials both stop mid-training, held by the gate."""
    path = write_study(gated(FAST.replace("n_trials: 6", "n_trials: 2")))
    proc = subprocess.Popen([*tunecli_command(), "search", str(path), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=gate_env(env, gate, meet=2, hold_index="0,1", hold_at=1))
    for index in (0, 1):
        wait_for_file(gate / f"held-{index}", proc)
    return proc


def test_a_killed_worker_is_noticed_and_its_trial_retried(write_study, tmp_path: Path,
                                                          subprocess_env) -> None:
    gate = tmp_path / "gate"
    proc = two_held_workers(write_study, gate, subprocess_env)
    # one worker is killed, the other finishes its trial and goes on
    kill_and_wait(int((gate / "held-0").read_text()))
    (gate / "release-1").touch()
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out  # the budget was met: the survivor retried the trial
    assert "was killed by SIGKILL" in out
    trials = stored()
    assert finished(trials) == 2
    assert [t.user_attrs["fail_reason"][:4] for t in trials if t.state.name == "FAIL"] == ["lost"]
    assert len([t for t in trials if "retry_of" in t.user_attrs]) == 1


def test_workers_killed_before_the_budget_exit_non_zero(write_study, tmp_path: Path,
                                                        subprocess_env) -> None:
    gate = tmp_path / "gate"
    proc = two_held_workers(write_study, gate, subprocess_env)
    for index in (0, 1):
        kill_and_wait(int((gate / f"held-{index}").read_text()))
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 1, out
    assert "0 of 2 trials finished" in out and "tunecli resume tiny" in out
    # resume takes --workers too, and retries both lost trials
    result = subprocess.run([*tunecli_command(), "resume", "tiny", "--workers", "2"],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = stored()
    assert finished(trials) == 2
    assert sorted(t.user_attrs.get("retry_of") for t in trials if t.state.name != "FAIL") == \
        [0, 1]


# --- counts -------------------------------------------------------------------------------

def test_grid_with_workers_lists_exactly_its_points(cli, write_study, subprocess_env) -> None:
    path = write_study(grid_study(widest=10).replace("n_trials: 6", "n_trials: 4"))
    result = subprocess.run([*tunecli_command(), "search", str(path), "--workers", "2"],
                            capture_output=True, text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = cli("list").output
    row = next(line for line in listing.splitlines() if "tiny" in line)
    assert row.split()[:6] == ["tiny", "val_accuracy", "maximize", "4", "0", "4"], listing
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    assert data["counts"]["finished"] == 4 and len(data["trials"]) == 4


# --- hyperopt's quantised values ----------------------------------------------------------

@pytest.mark.parametrize(("entry", "grid"), [
    ({"int": [1, 8], "step": 2}, [1, 3, 5, 7]),
    ({"float": [0.05, 0.5], "step": 0.1}, [0.05, 0.15, 0.25, 0.35, 0.45]),
    ({"int": [2, 5]}, [2, 3, 4, 5]),
])
def test_hyperopt_values_are_on_optunas_grid(entry: dict, grid: list) -> None:
    param = ParamSpec.model_validate(entry)
    sampler = HyperoptTPESampler({"x": param}, seed=0, n_startup_trials=5)
    study = optuna.create_study(sampler=sampler)
    low = grid[0]
    step = grid[1] - grid[0]

    def objective(trial: optuna.Trial) -> float:
        if "int" in entry:
            value = trial.suggest_int("x", *entry["int"], step=entry.get("step", 1))
        else:
            value = trial.suggest_float("x", *entry["float"], step=entry["step"])
        return float(value)

    study.optimize(objective, n_trials=60)
    seen = [t.params["x"] for t in study.trials]
    for value in seen:
        k = (value - low) / step
        assert abs(k - round(k)) < 1e-9 and grid[0] <= value <= grid[-1] + 1e-12, value
    assert sorted({round(v, 9) for v in seen}) == [round(g, 9) for g in grid]


# --- read-only commands -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["list"], ["report", "x"], ["resume", "x"], ["train", "x"],
                                  ["report", "x", "--storage", "other.journal"]])
def test_read_only_commands_create_no_storage(cli, tmp_path: Path, args) -> None:
    result = cli(*args)
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    if args[0] == "list":
        assert result.exit_code == 0 and str(tmp_path / "tunecli.db") in result.output
    else:
        assert result.exit_code == 2
        assert "no study named 'x'" in result.output and str(tmp_path) in result.output


def test_a_storage_path_must_say_what_it_is(cli, write_study, tmp_path: Path) -> None:
    result = cli("search", write_study(), "--storage", "results.txt")
    assert result.exit_code == 2
    assert "results.db" in result.output and "results.journal" in result.output
    assert not (tmp_path / "results.txt").exists()


def test_the_shipped_custom_model_study_resumes_from_another_folder(cli, tmp_path: Path,
                                                                    monkeypatch) -> None:
    study_file = Path(__file__).resolve().parent.parent / "studies" / "custom-model.yaml"
    result = cli("search", study_file, "--n-trials", "1", "--set", "trainer.epochs=1",
                 "--storage", "runs.db")
    assert result.exit_code == 0, result.output
    # the printed next commands name the storage by its absolute path: they run from anywhere
    line = next(x for x in result.output.splitlines() if "train:" in x)
    assert line.split("train:")[1].strip() == \
        f"tunecli train digits-custom-model --storage 'sqlite:///{tmp_path / 'runs.db'}'"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = cli("resume", "digits-custom-model", "--storage", tmp_path / "runs.db",
                  "--n-trials", "2")
    assert resumed.exit_code == 0, resumed.output
    assert finished(stored(f"sqlite:///{tmp_path / 'runs.db'}", "digits-custom-model")) == 2


def test_the_export_holds_what_a_user_would_write(cli, tmp_path: Path) -> None:
    study_file = _project(tmp_path / "project")
    assert cli("search", study_file).exit_code == 0
    assert cli("report", "proj", "--export", "best.yaml").exit_code == 0
    exported = (tmp_path / "best.yaml").read_text()
    # only keys that differ from their defaults: nothing about synthetic data or augmentation
    for meaningless in ("n_samples", "noise", "augment", "eval_batch_size", "split_seed"):
        assert meaningless not in exported
    assert "path: " + str(tmp_path / "project" / "data" / "table.csv") in exported


def test_a_new_study_never_continues_an_old_studys_checkpoints(cli, write_study) -> None:
    """The storage file deleted by hand, its checkpoint folder left: a new study of the same
    name trains its trials from scratch."""
    path = write_study(FAST.replace("n_trials: 6", "n_trials: 2"))
    assert cli("search", path, "--keep-checkpoints", "all", "--fuse", "1").exit_code == 0
    assert list(Path(".tunecli/tiny/checkpoints").glob("trial-*.pt"))
    Path("tunecli.db").unlink()
    assert cli("search", path, "--fuse", "1").exit_code == 0
    assert all(len(t.intermediate_values) == 1 for t in stored())
