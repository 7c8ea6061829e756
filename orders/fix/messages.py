"""FIX 4.4 messages: builders for every message the session and the simulated broker send,
header stamping (``encode``), a validating stream decoder and the parsed ExecutionReport.

Pure: no Django, no sockets. Encoding and parsing go through simplefix, which computes
BodyLength (9) and CheckSum (10); simplefix's parser does not verify either, so ``Decoder``
recomputes both from the received bytes and drops garbled messages (the FIX rule: a garbled
message is ignored and its sequence number is not consumed; the gap is then filled by a
resend).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import simplefix
from simplefix import errors as sf_errors

BEGIN_STRING = "FIX.4.4"
SOH = b"\x01"
TIME_FORMAT = "%Y%m%d-%H:%M:%S.%f"


class MsgType:
    LOGON = "A"
    HEARTBEAT = "0"
    TEST_REQUEST = "1"
    RESEND_REQUEST = "2"
    REJECT = "3"
    SEQUENCE_RESET = "4"
    LOGOUT = "5"
    EXECUTION_REPORT = "8"
    ORDER_CANCEL_REJECT = "9"
    NEW_ORDER_SINGLE = "D"
    ORDER_CANCEL_REQUEST = "F"


# Session-level messages: never resent as themselves (a SequenceReset-GapFill replaces them).
# Reject (3) is a session message too, but it is resent like an application message because
# it reports on one (FIX 4.4 vol. 2 lets either be done; resending keeps the record complete).
ADMIN_TYPES = frozenset({"A", "0", "1", "2", "4", "5"})
# Header tags ``encode`` owns; builders never set them.
HEADER_TAGS = frozenset({8, 9, 35, 49, 56, 34, 52, 43, 97, 122, 10})

SIDE_CODES = {"buy": "1", "sell": "2"}
SIDE_NAMES = {v: k for k, v in SIDE_CODES.items()}
ORD_TYPE_CODES = {"market": "1", "limit": "2"}

MISSING_TAG = "ExecutionReport is missing required tag {tag} ({name})."
BAD_NUMBER = "ExecutionReport tag {tag} ({name}) is not a number: {value!r}."
UNKNOWN_SIDE = "Unknown side {side!r}: expected 'buy' or 'sell'."
UNKNOWN_ORD_TYPE = "Unknown order type {ord_type!r}: expected 'market' or 'limit'."
LIMIT_NEEDS_PRICE = "A limit order needs a price (tag 44)."
BAD_QUANTITY = "Order quantity must be positive, got {quantity}."


def _num(value: Decimal | int | str) -> str:
    """A decimal as FIX wants it: plain notation, no exponent, no trailing zeros."""
    d = Decimal(str(value))
    text = format(d.normalize(), "f")
    return text if text != "-0" else "0"


def _utc(ts: dt.datetime) -> dt.datetime:
    if ts.tzinfo is None:
        raise ValueError("FIX timestamps must be timezone-aware (UTC).")
    return ts.astimezone(dt.UTC)


def _new(msg_type: str) -> simplefix.FixMessage:
    msg = simplefix.FixMessage()
    msg.append_pair(35, msg_type)
    return msg


def _time(msg: simplefix.FixMessage, tag: int, ts: dt.datetime, *, header: bool = False) -> None:
    msg.append_utc_timestamp(tag, _utc(ts), precision=3, header=header)


# --- session messages -------------------------------------------------------------------


def logon(heartbeat: int, reset: bool = False) -> simplefix.FixMessage:
    msg = _new(MsgType.LOGON)
    msg.append_pair(98, 0)  # EncryptMethod: none
    msg.append_pair(108, int(heartbeat))
    if reset:
        msg.append_pair(141, "Y")
    return msg


def heartbeat(test_req_id: str | None = None) -> simplefix.FixMessage:
    msg = _new(MsgType.HEARTBEAT)
    if test_req_id:
        msg.append_pair(112, test_req_id)
    return msg


def test_request(test_req_id: str) -> simplefix.FixMessage:
    msg = _new(MsgType.TEST_REQUEST)
    msg.append_pair(112, test_req_id)
    return msg


test_request.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def resend_request(begin: int, end: int = 0) -> simplefix.FixMessage:
    msg = _new(MsgType.RESEND_REQUEST)
    msg.append_pair(7, int(begin))
    msg.append_pair(16, int(end))
    return msg


def sequence_reset(new_seq: int, gap_fill: bool = True) -> simplefix.FixMessage:
    msg = _new(MsgType.SEQUENCE_RESET)
    if gap_fill:
        msg.append_pair(123, "Y")
    msg.append_pair(36, int(new_seq))
    return msg


def logout(text: str = "") -> simplefix.FixMessage:
    msg = _new(MsgType.LOGOUT)
    if text:
        msg.append_pair(58, text)
    return msg


def reject(ref_seq: int, text: str) -> simplefix.FixMessage:
    msg = _new(MsgType.REJECT)
    msg.append_pair(45, int(ref_seq))
    msg.append_pair(58, text)
    return msg


# --- application messages ---------------------------------------------------------------


def _side(side: str) -> str:
    try:
        return SIDE_CODES[side]
    except KeyError:
        raise ValueError(UNKNOWN_SIDE.format(side=side)) from None


def new_order_single(
    *,
    cl_ord_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    transact_time: dt.datetime,
    ord_type: str = "market",
    price: Decimal | None = None,
    account: str = "",
) -> simplefix.FixMessage:
    """NewOrderSingle (35=D): automated execution, no broker intervention (21=1)."""
    if ord_type not in ORD_TYPE_CODES:
        raise ValueError(UNKNOWN_ORD_TYPE.format(ord_type=ord_type))
    if Decimal(quantity) <= 0:
        raise ValueError(BAD_QUANTITY.format(quantity=quantity))
    if ord_type == "limit" and price is None:
        raise ValueError(LIMIT_NEEDS_PRICE)
    msg = _new(MsgType.NEW_ORDER_SINGLE)
    msg.append_pair(11, cl_ord_id)
    if account:
        msg.append_pair(1, account)
    msg.append_pair(21, "1")
    msg.append_pair(55, symbol)
    msg.append_pair(54, _side(side))
    _time(msg, 60, transact_time)
    msg.append_pair(38, _num(quantity))
    msg.append_pair(40, ORD_TYPE_CODES[ord_type])
    if ord_type == "limit":
        msg.append_pair(44, _num(price))  # type: ignore[arg-type]
    return msg


def order_cancel_request(
    *,
    cl_ord_id: str,
    orig_cl_ord_id: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    transact_time: dt.datetime,
) -> simplefix.FixMessage:
    """OrderCancelRequest (35=F) for the whole remaining quantity of ``orig_cl_ord_id``."""
    msg = _new(MsgType.ORDER_CANCEL_REQUEST)
    msg.append_pair(41, orig_cl_ord_id)
    msg.append_pair(11, cl_ord_id)
    msg.append_pair(55, symbol)
    msg.append_pair(54, _side(side))
    _time(msg, 60, transact_time)
    msg.append_pair(38, _num(quantity))
    return msg


def execution_report(
    *,
    order_id: str,
    cl_ord_id: str,
    exec_id: str,
    exec_type: str,
    ord_status: str,
    symbol: str,
    side: str,
    order_qty: Decimal,
    cum_qty: Decimal,
    avg_px: Decimal,
    leaves_qty: Decimal,
    transact_time: dt.datetime,
    last_qty: Decimal | None = None,
    last_px: Decimal | None = None,
    orig_cl_ord_id: str = "",
    text: str = "",
) -> simplefix.FixMessage:
    """ExecutionReport (35=8), as the simulated broker sends it. ``side`` is buy/sell."""
    msg = _new(MsgType.EXECUTION_REPORT)
    msg.append_pair(37, order_id)
    msg.append_pair(11, cl_ord_id)
    if orig_cl_ord_id:
        msg.append_pair(41, orig_cl_ord_id)
    msg.append_pair(17, exec_id)
    msg.append_pair(150, exec_type)
    msg.append_pair(39, ord_status)
    msg.append_pair(55, symbol)
    msg.append_pair(54, _side(side))
    msg.append_pair(38, _num(order_qty))
    if last_qty is not None:
        msg.append_pair(32, _num(last_qty))
    if last_px is not None:
        msg.append_pair(31, _num(last_px))
    msg.append_pair(14, _num(cum_qty))
    msg.append_pair(6, _num(avg_px))
    msg.append_pair(151, _num(leaves_qty))
    _time(msg, 60, transact_time)
    if text:
        msg.append_pair(58, text)
    return msg


def order_cancel_reject(
    *, order_id: str, cl_ord_id: str, orig_cl_ord_id: str, ord_status: str, text: str
) -> simplefix.FixMessage:
    """OrderCancelReject (35=9) answering an OrderCancelRequest (434=1)."""
    msg = _new(MsgType.ORDER_CANCEL_REJECT)
    msg.append_pair(37, order_id or "NONE")
    msg.append_pair(11, cl_ord_id)
    msg.append_pair(41, orig_cl_ord_id)
    msg.append_pair(39, ord_status)
    msg.append_pair(434, "1")
    msg.append_pair(58, text)
    return msg


# --- header stamping --------------------------------------------------------------------


def format_time(ts: dt.datetime) -> str:
    """A UTCTimestamp with milliseconds, as simplefix writes it."""
    return _utc(ts).strftime("%Y%m%d-%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def encode(
    msg: simplefix.FixMessage,
    *,
    sender: str,
    target: str,
    seq: int,
    sending_time: dt.datetime,
    poss_dup: bool = False,
    orig_sending_time: dt.datetime | str | None = None,
) -> bytes:
    """The wire bytes of ``msg`` with the standard header stamped (8, 9, 35, 49, 56, 34, 52,
    and 43=Y plus 122 for a possible duplicate); simplefix computes 9 and 10."""
    msg_type = msg.message_type.decode() if msg.message_type else None
    if not msg_type:
        raise ValueError("The message has no MsgType (35).")
    out = simplefix.FixMessage()
    out.append_pair(8, BEGIN_STRING, header=True)
    out.append_pair(35, msg_type, header=True)
    out.append_pair(49, sender, header=True)
    out.append_pair(56, target, header=True)
    out.append_pair(34, int(seq), header=True)
    if poss_dup:
        out.append_pair(43, "Y", header=True)
    _time(out, 52, sending_time, header=True)
    if poss_dup:
        orig = orig_sending_time if orig_sending_time is not None else sending_time
        if isinstance(orig, dt.datetime):
            _time(out, 122, orig, header=True)
        else:
            out.append_pair(122, orig, header=True)
    for tag, value in msg.pairs:
        if int(tag) not in HEADER_TAGS:
            out.append_pair(tag, value)
    return out.encode()


def as_possible_duplicate(raw: bytes, *, sending_time: dt.datetime) -> bytes:
    """A stored message re-encoded for a resend: same MsgSeqNum and body, PossDupFlag=Y,
    OrigSendingTime = its original SendingTime, a new SendingTime."""
    parsed = decode_one(raw)
    f = parsed.fields
    return encode(
        parsed.message,
        sender=f["49"],
        target=f["56"],
        seq=int(f["34"]),
        sending_time=sending_time,
        poss_dup=True,
        orig_sending_time=f.get("52") or None,
    )


# --- decoding ---------------------------------------------------------------------------


def fields_of(msg: simplefix.FixMessage) -> dict[str, str]:
    """The message's fields as {tag: value} strings (the first of a repeated tag)."""
    out: dict[str, str] = {}
    for tag, value in msg.pairs:
        key = tag.decode() if isinstance(tag, bytes) else str(tag)
        if key not in out:
            out[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return out


@dataclass(frozen=True)
class Parsed:
    """One received message: simplefix's message, its exact bytes and its fields."""

    message: simplefix.FixMessage
    raw: bytes
    fields: dict[str, str]

    @property
    def msg_type(self) -> str:
        return self.fields.get("35", "")

    @property
    def seq_num(self) -> int:
        try:
            return int(self.fields.get("34", "0"))
        except ValueError:
            return 0

    @property
    def poss_dup(self) -> bool:
        return self.fields.get("43") == "Y"

    @property
    def begin_string(self) -> str:
        return self.fields.get("8", "")


def checksum_problem(raw: bytes) -> str | None:
    """Why ``raw`` (one whole message) is garbled, or None: BodyLength (9) and CheckSum (10)
    recomputed from the bytes."""
    if not raw.startswith(b"8="):
        return "does not start with BeginString (8)"
    first = raw.find(SOH)
    if first < 0 or not raw[first + 1 :].startswith(b"9="):
        return "BodyLength (9) is not the second field"
    second = raw.find(SOH, first + 1)
    trailer = raw.rfind(SOH + b"10=", 0, len(raw) - 1)
    if second < 0 or trailer < 0:
        return "no CheckSum (10) field"
    try:
        declared_len = int(raw[first + 3 : second])
    except ValueError:
        return "BodyLength (9) is not a number"
    body_len = trailer + 1 - (second + 1)
    if declared_len != body_len:
        return f"BodyLength is {declared_len} but the body has {body_len} bytes"
    declared_sum = raw[trailer + 4 :].rstrip(SOH)
    actual = sum(raw[: trailer + 1]) % 256
    if declared_sum != f"{actual:03d}".encode():
        return f"CheckSum is {declared_sum.decode('latin-1')} but the bytes sum to {actual:03d}"
    return None


@dataclass
class Decoder:
    """Splits a byte stream into validated messages. ``feed`` returns the good ones; garbled
    ones (bad BodyLength or CheckSum, junk between messages) are skipped and described in
    ``errors`` so the session can log them."""

    parser: simplefix.FixParser = field(default_factory=simplefix.FixParser)
    errors: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Parsed]:
        self.parser.append_buffer(data)
        out: list[Parsed] = []
        while True:
            try:
                msg = self.parser.get_message()
            except (sf_errors.ParsingError, ValueError) as exc:
                self._resync(f"unparseable bytes ({type(exc).__name__})")
                continue
            if msg is None:
                return out
            raw = msg.encode(raw=True)
            problem = checksum_problem(raw)
            if problem:
                self.errors.append(f"garbled message dropped: {problem}")
                continue
            out.append(Parsed(message=msg, raw=raw, fields=fields_of(msg)))

    def _resync(self, reason: str) -> None:
        """Drop everything up to the next BeginString after a parse error."""
        buf = bytes(self.parser.get_buffer())
        self.parser.reset()
        self.errors.append(f"{reason}: skipped to the next message")
        nxt = buf.find(SOH + b"8=")
        if nxt >= 0:
            self.parser.append_buffer(buf[nxt + 1 :])
            return
        # The next BeginString may be arriving in pieces: keep a tail that could start it.
        tail = buf[buf.rfind(SOH) + 1 :]
        if tail and b"8=FIX.4.4".startswith(tail[:9]):
            self.parser.append_buffer(tail)


def decode_all(data: bytes) -> list[Parsed]:
    """Every valid message in ``data`` (a convenience for tests and stored messages)."""
    return Decoder().feed(data)


def decode_one(raw: bytes) -> Parsed:
    msgs = decode_all(raw)
    if len(msgs) != 1:
        raise ValueError(f"Expected one FIX message, found {len(msgs)}.")
    return msgs[0]


# --- execution reports ------------------------------------------------------------------

_REQUIRED = {
    "37": "OrderID",
    "11": "ClOrdID",
    "17": "ExecID",
    "150": "ExecType",
    "39": "OrdStatus",
    "55": "Symbol",
    "54": "Side",
    "14": "CumQty",
    "151": "LeavesQty",
    "6": "AvgPx",
}
_NAMES = {**_REQUIRED, "38": "OrderQty", "32": "LastQty", "31": "LastPx"}


@dataclass(frozen=True)
class ExecReport:
    """An ExecutionReport's fields, quantities and prices as Decimals; side is buy/sell."""

    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str
    exec_id: str
    exec_type: str
    ord_status: str
    symbol: str
    side: str
    order_qty: Decimal
    last_qty: Decimal
    last_px: Decimal | None
    cum_qty: Decimal
    avg_px: Decimal
    leaves_qty: Decimal
    text: str
    transact_time: dt.datetime | None

    @property
    def is_fill(self) -> bool:
        return self.exec_type in ("F", "1", "2") and self.last_qty > 0


def _dec(fields: dict[str, str], tag: str, default: Decimal | None = None) -> Decimal | None:
    value = fields.get(tag)
    if value is None or value == "":
        return default
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(BAD_NUMBER.format(tag=tag, name=_NAMES[tag], value=value)) from None


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    for fmt in (TIME_FORMAT, "%Y%m%d-%H:%M:%S"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def parse_execution_report(fields: dict[str, str]) -> ExecReport:
    """The ExecutionReport in ``fields`` (from ``fields_of``); ValueError naming the first
    missing required tag or non-numeric quantity."""
    for tag, name in _REQUIRED.items():
        if not fields.get(tag):
            raise ValueError(MISSING_TAG.format(tag=tag, name=name))
    return ExecReport(
        order_id=fields["37"],
        cl_ord_id=fields["11"],
        orig_cl_ord_id=fields.get("41", ""),
        exec_id=fields["17"],
        exec_type=fields["150"],
        ord_status=fields["39"],
        symbol=fields["55"],
        side=SIDE_NAMES.get(fields["54"], fields["54"]),
        order_qty=_dec(fields, "38", Decimal("0")),  # type: ignore[arg-type]
        last_qty=_dec(fields, "32", Decimal("0")),  # type: ignore[arg-type]
        last_px=_dec(fields, "31"),
        cum_qty=_dec(fields, "14"),  # type: ignore[arg-type]
        avg_px=_dec(fields, "6"),  # type: ignore[arg-type]
        leaves_qty=_dec(fields, "151"),  # type: ignore[arg-type]
        text=fields.get("58", ""),
        transact_time=parse_time(fields.get("60")),
    )
