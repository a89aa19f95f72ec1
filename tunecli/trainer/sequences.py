"""Sequence data: examples shaped ``[time steps, features]`` for the lstm, gru and transformer
models (an MLP takes them too, flattened).

Three sources, each a data set name or key:

- ``as_sequence: true`` on an image data set: each image read row by row, ``[rows, columns x
  channels]`` (the classic sequential-MNIST task);
- ``csv-sequence``: windows of ``window`` consecutive rows of a numeric CSV time series (parsed
  as ``csv`` parses, delimiters, encodings and missing cells included), the target taken
  ``horizon`` rows after each window's last row. Windows overlap, so the split keeps time order
  (training first, then validation, then test) and never shuffles: a shuffled split would put
  nearly the same window on both sides;
- ``tensors``: a user's own arrays in ``.npz`` (arrays ``x`` and ``y``) or ``.pt`` (a dict with
  ``x`` and ``y``, or an ``(x, y)`` pair). ``[N, T, F]`` is a sequence, ``[N, C, H, W]`` an
  image, ``[N, F]`` a table. Integer targets are classes unless ``task: regression``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunecli.errors import SpecError

if TYPE_CHECKING:
    from tunecli.spec.models import DatasetSpec
    from tunecli.trainer.raw_data import RawData

__all__ = ["csv_windows", "read_tensors", "rows_as_sequence"]


def rows_as_sequence(raw: RawData) -> RawData:
    """Images ``[N, C, H, W]`` as sequences ``[N, H, W * C]``."""
    from dataclasses import replace

    if not raw.is_image:
        raise SpecError("as_sequence reads images row by row, and this data set is not images",
                        path="trainer.dataset.as_sequence", fix="Remove as_sequence.")

    def rows(x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n, h, w * c)

    test = (rows(raw.test[0]), raw.test[1]) if raw.test is not None else None
    return replace(raw, x=rows(raw.x), is_image=False, test=test,
                   recipe={**raw.recipe, "as_sequence": True})


def csv_windows(spec: DatasetSpec, table: RawData) -> RawData:
    """The CSV's rows (in file order) as overlapping windows."""
    from dataclasses import replace

    if spec.window is None:
        raise SpecError("csv-sequence needs the window length", path="trainer.dataset.window",
                        fix="Add window: N (rows per example), e.g. window: 24.")
    count = len(table.x) - spec.window - spec.horizon + 1
    if count < 10:
        raise SpecError(f"{len(table.x)} rows give {max(0, count)} windows of {spec.window} "
                        f"rows (horizon {spec.horizon}): too few to split",
                        path="trainer.dataset.window", fix="Use a shorter window or more rows.")
    starts = np.arange(count)
    x = np.stack([table.x[s:s + spec.window] for s in starts]).astype(np.float32)
    y = table.y[starts + spec.window - 1 + spec.horizon]
    codes = table.raw_x
    raw_x = None if codes is None else np.stack([codes[s:s + spec.window] for s in starts])
    return replace(table, x=x, y=y, ordered=True, raw_x=raw_x,
                   recipe={**table.recipe, "window": spec.window, "horizon": spec.horizon})


def read_tensors(spec: DatasetSpec) -> RawData:
    """A user's ``.npz`` or ``.pt`` file of examples and targets."""
    from tunecli.trainer.raw_data import RawData

    if not spec.path:
        raise SpecError("the tensors data set needs a file", path="trainer.dataset.path",
                        fix="Add path: data.npz (arrays x and y) or data.pt.")
    path = Path(spec.path)
    if not path.is_file():
        raise SpecError(f"tensors file {path} not found", path="trainer.dataset.path",
                        fix="Give the path relative to the study file.")
    x, y = _arrays(path)
    if len(x) != len(y):
        raise SpecError(f"{path.name} holds {len(x)} examples but {len(y)} targets",
                        path="trainer.dataset.path", fix="Give one target per example.")
    if x.ndim not in (2, 3, 4) or y.ndim != 1:
        raise SpecError(f"{path.name}: x has shape {list(x.shape)} and y {list(y.shape)}",
                        path="trainer.dataset.path",
                        fix="Give x as [N, F], [N, T, F] or [N, C, H, W] and y as [N].")
    integer = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)
    task = spec.task if spec.task != "auto" else "classification" if integer else "regression"
    if task == "classification":
        if not integer or y.min() < 0:
            raise SpecError(f"{path.name}: classification targets must be class numbers 0..C-1",
                            path="trainer.dataset.task",
                            fix="Give integer classes, or set task: regression.")
        y = y.astype(np.int64)
    else:
        y = y.astype(np.float32)
    x = x if x.dtype == np.uint8 else x.astype(np.float32)
    return RawData(x, y, task, x.ndim == 4)


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "Save x and y: numpy.savez(path, x=x, y=y) or torch.save({'x': x, 'y': y}, path)."
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as found:
                if "x" not in found or "y" not in found:
                    raise SpecError(f"{path.name} holds {sorted(found.files)}, not x and y",
                                    path="trainer.dataset.path", fix=fix)
                return np.asarray(found["x"]), np.asarray(found["y"])
        if path.suffix in (".pt", ".pth"):
            import torch

            saved: Any = torch.load(path, map_location="cpu", weights_only=True)
            pair = (saved.get("x"), saved.get("y")) if isinstance(saved, dict) else (
                tuple(saved) if isinstance(saved, list | tuple) and len(saved) == 2
                else (None, None))
            if pair[0] is None or pair[1] is None:
                raise SpecError(f"{path.name} is not a dict with x and y or an (x, y) pair",
                                path="trainer.dataset.path", fix=fix)
            return tuple(np.asarray(t.numpy() if hasattr(t, "numpy") else t)  # type: ignore
                         for t in pair)
    except SpecError:
        raise
    except Exception as exc:  # a damaged or foreign file: say so in one line
        raise SpecError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})",
                        path="trainer.dataset.path", fix=fix) from None
    raise SpecError(f"{path.name}: unknown file type {path.suffix!r}",
                    path="trainer.dataset.path", fix="Use .npz or .pt.")
