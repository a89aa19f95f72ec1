"""Data sets: name -> loader, then one deterministic split, normalisation and device placement.

Every loader returns plain arrays. ``load`` splits them (seeded), fits the normalisation on the
training part only, and keeps the tensors on the training device for the life of the process,
so trials after the first pay nothing for data (the main cost of DataLoader-based scripts).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunecli.catalogue import CLASSIFICATION_METRICS, REGRESSION_METRICS
from tunecli.errors import SpecError
from tunecli.trainer.raw_data import RawData

if TYPE_CHECKING:  # torch is imported where tensors are made: `report` and `validate` skip it
    import torch

    from tunecli.spec.models import DatasetSpec  # types only: the spec imports the registries

__all__ = [
    "CLASSIFICATION_METRICS",
    "DATASETS",
    "REGRESSION_METRICS",
    "DataBundle",
    "RawData",
    "load",
    "part_indices",
    "raw_test_part",
    "resolve_data_root",
    "with_base_dir",
]



@dataclass
class DataBundle:
    """Split, normalised tensors on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    n_outputs: int
    input_shape: tuple[int, ...]
    is_image: bool
    # The normalisation fitted on the training part; a trained model needs it for new data.
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    # Regression: targets are standardised on the training part (so ordinary learning rates
    # work whatever the target's units); metrics and predictions are turned back into the
    # original units with these.
    target_mean: float = 0.0
    target_std: float = 1.0
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    # The loader's steps from a raw input to a row of x (``RawData.recipe``), with the raw
    # example's shape: what ``pipeline`` rebuilds around a trained model.
    recipe: dict[str, Any] = field(default_factory=dict)


def resolve_data_root(configured: str | None, base_dir: str | None,
                      override: str | None = None) -> Path | None:
    """--data-root wins over TUNECLI_DATA, which wins over trainer.data_root (file-relative)."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("TUNECLI_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if configured:
        root = Path(configured).expanduser()
        if not root.is_absolute() and base_dir:
            root = Path(base_dir) / root
        return root.resolve()
    return None


# ---------------------------------------------------------------------------------------------
# Loaders


def _digits(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    """scikit-learn's shipped 8x8 digits, read from its file: importing scikit-learn to call
    ``load_digits`` took about a second of every search's start-up (and every worker's)."""
    path = _sklearn_data_file("digits.csv.gz")
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        pixels, target = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # a scikit-learn that keeps its data elsewhere
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    x = (pixels / np.float32(16.0)).reshape(-1, 1, 8, 8)
    return RawData(x, target, "classification", True, class_names=[str(c) for c in range(10)],
                   recipe={"divide_by": 16.0}, raw_x=pixels.reshape(-1, 1, 8, 8))


def _sklearn_data_file(name: str) -> Path | None:
    """A data file shipped inside scikit-learn (``sklearn/datasets/data``), found without
    importing it."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")
    for folder in (found.submodule_search_locations or []) if found else []:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


_CLASS_NAMES = {
    "MNIST": tuple(str(d) for d in range(10)),
    "FashionMNIST": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
    "CIFAR10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}


def _image_set(class_name: str, folder: str,
               files_at: str) -> Callable[[DatasetSpec, Path | None, bool], RawData]:
    """A torchvision-layout data set, read from its original files (see ``image_files``)."""
    def read(root: Path) -> Any:
        from tunecli.trainer import image_files

        if class_name == "CIFAR10":
            return image_files.read_cifar10(root / folder)
        found = image_files.read_mnist_family(root / folder / "raw", folder)
        if found is None and (root / folder).is_dir():  # torchvision < 0.9 kept them here
            found = image_files.read_mnist_family(root / folder, folder)
        return found

    def loader(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
        if root is None:
            raise SpecError(f"the {spec.name} data set needs a data root", path="trainer.data_root",
                            fix=f"Set trainer.data_root, --data-root DIR or TUNECLI_DATA to a "
                                f"folder holding {folder}/ (add download: true to fetch it).")
        found = read(root)
        if found is None and download:
            import torchvision  # only to fetch the files

            cls = getattr(torchvision.datasets, class_name)
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
            found = read(root)
        if found is None:
            raise SpecError(f"{spec.name} files not found under {root}",
                            path="trainer.data_root",
                            fix=f"Put the original files in {root / files_at}, point "
                                "--data-root or TUNECLI_DATA at a folder that holds them, or "
                                "set trainer.download: true.")
        (x_train, y_train), test = found
        return RawData(x_train, y_train, "classification", True, test=test,
                       class_names=list(_CLASS_NAMES.get(class_name, ())) or None)
    return loader


def _image_folder(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    """A folder per class of image files, at ``size`` (see ``image_files.read_image_folder``)."""
    from tunecli.trainer.image_files import read_image_folder

    assert spec.path is not None  # the spec's checks ask for it
    size = (spec.size[0], spec.size[1]) if spec.size else None
    found = read_image_folder(Path(spec.path), size)
    x, y = found.train
    return RawData(x, y, "classification", True, test=found.test, class_names=found.classes,
                   recipe={"image_size": list(found.size), "channels": found.channels})


def _csv(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    from tunecli.trainer.csv_table import read_csv

    table = read_csv(spec)
    if table.x.shape[1] == 0:
        raise SpecError(f"{spec.path} has no feature column besides the target",
                        path="trainer.dataset.path", fix="Give the features as columns.")
    raw_y = table.target
    task = spec.task
    numeric = _all_numeric(raw_y)
    if task == "auto":
        task = "classification" if not numeric or _few_integers(raw_y) else "regression"
    labels: list[str] | None = None
    if task == "classification":
        labels = sorted(set(raw_y), key=lambda v: (float(v) if numeric else v))
        if len(labels) < 2:
            raise SpecError(f"the target '{table.target_name}' of {spec.path} has one class "
                            f"only ({labels[0]!r}): nothing to learn",
                            path="trainer.dataset.target",
                            fix="Name the right target column, or use task: regression.")
        y = np.array([labels.index(v) for v in raw_y], dtype=np.int64)
    else:
        if not numeric:
            raise SpecError(f"target '{table.target_name}' is not numeric",
                            path="trainer.dataset.task",
                            fix="Use task: classification for a text target.")
        y = np.array([float(v) for v in raw_y], dtype=np.float32)
    return RawData(table.x, y, task, False, class_names=labels,
                   feature_names=table.feature_names, recipe=dict(table.recipe),
                   raw_x=table.codes)


def _all_numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _few_integers(values: list[str]) -> bool:
    return all(float(v).is_integer() for v in values) and len(set(values)) <= 20


def _synthetic_classification(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=spec.n_samples, n_features=spec.n_features,
                               n_informative=max(2, min(spec.n_features, 10)),
                               n_redundant=0, n_classes=spec.n_classes,
                               n_clusters_per_class=1, random_state=spec.split_seed)
    return RawData(x.astype(np.float32), y.astype(np.int64), "classification", False)


def _synthetic_regression(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=spec.n_samples, n_features=spec.n_features,
                           n_informative=max(1, min(spec.n_features, 10)), noise=spec.noise,
                           random_state=spec.split_seed)
    return RawData(x.astype(np.float32), (y / (np.std(y) + 1e-8)).astype(np.float32),
                   "regression", False)


def _csv_sequence(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    from tunecli.trainer.sequences import csv_windows

    return csv_windows(spec, _csv(spec, root, download))


def _tensors(spec: DatasetSpec, root: Path | None, download: bool) -> RawData:
    from tunecli.trainer.sequences import read_tensors

    return read_tensors(spec)


DATASETS: dict[str, Callable[[DatasetSpec, Path | None, bool], RawData]] = {
    "digits": _digits,
    "mnist": _image_set("MNIST", "MNIST", "MNIST/raw"),
    "fashion-mnist": _image_set("FashionMNIST", "FashionMNIST", "FashionMNIST/raw"),
    "cifar10": _image_set("CIFAR10", "cifar-10-batches-py", "cifar-10-batches-py"),
    "image-folder": _image_folder,
    "csv": _csv,
    "csv-sequence": _csv_sequence,
    "tensors": _tensors,
    "synthetic-classification": _synthetic_classification,
    "synthetic-regression": _synthetic_regression,
}


def _fold(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          index: int, folds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold ``index`` of ``folds`` over the validation part followed by the training part (in
    the split's order: shuffled, or time order for a series) as the new validation part."""
    x_all, y_all = np.concatenate([x_val, x_train]), np.concatenate([y_val, y_train])
    bounds = np.linspace(0, len(x_all), folds + 1).round().astype(int)
    inside = np.zeros(len(x_all), dtype=bool)
    inside[bounds[index]:bounds[index + 1]] = True
    return x_all[~inside], y_all[~inside], x_all[inside], y_all[inside]


# ---------------------------------------------------------------------------------------------
# Split, normalise, place on the device; cached per process

# Built data sets of this process, the most recently used last: a study's trials share one,
# and a notebook that runs several studies keeps only the last few on the device.
_CACHE: collections.OrderedDict[tuple[str, ...], DataBundle] = collections.OrderedDict()
CACHED_SETS = 4


def _file_identity(spec: DatasetSpec) -> str:
    """The data file's path, size and modification time (an edited file is read again);
    a folder's own entry, for a folder of files."""
    if not spec.path:
        return ""
    try:
        found = Path(spec.path).stat()
    except OSError:
        return spec.path  # the loader says what is wrong with it
    return f"{Path(spec.path).resolve()}:{found.st_size}:{found.st_mtime_ns}"


def with_base_dir(spec: DatasetSpec, base_dir: str | None) -> DatasetSpec:
    """The data set with its file's path (``csv``) resolved against the study file's folder."""
    if spec.path and base_dir and not Path(spec.path).is_absolute():
        return spec.model_copy(update={"path": str(Path(base_dir) / spec.path)})
    return spec


def load(spec: DatasetSpec, root: Path | None, download: bool, device: torch.device,
         base_dir: str | None = None, fold: tuple[int, int] | None = None) -> DataBundle:
    """The data set as tensors on ``device``; built once per process and configuration.
    ``fold`` (f, K): K-fold cross-validation over the training and validation parts together,
    validating on fold f (the test part stays out)."""
    spec = with_base_dir(spec, base_dir)
    key = (json.dumps(spec.model_dump(mode="json"), sort_keys=True), str(root), str(device),
           str(fold), _file_identity(spec))
    if key not in _CACHE:
        raw = DATASETS[spec.name](spec, root, download)
        raw.recipe["raw_shape"] = list(raw.x.shape[1:])
        if spec.as_sequence:
            from tunecli.trainer.sequences import rows_as_sequence

            raw = rows_as_sequence(raw)
        _CACHE[key] = _prepare(raw, spec, device, fold)
        while len(_CACHE) > CACHED_SETS:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def part_indices(n: int, spec: DatasetSpec, ordered: bool = False,
                 own_test: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of a loader's ``n`` examples are the training, validation and test parts (seeded
    by ``split_seed``; time order for a series). A set with its own test part (image files)
    splits only its training examples (the test indices are then empty)."""
    rng = np.random.default_rng(spec.split_seed)
    if own_test:
        order = np.arange(n) if ordered else rng.permutation(n)
        n_val = max(1, int(round(len(order) * spec.val_fraction)))
        return order[n_val:], order[:n_val], order[:0]
    # Time order: training first, then validation, then test (read backwards below).
    order = np.arange(n)[::-1] if ordered else rng.permutation(n)
    n_test = int(round(len(order) * spec.test_fraction))
    n_val = max(1, int(round(len(order) * spec.val_fraction)))
    if len(order) - n_test - n_val < 2:
        raise SpecError(f"only {len(order)} rows: nothing left to train on",
                        path="trainer.dataset.val_fraction",
                        fix="Lower val_fraction/test_fraction or use more data.")
    test_idx, val_idx = order[:n_test], order[n_test:n_test + n_val]
    train_idx = order[n_test + n_val:]
    if ordered:
        test_idx, val_idx, train_idx = test_idx[::-1], val_idx[::-1], train_idx[::-1]
    return train_idx, val_idx, test_idx


def raw_test_part(spec: DatasetSpec, root: Path | None,
                  base_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test part as a saved model takes it (``RawData.raw_x``: before any step of its
    input pipeline) and its targets (class indices, or values in the target's units)."""
    spec = with_base_dir(spec, base_dir)
    raw = DATASETS[spec.name](spec, root, False)
    if raw.test is not None:
        return raw.test
    _, _, test_idx = part_indices(len(raw.x), spec, raw.ordered)
    examples = raw.raw_x if raw.raw_x is not None else raw.x
    return examples[test_idx], raw.y[test_idx]


def _split(raw: RawData, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """Training, validation and test parts (x, y each), see ``part_indices``."""
    train_idx, val_idx, test_idx = part_indices(len(raw.x), spec, raw.ordered,
                                                raw.test is not None)
    x_test, y_test = raw.test if raw.test is not None else (raw.x[test_idx], raw.y[test_idx])
    return (raw.x[train_idx], raw.y[train_idx], raw.x[val_idx], raw.y[val_idx],
            x_test, y_test)


def _prepare(raw: RawData, spec: DatasetSpec, device: torch.device,
             fold: tuple[int, int] | None = None) -> DataBundle:
    import torch

    x_train, y_train, x_val, y_val, x_test, y_test = _split(raw, spec)
    if fold is not None:
        x_train, y_train, x_val, y_val = _fold(x_train, y_train, x_val, y_val, *fold)
    if spec.max_train_samples is not None:
        x_train, y_train = x_train[:spec.max_train_samples], y_train[:spec.max_train_samples]

    # Normalisation fitted on the training part only (per channel for images), done in place on
    # float32 tensors: no float64 or second full-size copy (image files stay uint8 until here).
    def tensor_x(a: np.ndarray) -> torch.Tensor:
        # The parts are fresh arrays, except a mapped read-only test split: copy only that.
        owned = np.require(a, requirements=["C_CONTIGUOUS", "WRITEABLE"])
        t = torch.from_numpy(owned).to(device=device, dtype=torch.float32)
        return t.div_(255.0) if a.dtype == np.uint8 else t  # images in [0, 1], as ToTensor

    xs = [tensor_x(a) for a in (x_train, x_val, x_test)]
    # per channel for images, per feature for tables and sequences ([N, T, F])
    dims = (0, 2, 3) if raw.is_image else (0, 1) if raw.x.ndim == 3 else (0,)
    std_t, mean_t = torch.std_mean(xs[0], dim=dims, keepdim=True, correction=0)
    std_t = std_t + 1e-6
    for t in xs:
        t.sub_(mean_t).div_(std_t)
    mean, std = mean_t.cpu().numpy(), std_t.cpu().numpy()
    recipe = dict(raw.recipe)
    if x_train.dtype == np.uint8:
        recipe["divide_by"] = 255.0

    target_mean, target_std = 0.0, 1.0
    if raw.task == "regression":
        target_mean = float(y_train.mean())
        target_std = float(y_train.std()) or 1.0

    def tensor_y(a: np.ndarray) -> torch.Tensor:
        if raw.task == "classification":
            return torch.as_tensor(a).to(device=device, dtype=torch.int64)
        scaled = (a.astype(np.float64) - target_mean) / target_std
        return torch.as_tensor(scaled).to(device=device, dtype=torch.float32)

    n_outputs = int(max(raw.y.max(), y_test.max(initial=0))) + 1 \
        if raw.task == "classification" else 1
    return DataBundle(xs[0], tensor_y(y_train), xs[1], tensor_y(y_val),
                      xs[2], tensor_y(y_test), raw.task, n_outputs,
                      tuple(x_train.shape[1:]), raw.is_image, mean[0], std[0], target_mean,
                      target_std, raw.class_names, raw.feature_names, recipe)
