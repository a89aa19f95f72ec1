"""The commands as a user runs them: exit codes, messages, stored trials, files written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import (
    TINY_STUDY,
    finished,
    gate_env,
    gated,
    stored,
    stored_spec,
    tunecli_command,
    wait_for_file,
    with_sampler,
)
from tunecli.cli import app


def test_version_and_help(cli) -> None:
    assert cli("--version").output.startswith("tunecli ")
    out = cli("--help").output
    for command in ("search", "resume", "report", "train", "validate", "list", "schema"):
        assert command in out
    # Bracketed notes in option help survive rich markup.
    search_help = cli.runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).output
    assert "[env: TUNECLI_STORAGE; default: sqlite:///tunecli.db]" in search_help
    assert "[env: TUNECLI_DATA]" in search_help


def test_search_report_export_and_run_again(cli, write_study, tmp_path: Path) -> None:
    result = cli("search", write_study())
    assert result.exit_code == 0, result.output
    assert "report: tunecli report tiny" in result.output
    # the budget is met: resume would do nothing, so it is not offered
    assert "Stopped: the budget is met." in result.output
    assert "resume" not in result.output
    assert "Best trial #" in result.output
    assert finished(stored()) == 6

    report = cli("report", "tiny", "--format", "json")
    data = json.loads(report.output)
    assert data["study"] == "tiny" and data["metric"] == "val_accuracy"
    assert data["direction"] == "maximize"
    assert data["counts"]["complete"] + data["counts"]["pruned"] == 6
    assert set(data["best"]) >= {"number", "value", "params"}
    assert len(data["trials"]) == 6
    best = max(t["value"] for t in data["trials"] if t["value"] is not None)
    assert data["best"]["value"] == best

    csv_out = cli("report", "tiny", "--format", "csv").output.splitlines()
    assert csv_out[0].startswith("number,state,value,epochs,duration_s,lr,width,optimizer")
    assert len(csv_out) == 7

    table = cli("report", "tiny").output
    assert "Best trial" in table and "Top" in table

    exported = cli("report", "tiny", "--export", "best.yaml")
    assert exported.exit_code == 0
    best_spec = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best_spec["space"] == {k: {"value": v} for k, v in data["best"]["params"].items()}
    again = cli("search", tmp_path / "best.yaml")
    assert again.exit_code == 0, again.output
    rerun = stored(name="tiny-best")
    assert len(rerun) == 1 and rerun[0].params == {}

    listing = cli("list").output
    assert "tiny" in listing and "tiny-best" in listing


def test_validate_prints_the_space_and_runs_nothing(cli, write_study, tmp_path: Path) -> None:
    result = cli("validate", write_study())
    assert result.exit_code == 0
    assert "float [0.001, 0.1] log" in result.output
    assert "when optimizer = sgd" in result.output
    assert not (tmp_path / "tunecli.db").exists()


def test_schema_is_json(cli) -> None:
    schema = json.loads(cli("schema").output)
    assert schema["title"] == "tunecli study"


def test_overrides_and_resume_to_a_bigger_budget(cli, write_study) -> None:
    path = write_study()
    assert cli("search", path, "--n-trials", "3", "--seed", "5").exit_code == 0
    assert finished(stored()) == 3
    result = cli("resume", "tiny", "--n-trials", "5")
    assert result.exit_code == 0, result.output
    assert finished(stored()) == 5
    # resume at the budget runs nothing more
    assert cli("resume", "tiny").exit_code == 0
    assert finished(stored()) == 5


def test_changed_spec_is_refused_then_forked(cli, write_study) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    changed = write_study(TINY_STUDY.replace("[8, 32]", "[8, 64]"))
    result = cli("search", changed)
    assert result.exit_code == 2
    assert "space.width.int: [8, 32] -> [8, 64]" in result.output
    assert "--name" in result.output
    assert finished(stored()) == 2  # nothing added, nothing lost
    forked = cli("search", changed, "--fork", "--n-trials", "2")
    assert forked.exit_code == 0, forked.output
    assert finished(stored(name="tiny-2")) == 2
    # a bigger budget is the same study: continued, not refused
    assert cli("search", write_study(TINY_STUDY), "--n-trials", "3").exit_code == 0
    assert finished(stored()) == 3


def test_named_storage_and_env(cli, write_study, tmp_path: Path, monkeypatch) -> None:
    journal = tmp_path / "runs.journal"
    assert cli("search", write_study(), "--n-trials", "2", "--storage", journal).exit_code == 0
    assert journal.exists() and not (tmp_path / "tunecli.db").exists()
    monkeypatch.setenv("TUNECLI_STORAGE", str(journal))
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    assert data["counts"]["complete"] + data["counts"]["pruned"] == 2


def test_every_trial_failing_exits_1(cli, write_study) -> None:
    text = TINY_STUDY.replace("{float: [1.0e-3, 1.0e-1], log: true}",
                              "{float: [1.0e+12, 1.0e+13], log: true}")
    text = text.replace("budget: {n_trials: 6}", "budget: {n_trials: 6, max_failures: 2}")
    text = text.replace("[adam, sgd]", "[sgd]")
    result = cli("search", write_study(text))
    assert result.exit_code == 1
    assert "training loss became" in result.output
    assert len(stored()) == 3  # max_failures 2: the third failure stops the study
    # the reports say why, grouped: three failures that differ only in their numbers
    shown = cli("report", "tiny", "--html", "r.html")
    assert shown.exit_code == 0, shown.output
    assert "failed ×3 (e.g. trial #0): the training loss became" in shown.output
    data = json.loads(cli("report", "tiny", "--format", "json").output)
    assert [(g["count"], g["example"]) for g in data["failures"]] == [(3, 0)]
    assert 'id="failures"' in Path("r.html").read_text() and "training loss became" in \
        Path("r.html").read_text()


@pytest.mark.parametrize(("args", "words"), [
    (["report", "nosuch"], "no study named 'nosuch'"),
    (["resume", "nosuch"], "no study named 'nosuch'"),
    (["report", "tiny", "--format", "xml"], "--format"),
    (["search", "missing.yaml"], "file not found"),
    (["search", "study.yaml", "--keep-checkpoints", "some"], "--keep-checkpoints"),
    (["search", "study.yaml", "--n-trials", "0"], "budget.n_trials"),
    (["search", "study.yaml", "--timeout", "later"], "budget.timeout"),
    (["report", "tiny", "--storage", "postgresql://me:s3cret@127.0.0.1:1/db"], "cannot open"),
    (["search", "study.yaml", "--storage", "/no/such/dir/x.db"], "does not exist"),
    (["search", "study.yaml", "--storage", "mysql://me:s3cret@127.0.0.1/db"], "pymysql"),
    (["search", "study.yaml", "--timeout", "600", "--storage", "x.txt"], "x.db"),
])
def test_bad_input_exits_2_with_one_line(cli, write_study, args, words) -> None:
    write_study()
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_bad_input_leaves_the_storage_untouched(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    before = [(t.number, t.state, t.params) for t in stored()]
    bad = write_study(TINY_STUDY.replace("synthetic-classification", "fashion-mnist"),
                      name="bad.yaml")
    result = cli("search", bad, "--name", "tiny")
    assert result.exit_code == 2
    assert "data root" in result.output
    assert [(t.number, t.state, t.params) for t in stored()] == before


def test_optuna_cli_reads_a_tunecli_study(cli, write_study, tmp_path: Path) -> None:
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    optuna_cli = Path(sys.executable).parent / "optuna"
    out = subprocess.run([str(optuna_cli), "studies", "--storage", "sqlite:///tunecli.db"],
                         capture_output=True, text=True, check=True).stdout
    assert "tiny" in out and "MAXIMIZE" in out
    best = subprocess.run([str(optuna_cli), "best-trial", "--study-name", "tiny", "--storage",
                           "sqlite:///tunecli.db", "-f", "json"],
                          capture_output=True, text=True, check=True).stdout
    assert json.loads(best)["number"] >= 0


@pytest.mark.parametrize(("sig", "sampler"), [(signal.SIGINT, "tpe"), (signal.SIGTERM, "random"),
                                         (signal.SIGTERM, "qmc"), (signal.SIGINT, "hyperopt-tpe")])
def test_interrupted_search_resumes_to_exactly_the_budget(write_study, tmp_path: Path,
                                                          subprocess_env, sig, sampler) -> None:
    slow = with_sampler(TINY_STUDY, sampler).replace("n_samples: 300", "n_samples: 4000")
    slow = slow.replace("epochs: 3", "epochs: 6")
    path = write_study(gated(slow.replace("n_trials: 6", "n_trials: 4")))
    gate = tmp_path / "gate"
    env = gate_env(subprocess_env, gate, hold_index=1, hold_at=25)  # inside trial 1, epoch 2
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*tunecli_command(), "search", str(path)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        wait_for_file(gate / "held-1", proc)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 130, text
    assert "tunecli resume tiny" in text and "Traceback" not in text
    trials = stored()
    assert finished(trials) == 1
    assert not [t for t in trials if t.state.name == "RUNNING"]
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in interrupted] == [1]
    assert interrupted[0].user_attrs["fail_reason"] == "interrupted"
    # an interrupted trial is not a failed one, in every view
    report = json.loads(subprocess.run([*tunecli_command(), "report", "tiny", "--format",
                                        "json"], capture_output=True, text=True,
                                       env=subprocess_env, timeout=120).stdout)
    assert (report["counts"]["failed"], report["counts"]["lost"]) == (0, 1)

    fast = subprocess.run([*tunecli_command(), "resume", "tiny"], capture_output=True,
                          text=True, env=subprocess_env, timeout=300)
    assert fast.returncode == 0, fast.stdout + fast.stderr
    trials = stored()
    assert finished(trials) == 4
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == interrupted[0].params
    # resumed with its own sampler seed: no configuration but the retry's drawn twice
    points = [tuple(sorted(t.params.items())) for t in trials if t.state.name != "FAIL"]
    assert len(points) == len(set(points))


def test_report_validate_and_list_do_not_import_torch(cli, write_study, tmp_path: Path) -> None:
    """Reading a study should not pay PyTorch's import (over a second) on every command
    (`validate` loads the data and builds the model unless --no-data)."""
    assert cli("search", write_study()).exit_code == 0
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tunecli.cli import app\n"
            "for args in (['report', 'tiny'], ['validate', 'study.yaml', '--no-data'], ['list']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_set_overrides_any_key_of_the_file(cli, write_study) -> None:
    result = cli("search", write_study(), "--name", "nopruning", "--set", "pruner.type=none",
                 "--set", "trainer.epochs=2", "--set", "space.width={int: [8, 9]}")
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="nopruning", storage="sqlite:///tunecli.db")
    spec = stored_spec("nopruning")
    assert spec["pruner"]["type"] == "none" and spec["trainer"]["epochs"] == 2
    assert all(t.state.name == "COMPLETE" and max(t.intermediate_values) == 2
               and 8 <= t.params["width"] <= 9 for t in study.trials)


@pytest.mark.parametrize(("assignment", "words"), [
    ("pruner", "--set: 'pruner' is not KEY=VALUE"),
    ("pruner.typo=3", "pruner.typo: unknown key 'typo'. Did you mean 'type'?"),
    ("space.lr.log=maybe", "space.lr.log"),
    ("trainer.epochs=[3", "--set trainer.epochs"),
    ("name.x=1", "cannot set name.x: name is 'tiny', not a mapping"),
])
def test_bad_set_exits_2_before_anything_is_stored(cli, write_study, assignment, words) -> None:
    result = cli("search", write_study(), "--set", assignment)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not Path("tunecli.db").exists() or not optuna.get_all_study_names(
        "sqlite:///tunecli.db")


def test_optuna_studies_rows_stay_readable(cli, write_study) -> None:
    """The spec is kept where tunecli reads it, not in the user attributes Optuna prints."""
    assert cli("search", write_study(), "--n-trials", "1").exit_code == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    assert study.user_attrs == {"tunecli:metric": "val_accuracy"}
    out = subprocess.run([str(Path(sys.executable).parent / "optuna"), "studies", "--storage",
                          "sqlite:///tunecli.db"], capture_output=True, text=True,
                         check=True).stdout
    assert max(len(line) for line in out.splitlines()) < 200, out


def test_a_study_of_an_older_tunecli_still_reads(cli, write_study) -> None:
    """Studies stored before the spec moved kept it as a user attribute."""
    from tunecli.engine.search.studies import SPEC_ATTR
    from tunecli.engine.search.studies import stored_spec as read

    assert cli("search", write_study(), "--n-trials", "1").exit_code == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///tunecli.db")
    old = optuna.create_study(study_name="old", storage="sqlite:///tunecli.db",
                              direction="maximize")
    spec = read(study)
    assert spec is not None
    old.set_user_attr(SPEC_ATTR, {**spec, "name": "old"})
    result = cli("resume", "old", "--n-trials", "2")
    assert result.exit_code == 0, result.output
    assert finished(stored(name="old")) == 2


@pytest.mark.parametrize("command", [["report", "tiny"], ["list"],
                                     ["report", "tiny", "--format", "json"]])
def test_output_to_a_closed_pipe_ends_quietly(cli, write_study, subprocess_env,
                                              command: list[str]) -> None:
    """`tunecli report NAME | head -1`: the reader is gone before anything is written."""
    assert cli("search", write_study(), "--n-trials", "2").exit_code == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    result = subprocess.run([*tunecli_command(), *command], stdout=write_end,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env, timeout=120)
    os.close(write_end)
    assert result.returncode == 0 and result.stderr == ""


def test_the_cluster_examples_are_what_launch_writes(cli) -> None:
    """examples/cluster/ is generated by tunecli launch: it cannot drift from it."""
    examples = Path(__file__).parents[1] / "examples" / "cluster"
    assert cli("launch", "slurm", "cifar10", "--workers", 8, "--out", "c.slurm").exit_code == 0
    assert cli("launch", "k8s", "cifar10", "--workers", 8, "--image",
               "ghcr.io/example/tunecli:0.1", "--data-claim", "cifar10-data",
               "--out", "c.yaml").exit_code == 0
    assert Path("c.slurm").read_text() == (examples / "cifar10.slurm").read_text()
    assert Path("c.yaml").read_text() == (examples / "cifar10-k8s.yaml").read_text()


def test_a_worker_waits_until_the_study_holds_its_spec() -> None:
    """search creates a study, then stores its spec: a worker seeing the name in between
    waits (a worker that joined then failed with 'not made by tunecli')."""
    import optuna

    from tunecli import api
    from tunecli.errors import SpecError

    optuna.create_study(study_name="tiny", storage="sqlite:///tunecli.db")
    with pytest.raises(SpecError, match="study 'tiny' is being created in sqlite"):
        api.wait_for_study("tiny", None, 0.2)
