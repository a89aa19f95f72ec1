"""New inputs for a trained model (``tunecli predict``), read in the form its training data had.

A CSV model reads CSV rows (a file, or ``-`` for standard input) with the training file's
columns; the target column may be there (then the rows can be scored). Any other model reads
``.npz`` (arrays ``x``, optionally ``y``) or ``.pt`` (a dict with ``x``, optionally ``y``),
an MNIST-family IDX images file (its labels file beside it is read too), or a CIFAR-10 batch
file. Examples are checked against the shape the model takes before anything runs.
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
    if not path.is_file():
        raise SpecError(f"{source} is not a file", source="INPUT", fix=_kinds(pipeline))
    x, y = _arrays(path, pipeline)
    if y is not None and len(y) != len(x):
        raise SpecError(f"{source} holds {len(x)} examples but {len(y)} targets",
                        source="INPUT", fix="Give one target per example, or none.")
    return NewInputs(_shaped(x, pipeline, source), _class_targets(y, pipeline, source),
                     [str(i) for i in range(len(x))])


def _kinds(pipeline: dict[str, Any]) -> str:
    return ("Give a .npz or .pt file with x (and y to score), an IDX images file, or a "
            f"CIFAR-10 batch; examples shaped {pipeline['raw_shape']}.")


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
    if x.ndim >= 1 and tuple(x.shape[1:]) != want:
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
