"""Reading a user's CSV file as a data person would expect, or saying exactly what is wrong.

The delimiter is sniffed (``,`` ``;`` tab ``|``) unless given, a UTF-8 byte-order mark is
dropped, and another encoding is a key (``encoding: latin-1``). A bad cell is named by its
column and its line in the file, and every problem found is said at once (up to ``SHOWN``
lines, then how many more), so a file is fixed in one pass. Missing cells (empty, ``NaN``,
``inf``) are an error unless ``missing: drop`` (drop those rows) or ``missing: mean`` (fill
with the column's mean). Text feature columns are an error unless listed in ``categorical:``
(one-hot encoded). A target with empty cells or a single class is refused: no model can learn
from it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunecli.errors import SpecError, SpecErrors, did_you_mean

if TYPE_CHECKING:
    from tunecli.spec.models import DatasetSpec  # types only: the spec imports the registries

__all__ = ["CsvTable", "read_csv"]

_DELIMITERS = ",;\t|"
_MISSING_WORDS = {"", "nan", "na", "n/a", "null", "none", "inf", "-inf", "+inf", "infinity",
                  "-infinity"}


class CsvTable:
    """The parsed file: features (float32), target cells as text, and what was found."""

    def __init__(self, x: np.ndarray, target: list[str], feature_names: list[str],
                 target_name: str, dropped_rows: int, filled_cells: int,
                 delimiter: str, recipe: dict[str, Any], codes: np.ndarray) -> None:
        self.x = x
        self.target = target
        self.feature_names = feature_names
        self.target_name = target_name
        self.dropped_rows = dropped_rows
        self.filled_cells = filled_cells
        self.delimiter = delimiter
        # How a row of cells became ``x``, for a trained model's input pipeline: the feature
        # columns in order, each categorical column's levels (its one-hot order), the value
        # filling each numeric column's missing cells, the missing-cell policy, the target.
        self.recipe = recipe
        self.codes = codes  # the feature columns as a model takes them (see read_new_rows)


SHOWN = 10  # problems listed one per line; the rest are counted


def _fail(message: str, fix: str, key: str = "trainer.dataset.path") -> SpecError:
    return SpecError(message, path=key, fix=fix)


def _raise_all(problems: list[SpecError]) -> None:
    """Every problem found, one line each, the first ``SHOWN``; the rest counted."""
    if not problems:
        return
    shown = problems[:SHOWN]
    if len(problems) > SHOWN:
        shown.append(SpecError(f"and {len(problems) - SHOWN} more problems like these",
                               path=shown[-1].path))
    raise shown[0] if len(shown) == 1 else SpecErrors(shown)


def lines_text(numbers: list[int]) -> str:
    """'line 7', or 'lines 7, 9 and 12', or 'lines 7, 9, 12, ... (40 in all)'."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    if len(numbers) <= 4:
        return f"lines {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
    return f"lines {', '.join(map(str, numbers[:3]))}, ... ({len(numbers)} in all)"


def _text(path: Path, encoding: str) -> str:
    if not path.exists():
        raise _fail(f"csv file {path} not found", "Give a path relative to the study file.")
    if path.is_dir():
        raise _fail(f"{path} is a folder, not a CSV file", "Name the .csv file inside it.")
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise _fail(f"{path} is not a text CSV file (it holds binary data)",
                    "Export the table as CSV text.")
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except LookupError:
        raise _fail(f"unknown encoding '{encoding}'", "Write e.g. utf-8, latin-1 or cp1252.",
                    "trainer.dataset.encoding") from None
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise _fail(f"{path} is not {encoding} text (byte 0x{data[exc.start]:02x} on line "
                    f"{line})", "Set trainer.dataset.encoding to the file's encoding, e.g. "
                    "latin-1, or save the file as UTF-8.", "trainer.dataset.encoding") from None


def _delimiter(text: str, given: str | None) -> str:
    if given:
        return given
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _is_missing(cell: str) -> bool:
    return cell.strip().lower() in _MISSING_WORDS


Row = tuple[int, list[str]]  # (line number in the file, cells)


def read_csv(spec: DatasetSpec) -> CsvTable:
    """Parse ``spec.path`` into features and target cells (see the module docstring)."""
    path = Path(spec.path or "")
    text = _text(path, spec.encoding)
    delimiter = _delimiter(text, spec.delimiter)
    header, body = _rows(path, text, delimiter)
    target = _target_column(spec, header, path)
    t_index = header.index(target)
    features = [i for i in range(len(header)) if i != t_index]
    numeric = [i for i in features if header[i] not in spec.categorical]
    keep, dropped = _rows_to_keep(spec, body, t_index, numeric, path, target)
    columns: list[np.ndarray] = []
    names: list[str] = []
    filled = 0
    problems: list[SpecError] = []
    levels: dict[str, list[str]] = {}
    fills: dict[str, float] = {}
    codes = np.zeros((len(keep), len(features)), dtype=np.float32)
    for j, i in enumerate(features):
        cells = [row[i].strip() for _, row in keep]
        if header[i] in spec.categorical:
            levels[header[i]] = sorted(set(cells))
            index = {level: k for k, level in enumerate(levels[header[i]])}
            codes[:, j] = [index[c] for c in cells]
            for level in levels[header[i]]:  # one-hot
                columns.append(np.array([c == level for c in cells], dtype=np.float32))
                names.append(f"{header[i]}={level}")
            continue
        values, gaps, found, fill = _numeric_column(cells, keep, header[i], spec, path)
        problems += found
        columns.append(values)
        names.append(header[i])
        filled += len(gaps)
        codes[:, j] = values
        codes[gaps, j] = np.nan
        if fill is not None:
            fills[header[i]] = fill
    _raise_all(problems)
    x = np.stack(columns, axis=1) if columns else np.zeros((len(keep), 0), np.float32)
    recipe = {"columns": [header[i] for i in features], "categorical": levels,
              "fill": fills, "missing": spec.missing, "target": target}
    return CsvTable(x, [row[t_index].strip() for _, row in keep], names, target, dropped,
                    filled, delimiter, recipe, codes)


def _rows(path: Path, text: str, delimiter: str,
          fewest: int = 2) -> tuple[list[str], list[Row]]:
    """The header and the non-empty rows (at least ``fewest``), each as long as the header."""
    rows = [(number, row) for number, row in
            enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1)
            if any(cell.strip() for cell in row)]
    if len(rows) < fewest + 1:
        raise _fail(f"{path} has fewer than {'two data rows' if fewest == 2 else 'one data row'}",
                    "Give a CSV with a header row and data rows.")
    (_, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    if len(header) < 2:
        raise _fail(f"{path} has a single column '{header[0]}' when read with delimiter "
                    f"{delimiter!r}", "Set trainer.dataset.delimiter to the file's separator, "
                    "e.g. ';'.", "trainer.dataset.delimiter")
    _raise_all([_fail(f"{path} line {number} has {len(row)} cells, the header {len(header)}",
                      f"Give every row as many cells as the header (delimiter {delimiter!r}).")
                for number, row in body if len(row) != len(header)])
    return header, body


def _target_column(spec: DatasetSpec, header: list[str], path: Path) -> str:
    target = spec.target or header[-1]
    if target not in header:
        raise _fail(f"column '{target}' is not in {path} (columns: {', '.join(header)})",
                    did_you_mean(target, header) or "Name one of the columns.",
                    "trainer.dataset.target")
    for name in spec.categorical:
        if name not in header or name == target:
            raise _fail(f"categorical column '{name}' is not a feature column of {path}",
                        did_you_mean(name, header) or f"Columns: {', '.join(header)}.",
                        "trainer.dataset.categorical")
    return target


def _rows_to_keep(spec: DatasetSpec, body: list[Row], t_index: int, numeric: list[int],
                  path: Path, target: str) -> tuple[list[Row], int]:
    """Rows with a target (and, with ``missing: drop``, no missing number); how many dropped."""
    keep, dropped, no_target = [], 0, []
    for number, row in body:
        if _is_missing(row[t_index]):
            if spec.missing == "drop":
                dropped += 1
            else:
                no_target.append(number)
            continue
        if spec.missing == "drop" and any(_is_missing(row[i]) for i in numeric):
            dropped += 1
            continue
        keep.append((number, row))
    if no_target:
        raise _fail(f"{path} {lines_text(no_target)}: the target '{target}' is empty or not a "
                    "number", "Remove or fill those rows, or set trainer.dataset.missing: "
                    "drop.", "trainer.dataset.missing")
    if len(keep) < 3:
        raise _fail(f"{path} keeps {len(keep)} rows after dropping those with missing cells",
                    "Fill the missing cells, or use missing: mean.", "trainer.dataset.missing")
    return keep, dropped


def _numbers(cells: list[str]) -> tuple[np.ndarray, list[int], list[int]]:
    """A column's cells as numbers (NaN where there is none), the missing ones (empty, NaN,
    infinite) and those holding text: training and new rows read cells alike."""
    values = np.full(len(cells), np.nan, dtype=np.float64)
    gaps, text = [], []
    for j, cell in enumerate(cells):
        if _is_missing(cell):
            gaps.append(j)
            continue
        try:
            number = float(cell)
        except ValueError:
            text.append(j)
            continue
        if math.isfinite(number):
            values[j] = number
        else:
            gaps.append(j)
    return values, gaps, text


def _numeric_column(cells: list[str], keep: list[Row], name: str, spec: DatasetSpec,
                    path: Path) -> tuple[np.ndarray, list[int], list[SpecError], float | None]:
    """One feature as numbers, missing cells filled with the mean when asked; which were,
    what is wrong with the column (text cells, missing ones), one problem each, and the fill
    value (``missing: mean``: the mean of the column's present cells, float32 as trained)."""
    values, gaps, text = _numbers(cells)
    problems = []
    present = np.delete(values, gaps + text)
    fill = float(np.float32(present.mean())) if spec.missing == "mean" and present.size else None
    if text:
        problems.append(_fail(
            f"{path} {lines_text([keep[j][0] for j in text])}, column '{name}': "
            f"{cells[text[0]]!r} is not a number", f"List '{name}' in "
            "trainer.dataset.categorical to one-hot encode it, or clean the column.",
            "trainer.dataset.categorical"))
    if gaps and spec.missing == "error":
        problems.append(_fail(
            f"{path} {lines_text([keep[j][0] for j in gaps])}, column '{name}': the cell "
            f"{cells[gaps[0]]!r} is missing ({len(gaps)} in that column)",
            "Fill it, or set trainer.dataset.missing: drop (drop such rows) or mean (use the "
            "column's mean).", "trainer.dataset.missing"))
    elif gaps:
        if present.size == 0:
            problems.append(_fail(f"column '{name}' of {path} has no value at all",
                                  "Drop the column.", "trainer.dataset.missing"))
        else:
            values[gaps] = present.mean()
    return values.astype(np.float32), gaps, problems, fill


def read_new_rows(text: str, source: str, recipe: dict[str, Any],
                  ) -> tuple[np.ndarray, list[str] | None, list[int]]:
    """Rows of a CSV given to a trained model (``recipe``: its pipeline): ``[rows, columns]``
    in the training file's column order, a missing number NaN (where the model fills it), a
    categorical cell its level's index; the target cells when the column is there; each row's
    line. Every problem (missing, extra or unknown columns, cells) is said at once."""
    columns, target = list(recipe["columns"]), recipe.get("target")
    try:
        header, body = _rows(Path(source), text, _delimiter(text, None), fewest=1)
    except SpecErrors as exc:  # said of the file itself, not of a study's key
        raise SpecErrors([SpecError(e.message, fix=e.fix) for e in exc.errors]) from None
    except SpecError as exc:
        raise SpecError(exc.message, fix=exc.fix) from None
    fail = _failing(source)
    problems = [fail(f"column '{name}' is missing (the model reads {', '.join(columns)})",
                     "Give every column the model was trained on.")
                for name in columns if name not in header]
    problems += [fail(f"column '{name}' was not in the training data",
                      did_you_mean(name, columns) or "Drop it.")
                 for name in header if name not in columns and name != target]
    _raise_all(problems)
    x = np.zeros((len(body), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        cells = [row[header.index(name)].strip() for _, row in body]
        x[:, j], found = _new_column(cells, [number for number, _ in body], name, recipe, fail)
        problems += found
    _raise_all(problems)
    targets = ([row[header.index(target)].strip() for _, row in body]
               if target in header else None)
    return x, targets, [number for number, _ in body]


def _failing(source: str) -> Any:
    def fail(message: str, fix: str) -> SpecError:
        return SpecError(message, source=source, fix=fix)
    return fail


def _new_column(cells: list[str], lines: list[int], name: str, recipe: dict[str, Any],
                fail: Any) -> tuple[np.ndarray, list[SpecError]]:
    """One column of new rows as the model takes it, and what is wrong with it."""
    levels = recipe["categorical"].get(name)
    if levels is not None:
        index = {level: i for i, level in enumerate(levels)}
        unseen = [j for j, cell in enumerate(cells) if cell not in index]
        problem = [fail(f"{lines_text([lines[j] for j in unseen])}, column '{name}': "
                        f"{cells[unseen[0]]!r} was never seen in training",
                        f"Use one of: {', '.join(map(repr, levels[:12]))}"
                        f"{', ...' if len(levels) > 12 else ''}.")] if unseen else []
        return np.array([index.get(c, -1) for c in cells], dtype=np.float32), problem
    values, gaps, text = _numbers(cells)
    problems = []
    if text:
        problems.append(fail(f"{lines_text([lines[j] for j in text])}, column '{name}': "
                             f"{cells[text[0]]!r} is not a number", "Give a number."))
    if gaps and name not in recipe["fill"]:
        problems.append(fail(f"{lines_text([lines[j] for j in gaps])}, column '{name}': the cell "
                             "is missing, and the model was trained without missing cells "
                             f"there (missing: {recipe.get('missing')})", "Fill it."))
    return values.astype(np.float32), problems
