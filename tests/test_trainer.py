"""The trainer on the CPU: every data set kind, both models and a user model, every optimizer
and schedule, L1/L2, early stopping, failures, checkpoints."""

from __future__ import annotations

import contextlib
import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tunecli.catalogue import OPTIMIZERS, SCHEDULES
from tunecli.errors import SpecError, TrialFailed
from tunecli.spec import TrainerSpec
from tunecli.trainer import data as data_sets
from tunecli.trainer import loop, metrics

EXAMPLES = Path(__file__).parent.parent / "examples"


class Collect:
    def __init__(self, stop_at: int | None = None) -> None:
        self.epochs: list[int] = []
        self.metrics: list[dict[str, float]] = []
        self.stop_at = stop_at

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(epoch)
        self.metrics.append(metrics)
        if self.stop_at == epoch:
            raise KeyboardInterrupt


def synthetic(**kw: Any) -> TrainerSpec:
    dataset = {"name": "synthetic-classification", "n_samples": 240, "n_features": 6}
    dataset.update(kw.pop("dataset", {}))
    return TrainerSpec.model_validate({"dataset": dataset, "epochs": 3, **kw})


def train(spec: TrainerSpec, params: dict[str, Any] | None = None, metric: str = "val_accuracy",
          **kw: Any) -> tuple[loop.TrainResult, Collect]:
    reporter = kw.pop("reporter", Collect())
    result = loop.train(spec, params or {"width": 16, "lr": 0.01}, reporter, metric=metric, **kw)
    return result, reporter


# -- data sets written by the tests ------------------------------------------------------------

def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
              compress: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    blobs = {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x803, n, h, w) +
             images.astype(np.uint8).tobytes(),
             f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x801, n) +
             labels.astype(np.uint8).tobytes()}
    for name, blob in blobs.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)


def fake_mnist(root: Path, folder: str, compress: bool) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 120), ("t10k", 40)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 50, (n, 28, 28))
        images[np.arange(n), labels * 2, :] = 255  # a learnable stripe per class
        write_idx(root / folder / "raw", prefix, images, labels, compress)


def fake_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.integers(0, 10, 20).tolist()
        batch = {"data": rng.integers(0, 255, (20, 3072)).astype(np.uint8), "labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i)
                                                                        for i in range(10)]}))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_family_from_idx_files(tmp_path: Path, name: str, monkeypatch) -> None:
    folder = "MNIST" if name == "mnist" else "FashionMNIST"
    # fashion-mnist as the original .gz files in a read-only root, as in ../shared/data
    fake_mnist(tmp_path / "root", folder, compress=name == "fashion-mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if name == "fashion-mnist":
        (tmp_path / "root" / folder / "raw").chmod(0o555)
    spec = TrainerSpec.model_validate({"dataset": {"name": name, "val_fraction": 0.25},
                                       "epochs": 2, "data_root": str(tmp_path / "root")})
    result, _ = train(spec)
    assert result.epochs_run == 2
    bundle = data_sets.load(spec.dataset, tmp_path / "root", False, torch.device("cpu"))
    assert bundle.x_train.shape == (90, 1, 28, 28) and bundle.x_val.shape[0] == 30
    assert bundle.x_test.shape[0] == 40
    # normalisation fitted on the training part only
    assert abs(bundle.x_train.mean().item()) < 1e-4


def test_cifar10_from_pickles(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    fake_cifar(tmp_path)
    # The real files carry md5 sums torchvision checks; the small test files cannot.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    spec = TrainerSpec.model_validate({"dataset": {"name": "cifar10", "augment":
                                                   {"crop": 4, "flip": True}},
                                       "epochs": 1, "model": "cnn", "data_root": str(tmp_path)})
    result, _ = train(spec, {"conv_blocks": 2, "channels": 4, "classifier_width": 8})
    assert result.epochs_run == 1
    bundle = data_sets.load(spec.dataset, tmp_path, False, torch.device("cpu"))
    assert bundle.input_shape == (3, 32, 32) and bundle.x_train.shape[0] == 80


def test_missing_data_root_says_where_files_go(tmp_path: Path) -> None:
    spec = TrainerSpec.model_validate({"dataset": "fashion-mnist",
                                       "data_root": str(tmp_path / "none")})
    with pytest.raises(SpecError) as info:
        train(spec)
    assert "FashionMNIST/raw" in info.value.line()
    with pytest.raises(SpecError, match="needs a data root"):
        train(TrainerSpec.model_validate({"dataset": "mnist"}))


@pytest.mark.parametrize(("task", "metric"), [("classification", "val_f1"),
                                         ("regression", "val_r2")])
def test_csv(tmp_path: Path, task: str, metric: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(int) if task == "classification" else x @ [1.0, -2.0, 0.5]
    target = ["yes" if v else "no" for v in y] if task == "classification" else y
    lines = ["a,b,c,target"] + [f"{r[0]},{r[1]},{r[2]},{t}" for r, t in zip(x, target, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines))
    spec = TrainerSpec.model_validate({"dataset": {"name": "csv", "path": "d.csv"},
                                       "epochs": 8})
    result, rep = train(spec, {"lr": 0.02, "width": 32}, metric=metric, base_dir=str(tmp_path),
                        direction="maximize")
    assert result.value > 0.6
    assert metric in rep.metrics[-1]


def test_synthetic_regression_minimizes_mse() -> None:
    spec = TrainerSpec.model_validate({"dataset": "synthetic-regression", "epochs": 6})
    result, rep = train(spec, {"lr": 0.01}, metric="val_mse", direction="minimize")
    assert result.value == min(m["val_mse"] for m in rep.metrics)
    assert rep.metrics[-1]["val_mse"] < rep.metrics[0]["val_mse"]


def test_metric_of_other_task_is_bad_input() -> None:
    with pytest.raises(SpecError, match="not reported for a classification"):
        train(synthetic(), metric="val_r2")


def test_digits_mlp_learns() -> None:
    spec = TrainerSpec.model_validate({"dataset": "digits", "epochs": 8})
    result, _ = train(spec, {"lr": 3e-3, "width": 128, "depth": 2})
    assert result.value > 0.9
    assert result.params_count == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10


def test_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    got = metrics.evaluate(model, x, y, "classification", 3, 16, contextlib.nullcontext)
    pred = model(x).argmax(1).numpy()
    assert got["val_accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert got["val_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert got["val_precision"] == pytest.approx(precision_score(y, pred, average="macro",
                                                                 zero_division=0))
    assert got["val_recall"] == pytest.approx(recall_score(y, pred, average="macro"))


def test_cnn_on_digits_and_user_model() -> None:
    spec = TrainerSpec.model_validate({"dataset": "digits", "epochs": 2, "model": "cnn"})
    result, _ = train(spec, {"conv_blocks": 2, "channels": 8, "classifier_width": 16})
    assert result.epochs_run == 2
    user = TrainerSpec.model_validate({"dataset": "digits", "epochs": 2,
                                       "model": "custom_model.py:build"})
    result, _ = train(user, {"hidden": 24, "residual": True}, base_dir=str(EXAMPLES))
    assert result.params_count == 64 * 24 + 24 + 24 * 24 + 24 + 24 * 10 + 10


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer(optimizer: str) -> None:
    lr = {"adadelta": 1.0, "sgd": 0.05, "adagrad": 0.05}.get(optimizer, 0.003)
    result, rep = train(synthetic(epochs=4), {"optimizer": optimizer, "lr": lr, "width": 16,
                                              "nesterov": True, "batch_size": 16})
    assert rep.metrics[-1]["train_loss"] < rep.metrics[0]["train_loss"]
    assert result.value > 0.6


@pytest.mark.parametrize(("model", "params"), [
    ("mlp", {"depth": 2, "width": 64}), ("cnn", {"conv_blocks": 1, "channels": 16}),
])
def test_every_init_draws_its_distribution_and_trains(model: str, params: dict) -> None:
    from torch import nn

    from tunecli.catalogue import INITS
    from tunecli.trainer import models

    def layers(init: str) -> list[nn.Module]:
        torch.manual_seed(0)
        config = models.full_config(model, {**params, "init": init})
        built = models.build(model, config, (1, 8, 8), 10)
        return [m for m in built.modules() if isinstance(m, nn.Linear | nn.Conv2d)]

    default = layers("default")
    for init in INITS:
        chosen = layers(init)
        for before, layer in zip(default, chosen, strict=True):
            w = layer.weight.detach().flatten(1)
            fan_in = w.shape[1]
            if init == "default":
                assert torch.equal(layer.weight, before.weight)
                continue
            assert not torch.equal(layer.weight, before.weight)
            assert layer.bias is None or not layer.bias.any()
            if init == "kaiming":  # N(0, 2 / fan_in)
                assert w.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.2)
            elif init == "xavier":  # U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))
                bound = 2 ** 0.5 * (6 / (fan_in + w.shape[0])) ** 0.5
                assert w.abs().max().item() <= bound
            else:  # orthogonal rows (or columns) scaled by relu's gain
                small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                assert torch.allclose(small, 2 * torch.eye(len(small)), atol=1e-4)
        spec = TrainerSpec.model_validate({"dataset": "digits", "epochs": 2, "model": model})
        result, _ = train(spec, {**params, "init": init})
        assert result.value > 0.5


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_with_warmup(schedule: str) -> None:
    _, rep = train(synthetic(epochs=5), {"schedule": schedule, "warmup_epochs": 2, "lr": 0.03,
                                         "step_size": 1, "gamma": 0.5, "plateau_patience": 0})
    lrs = [m["lr"] for m in rep.metrics]
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.02)  # warm-up
    if schedule == "none":
        assert lrs[2:] == [pytest.approx(0.03)] * 3
    elif schedule in ("step", "cosine"):
        assert lrs[-1] < 0.03


def test_plateau_schedule_decays_when_the_metric_stalls() -> None:
    import torch

    from tunecli.catalogue import LOOP_DEFAULTS
    from tunecli.trainer.optim import Schedule

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    config = {**LOOP_DEFAULTS, "schedule": "plateau", "gamma": 0.5, "plateau_patience": 0}
    schedule = Schedule(config, optimizer, epochs=5, minimize=False)
    lrs = []
    for epoch in range(1, 4):
        schedule.step(epoch, 0.7)  # the same accuracy every epoch: no improvement
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [pytest.approx(0.1), pytest.approx(0.05), pytest.approx(0.025)]


def test_l1_and_l2_shrink_weights() -> None:
    def weight_norm(params: dict[str, Any]) -> float:
        spec = synthetic(epochs=5)
        reporter = Collect()
        result = loop.train(spec, {"width": 16, "lr": 0.01, "batch_size": 16, **params}, reporter,
                          metric="val_accuracy", checkpoint=None)
        return sum(w.abs().sum().item() for k, w in result.state_dict.items()
                   if k.endswith("weight"))

    plain = weight_norm({})
    l1 = weight_norm({"l1": 1e-2})
    l2 = weight_norm({"weight_decay": 5.0, "optimizer": "adamw"})
    assert l1 < plain * 0.8
    assert l2 < plain * 0.8


def test_early_stopping_stops() -> None:
    result, rep = train(synthetic(epochs=10, early_stopping=2), {"lr": 0.0})
    # the metric never improves after epoch 1, so epochs 2 and 3 exhaust the patience
    assert result.stopped_early
    assert result.epochs_run == 3 and rep.epochs == [1, 2, 3]


def test_data_shares_train_the_first_epochs_on_a_share_of_the_data() -> None:
    def examples(rep: Collect) -> list[int]:
        return [round(m["samples_per_second"] * m["epoch_seconds"]) for m in rep.metrics]

    _, whole = train(synthetic())
    n = examples(whole)[0]
    shared, halved = train(synthetic(data_shares=[0.25, 0.5]))
    assert examples(halved) == [round(n / 4), round(n / 2), n]
    assert shared.history[0]["val_accuracy"] != whole.metrics[0]["val_accuracy"]
    # a share of 1 is the whole epoch: the same batches, the same values
    same, _ = train(synthetic(data_shares=[1.0]))
    assert [h["val_accuracy"] for h in same.history] == \
        [m["val_accuracy"] for m in whole.metrics]


def test_nan_loss_fails_the_trial() -> None:
    with pytest.raises(TrialFailed, match=r"nan|inf"):
        train(synthetic(), {"lr": 1e12, "optimizer": "sgd", "momentum": 0.9})


def test_out_of_memory_fails_the_trial_with_sizes(monkeypatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(torch.nn.Linear, "forward", boom)
    with pytest.raises(TrialFailed) as info:
        train(synthetic(), {"batch_size": 64, "width": 16})
    assert "batch_size 64" in info.value.reason and "parameters" in info.value.reason


def test_seed_makes_a_trial_reproducible() -> None:
    a, _ = train(synthetic(), {"lr": 0.01, "width": 16, "dropout": 0.2})
    b, _ = train(synthetic(), {"lr": 0.01, "width": 16, "dropout": 0.2})
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]


def test_checkpoint_continues_after_last_finished_epoch(tmp_path: Path) -> None:
    spec = synthetic(epochs=4)
    params = {"lr": 0.01, "width": 16, "schedule": "cosine"}
    straight, _ = train(spec, params)
    ckpt = tmp_path / "ckpt" / "trial-0.pt"
    with pytest.raises(KeyboardInterrupt):
        train(spec, params, checkpoint=ckpt, reporter=Collect(stop_at=2))
    assert ckpt.exists()
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2
    resumed, rep = train(spec, params, checkpoint=ckpt)
    assert rep.epochs == [3, 4]  # the pruner sees each epoch once
    assert [h["val_loss"] for h in resumed.history] == \
        pytest.approx([h["val_loss"] for h in straight.history])


def test_digits_read_from_its_file_equal_scikit_learns_loader() -> None:
    """The shipped digits are read from scikit-learn's file without importing it; the pixels
    (scaled to 0-1) and labels are those of ``load_digits``."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from tunecli.spec.models import DatasetSpec
    from tunecli.trainer import data

    raw = data._digits(DatasetSpec(name="digits"), None, False)
    bunch = load_digits()
    assert raw.x.shape == (1797, 1, 8, 8) and raw.x.dtype == np.float32
    assert np.array_equal(raw.x.reshape(1797, 64), (bunch.data / 16.0).astype(np.float32))
    assert np.array_equal(raw.y, bunch.target)
    loads = "from tunecli.spec.models import DatasetSpec; from tunecli.trainer import data; " \
            "import sys; data._digits(DatasetSpec(name='digits'), None, False); " \
            "print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", loads], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_an_edited_csv_is_read_again_in_the_same_process(tmp_path: Path) -> None:
    """A notebook that edits its data between two searches trains on the new rows."""
    from tunecli.trainer import data

    path = tmp_path / "d.csv"
    spec = TrainerSpec.model_validate({"dataset": {"name": "csv", "path": str(path)}})

    def rows(n: int) -> int:
        path.write_text("a,b,target\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(n)))
        bundle = data.load(spec.dataset, None, False, torch.device("cpu"))
        return len(bundle.x_train) + len(bundle.x_val) + len(bundle.x_test)

    assert rows(40) == 40
    assert rows(60) == 60  # same path, another size: read again, not the first one's tensors


def test_the_data_cache_keeps_only_the_last_few_sets(monkeypatch) -> None:
    from tunecli.trainer import data

    monkeypatch.setattr(data, "_CACHE", type(data._CACHE)())
    for n in range(data.CACHED_SETS + 2):
        spec = TrainerSpec.model_validate({"dataset": {
            "name": "synthetic-classification", "n_samples": 50 + n}})
        data.load(spec.dataset, None, False, torch.device("cpu"))
    assert len(data._CACHE) == data.CACHED_SETS
    assert all('"n_samples": 50' not in key[0] for key in data._CACHE)  # the oldest went first


def test_user_models_import_without_changing_sys_path(tmp_path: Path) -> None:
    """A module beside the study file is found there; the process's sys.path stays as it was,
    and two model.py files in two folders stay two models."""
    import sys

    from tunecli.trainer import models

    for folder, width in (("one", 5), ("two", 7)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.py").write_text(
            "import torch\n\ndef build(params, input_shape, n_outputs):\n"
            f"    return torch.nn.Linear({width}, n_outputs)\n")
    (tmp_path / "one" / "beside_study.py").write_text(
        "import torch\n\ndef build(params, input_shape, n_outputs):\n"
        "    return torch.nn.Linear(3, n_outputs)\n")
    before = list(sys.path)
    built = models.resolve_user_model("beside_study:build", str(tmp_path / "one"))({}, (3,), 2)
    assert built.in_features == 3
    assert sys.path == before
    widths = [models.resolve_user_model("model.py:build", str(tmp_path / folder))({}, (1,), 2)
              .in_features for folder in ("one", "two")]
    assert widths == [5, 7]
