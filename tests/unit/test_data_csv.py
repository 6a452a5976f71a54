from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from secure_ml.data.csv import CsvData, read_csv
from secure_ml.errors import DataError


def _write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _starts_with(path: Path, rest: str) -> str:
    """A pattern for a message that starts with ``path`` and then contains ``rest`` (a regex)."""
    return "^" + re.escape(str(path)) + ":.*" + rest


# --- good files ---------------------------------------------------------------------------------


def test_reads_ids_labels_and_features_in_file_order(tmp_path):
    path = _write(
        tmp_path,
        "id,age,label,income\np1,30,1,1000.5\np2,41.5,0,-2e3\np3,0,1,7\n",
    )
    data = read_csv(path, id_column="id", label_column="label")
    assert isinstance(data, CsvData)
    assert data.path == path
    assert data.feature_names == ("age", "income")
    np.testing.assert_array_equal(
        data.features, np.array([[30, 1000.5], [41.5, -2000], [0, 7]], dtype=np.float32)
    )
    assert data.features.dtype == np.float32
    assert data.features.shape == (3, 2)
    assert data.features.flags.c_contiguous
    np.testing.assert_array_equal(data.labels, np.array([1, 0, 1], dtype=np.float32))
    assert data.labels.dtype == np.float32
    assert data.labels.shape == (3,)
    assert data.ids == ("p1", "p2", "p3")


def test_without_id_or_label_every_column_is_a_feature(tmp_path):
    path = _write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n")
    data = read_csv(str(path))
    assert data.path == path
    assert data.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(data.features, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    assert data.labels is None
    assert data.ids is None


def test_label_only_and_id_only(tmp_path):
    path = _write(tmp_path, "x,y\n1,0\n2,1\n")
    labelled = read_csv(path, label_column="y")
    assert labelled.feature_names == ("x",)
    np.testing.assert_array_equal(labelled.features, np.array([[1], [2]], dtype=np.float32))
    np.testing.assert_array_equal(labelled.labels, np.array([0, 1], dtype=np.float32))
    assert labelled.ids is None

    with_ids = read_csv(path, id_column="x")
    assert with_ids.feature_names == ("y",)
    assert with_ids.ids == ("1", "2")
    assert with_ids.labels is None


def test_id_cells_are_text_not_numbers(tmp_path):
    path = _write(tmp_path, "id,v\n007,1\nnan,2\nAlice Smith,3\n")
    data = read_csv(path, id_column="id")
    assert data.ids == ("007", "nan", "Alice Smith")


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfid,a\r\nx,1\r\n")
    data = read_csv(path, id_column="id")
    assert data.ids == ("x",)
    assert data.feature_names == ("a",)
    np.testing.assert_array_equal(data.features, np.array([[1]], dtype=np.float32))


def test_whitespace_around_names_and_cells_is_stripped(tmp_path):
    path = _write(tmp_path, " id , a ,\tlabel \n  p1 ,  1.5 , 1\n p2,\t2 ,0 \n")
    data = read_csv(path, id_column="id", label_column="label")
    assert data.feature_names == ("a",)
    assert data.ids == ("p1", "p2")
    np.testing.assert_array_equal(data.features, np.array([[1.5], [2]], dtype=np.float32))
    np.testing.assert_array_equal(data.labels, np.array([1, 0], dtype=np.float32))


def test_quoted_cells_are_unquoted_and_stripped(tmp_path):
    path = _write(tmp_path, 'id,a\n"Smith, J", " 3 "\n')
    data = read_csv(path, id_column="id")
    assert data.ids == ("Smith, J",)
    np.testing.assert_array_equal(data.features, np.array([[3]], dtype=np.float32))


def test_empty_trailing_lines_are_ignored(tmp_path):
    path = _write(tmp_path, "a,b\r\n1,2\r\n\r\n   \n\n")
    data = read_csv(path)
    np.testing.assert_array_equal(data.features, np.array([[1, 2]], dtype=np.float32))


def test_file_without_final_newline(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n3,4")
    np.testing.assert_array_equal(
        read_csv(path).features, np.array([[1, 2], [3, 4]], dtype=np.float32)
    )


# --- file-level errors --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=_starts_with(path, "file not found")):
        read_csv(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match=_starts_with(tmp_path, "cannot be read")):
        read_csv(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("name,a\nJos\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=_starts_with(path, "not valid UTF-8")):
        read_csv(path, id_column="name")


@pytest.mark.parametrize("text", ["", "\n\n", "\ufeff", "  \n"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=_starts_with(path, "the file is empty;.*header")):
        read_csv(path)


@pytest.mark.parametrize("text", ["a,b\n", "a,b", "a,b\n\n\n"])
def test_header_only(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=_starts_with(path, r"header \(line 1\) but no data rows")):
        read_csv(path)


# --- header errors ------------------------------------------------------------------------------


def test_duplicate_column_names(tmp_path):
    path = _write(tmp_path, "x,y, x\n1,2,3\n")
    with pytest.raises(
        DataError,
        match=_starts_with(
            path, r"line 1: column name 'x' appears more than once \(columns 1 and 3\)"
        ),
    ):
        read_csv(path)


def test_unnamed_column(tmp_path):
    path = _write(tmp_path, "a,b,\n1,2,3\n")
    with pytest.raises(
        DataError, match=_starts_with(path, "line 1: column 3 of the header has no name")
    ):
        read_csv(path)


def test_unknown_id_column_lists_available_columns(tmp_path):
    path = _write(tmp_path, "a,b,y\n1,2,3\n")
    with pytest.raises(
        DataError,
        match=_starts_with(
            path, r"id_column 'id' is not a column.*available columns: 'a', 'b', 'y'"
        ),
    ):
        read_csv(path, id_column="id", label_column="y")


def test_unknown_label_column_lists_available_columns(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(
        DataError,
        match=_starts_with(
            path, r"label_column 'target' is not a column.*available columns: 'a', 'b'"
        ),
    ):
        read_csv(path, label_column="target")


def test_id_column_equal_to_label_column(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(
        DataError, match=_starts_with(path, "id_column and label_column are both 'a'")
    ):
        read_csv(path, id_column="a", label_column="a")


@pytest.mark.parametrize(
    ("text", "id_column", "label_column"),
    [("id,y\nA,1\n", "id", "y"), ("y\n1\n", None, "y"), ("id\nA\n", "id", None)],
)
def test_no_feature_columns_left(tmp_path, text, id_column, label_column):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=_starts_with(path, "no feature columns are left")):
        read_csv(path, id_column=id_column, label_column=label_column)


# --- row errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "found"), [("4,5", 2), ("4,5,6,7", 4), ("4,5,6,", 4)])
def test_row_with_wrong_number_of_cells(tmp_path, row, found):
    path = _write(tmp_path, f"a,b,c\n1,2,3\n{row}\n7,8,9\n")
    with pytest.raises(
        DataError,
        match=_starts_with(path, f"line 3 has {found} cells but the header has 3 columns"),
    ):
        read_csv(path)


def test_empty_line_between_rows(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n\n3,4\n")
    with pytest.raises(DataError, match=_starts_with(path, "line 3 is empty; remove it")):
        read_csv(path)


@pytest.mark.parametrize(
    ("row", "column"), [("p2,,1,5", "a"), ("p2,4,,5", "label"), (",4,1,5", "id"), ("p2,4,1, ", "b")]
)
def test_missing_value_names_line_and_column(tmp_path, row, column):
    path = _write(tmp_path, f"id,a,label,b\np1,1,0,2\n{row}\n")
    with pytest.raises(
        DataError, match=_starts_with(path, f"line 3, column '{column}': missing value")
    ):
        read_csv(path, id_column="id", label_column="label")


def test_non_numeric_feature_quotes_the_cell(tmp_path):
    path = _write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5, abc ,0\n")
    with pytest.raises(
        DataError,
        match=_starts_with(path, r"line 4, column 'b': 'abc' is not a number; feature columns"),
    ):
        read_csv(path, label_column="y")


def test_non_numeric_label_quotes_the_cell(tmp_path):
    path = _write(tmp_path, "a,y\n1,0\n2,yes\n")
    with pytest.raises(
        DataError,
        match=_starts_with(path, r"line 3, column 'y': 'yes' is not a number; labels must be"),
    ):
        read_csv(path, label_column="y")


@pytest.mark.parametrize(
    "cell", ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "-Infinity", "INF"]
)
@pytest.mark.parametrize("column", ["a", "y"])
def test_nan_and_infinity_are_refused(tmp_path, cell, column):
    row = f"{cell},0" if column == "a" else f"1,{cell}"
    path = _write(tmp_path, f"a,y\n1,0\n{row}\n")
    pattern = (
        rf"line 3, column '{column}': '{re.escape(cell)}' is not a finite number"
        ".*remove the row or impute the value"
    )
    with pytest.raises(DataError, match=_starts_with(path, pattern)):
        read_csv(path, label_column="y")


def test_value_too_large_for_float32(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n3,1e39\n")
    with pytest.raises(
        DataError, match=_starts_with(path, r"line 3, column 'b': 1e\+39 is too large for float32")
    ):
        read_csv(path)


def test_duplicate_ids_name_both_lines(tmp_path):
    path = _write(tmp_path, "id,a\nx,1\ny,2\n x ,3\n")
    with pytest.raises(
        DataError,
        match=_starts_with(path, r"line 4, column 'id': id 'x' already appears on line 2"),
    ):
        read_csv(path, id_column="id")


def test_line_numbers_count_physical_lines(tmp_path):
    # a quoted cell spanning two lines, and blank lines before the header
    path = _write(tmp_path, '\n\nid,a\n"multi\nline",1\nz,oops\n')
    with pytest.raises(DataError, match=_starts_with(path, r"line 6, column 'a': 'oops'")):
        read_csv(path, id_column="id")


def test_header_after_leading_blank_lines_is_reported_on_its_line(tmp_path):
    path = _write(tmp_path, "\na,a\n1,2\n")
    with pytest.raises(DataError, match=_starts_with(path, "line 2: column name 'a'")):
        read_csv(path)


def test_first_problem_in_file_order_is_reported(tmp_path):
    path = _write(tmp_path, "a,b\n1,nan\n2,abc\n")
    with pytest.raises(DataError, match=_starts_with(path, "line 2, column 'b': 'nan'")):
        read_csv(path)
