"""``tunecli predict`` on bad input, old model files, ``--export`` checks, the Python API's
search against the CLI's, and ``tunecli dashboard`` over HTTP and in a browser."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import (
    TINY_STUDY,
    needs_browser,
    render_in_browser,
    stored,
    tunecli_command,
)
from tunecli import api

TABLE = "a,b,colour,y\n" + "".join(
    f"{i % 5 * 0.3:.1f},{(i * 7) % 11 / 10:.1f},{['red', 'green', 'blue'][i % 3]},"
    f"{'yes' if i % 3 == 0 else 'no'}\n" for i in range(60))
STUDY = """\
name: table
metric: val_accuracy
direction: maximize
trainer:
  dataset: {name: csv, path: table.csv, target: y, categorical: [colour], missing: mean}
  model: mlp
  epochs: 2
space: {lr: 0.01, width: 8, depth: 1}
"""


@pytest.fixture
def table_model(cli, tmp_path: Path) -> Path:
    (tmp_path / "table.csv").write_text(TABLE, encoding="utf-8")
    (tmp_path / "table.yaml").write_text(STUDY, encoding="utf-8")
    result = cli("train", tmp_path / "table.yaml", "--out", tmp_path / "models" / "table")
    assert result.exit_code == 0, result.output
    return tmp_path / "models" / "table.json"


@pytest.mark.parametrize(("rows", "words"), [
    ("a,colour,y\n0.1,red,yes\n", "column 'b' is missing (the model reads a, b, colour)"),
    ("a,b,colour,size,y\n0.1,0.2,red,3,yes\n", "column 'size' was not in the training data"),
    ("a,b,colour\n0.1,0.2,red\n0.3,0.1,purple\n",
     "line 3, column 'colour': 'purple' was never seen in training. Use one of: 'blue', "
     "'green', 'red'"),
    ("a,b,colour\n0.1,abc,red\n", "line 2, column 'b': 'abc' is not a number"),
    ("a,b,colour,y\n0.1,0.2,red,maybe\n",
     "line 2, column 'y': 'maybe' is not a class the model knows"),
], ids=["missing-column", "extra-column", "unseen-category", "text-in-a-number", "bad-target"])
def test_bad_rows_name_the_line_and_the_column(cli, table_model: Path, tmp_path: Path,
                                               rows: str, words: str) -> None:
    (tmp_path / "new.csv").write_text(rows, encoding="utf-8")
    result = cli("predict", table_model, tmp_path / "new.csv")
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_rows_without_the_target_and_from_standard_input(cli, table_model: Path) -> None:
    rows = "colour,b,a\nred,0.2,0.1\nblue,,0.4\n"  # any column order; a missing number filled
    result = cli.runner.invoke(__import__("tunecli.cli").cli.app,
                               ["predict", str(table_model), "-", "--proba"], input=rows)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "row,prediction,p_no,p_yes"
    assert [line.split(",")[0] for line in lines[1:]] == ["line 2", "line 3"]
    assert all(line.split(",")[1] in ("yes", "no") for line in lines[1:])
    no_target = Path("new.csv")
    no_target.write_text(rows, encoding="utf-8")
    evaluated = cli("predict", table_model, no_target, "--evaluate")
    assert evaluated.exit_code == 2 and "holds no targets to score against" in evaluated.output


def test_a_csv_model_refuses_other_files_and_a_digits_model_wrong_shapes(
        cli, table_model: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 5)))
    result = cli("predict", table_model, tmp_path / "x.npz")
    assert result.exit_code == 2 and "is not CSV text" in result.output, result.output
    (tmp_path / "digits.yaml").write_text(
        "name: d\nmetric: val_accuracy\ndirection: maximize\ntrainer: {dataset: digits, "
        "model: mlp, epochs: 1}\nspace: {lr: 0.01, width: 8, depth: 1}\n", encoding="utf-8")
    assert cli("train", tmp_path / "digits.yaml", "--out", tmp_path / "d").exit_code == 0
    wrong = cli("predict", tmp_path / "d.json", tmp_path / "x.npz")
    assert wrong.exit_code == 2
    assert "examples shaped [5], and the model takes [1, 8, 8]" in wrong.output
    np.savez(tmp_path / "flat.npz", x=np.full((2, 64), 8.0))  # digits as 64 values: fine
    assert cli("predict", tmp_path / "d.json", tmp_path / "flat.npz").exit_code == 0
    missing = cli("predict", tmp_path / "nothing.json", tmp_path / "flat.npz")
    assert missing.exit_code == 2 and "no model file" in missing.output


def test_an_old_model_file_loads_and_says_what_it_lacks(cli, tmp_path: Path) -> None:
    (tmp_path / "digits.yaml").write_text(
        "name: d\nmetric: val_accuracy\ndirection: maximize\ntrainer: {dataset: digits, "
        "model: mlp, epochs: 1}\nspace: {lr: 0.01, width: 8, depth: 1}\n", encoding="utf-8")
    assert cli("train", tmp_path / "digits.yaml", "--out", tmp_path / "d").exit_code == 0
    info = json.loads((tmp_path / "d.json").read_text())
    del info["pipeline"]  # as tunecli wrote it before the pipeline was recorded
    (tmp_path / "d.json").write_text(json.dumps(info))
    np.savez(tmp_path / "scaled.npz", x=np.full((2, 1, 8, 8), 0.5))
    result = cli("predict", tmp_path / "d.json", tmp_path / "scaled.npz")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "does not record how raw inputs were scaled" in \
        result.output
    with pytest.warns(UserWarning, match="retrain it with tunecli train"):
        api.load_model(tmp_path / "d.json")


def test_an_unknown_export_format_stops_before_training(cli, write_study) -> None:
    result = cli("train", write_study(TINY_STUDY.replace(
        "  lr: {float: [1.0e-3, 1.0e-1], log: true}\n  width: {int: [8, 32]}\n"
        "  optimizer: {choice: [adam, sgd]}\n  momentum: {float: [0.5, 0.9], when: "
        "{optimizer: sgd}}\n", "  lr: 0.01\n")), "--export", "onx")
    assert result.exit_code == 2, result.output
    assert "--export: --export 'onx' is not a format. Did you mean 'onnx'?" in result.output
    assert "epoch" not in result.output


def test_a_search_from_python_stores_the_trials_the_cli_stores(cli, write_study) -> None:
    study_file = write_study()
    assert cli("search", study_file, "--seed", 3, "--storage", "cli.db").exit_code == 0
    study = api.search(study_file, seed=3, storage="api.db", progress=False)
    assert study.study_name == "tiny"

    def trials(url: str) -> list[tuple]:
        return [(t.number, t.state.name, t.params, t.value) for t in stored(url)]
    assert trials("sqlite:///cli.db") == trials("sqlite:///api.db")
    assert len(trials("sqlite:///api.db")) == 6
    best = api.best_trial(study)
    assert best is not None and api.pareto_front(study) == [best]
    model = api.train(study, out="models/tiny")
    assert model.info["trial"] == best.number and Path("models/tiny.json").is_file()
    assert model.info["search_value"] == best.value


def _dashboard(name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``tunecli dashboard NAME --port 0`` started; its printed address."""
    proc = subprocess.Popen([*tunecli_command(), "dashboard", name, "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""  # printed once it listens
    assert "optuna-dashboard for" in line and "http://127.0.0.1:" in line, line
    return proc, line.split(" at ")[1].split()[0]


def test_the_dashboard_serves_the_study_on_loopback(cli, write_study, subprocess_env) -> None:
    assert cli("search", write_study()).exit_code == 0
    proc, address = _dashboard("tiny", subprocess_env)
    try:
        base = address.split("/dashboard")[0]
        assert address.endswith("/dashboard/studies/1")
        with urllib.request.urlopen(address, timeout=30) as page:
            assert page.status == 200 and "Optuna Dashboard" in page.read().decode()
        with urllib.request.urlopen(f"{base}/api/studies/1?after=0", timeout=30) as study:
            trials = json.loads(study.read())["trials"]
        assert len(trials) == len(stored())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_dashboard_needs_an_existing_storage_and_study(cli, write_study) -> None:
    missing = cli("dashboard", "--storage", "nothing.db")
    assert missing.exit_code == 2 and "there is no storage at" in missing.output
    assert cli("search", write_study()).exit_code == 0
    unknown = cli("dashboard", "tinny")
    assert unknown.exit_code == 2 and "no study 'tinny'" in unknown.output
    assert "Did you mean 'tiny'?" in unknown.output


@needs_browser
def test_the_dashboard_renders_in_a_browser_without_console_errors(
        cli, write_study, subprocess_env, tmp_path: Path) -> None:
    assert cli("search", write_study()).exit_code == 0
    proc, address = _dashboard("tiny", subprocess_env)
    try:
        _, dom, log = render_in_browser(address, tmp_path / "profile")
        assert "tiny" in dom  # the study's page rendered its name
        errors = [line for line in log.splitlines() if "CONSOLE" in line and "ERROR" in line]
        assert not errors, errors
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(("damage", "words"), [
    ("no-weights", "table.pt is missing: "),
    ("bad-weights", "table.pt is not a weights file tunecli train wrote"),
    ("bad-json", "table.json is not a model file: line 1 column"),
    ("foreign-json", "is not a model file tunecli train wrote (no model, config"),
])
def test_a_damaged_model_file_is_one_line(cli, table_model: Path, tmp_path: Path, damage: str,
                                          words: str) -> None:
    (tmp_path / "new.csv").write_text("a,b,colour\n0.1,0.2,red\n", encoding="utf-8")
    if damage == "no-weights":
        table_model.with_suffix(".pt").unlink()
    elif damage == "bad-weights":
        table_model.with_suffix(".pt").write_bytes(b"not a torch file")
    elif damage == "bad-json":
        table_model.write_text('{"model": "mlp", ', encoding="utf-8")
    else:
        table_model.write_text('{"weights": "table.pt"}', encoding="utf-8")
    result = cli("predict", table_model, tmp_path / "new.csv")
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


def test_train_names_the_best_trials_model_after_the_study(cli, write_study) -> None:
    assert cli("search", write_study(), "--n-trials", "3").exit_code == 0
    best = cli("train", "tiny")
    assert best.exit_code == 0, best.output
    assert Path("models/tiny.json").is_file() and Path("models/tiny.pt").is_file()
    number = next(t.number for t in stored() if t.state.name == "COMPLETE")
    other = cli("train", "tiny", "--trial", number)
    assert other.exit_code == 0, other.output
    assert Path(f"models/tiny-trial{number}.json").is_file()
