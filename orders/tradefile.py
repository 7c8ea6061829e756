"""The custodian trade file (docs/trade-files.md): one CSV row per account order of each
block, for destinations without a FIX session. Pure: rows in, bytes and digest out."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from typing import Any

COLUMNS = (
    "trade_date",
    "client_order_id",
    "block_id",
    "basket_id",
    "order_id",
    "custodian",
    "account_number",
    "ticker",
    "cusip",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "est_price",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A custodian's staff open these in a spreadsheet: neutralise formula injection (OWASP).
    if text.startswith(FORMULA_PREFIXES) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def trade_file_render(rows: Iterable[Mapping[str, Any]]) -> tuple[str, str, int]:
    """The CSV text (header first, ``\\r\\n`` line ends as RFC 4180 has them), its SHA-256
    and the number of data rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        count += 1
    text = out.getvalue()
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest(), count
