"""Sequence data (images row by row, CSV windows, a user's tensors) and the lstm, gru and
transformer models, on small files the tests write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import Collect, stored
from tests.test_trainer import fake_mnist
from tunecli.errors import SpecError
from tunecli.spec import TrainerSpec
from tunecli.trainer import data as data_sets
from tunecli.trainer import loop, models

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent



def train(dataset: dict[str, Any], model: str, params: dict[str, Any] | None = None,
          epochs: int = 3, metric: str = "val_accuracy",
          **kw: Any) -> tuple[loop.TrainResult, Collect]:
    spec = TrainerSpec.model_validate({"dataset": dataset, "model": model, "epochs": epochs,
                                       **kw})
    reporter = Collect()
    result = loop.train(spec, {"lr": 0.01, "batch_size": 32, **(params or {})}, reporter,
                      metric=metric)
    return result, reporter


def test_images_row_by_row(tmp_path: Path, monkeypatch) -> None:
    fake_mnist(tmp_path / "root", "FashionMNIST", compress=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dataset = {"name": "fashion-mnist", "as_sequence": True, "val_fraction": 0.25}
    spec = TrainerSpec.model_validate({"dataset": dataset})
    bundle = data_sets.load(spec.dataset, tmp_path / "root", False, CPU)
    assert bundle.input_shape == (28, 28) and not bundle.is_image
    assert bundle.x_test.shape == (40, 28, 28)
    # each class's stripe is one row: a time step stands out, as the image row did
    _result, rep = train(dataset, "gru", {"hidden_size": 16}, epochs=4,
                        data_root=str(tmp_path / "root"))
    assert len(rep.metrics) == 4 and rep.metrics[-1]["train_loss"] < rep.metrics[0]["train_loss"]


def series_csv(path: Path, rows: int = 300) -> np.ndarray:
    t = np.arange(rows)
    signal = np.sin(t / 8.0)
    path.write_text("t,signal,target\n" + "".join(
        f"{i},{s:.6f},{int(s2 > s)}\n" for i, s, s2 in zip(t, signal, np.roll(signal, -1),
                                                            strict=True)))
    return signal


def test_csv_windows_keep_time_order_and_the_horizon(tmp_path: Path) -> None:
    series_csv(tmp_path / "s.csv")
    dataset = {"name": "csv-sequence", "path": str(tmp_path / "s.csv"), "target": "target",
               "window": 10, "horizon": 2, "val_fraction": 0.2, "test_fraction": 0.2}
    spec = TrainerSpec.model_validate({"dataset": dataset})
    raw = data_sets.DATASETS["csv-sequence"](spec.dataset, None, False)
    assert raw.x.shape == (300 - 10 - 2 + 1, 10, 2)  # t and signal per step
    assert raw.x[5, 0, 0] == 5 and raw.x[5, -1, 0] == 14
    file_targets = [int(line.split(",")[2]) for line in
                    (tmp_path / "s.csv").read_text().splitlines()[1:]]
    assert raw.y[5] == file_targets[14 + 2]  # two rows after the window's last
    bundle = data_sets.load(spec.dataset, None, False, CPU)
    first_step_time = [x[:, 0, 0] * bundle.std[0, 0] + bundle.mean[0, 0]
                       for x in (bundle.x_train, bundle.x_val, bundle.x_test)]
    assert first_step_time[0].max() < first_step_time[1].min()  # training before validation
    assert first_step_time[1].max() < first_step_time[2].min()  # validation before test
    result, _ = train(dataset, "lstm", {"hidden_size": 16, "bidirectional": True}, epochs=3)
    assert 0 < result.value <= 1


def test_csv_sequence_needs_a_window(cli, tmp_path: Path) -> None:
    series_csv(tmp_path / "s.csv")
    (tmp_path / "study.yaml").write_text(
        "name: s\ntrainer:\n  dataset: {name: csv-sequence, path: s.csv}\n  model: lstm\n"
        "space:\n  lr: 0.01\n")
    result = cli("validate", "study.yaml")
    assert result.exit_code == 2
    assert "trainer.dataset.window: csv-sequence needs the window length" in result.output


def test_tensors_from_npz_and_pt(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6, 3)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    np.savez(tmp_path / "seq.npz", x=x, y=y)
    result, _ = train({"name": "tensors", "path": str(tmp_path / "seq.npz")}, "transformer",
                      {"d_model": 14, "heads": 4, "layers": 1, "ff_width": 16}, epochs=3)
    assert result.params_count > 0 and 0 < result.value <= 1
    torch.save({"x": torch.tensor(x[:, :, 0]), "y": torch.tensor(x[:, 0, 1])},
               tmp_path / "table.pt")
    spec = TrainerSpec.model_validate({"dataset": {"name": "tensors",
                                                   "path": str(tmp_path / "table.pt")}})
    bundle = data_sets.load(spec.dataset, None, False, CPU)
    assert bundle.task == "regression" and bundle.input_shape == (6,)


@pytest.mark.parametrize(("save", "words"), [
    (lambda p: np.savez(p / "d.npz", x=np.zeros((5, 2))), "holds ['x'], not x and y"),
    (lambda p: np.savez(p / "d.npz", x=np.zeros((5, 2)), y=np.zeros(4, dtype=int)),
     "5 examples but 4 targets"),
    (lambda p: np.savez(p / "d.npz", x=np.zeros((5, 2)), y=-np.ones(5, dtype=int)),
     "class numbers 0..C-1"),
    (lambda p: (p / "d.npz").write_bytes(b"not a zip"), "cannot be read"),
])
def test_bad_tensor_files_say_what_is_wrong(tmp_path: Path, save: Any, words: str) -> None:
    save(tmp_path)
    spec = TrainerSpec.model_validate({"dataset": {"name": "tensors",
                                                   "path": str(tmp_path / "d.npz")}})
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace("]", r"\]")):
        data_sets.load(spec.dataset, None, False, CPU)


def test_transformer_rounds_its_width_to_the_heads() -> None:
    config = models.full_config("transformer", {"d_model": 30, "heads": 4})
    built = models.build("transformer", config, (7, 5), 3)
    assert built.project.out_features == 32  # type: ignore[union-attr]
    assert built(torch.zeros(2, 7, 5)).shape == (2, 3)


@pytest.mark.parametrize("model", ["lstm", "gru", "transformer"])
def test_a_sequence_model_on_images_says_how_to_read_them(model: str) -> None:
    with pytest.raises(SpecError, match="as_sequence: true"):
        train("digits", model, epochs=1)


@pytest.mark.parametrize("init", ["kaiming", "orthogonal"])
def test_init_reaches_recurrent_and_attention_weights(init: str) -> None:
    torch.manual_seed(0)
    default = models.build("lstm", models.full_config("lstm", {}), (4, 3), 2)
    torch.manual_seed(0)
    chosen = models.build("lstm", models.full_config("lstm", {"init": init}), (4, 3), 2)
    rnn = chosen.rnn  # type: ignore[union-attr]
    assert not torch.equal(rnn.weight_hh_l0, default.rnn.weight_hh_l0)  # type: ignore
    assert not rnn.bias_ih_l0.any()
    encoder = models.build("transformer", models.full_config("transformer", {"init": init}),
                           (4, 3), 2)
    assert not encoder.encoder.layers[0].self_attn.in_proj_bias.any()  # type: ignore


def test_the_shipped_sequence_study_runs(cli, tmp_path: Path) -> None:
    result = cli("search", str(ROOT / "studies" / "sequence-lstm.yaml"), "--n-trials", "3",
                 "--set", "trainer.epochs=2")
    assert result.exit_code == 0, result.output
    trials = stored(name="sequence-lstm")
    assert len(trials) == 3 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert all("hidden_size" in t.params and "bidirectional" in t.params for t in trials)
