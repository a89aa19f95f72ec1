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
from typing import TYPE_CHECKING

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
                 delimiter: str) -> None:
        self.x = x
        self.target = target
        self.feature_names = feature_names
        self.target_name = target_name
        self.dropped_rows = dropped_rows
        self.filled_cells = filled_cells
        self.delimiter = delimiter


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


def _lines(numbers: list[int]) -> str:
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
    for i in features:
        cells = [row[i].strip() for _, row in keep]
        if header[i] in spec.categorical:
            for level in sorted(set(cells)):  # one-hot
                columns.append(np.array([c == level for c in cells], dtype=np.float32))
                names.append(f"{header[i]}={level}")
            continue
        values, gaps, found = _numeric_column(cells, keep, header[i], spec, path)
        problems += found
        columns.append(values)
        names.append(header[i])
        filled += gaps
    _raise_all(problems)
    x = np.stack(columns, axis=1) if columns else np.zeros((len(keep), 0), np.float32)
    return CsvTable(x, [row[t_index].strip() for _, row in keep], names, target, dropped,
                    filled, delimiter)


def _rows(path: Path, text: str, delimiter: str) -> tuple[list[str], list[Row]]:
    """The header and the non-empty rows, each as long as the header."""
    rows = [(number, row) for number, row in
            enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1)
            if any(cell.strip() for cell in row)]
    if len(rows) < 3:
        raise _fail(f"{path} has fewer than two data rows",
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
        raise _fail(f"{path} {_lines(no_target)}: the target '{target}' is empty or not a "
                    "number", "Remove or fill those rows, or set trainer.dataset.missing: "
                    "drop.", "trainer.dataset.missing")
    if len(keep) < 3:
        raise _fail(f"{path} keeps {len(keep)} rows after dropping those with missing cells",
                    "Fill the missing cells, or use missing: mean.", "trainer.dataset.missing")
    return keep, dropped


def _numeric_column(cells: list[str], keep: list[Row], name: str, spec: DatasetSpec,
                    path: Path) -> tuple[np.ndarray, int, list[SpecError]]:
    """One feature as numbers, missing cells filled with the mean when asked; how many were,
    and what is wrong with the column (text cells, missing ones), one problem each."""
    values = np.zeros(len(cells), dtype=np.float64)
    gaps, text = [], []
    for j, cell in enumerate(cells):
        if _is_missing(cell):
            gaps.append(j)
            continue
        try:
            values[j] = float(cell)
        except ValueError:
            text.append(j)
            continue
        if not math.isfinite(values[j]):
            gaps.append(j)
    problems = []
    if text:
        problems.append(_fail(
            f"{path} {_lines([keep[j][0] for j in text])}, column '{name}': "
            f"{cells[text[0]]!r} is not a number", f"List '{name}' in "
            "trainer.dataset.categorical to one-hot encode it, or clean the column.",
            "trainer.dataset.categorical"))
    if gaps and spec.missing == "error":
        problems.append(_fail(
            f"{path} {_lines([keep[j][0] for j in gaps])}, column '{name}': the cell "
            f"{cells[gaps[0]]!r} is missing ({len(gaps)} in that column)",
            "Fill it, or set trainer.dataset.missing: drop (drop such rows) or mean (use the "
            "column's mean).", "trainer.dataset.missing"))
    elif gaps:
        present = np.delete(values, gaps + text)
        if present.size == 0:
            problems.append(_fail(f"column '{name}' of {path} has no value at all",
                                  "Drop the column.", "trainer.dataset.missing"))
        else:
            values[gaps] = present.mean()
    return values.astype(np.float32), len(gaps), problems
