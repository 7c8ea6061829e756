"""FIX message builders, header stamping and the validating decoder (pure: no database).
Every message is parsed back by simplefix, and BodyLength and CheckSum are recomputed here
from the bytes, independently of the code under test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import simplefix

from orders.fix import messages as m

NOW = dt.datetime(2026, 11, 25, 14, 30, 5, 123456, tzinfo=dt.UTC)


def _encode(msg: simplefix.FixMessage, **kw) -> bytes:
    return m.encode(msg, sender="REBAL", target="SIMBROKER", seq=7, sending_time=NOW, **kw)


def _parse(raw: bytes) -> dict[str, str]:
    parser = simplefix.FixParser()
    parser.append_buffer(raw)
    msg = parser.get_message()
    assert msg is not None
    return {t.decode(): v.decode() for t, v in msg.pairs}


def _check_length_and_sum(raw: bytes) -> None:
    fields = raw.split(b"\x01")[:-1]
    assert fields[0] == b"8=FIX.4.4"
    assert fields[1].startswith(b"9=")
    assert fields[-1].startswith(b"10=")
    body_start = len(fields[0]) + 1 + len(fields[1]) + 1
    trailer_start = len(raw) - (len(fields[-1]) + 1)
    assert int(fields[1][2:]) == trailer_start - body_start
    assert int(fields[-1][3:]) == sum(raw[:trailer_start]) % 256


def _order(**kw) -> simplefix.FixMessage:
    args = {
        "cl_ord_id": "RB-1",
        "symbol": "MSFT",
        "side": "buy",
        "quantity": Decimal("12.500000"),
        "transact_time": NOW,
    }
    args.update(kw)
    return m.new_order_single(**args)


def test_new_order_single_market_has_required_tags_and_no_price():
    raw = _encode(_order())
    _check_length_and_sum(raw)
    f = _parse(raw)
    assert f["35"] == "D"
    for tag in ("11", "55", "54", "60", "38", "40", "21"):
        assert tag in f
    assert f["11"] == "RB-1"
    assert f["54"] == "1"
    assert f["38"] == "12.5"
    assert f["40"] == "1"
    assert f["60"] == "20261125-14:30:05.123"
    assert "44" not in f
    assert (f["49"], f["56"], f["34"], f["52"]) == (
        "REBAL",
        "SIMBROKER",
        "7",
        "20261125-14:30:05.123",
    )
    assert "43" not in f
    assert "122" not in f


def test_new_order_single_limit_sell_carries_price():
    raw = _encode(_order(side="sell", ord_type="limit", price=Decimal("401.2500")))
    _check_length_and_sum(raw)
    f = _parse(raw)
    assert (f["54"], f["40"], f["44"]) == ("2", "2", "401.25")


def test_new_order_single_rejects_bad_input():
    with pytest.raises(ValueError, match="limit order needs a price"):
        _order(ord_type="limit")
    with pytest.raises(ValueError, match="Unknown side 'short'"):
        _order(side="short")
    with pytest.raises(ValueError, match="must be positive"):
        _order(quantity=Decimal("0"))


def test_possible_duplicate_encode_carries_43_and_122():
    orig = NOW - dt.timedelta(minutes=3)
    raw = _encode(_order(), poss_dup=True, orig_sending_time=orig)
    _check_length_and_sum(raw)
    f = _parse(raw)
    assert f["43"] == "Y"
    assert f["122"] == "20261125-14:27:05.123"
    assert f["52"] == "20261125-14:30:05.123"


def test_as_possible_duplicate_keeps_seq_and_body_and_original_time():
    original = _encode(_order())
    later = NOW + dt.timedelta(seconds=30)
    again = m.as_possible_duplicate(original, sending_time=later)
    _check_length_and_sum(again)
    a, b = _parse(original), _parse(again)
    assert b["34"] == a["34"]
    assert b["43"] == "Y"
    assert b["122"] == a["52"]
    assert b["52"] == "20261125-14:30:35.123"
    for tag in ("11", "55", "54", "38", "40", "60"):
        assert b[tag] == a[tag]


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (m.logon(30), {"35": "A", "98": "0", "108": "30"}),
        (m.heartbeat("T1"), {"35": "0", "112": "T1"}),
        (m.test_request("T2"), {"35": "1", "112": "T2"}),
        (m.resend_request(5), {"35": "2", "7": "5", "16": "0"}),
        (m.sequence_reset(9), {"35": "4", "123": "Y", "36": "9"}),
        (m.logout("bye"), {"35": "5", "58": "bye"}),
        (m.reject(3, "bad"), {"35": "3", "45": "3", "58": "bad"}),
    ],
)
def test_session_messages_encode_their_tags(msg, expected):
    raw = _encode(msg)
    _check_length_and_sum(raw)
    f = _parse(raw)
    for tag, value in expected.items():
        assert f[tag] == value


def test_cancel_request_and_execution_report_round_trip():
    cancel = _parse(
        _encode(
            m.order_cancel_request(
                cl_ord_id="RB-1-C",
                orig_cl_ord_id="RB-1",
                symbol="MSFT",
                side="sell",
                quantity=Decimal("3"),
                transact_time=NOW,
            )
        )
    )
    assert (cancel["35"], cancel["11"], cancel["41"], cancel["54"]) == ("F", "RB-1-C", "RB-1", "2")
    report = m.execution_report(
        order_id="O1",
        cl_ord_id="RB-1",
        exec_id="E1",
        exec_type="F",
        ord_status="1",
        symbol="MSFT",
        side="buy",
        order_qty=Decimal("10"),
        cum_qty=Decimal("4"),
        avg_px=Decimal("400.5"),
        leaves_qty=Decimal("6"),
        last_qty=Decimal("4"),
        last_px=Decimal("400.5"),
        transact_time=NOW,
    )
    parsed = m.decode_one(_encode(report))
    er = m.parse_execution_report(parsed.fields)
    assert er.exec_id == "E1"
    assert er.side == "buy"
    assert (er.last_qty, er.last_px, er.cum_qty, er.leaves_qty) == (
        Decimal("4"),
        Decimal("400.5"),
        Decimal("4"),
        Decimal("6"),
    )
    assert er.transact_time == dt.datetime(2026, 11, 25, 14, 30, 5, 123000, tzinfo=dt.UTC)
    assert er.is_fill


def test_parse_execution_report_names_the_missing_tag():
    fields = {"37": "O1", "11": "C", "150": "0", "39": "0", "55": "X", "54": "1"}
    fields.update({"14": "0", "151": "1", "6": "0"})
    with pytest.raises(ValueError, match=r"missing required tag 17 \(ExecID\)"):
        m.parse_execution_report(fields)
    fields["17"] = "E"
    fields["14"] = "lots"
    with pytest.raises(ValueError, match=r"tag 14 \(CumQty\) is not a number"):
        m.parse_execution_report(fields)


def test_decoder_drops_bad_checksum_and_bad_length_and_garbage():
    good = _encode(m.heartbeat())
    bad_sum = good.replace(b"REBAL", b"REBAM")
    bad_len = good.replace(b"9=", b"9=1", 1)
    stream = bad_sum + b"junk=1\x01garbage\x01" + good + bad_len + good
    decoder = m.Decoder()
    out = []
    for i in range(0, len(stream), 7):  # arrives in small pieces
        out.extend(decoder.feed(stream[i : i + 7]))
    assert [p.raw for p in out] == [good, good]
    assert any("CheckSum" in e for e in decoder.errors)
    assert any("BodyLength" in e for e in decoder.errors)


def test_decoder_reports_begin_string_for_the_session_to_check():
    msg = simplefix.FixMessage()
    msg.append_pair(8, "FIX.4.2")
    msg.append_pair(35, "0")
    msg.append_pair(34, 1)
    (parsed,) = m.decode_all(msg.encode())
    assert parsed.begin_string == "FIX.4.2"


def test_timestamps_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        _order(transact_time=dt.datetime(2026, 1, 1))  # noqa: DTZ001
