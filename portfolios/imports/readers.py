"""Read an uploaded import file (CSV or XLSX) into a frame of text, refusing what is not one.

``read_table`` returns every column as ``str`` (no type inference: "007" stays "007" and a
value starting with ``=``, ``+``, ``-`` or ``@`` stays the text it is), headers stripped,
lower-cased and with inner spaces turned into underscores, blanks as empty strings, and an
``int`` column ``line``: the row's line number in the file (the header is line 1, the first data
row line 2; for XLSX the sheet's row number). Blank rows are dropped (their numbers are kept by
the rows that follow).

File-level problems raise ``ImportRejected(message, extra={"errors": [...]})`` where each error
is ``{"line", "column", "message"}`` like a row error of ``import_validate``: an empty file, a
header without data rows, a file that is not a ``.csv``/``.xlsx`` by name or by content (an
image renamed ``.csv``), text that is not UTF-8, rows with more fields than the header, a
duplicate or missing header name, and formula cells in an XLSX (formulas are never evaluated).
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any

import pandas as pd

from rebalance_app.exceptions import ImportRejected

FILE_REJECTED = "The file was refused: {reason}"
FILE_TYPE_UNSUPPORTED = "unsupported file type '{ext}': upload a .csv or .xlsx file"
FILE_NO_EXTENSION = "the file name has no extension: upload a .csv or .xlsx file"
FILE_EMPTY = "the file is empty (0 bytes)"
FILE_NO_ROWS = "the file has no rows"
FILE_HEADER_ONLY = "the file has a header but no data rows"
FILE_NOT_TEXT = "the .csv file is not text: its content looks like {what}"
FILE_NOT_UTF8 = (
    "the file is not UTF-8 text (byte 0x{byte:02x} cannot be decoded): save it as CSV UTF-8"
)
FILE_UTF16 = "the file is UTF-16 text: save it as CSV UTF-8"
FILE_NOT_XLSX = "the .xlsx file is not an Excel workbook: its content looks like {what}"
FILE_XLSX_UNREADABLE = "the .xlsx file cannot be read as an Excel workbook ({detail})"
CSV_UNREADABLE = "the file cannot be read as CSV ({detail})"
CSV_UNCLOSED_QUOTE = "a quoted value starting on this line has no closing quote"
ROW_TOO_MANY_FIELDS = "expected {expected} fields like the header, found {found}"
HEADER_DUPLICATE = "column '{name}' appears more than once in the header"
HEADER_MISSING_NAME = "column {position} has values but no name in the header"
HEADER_RESERVED = "'line' cannot be a column name: it is reserved for line numbers"
FORMULA_CELL = "formula cells are not accepted (found {formula})"

CSV = ".csv"
XLSX = ".xlsx"
LINE = "line"
HEADER_LINE = 1
# What a binary file that was renamed looks like, by its first bytes.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook, perhaps: keep its .xlsx name)"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.xls): save it as .xlsx or CSV UTF-8"),
    (b"\x1f\x8b", "a gzip archive"),
)
_BAD_LINE = re.compile(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)")
_UNCLOSED = re.compile(r"EOF inside string starting at row (\d+)")


def read_table(*, data: bytes, file_name: str) -> pd.DataFrame:
    """The file's rows as text columns plus ``line``; raises ``ImportRejected``."""
    ext = PurePath(file_name).suffix.lower()
    if not ext:
        _reject(FILE_NO_EXTENSION)
    if ext not in (CSV, XLSX):
        _reject(FILE_TYPE_UNSUPPORTED.format(ext=ext))
    if not data:
        _reject(FILE_EMPTY)
    if ext == CSV:
        header, body, lines = _read_csv(data)
    else:
        header, body, lines = _read_xlsx(data)
    return _frame(header, body, lines)


def _reject(reason: str, errors: list[dict[str, Any]] | None = None, line: int = 0) -> None:
    """Raise the rejection; a single file-level reason becomes the one error."""
    if errors is None:
        errors = [{"line": line, "column": "", "message": reason}]
    raise ImportRejected(FILE_REJECTED.format(reason=reason), extra={"errors": errors})


def _looks_like(data: bytes) -> str | None:
    head = data[:16]
    for magic, what in MAGIC:
        if head.startswith(magic):
            return what
    return None


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _read_csv(data: bytes) -> tuple[list[str], pd.DataFrame, pd.Series]:
    what = _looks_like(data)
    if what is not None:
        _reject(FILE_NOT_TEXT.format(what=what))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        _reject(FILE_UTF16)
    if b"\x00" in data:
        _reject(FILE_NOT_TEXT.format(what="binary data"))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        _reject(FILE_NOT_UTF8.format(byte=data[exc.start]), line=line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            raw = pd.read_csv(
                io.StringIO(text),
                header=None,
                dtype=str,
                na_filter=False,
                keep_default_na=False,
                skip_blank_lines=False,
                skipinitialspace=True,  # so a cell of spaces is blank; validate strips the rest
                on_bad_lines="warn",
                engine="c",
                low_memory=False,
            )
        except pd.errors.EmptyDataError:
            _reject(FILE_NO_ROWS)
        except (pd.errors.ParserError, ValueError) as exc:
            unclosed = _UNCLOSED.search(str(exc))
            if unclosed:  # pandas counts records from 0
                _reject(CSV_UNCLOSED_QUOTE, line=int(unclosed.group(1)) + 1)
            _reject(CSV_UNREADABLE.format(detail=str(exc).strip()))
    bad = [
        {
            "line": int(m.group(1)),
            "column": "",
            "message": ROW_TOO_MANY_FIELDS.format(expected=m.group(2), found=m.group(3)),
        }
        for w in caught
        for m in _BAD_LINE.finditer(str(w.message))
    ]
    if bad:
        _reject(bad[0]["message"], errors=bad)
    lines = _csv_lines(text, raw)
    header = raw.iloc[0].tolist()
    return header, raw.iloc[1:], lines.iloc[1:]


def _csv_lines(text: str, raw: pd.DataFrame) -> pd.Series:
    """Line numbers of the parsed records: record i is on line i + 1 unless quoted values
    span several lines, which then push the following records down."""
    n = len(raw)
    physical = text.count("\n") + (0 if text.endswith("\n") else 1)
    base = pd.Series(range(1, n + 1), index=raw.index, dtype="int64")
    if physical == n:
        return base
    extra = sum(raw[c].str.count("\n") for c in raw.columns)
    return base + extra.cumsum().shift(1, fill_value=0).astype("int64")


# ---------------------------------------------------------------------------
# XLSX
# ---------------------------------------------------------------------------


def _read_xlsx(data: bytes) -> tuple[list[str], pd.DataFrame, pd.Series]:
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter
    from openpyxl.utils.exceptions import InvalidFileException

    if not data.startswith(b"PK\x03\x04"):
        _reject(FILE_NOT_XLSX.format(what=_looks_like(data) or "text or other data"))
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, InvalidFileException) as exc:
        _reject(FILE_XLSX_UNREADABLE.format(detail=str(exc).strip(" '\"") or type(exc).__name__))
    try:
        sheet = workbook.worksheets[0]
        rows: list[list[str]] = []
        numbers: list[int] = []
        formulas: list[tuple[int, int, str]] = []
        for number, cells in enumerate(sheet.iter_rows(), start=sheet.min_row or 1):
            values = []
            for position, cell in enumerate(cells):
                if getattr(cell, "data_type", None) == "f":
                    formulas.append((getattr(cell, "row", number), position, _formula(cell.value)))
                values.append(_cell_text(cell.value))
            if any(values):
                rows.append(values)
                numbers.append(getattr(cells[0], "row", number) if cells else number)
    finally:
        workbook.close()
    if not rows:
        _reject(FILE_NO_ROWS)
    width = max(len(r) for r in rows)
    header = [*rows[0], *[""] * (width - len(rows[0]))]
    if formulas:
        names = [_header_name(h) for h in header]
        errors = [
            {
                "line": row,
                "column": names[pos] or get_column_letter(pos + 1),
                "message": FORMULA_CELL.format(formula=formula),
            }
            for row, pos, formula in sorted(formulas)
        ]
        _reject(errors[0]["message"], errors=errors)
    body = pd.DataFrame(
        [[*r, *[""] * (width - len(r))] for r in rows[1:]], columns=range(width), dtype=str
    )
    lines = pd.Series(numbers[1:], dtype="int64")
    # Rows keep their sheet numbers; header problems are reported on line 1 wherever it is.
    return header, body, lines


def _formula(value: Any) -> str:
    text = getattr(value, "text", value)  # ArrayFormula keeps its formula in .text
    text = str(text)
    return text if text.startswith("=") else f"={text}"


def _cell_text(value: Any) -> str:
    """A cell value as the text a CSV export of it would hold."""
    if value is None:
        return ""
    if isinstance(value, str) and not value.strip():
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# ---------------------------------------------------------------------------
# Both
# ---------------------------------------------------------------------------


def _header_name(value: str) -> str:
    return "_".join(str(value).strip().lower().split())


def _frame(header: list[str], body: pd.DataFrame, lines: pd.Series) -> pd.DataFrame:
    names = [_header_name(h) for h in header]
    if not any(names):
        _reject(FILE_NO_ROWS)
    body = body.reset_index(drop=True)
    lines = lines.reset_index(drop=True)
    keep = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, name in enumerate(names):
        column = body[body.columns[position]]
        if not name:
            if (column != "").any():
                errors.append(
                    {
                        "line": HEADER_LINE,
                        "column": "",
                        "message": HEADER_MISSING_NAME.format(position=position + 1),
                    }
                )
            continue
        if name == LINE:
            errors.append({"line": HEADER_LINE, "column": name, "message": HEADER_RESERVED})
        elif name in seen:
            errors.append(
                {"line": HEADER_LINE, "column": name, "message": HEADER_DUPLICATE.format(name=name)}
            )
        seen.add(name)
        keep.append((name, position))
    if errors:
        _reject(errors[0]["message"], errors=errors)
    frame = pd.DataFrame(
        {name: body[body.columns[pos]].astype(str) for name, pos in keep}, index=body.index
    )
    filled = pd.Series(False, index=frame.index)
    for name in frame.columns:
        filled |= frame[name] != ""
    frame = frame[filled]
    if frame.empty:
        _reject(FILE_HEADER_ONLY, line=HEADER_LINE)
    frame[LINE] = lines[filled].to_numpy()
    return frame.reset_index(drop=True)
