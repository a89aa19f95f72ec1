"""Users' own data as a data person would expect: CSV dialects and cleaning, regression targets
in their own units, `validate --data`, and the schema editors check study files with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from tunecli.catalogue import CNN, LOOP, MLP, RNN, TRANSFORMER, markdown_table

ROOT = Path(__file__).resolve().parent.parent

CSV_STUDY = """\
name: table
budget: {n_trials: 2}
sampler: {type: random, seed: 0}
pruner: {type: none}
trainer:
  dataset: {name: csv, path: d.csv%s}
  epochs: 3
space:
  lr: {float: [1.0e-3, 1.0e-2], log: true}
"""


def rows(n: int = 40) -> list[list[str]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2))
    return [[f"{a:.3f}", f"{b:.3f}", "yes" if a + b > 0 else "no"] for a, b in x]


def write_csv(path: Path, body: list[list[str]], delimiter: str = ",", header=("a", "b", "y"),
              encoding: str = "utf-8", bom: bool = False) -> None:
    text = "\n".join(delimiter.join(r) for r in [list(header), *body]) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))


@pytest.mark.parametrize(("variant", "options"), [
    ("semicolons", ""), ("tabs", ""), ("bom-and-target-first", ", target: y"),
    ("latin-1", ", encoding: latin-1"), ("missing-drop", ", missing: drop"),
    ("missing-mean", ", missing: mean"), ("categorical", ", categorical: [colour]"),
])
def test_csv_dialects_and_cleaning(cli, tmp_path: Path, variant: str, options: str) -> None:
    body = rows()
    header: tuple[str, ...] = ("a", "b", "y")
    delimiter, encoding, bom = ",", "utf-8", False
    if variant == "semicolons":
        delimiter = ";"
    elif variant == "tabs":
        delimiter = "\t"
    elif variant == "bom-and-target-first":
        body = [[r[2], r[0], r[1]] for r in body]
        header, bom = ("y", "a", "b"), True
    elif variant == "latin-1":
        header, encoding = ("a", "b\xe9", "y"), "latin-1"
    elif variant.startswith("missing"):
        body[3][1], body[7][0] = "", "NaN"
    elif variant == "categorical":
        body = [[r[0], ["red", "green", "blue"][i % 3], r[2]] for i, r in enumerate(body)]
        header = ("a", "colour", "y")
    write_csv(tmp_path / "d.csv", body, delimiter, header, encoding, bom)
    (tmp_path / "s.yaml").write_text(CSV_STUDY % options)
    checked = cli("validate", "s.yaml", "--data")
    assert checked.exit_code == 0, checked.output
    expected = {"missing-drop": "38 rows", "categorical": "4 features"}.get(variant, "40 rows")
    assert expected in checked.output and "classes (2)" in checked.output
    if variant == "missing-mean":
        assert "2 cells filled" in checked.output
    result = cli("search", "s.yaml")
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="table", storage="sqlite:///tunecli.db").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    if variant == "categorical":  # the trained model's JSON names its classes and inputs
        assert cli("train", "table", "--out", "m").exit_code == 0
        info = json.loads((tmp_path / "m.json").read_text())
        assert info["classes"] == ["no", "yes"]
        assert info["features"] == ["a", "colour=blue", "colour=green", "colour=red"]


def test_regression_targets_are_standardised_and_reported_in_their_units(cli,
                                                                          tmp_path: Path) -> None:
    """scikit-learn's diabetes data (target 25..346): no NaN at ordinary learning rates, and
    `train` reports metrics in the target's own units."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    body = [[f"{v:g}" for v in x] + [f"{y:g}"] for x, y in zip(data.data, data.target, strict=True)]
    write_csv(tmp_path / "d.csv", body, header=(*data.feature_names, "progression"))
    study = (CSV_STUDY % ", task: regression").replace("name: table", "name: diabetes")
    study = study.replace("n_trials: 2", "n_trials: 6").replace("epochs: 3", "epochs: 15")
    study = study.replace("[1.0e-3, 1.0e-2]", "[1.0e-4, 3.0e-2]") + "  width: 32\n"
    (tmp_path / "s.yaml").write_text(study.replace("name: diabetes",
                                                   "name: diabetes\nmetric: val_r2"))
    result = cli("search", "s.yaml")
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="diabetes", storage="sqlite:///tunecli.db").trials
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert max(t.value for t in trials) > 0.3
    mse = [t.user_attrs["history"][-1]["val_mse"] for t in trials]
    assert min(mse) > 500  # in squared target units (the target's variance is about 6000)
    trained = cli("train", "diabetes", "--out", "models/diabetes")
    assert trained.exit_code == 0, trained.output
    info = json.loads((tmp_path / "models" / "diabetes.json").read_text())
    assert info["test_metrics"]["test_r2"] > 0.2
    assert 100 < info["target_scaling"]["mean"] < 200 and info["target_scaling"]["std"] > 50


def test_every_shipped_study_validates_against_the_schema(cli) -> None:
    import jsonschema

    schema = json.loads(cli("schema").output)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        errors = [f"{list(e.path)}: {e.message}"
                  for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)
    bad = {"name": "x", "space": {"lr": 0.1}, "sampler": {"type": "tpx"},
           "budget": {"timeout": "soon"}}
    assert len(list(validator.iter_errors(bad))) == 2


def test_readme_lists_every_builtin_hyperparameter() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table({"loop": LOOP, "mlp": MLP, "cnn": CNN, "lstm, gru": RNN,
                           "transformer": TRANSFORMER}) in readme


def test_yaml_12_integers() -> None:
    from tunecli.spec.yamlio import load_yaml_text

    assert load_yaml_text("a: [010, 1:30, 0o10, 0x10, 1_000]", "x")["a"] == \
        [10, "1:30", 8, 16, "1_000"]


def test_several_problems_are_reported_together(cli, tmp_path: Path) -> None:
    text = (CSV_STUDY % "").replace("{name: csv, path: d.csv}", "digits")
    (tmp_path / "s.yaml").write_text(text + "  batch_size: 0\n  dropout: 2\n  lrr: 1\n")
    result = cli("validate", "s.yaml")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: s.yaml: space.") for line in lines)


def test_a_cuda_device_without_a_gpu_is_bad_input(cli, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    text = (CSV_STUDY % "").replace("{name: csv, path: d.csv}", "digits")
    (tmp_path / "s.yaml").write_text(text.replace("epochs: 3", "epochs: 3\n  device: cuda"))
    for command in ("validate", "search"):
        result = cli(command, "s.yaml")
        assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert not (tmp_path / "tunecli.db").exists()


def test_minimizing_accuracy_is_warned_about(cli, tmp_path: Path) -> None:
    text = (CSV_STUDY % "").replace("{name: csv, path: d.csv}", "digits")
    (tmp_path / "s.yaml").write_text(text.replace("name: table", "name: t\ndirection: minimize"))
    result = cli("validate", "s.yaml", "--no-data")
    assert result.exit_code == 0 and "warning: direction is minimize for val_accuracy" in \
        result.output


@pytest.mark.parametrize(("args", "words"), [
    (["report", "t", "--export", "."], "--export: . is a folder"),
    (["report", "t", "--html", "."], "--html: . is a folder"),
    (["--debug", "search", "nothere.yaml"], "file not found"),
    (["train", "t", "--out", "."], "--out"),
])
def test_output_paths(cli, tmp_path: Path, args: list[str], words: str) -> None:
    (tmp_path / "s.yaml").write_text((CSV_STUDY % "").replace("{name: csv, path: d.csv}",
                                                               "digits").replace("name: table",
                                                                                 "name: t"))
    assert cli("search", "s.yaml", "--n-trials", "1").exit_code == 0
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_export_creates_missing_folders(cli, tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text((CSV_STUDY % "").replace("{name: csv, path: d.csv}",
                                                               "digits").replace("name: table",
                                                                                 "name: t"))
    assert cli("search", "s.yaml", "--n-trials", "1").exit_code == 0
    result = cli("report", "t", "--export", "new/dir/best.yaml")
    assert result.exit_code == 0 and (tmp_path / "new" / "dir" / "best.yaml").exists()
