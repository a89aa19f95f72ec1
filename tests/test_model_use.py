"""After the search: a trained model used four ways, for every built-in data kind.

For each kind a test trains a model with ``tunecli train --export onnx --export torchscript``,
then predicts its held-out test part through ``tunecli predict`` (from the files a user has),
the Python loader, TorchScript and ONNX: the outputs agree to 1e-5, and the metric ``predict``
scores equals the one ``train`` printed.
"""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_trainer import fake_cifar, fake_mnist
from tunecli import api
from tunecli.spec.models import TrainerSpec
from tunecli.trainer.data import part_indices

onnxruntime = pytest.importorskip("onnxruntime")


STUDY = """\
name: {name}
metric: {metric}
direction: {direction}
budget: {{n_trials: 1}}
trainer:
  dataset: {dataset}
  model: {model}
  epochs: 2
  data_root: root
space:
{space}
"""
MLP = "  lr: 0.01\n  width: 16\n  depth: 1"
CNN = "  lr: 0.01\n  conv_blocks: 1\n  channels: 4\n  classifier_width: 8"


def _study(tmp_path: Path, name: str, dataset: str, model: str = "mlp", space: str = MLP,
           metric: str = "val_accuracy") -> Path:
    path = tmp_path / f"{name}.yaml"
    direction = "minimize" if metric == "val_rmse" else "maximize"
    path.write_text(STUDY.format(name=name, metric=metric, direction=direction,
                                 dataset=dataset, model=model, space=space), encoding="utf-8")
    return path


def _trained(cli, study: Path) -> tuple[Path, dict]:
    out = study.parent / "models" / study.stem
    result = cli("train", study, "--out", out, "--export", "onnx", "--export", "torchscript")
    assert result.exit_code == 0, result.output
    assert f"exported {out}.onnx" in result.output
    return out.with_suffix(".json"), json.loads(out.with_suffix(".json").read_text())


def _predicted_by_cli(cli, model: Path, source: Path, classes: list[str] | None,
                      ) -> tuple[np.ndarray, str]:
    """``tunecli predict --evaluate``: its outputs (probabilities or values) and its text."""
    out = model.parent / "predictions.csv"
    result = cli("predict", model, source, "--evaluate", "--proba", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    if classes is None:
        return np.array([float(r["prediction"]) for r in rows]), result.output
    probabilities = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    assert [r["prediction"] for r in rows] == [classes[i] for i in probabilities.argmax(1)]
    return probabilities, result.output


def _check_everywhere(cli, model: Path, info: dict, source: Path) -> None:
    """The four ways agree, and the scores are those ``train`` printed."""
    metric = info["search_metric"].removeprefix("val_")
    loaded = api.load_model(model)
    part = api.held_out_part(model)
    classes = loaded.pipeline["classes"] if info["task"] == "classification" else None
    if classes is None and info["task"] == "classification":
        classes = [str(i) for i in range(info["n_outputs"])]
    by_cli, said = _predicted_by_cli(cli, model, source, classes)
    assert f"{metric:<10} {info['test_metrics']['test_' + metric]:.4f}" in said
    scored = api.predict(model, str(source)).scores
    assert round(scored[metric], 6) == info["test_metrics"]["test_" + metric]

    x = torch.from_numpy(part.x)
    with torch.inference_mode():
        by_python = loaded(x).numpy()
        by_torchscript = torch.jit.load(str(model.with_suffix(".torchscript.pt")))(x).numpy()
    session = onnxruntime.InferenceSession(str(model.with_suffix(".onnx")),
                                           providers=["CPUExecutionProvider"])
    by_onnx = session.run(None, {"input": part.x})[0]
    assert by_python.shape == by_cli.shape == by_onnx.shape == by_torchscript.shape
    scale = 1.0 if classes else max(1.0, float(np.abs(by_python).max()))
    for other in (by_cli, by_torchscript, by_onnx):
        np.testing.assert_allclose(other, by_python, atol=1e-5 * scale, rtol=0)
    if classes:  # the Python loader's own accuracy is the test accuracy train printed
        accuracy = float((by_python.argmax(1) == part.targets).mean())
        assert round(accuracy, 6) == info["test_metrics"]["test_accuracy"]


def _held_out_npz(model: Path) -> Path:
    part = api.held_out_part(model)
    path = model.parent / "held-out.npz"
    np.savez(path, x=part.x, y=part.targets)
    return path


def test_digits(cli, tmp_path: Path) -> None:
    model, info = _trained(cli, _study(tmp_path, "digits", "digits"))
    assert info["pipeline"]["divide_by"] == 16.0 and info["pipeline"]["raw_shape"] == [1, 8, 8]
    _check_everywhere(cli, model, info, _held_out_npz(model))


def test_mnist_files_with_a_cnn(cli, tmp_path: Path) -> None:
    fake_mnist(tmp_path / "root", "FashionMNIST", compress=True)
    model, info = _trained(cli, _study(tmp_path, "fashion", "fashion-mnist", "cnn", CNN))
    assert info["pipeline"]["divide_by"] == 255.0
    # The original test files, as a user has them (labels found beside the images).
    _check_everywhere(cli, model, info,
                      tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz")


def test_cifar10_files(cli, tmp_path: Path) -> None:
    fake_cifar(tmp_path / "root")
    model, info = _trained(cli, _study(tmp_path, "cifar", "cifar10", "cnn", CNN))
    _check_everywhere(cli, model, info, tmp_path / "root" / "cifar-10-batches-py" / "test_batch")


def _write_table(path: Path, n: int, regression: bool) -> list[list[str]]:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        a, colour = rng.normal(), ["red", "green", "blue"][i % 3]
        b = "" if i == 7 else f"{rng.normal():.4f}"      # a missing cell, filled by the mean
        signal = a + (1.5 if colour == "red" else 0.0)
        y = f"{3 * signal + 10:.3f}" if regression else ("yes" if signal > 0.5 else "no")
        rows.append([f"{a:.4f}", b, colour, y])
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["a", "b", "colour", "y"], *rows])
    return rows


def _test_rows(model: Path, info: dict, rows: list[list[str]], path: Path) -> Path:
    """The rows of the training file that were the test part, as a CSV a user could hand in."""
    dataset = TrainerSpec.model_validate(info["trainer"]).dataset
    _, _, test = part_indices(len(rows), dataset)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["a", "b", "colour", "y"], *(rows[i] for i in test)])
    return path


CSV_DATA = ("{{name: csv, path: table.csv, target: y, categorical: [colour], missing: mean, "
            "test_fraction: 0.25}}")


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_csv_with_a_categorical_column_and_a_missing_cell(cli, tmp_path: Path,
                                                          regression: bool) -> None:
    rows = _write_table(tmp_path / "table.csv", 160, regression)
    study = _study(tmp_path, "table", CSV_DATA.format(),
                   metric="val_rmse" if regression else "val_accuracy")
    model, info = _trained(cli, study)
    pipeline = info["pipeline"]
    assert pipeline["columns"] == ["a", "b", "colour"]
    assert pipeline["categorical"] == {"colour": ["blue", "green", "red"]}
    assert set(pipeline["fill"]) == {"a", "b"}
    assert (pipeline["target_std"] != 1.0) == regression
    _check_everywhere(cli, model, info, _test_rows(model, info, rows, tmp_path / "test.csv"))


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer"])
def test_csv_sequence(cli, tmp_path: Path, kind: str) -> None:
    t = np.arange(200)
    series = np.sin(t / 6.0) + 0.1 * np.cos(t / 2.0)
    lines = ["level,extra,y"] + [f"{series[i]:.5f},{(i % 7) / 7:.4f},{series[i]:.5f}"
                                 for i in range(len(t))]
    (tmp_path / "series.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dataset = ("{name: csv-sequence, path: series.csv, target: y, window: 8, horizon: 1, "
               "test_fraction: 0.2}")
    model, info = _trained(cli, _study(tmp_path, f"series-{kind}", dataset, kind, "  lr: 0.01",
                                       metric="val_rmse"))
    assert info["pipeline"]["raw_shape"] == [8, 2]
    # The test part's windows are the last ones: the file's rows from the first test
    # window's start, which a user would hand in for those predictions.
    spec = TrainerSpec.model_validate(info["trainer"]).dataset
    _, _, test = part_indices(len(t) - 8 - 1 + 1, spec, ordered=True)
    tail = tmp_path / "tail.csv"
    tail.write_text("\n".join([lines[0], *lines[1 + int(test[0]):]]) + "\n", encoding="utf-8")
    _check_everywhere(cli, model, info, tail)


def test_tensors_file(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    np.savez(tmp_path / "arrays.npz", x=x, y=(x[:, 0] + x[:, 1] > 0).astype(np.int64))
    model, info = _trained(cli, _study(tmp_path, "arrays", "{name: tensors, path: arrays.npz}"))
    _check_everywhere(cli, model, info, _held_out_npz(model))


def test_sequential_images_with_as_sequence(cli, tmp_path: Path) -> None:
    fake_mnist(tmp_path / "root", "MNIST", compress=False)
    dataset = "{name: mnist, as_sequence: true}"
    model, info = _trained(cli, _study(tmp_path, "rows", dataset, "gru", "  lr: 0.01"))
    assert info["pipeline"]["as_sequence"] and info["input_shape"] == [28, 28]
    _check_everywhere(cli, model, info,
                      tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte")


def test_readme_onnx_snippet_runs_on_the_digits_model(cli, tmp_path: Path) -> None:
    model, _ = _trained(cli, _study(tmp_path, "digits", "digits"))
    blocks = (Path(__file__).parents[1] / "README.md").read_text().split("```python\n")
    snippet = next(b.split("```")[0] for b in blocks if "onnxruntime.InferenceSession" in b)
    pixels = api.held_out_part(model).x
    scope = {"pixels": pixels}
    exec(textwrap.dedent(snippet).replace("models/digits-best.onnx",
                                          str(model.with_suffix(".onnx"))), scope)
    expected = api.load_model(model)(torch.from_numpy(pixels)).detach().numpy()
    np.testing.assert_allclose(scope["probabilities"], expected, atol=1e-5, rtol=0)
