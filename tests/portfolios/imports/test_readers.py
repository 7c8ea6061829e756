"""Reading import files: CSV and XLSX into text columns with line numbers, and the refusal of
files that are empty, header-only, of the wrong type, not UTF-8 or carrying formulas."""

from __future__ import annotations

import io
import zipfile
import zlib
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from portfolios.imports.readers import read_table
from rebalance_app.exceptions import ImportRejected

LOTS = "account_number,ticker,quantity,cost_basis,acquired_on\n"


def _xlsx(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _png() -> bytes:
    header = b"\x89PNG\r\n\x1a\n"
    ihdr = b"IHDR" + (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    chunk = len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    return header + chunk


def _refused(data: bytes, file_name: str) -> ImportRejected:
    with pytest.raises(ImportRejected) as info:
        read_table(data=data, file_name=file_name)
    return info.value


def test_read_table_keeps_every_value_as_text_with_its_line_number():
    data = (LOTS + "8841-2207,aapl,10,150.25,2024-01-02\n007,MSFT,5,,2023-06-01\n").encode()

    frame = read_table(data=data, file_name="lots.csv")

    assert list(frame.columns) == [
        "account_number", "ticker", "quantity", "cost_basis", "acquired_on", "line",
    ]  # fmt: skip
    assert frame.to_dict("records") == [
        {
            "account_number": "8841-2207", "ticker": "aapl", "quantity": "10",
            "cost_basis": "150.25", "acquired_on": "2024-01-02", "line": 2,
        },
        {
            "account_number": "007", "ticker": "MSFT", "quantity": "5", "cost_basis": "",
            "acquired_on": "2023-06-01", "line": 3,
        },
    ]  # fmt: skip


def test_read_table_strips_and_lower_cases_headers_and_accepts_a_bom():
    data = "\ufeff Account Number ,TICKER\r\nZ31-558204,KO\r\n".encode()

    frame = read_table(data=data, file_name="LOTS.CSV")

    assert list(frame.columns) == ["account_number", "ticker", "line"]
    assert frame.loc[0, "account_number"] == "Z31-558204"


def test_read_table_skips_blank_lines_but_keeps_the_line_numbers_of_the_rest():
    data = (LOTS + "\n1,AAPL,1,1,2024-01-02\n,,,,\n\n2,KO,1,1,2024-01-02\n").encode()

    frame = read_table(data=data, file_name="lots.csv")

    assert frame["line"].tolist() == [3, 6]


def test_read_table_counts_the_lines_of_a_quoted_value_that_spans_several():
    data = b'ticker,name\nAAA,"Two\nlines"\nBBB,One line\n'

    frame = read_table(data=data, file_name="securities.csv")

    assert frame["name"].tolist() == ["Two\nlines", "One line"]
    assert frame["line"].tolist() == [2, 4]


def test_read_table_keeps_values_starting_with_formula_characters_as_text():
    data = b'ticker,name\nAAA,=HYPERLINK("http://x")\nBBB,+1\nCCC,-2\nDDD,@SUM(A1)\n'

    frame = read_table(data=data, file_name="securities.csv")

    assert frame["name"].tolist() == ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]


def test_read_table_refuses_a_zero_byte_upload():
    error = _refused(b"", "lots.csv")

    assert error.message == "The file was refused: the file is empty (0 bytes)"
    assert error.extra["errors"] == [
        {"line": 0, "column": "", "message": "the file is empty (0 bytes)"}
    ]


def test_read_table_refuses_a_file_of_blank_lines():
    error = _refused(b"\n\n  \n", "lots.csv")

    assert error.extra["errors"] == [{"line": 0, "column": "", "message": "the file has no rows"}]


def test_read_table_refuses_a_header_without_rows():
    error = _refused(LOTS.encode(), "lots.csv")

    assert error.message == "The file was refused: the file has a header but no data rows"
    assert error.extra["errors"] == [
        {"line": 1, "column": "", "message": "the file has a header but no data rows"}
    ]


def test_read_table_refuses_a_png_renamed_csv():
    error = _refused(_png(), "lots.csv")

    assert error.extra["errors"] == [
        {
            "line": 0,
            "column": "",
            "message": "the .csv file is not text: its content looks like a PNG image",
        }
    ]


def test_read_table_refuses_a_txt_file_by_its_name():
    error = _refused(LOTS.encode() + b"1,AAPL,1,1,2024-01-02\n", "lots.txt")

    assert error.extra["errors"] == [
        {
            "line": 0,
            "column": "",
            "message": "unsupported file type '.txt': upload a .csv or .xlsx file",
        }
    ]


def test_read_table_refuses_a_file_name_without_extension():
    error = _refused(b"a\n1\n", "lots")

    assert error.message == (
        "The file was refused: the file name has no extension: upload a .csv or .xlsx file"
    )


def test_read_table_refuses_binary_data_in_a_csv():
    error = _refused(b"ticker\nAA\x00\x01\x02\n", "lots.csv")

    assert error.extra["errors"][0]["message"] == (
        "the .csv file is not text: its content looks like binary data"
    )


def test_read_table_refuses_text_that_is_not_utf8_and_names_the_line():
    data = "ticker,name\nAAA,Café\n".encode("latin-1")

    error = _refused(data, "securities.csv")

    assert error.extra["errors"] == [
        {
            "line": 2,
            "column": "",
            "message": "the file is not UTF-8 text (byte 0xe9 cannot be decoded): "
            "save it as CSV UTF-8",
        }
    ]


def test_read_table_refuses_utf16_text():
    error = _refused("ticker\nAAA\n".encode("utf-16"), "securities.csv")

    assert error.extra["errors"][0]["message"] == "the file is UTF-16 text: save it as CSV UTF-8"


def test_read_table_reports_every_row_with_too_many_fields():
    data = b"a,b\n1,2\n1,2,3\n4,5\n6,7,8,9\n"

    error = _refused(data, "x.csv")

    assert error.extra["errors"] == [
        {"line": 3, "column": "", "message": "expected 2 fields like the header, found 3"},
        {"line": 5, "column": "", "message": "expected 2 fields like the header, found 4"},
    ]


def test_read_table_names_the_line_of_a_quote_that_is_never_closed():
    error = _refused(b'ticker,name\nAAA,ok\nBBB,"unclosed\nCCC,x\n', "securities.csv")

    assert error.extra["errors"] == [
        {
            "line": 3,
            "column": "",
            "message": "a quoted value starting on this line has no closing quote",
        }
    ]


def test_read_table_refuses_a_duplicate_header_and_a_nameless_column_with_values():
    data = b"ticker,Ticker,,price\nA,B,x,1\n"

    error = _refused(data, "prices.csv")

    assert error.extra["errors"] == [
        {
            "line": 1,
            "column": "ticker",
            "message": "column 'ticker' appears more than once in the header",
        },
        {"line": 1, "column": "", "message": "column 3 has values but no name in the header"},
    ]


def test_read_table_drops_an_empty_nameless_column():
    frame = read_table(data=b"ticker,price,\nAAPL,1,\n", file_name="prices.csv")

    assert list(frame.columns) == ["ticker", "price", "line"]


def test_read_table_reads_the_first_sheet_of_an_xlsx_as_text_with_sheet_row_numbers():
    data = _xlsx(
        [
            ["account_number", "ticker", "quantity", "cost_basis", "acquired_on", "taxable"],
            ["8841-2207", "AAPL", 10, 150.25, datetime(2024, 1, 2), True],  # noqa: DTZ001 (Excel has no zones)
            [None, None, None, None, None, None],
            ["007", "KO", 2.5, 0.1, date(2023, 6, 1), False],
        ]
    )

    frame = read_table(data=data, file_name="lots.xlsx")

    assert frame.to_dict("records") == [
        {
            "account_number": "8841-2207", "ticker": "AAPL", "quantity": "10",
            "cost_basis": "150.25", "acquired_on": "2024-01-02", "taxable": "true", "line": 2,
        },
        {
            "account_number": "007", "ticker": "KO", "quantity": "2.5", "cost_basis": "0.1",
            "acquired_on": "2023-06-01", "taxable": "false", "line": 4,
        },
    ]  # fmt: skip


def test_read_table_refuses_an_xlsx_with_formulas_naming_each_line_and_column():
    data = _xlsx(
        [
            ["ticker", "date", "price"],
            ["AAPL", "2026-11-24", 100],
            ["KO", "2026-11-24", "=SUM(C2:C2)"],
            ["MSFT", "2026-11-24", "=C2*2"],
        ]
    )

    error = _refused(data, "prices.xlsx")

    assert error.message == (
        "The file was refused: formula cells are not accepted (found =SUM(C2:C2))"
    )
    assert error.extra["errors"] == [
        {
            "line": 3,
            "column": "price",
            "message": "formula cells are not accepted (found =SUM(C2:C2))",
        },
        {"line": 4, "column": "price", "message": "formula cells are not accepted (found =C2*2)"},
    ]


def test_read_table_refuses_a_header_only_xlsx():
    error = _refused(_xlsx([["ticker", "date", "price"]]), "prices.xlsx")

    assert error.extra["errors"] == [
        {"line": 1, "column": "", "message": "the file has a header but no data rows"}
    ]


def test_read_table_refuses_a_csv_renamed_xlsx():
    error = _refused(b"ticker,price\nAAPL,1\n", "prices.xlsx")

    assert error.extra["errors"][0]["message"] == (
        "the .xlsx file is not an Excel workbook: its content looks like text or other data"
    )


def test_read_table_refuses_a_zip_that_is_not_a_workbook():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")

    error = _refused(buffer.getvalue(), "prices.xlsx")

    assert error.extra["errors"][0]["message"].startswith(
        "the .xlsx file cannot be read as an Excel workbook ("
    )
