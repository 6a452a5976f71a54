"""Reading one party's plaintext table from a CSV file.

Each party loads its own CSV inside its own process, so a bad file is found by
one party alone, far from the person who wrote it. Every problem therefore
raises a ``DataError`` whose message starts with the file path and names the
1-based line and the column where it applies, and says what to change: a
message like "could not convert string to float" would send someone hunting
through a 100k-row file.

The format is deliberately plain: comma-separated, UTF-8 (a BOM is accepted),
a required header row of unique column names, whitespace around names and
cells ignored, empty lines before the header and at the end ignored. Every
column other than the optional id column must be numeric; NaN and infinities
are refused rather than passed on, because secret-shared fixed-point
arithmetic cannot represent them and would silently turn them into garbage.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from secure_ml.errors import DataError


@dataclass(frozen=True)
class CsvData:
    """The contents of one CSV file, split into features, labels and ids."""

    path: Path
    feature_names: tuple[str, ...]  # every column except the id and label columns, in file order
    features: np.ndarray  # float32, (n_rows, len(feature_names))
    labels: np.ndarray | None  # float32, (n_rows,); None without a label column
    ids: tuple[str, ...] | None  # the id column's cells; None without an id column


class _Reader(Protocol):
    """The part of ``csv.reader``'s object used here."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


@dataclass(frozen=True)
class _Columns:
    """Where each kind of column sits in a row."""

    names: tuple[str, ...]
    id_index: int | None
    feature_indices: tuple[int, ...]
    label_index: int | None

    @property
    def numeric_indices(self) -> tuple[int, ...]:
        """Columns parsed as numbers: the features, then the label if any."""
        if self.label_index is None:
            return self.feature_indices
        return (*self.feature_indices, self.label_index)


@dataclass
class _Rows:
    """What the single pass over the data rows collects."""

    values: list[list[float]]
    lines: list[int]
    ids: list[str] | None


def read_csv(
    path: str | Path, *, id_column: str | None = None, label_column: str | None = None
) -> CsvData:
    """Read a CSV file with a header row into float32 features (and labels and ids).

    ``id_column`` holds any non-empty, unique text per row; ``label_column``
    must be numeric. Every other column is a feature and must be numeric.
    Raises ``DataError`` naming the file, line and column of the first problem.
    """
    path = Path(path)
    if id_column is not None and id_column == label_column:
        raise DataError(
            f"{path}: id_column and label_column are both {id_column!r}; "
            "they must name different columns"
        )
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return _read(path, handle, id_column, label_column)
    except FileNotFoundError:
        raise DataError(
            f"{path}: file not found (looked for {path.absolute()}); check the path"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: the file is not valid UTF-8 text; save it as UTF-8") from None
    except OSError as error:
        raise DataError(f"{path}: the file cannot be read: {error.strerror or error}") from None


def _read(
    path: Path, handle: Iterator[str], id_column: str | None, label_column: str | None
) -> CsvData:
    reader = csv.reader(handle, skipinitialspace=True)
    try:
        header_line, header = _read_header(path, reader)
        columns = _columns(path, header_line, header, id_column, label_column)
        rows = _read_rows(path, reader, columns)
    except csv.Error as error:
        raise DataError(
            f"{path}: line {reader.line_num}: the line is not valid CSV ({error}); "
            "check its quotes and commas"
        ) from None
    if not rows.values:
        raise DataError(
            f"{path}: the file has a header (line {header_line}) but no data rows; "
            "add at least one row"
        )
    return _to_arrays(path, columns, rows)


def _is_blank(row: Sequence[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _read_header(path: Path, reader: _Reader) -> tuple[int, tuple[str, ...]]:
    """The first non-empty row, stripped, and the line it starts on."""
    end = 0
    for row in reader:
        line, end = end + 1, reader.line_num
        if not _is_blank(row):
            return line, tuple(name.strip() for name in row)
    raise DataError(f"{path}: the file is empty; its first line must be a header of column names")


def _columns(
    path: Path,
    line: int,
    names: tuple[str, ...],
    id_column: str | None,
    label_column: str | None,
) -> _Columns:
    """Check the header and locate the id, label and feature columns."""
    first_seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name:
            raise DataError(
                f"{path}: line {line}: column {number} of the header has no name; "
                "give every column a name (and check for a trailing comma)"
            )
        if name in first_seen:
            raise DataError(
                f"{path}: line {line}: column name {name!r} appears more than once "
                f"(columns {first_seen[name]} and {number}); rename one of them"
            )
        first_seen[name] = number
    id_index = _find_column(path, names, "id_column", id_column)
    label_index = _find_column(path, names, "label_column", label_column)
    features = tuple(i for i in range(len(names)) if i not in (id_index, label_index))
    if not features:
        raise DataError(
            f"{path}: no feature columns are left after removing the id and label columns "
            f"(columns: {_listing(names)}); add at least one numeric feature column"
        )
    return _Columns(names, id_index, features, label_index)


def _find_column(path: Path, names: tuple[str, ...], role: str, name: str | None) -> int | None:
    if name is None:
        return None
    if name not in names:
        raise DataError(
            f"{path}: {role} {name!r} is not a column of the header; "
            f"available columns: {_listing(names)}"
        )
    return names.index(name)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _read_rows(path: Path, reader: _Reader, columns: _Columns) -> _Rows:
    """Check and parse every data row in one pass."""
    values: list[list[float]] = []
    lines: list[int] = []
    ids: list[str] = []
    seen_ids: dict[str, int] = {}
    width = len(columns.names)
    numeric = columns.numeric_indices
    id_index = columns.id_index
    blank_line: int | None = None
    end = reader.line_num
    for row in reader:
        line, end = end + 1, reader.line_num  # a quoted cell may span several lines
        if _is_blank(row):
            blank_line = blank_line or line
            continue
        if blank_line is not None:
            raise DataError(
                f"{path}: line {blank_line} is empty; remove it "
                "(only empty lines at the end of the file are ignored)"
            )
        if len(row) != width:
            raise DataError(
                f"{path}: line {line} has {len(row)} cells but the header has {width} columns; "
                "every row needs exactly one cell per column (check for missing or extra commas)"
            )
        if id_index is not None:
            cell = row[id_index].strip()
            ids.append(_check_id(path, line, cell, columns.names[id_index], seen_ids))
        values.append(_parse_numbers(path, line, row, numeric, columns))
        lines.append(line)
    return _Rows(values=values, lines=lines, ids=None if id_index is None else ids)


def _check_id(path: Path, line: int, value: str, name: str, seen: dict[str, int]) -> str:
    if not value:
        raise _missing(path, line, name)
    if value in seen:
        raise DataError(
            f"{path}: line {line}, column {name!r}: id {value!r} already appears on line "
            f"{seen[value]}; ids must be unique, so remove or rename one of the rows"
        )
    seen[value] = line
    return value


def _parse_numbers(
    path: Path, line: int, row: list[str], numeric: tuple[int, ...], columns: _Columns
) -> list[float]:
    """The row's numeric cells as floats; the slow, precise checks run only on failure.

    ``float`` itself ignores surrounding whitespace, so cells are stripped only
    when one needs a closer look.
    """
    try:
        values = [float(row[i]) for i in numeric]
    except ValueError:
        values = [_parse_cell(path, line, row[i].strip(), i, columns) for i in numeric]
    if not math.isfinite(sum(values)):  # NaN or ±inf anywhere makes the sum non-finite
        for i, value in zip(numeric, values, strict=True):
            if not math.isfinite(value):
                raise _not_finite(path, line, columns.names[i], row[i].strip())
    return values


def _parse_cell(path: Path, line: int, cell: str, index: int, columns: _Columns) -> float:
    name = columns.names[index]
    if not cell:
        raise _missing(path, line, name)
    try:
        return float(cell)
    except ValueError:
        if index == columns.label_index:
            fix = "labels must be numbers: encode the classes as numbers (e.g. 0 and 1)"
        else:
            fix = (
                "feature columns must be numbers: encode the column as numbers, remove it, "
                "or pass it as id_column if it identifies the row"
            )
        raise DataError(
            f"{path}: line {line}, column {name!r}: {cell!r} is not a number; {fix}"
        ) from None


def _missing(path: Path, line: int, name: str) -> DataError:
    return DataError(
        f"{path}: line {line}, column {name!r}: missing value; fill it in or remove the row"
    )


def _not_finite(path: Path, line: int, name: str, cell: str) -> DataError:
    return DataError(
        f"{path}: line {line}, column {name!r}: {cell!r} is not a finite number "
        "(NaN and infinities are not allowed); remove the row or impute the value"
    )


def _to_arrays(path: Path, columns: _Columns, rows: _Rows) -> CsvData:
    values = np.array(rows.values, dtype=np.float64)
    with np.errstate(over="ignore"):
        values32 = values.astype(np.float32)
    overflow = np.argwhere(np.isinf(values32))
    if overflow.size:
        row, position = (int(k) for k in overflow[0])
        name = columns.names[columns.numeric_indices[position]]
        raise DataError(
            f"{path}: line {rows.lines[row]}, column {name!r}: {float(values[row, position])!r} is "
            f"too large for float32 (largest magnitude {np.finfo(np.float32).max:.4g}); "
            "rescale the column"
        )
    n_features = len(columns.feature_indices)
    has_label = columns.label_index is not None
    return CsvData(
        path=path,
        feature_names=tuple(columns.names[i] for i in columns.feature_indices),
        features=np.ascontiguousarray(values32[:, :n_features]) if has_label else values32,
        labels=values32[:, n_features].copy() if has_label else None,
        ids=None if rows.ids is None else tuple(rows.ids),
    )
