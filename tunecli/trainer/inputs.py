"""New inputs for a trained model (``tunecli predict``), read in the form its training data had.

A CSV model reads CSV rows (a file, or ``-`` for standard input) with the training file's
columns; the target column may be there (then the rows can be scored). Any other model reads
``.npz`` (arrays ``x``, optionally ``y``) or ``.pt`` (a dict with ``x``, optionally ``y``),
an MNIST-family IDX images file (its labels file beside it is read too), or a CIFAR-10 batch
file. A model trained on an image folder also reads image files: one file, a folder of them, or
a folder of class folders (the classes are then the targets), each resized as in training.
Examples are checked against the shape the model takes before anything runs.
"""

from __future__ import annotations

import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunecli.errors import SpecError

__all__ = ["NewInputs", "read"]


@dataclass
class NewInputs:
    """Raw examples as the model takes them, their targets when given, and their names."""

    x: np.ndarray                 # [N, *raw_shape], float32
    targets: np.ndarray | None    # class indices (int64), or values in the target's units
                                  # (float32, as the loaders hold them: scores match exactly)
    rows: list[str]               # each example's line in a CSV, or its index


def read(source: str, pipeline: dict[str, Any]) -> NewInputs:
    """``source`` (a path, or ``-``: CSV on standard input) for a model with ``pipeline``."""
    if pipeline.get("columns") is not None:
        return _csv(source, pipeline)
    if source == "-":
        raise SpecError("standard input is read as CSV, and this model was not trained on a "
                        "CSV", source="INPUT", fix=_kinds(pipeline))
    path = Path(source)
    if pipeline.get("image_size"):
        from tunecli.trainer.image_files import is_image_file

        if path.is_dir() or is_image_file(path):
            return _image_files(path, pipeline)
    if not path.is_file():
        raise SpecError(f"{source} is not a file", source="INPUT", fix=_kinds(pipeline))
    x, y = _arrays(path, pipeline)
    if y is not None and len(y) != len(x):
        raise SpecError(f"{source} holds {len(x)} examples but {len(y)} targets",
                        source="INPUT", fix="Give one target per example, or none.")
    return NewInputs(_shaped(x, pipeline, source), _class_targets(y, pipeline, source),
                     [str(i) for i in range(len(x))])


def _kinds(pipeline: dict[str, Any]) -> str:
    images = ("an image file, a folder of them (or of class folders, to score), "
              if pipeline.get("image_size") else "")
    return (f"Give {images}a .npz or .pt file with x (and y to score), an IDX images file, or "
            f"a CIFAR-10 batch; examples shaped {pipeline['raw_shape']}.")


def _image_files(path: Path, pipeline: dict[str, Any]) -> NewInputs:
    """One image file, a folder of them, or a folder of class folders (the targets)."""
    from tunecli.trainer.image_files import image_array, image_paths

    size = (int(pipeline["image_size"][0]), int(pipeline["image_size"][1]))
    channels = int(pipeline["channels"])
    if not path.exists():
        raise SpecError(f"{path} does not exist", source="INPUT", fix=_kinds(pipeline))
    files = [path] if path.is_file() else image_paths(path)
    targets: list[int] | None = None
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if path.is_dir() else []
    if folders:
        if files:
            raise SpecError(f"{path} holds both class folders and {len(files)} loose images",
                            source="INPUT", fix="Give a folder of images, or one of class "
                                                "folders (to score), not both.")
        classes = list(pipeline.get("classes") or [])
        unknown = [f.name for f in folders if f.name not in classes]
        if unknown:
            raise SpecError(f"{path / unknown[0]} is not a class the model knows",
                            source="INPUT", fix=f"Classes: {', '.join(classes[:12])}.")
        found = [(p, classes.index(f.name)) for f in folders for p in image_paths(f)]
        files, targets = [p for p, _ in found], [c for _, c in found]
    if not files:
        raise SpecError(f"{path} holds no image files", source="INPUT", fix=_kinds(pipeline))
    x = np.stack([image_array(p, size, channels) for p in files]).astype(np.float32)
    base = path if path.is_dir() else path.parent
    return NewInputs(x, np.array(targets, dtype=np.int64) if targets is not None else None,
                     [p.relative_to(base).as_posix() for p in files])


def _csv(source: str, pipeline: dict[str, Any]) -> NewInputs:
    from tunecli.trainer.csv_table import read_new_rows

    name = "standard input" if source == "-" else source
    if source == "-":
        text = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise SpecError(f"{source} is not a file", source="INPUT",
                            fix=f"Give a CSV file with the columns "
                                f"{', '.join(pipeline['columns'])}, or - for standard input.")
        data = path.read_bytes()
        try:
            if b"\x00" in data[:4096]:
                raise UnicodeDecodeError("utf-8", data, 0, 1, "binary")
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SpecError(f"{source} is not CSV text, and this model was trained on a CSV",
                            source="INPUT", fix=f"Give its rows as UTF-8 CSV with the columns "
                                                f"{', '.join(pipeline['columns'])}.") from None
    x, cells, lines = read_new_rows(text, name, pipeline)
    targets = _cell_targets(cells, lines, pipeline, name) if cells is not None else None
    window = pipeline.get("window")
    if not window:
        return NewInputs(x, targets, [f"line {n}" for n in lines])
    # Sequences: a window of rows per example; with the target, scored horizon rows ahead.
    horizon = int(pipeline.get("horizon") or 1)
    count = len(x) - window + 1 - (horizon if targets is not None else 0)
    if count < 1:
        raise SpecError(f"{name} has {len(x)} rows: too few for one window of {window} rows"
                        + (f" and its target {horizon} rows later" if targets is not None
                           else ""), source="INPUT", fix="Give more rows.")
    windows = np.stack([x[s:s + window] for s in range(count)])
    ahead = (targets[np.arange(count) + window - 1 + horizon]
             if targets is not None else None)
    return NewInputs(windows, ahead, [f"line {lines[s + window - 1]}" for s in range(count)])


def _cell_targets(cells: list[str], lines: list[int], pipeline: dict[str, Any],
                  name: str) -> np.ndarray:
    """The target column's cells as the model scores them."""
    from tunecli.trainer.csv_table import lines_text

    if pipeline["task"] == "classification":
        index = {label: i for i, label in enumerate(pipeline["classes"])}
        unknown = [j for j, cell in enumerate(cells) if cell not in index]
        if unknown:
            raise SpecError(f"{lines_text([lines[j] for j in unknown])}, column "
                            f"'{pipeline['target']}': {cells[unknown[0]]!r} is not a class the "
                            "model knows", source=name,
                            fix=f"Classes: {', '.join(map(repr, pipeline['classes'][:12]))}.")
        return np.array([index[c] for c in cells], dtype=np.int64)
    values = []
    for j, cell in enumerate(cells):
        try:
            values.append(float(cell))
        except ValueError:
            values.append(math.nan)
        if not math.isfinite(values[-1]):
            raise SpecError(f"line {lines[j]}, column '{pipeline['target']}': {cell!r} is not "
                            "a number", source=name, fix="Fill the target, or drop the column.")
    return np.array(values, dtype=np.float32)  # as the CSV loader holds them


def _arrays(path: Path, pipeline: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    from tunecli.trainer.image_files import read_idx

    if "idx3" in path.name or path.name.endswith(".idx"):
        labels = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        try:
            images = read_idx(path)
            found = read_idx(labels).astype(np.int64) if labels != path and labels.is_file() \
                else None
        except ValueError as exc:
            raise SpecError(str(exc), source="INPUT", fix=_kinds(pipeline)) from None
        return images, found
    if path.name.startswith(("test_batch", "data_batch")):
        with path.open("rb") as handle:  # CIFAR-10's own pickles, as its loader reads them
            entry = pickle.load(handle, encoding="latin1")
        return (np.asarray(entry["data"], dtype=np.uint8),
                np.asarray(entry["labels"], dtype=np.int64))
    return _tensor_file(path, pipeline)


def _tensor_file(path: Path, pipeline: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    found: dict[str, Any] = {}
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                found = {k: np.asarray(arrays[k]) for k in arrays.files}
        elif path.suffix in (".pt", ".pth"):
            import torch

            saved = torch.load(path, map_location="cpu", weights_only=True)
            found = ({k: np.asarray(v) for k, v in saved.items()} if isinstance(saved, dict)
                     else {"x": np.asarray(saved)})
        else:
            raise SpecError(f"{path.name}: unknown file type {path.suffix!r}", source="INPUT",
                            fix=_kinds(pipeline))
    except SpecError:
        raise
    except Exception as exc:  # a damaged or foreign file: one line
        raise SpecError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})",
                        source="INPUT", fix=_kinds(pipeline)) from None
    if "x" not in found:
        raise SpecError(f"{path.name} holds {sorted(found)}, not x", source="INPUT",
                        fix=_kinds(pipeline))
    return found["x"], found.get("y")


def _shaped(x: np.ndarray, pipeline: dict[str, Any], source: str) -> np.ndarray:
    """``x`` as ``[N, *raw_shape]``: the same shape, or the same values per example laid out
    flat (digits as 64 values, MNIST as 28x28)."""
    want = tuple(pipeline["raw_shape"])
    resized = bool(pipeline.get("image_size")) and x.ndim == 4 and x.shape[1] == want[0]
    if x.ndim >= 1 and tuple(x.shape[1:]) != want and not resized:  # the model resizes images
        if x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(want):
            x = x.reshape(len(x), *want)
        else:
            raise SpecError(f"{source}: examples shaped {list(x.shape[1:])}, and the model "
                            f"takes {list(want)}", source="INPUT",
                            fix="Give examples shaped like the training data's.")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise SpecError(f"{source}: x holds {x.dtype}, not numbers", source="INPUT",
                        fix="Give numbers.")
    return np.ascontiguousarray(x, dtype=np.float32)


def _class_targets(y: np.ndarray | None, pipeline: dict[str, Any],
                   source: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if pipeline["task"] != "classification":
        return y.astype(np.float32)
    classes = int(pipeline["outputs"])
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes:
        raise SpecError(f"{source}: y must hold class numbers 0..{classes - 1}", source="INPUT",
                        fix="Give the class numbers the training data used.")
    return y.astype(np.int64)
