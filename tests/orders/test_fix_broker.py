"""The simulated broker's order handling, seen through our initiator: partial fills, rejects,
duplicate ClOrdIDs, resting limit orders, cancels and cancel rejects, its persisted state,
and the ``fix_broker`` command's price lookup and options."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from orders.management.commands.fix_broker import latest_price_for
from tests import factories
from tests.orders.test_fix_session import WAIT, Harness, _connected


@pytest.fixture
def harness(tmp_path):
    h = Harness(state_path=tmp_path / "broker.json")
    yield h
    h.close()


def test_partial_fill_then_the_rest(harness):
    init = _connected(harness, partial_fill=0.3, fill_delay=0.05)
    init.send_new_order(cl_ord_id="P-1", symbol="MSFT", side="buy", quantity=Decimal("10"))
    assert init.run_until(lambda: harness.status_reached("P-1", "2"), WAIT)
    ack, first, rest = harness.reports("P-1")
    assert (ack.exec_type, ack.ord_status) == ("0", "0")
    assert (first.exec_type, first.ord_status, first.last_qty, first.leaves_qty) == (
        "F",
        "1",
        Decimal("3"),
        Decimal("7"),
    )
    assert (rest.exec_type, rest.ord_status, rest.last_qty, rest.cum_qty) == (
        "F",
        "2",
        Decimal("7"),
        Decimal("10"),
    )
    assert len({ack.exec_id, first.exec_id, rest.exec_id}) == 3


def test_partial_fill_of_a_tiny_order_is_at_least_one_share(harness):
    init = _connected(harness, partial_fill=0.1, complete_partials=False)
    init.send_new_order(cl_ord_id="P-2", symbol="MSFT", side="buy", quantity=Decimal("3"))
    assert init.run_until(lambda: harness.status_reached("P-2", "1"), WAIT)
    init.poll(0.3)
    fills = [r for r in harness.reports("P-2") if r.exec_type == "F"]
    assert [(f.last_qty, f.ord_status, f.leaves_qty) for f in fills] == [
        (Decimal("1"), "1", Decimal("2"))
    ]
    assert harness.broker.store.orders["P-2"]["status"] == "1"


def test_rejected_symbol_and_unpriced_symbol_get_reject_reports_with_text(harness):
    init = _connected(harness, reject_symbols={"AAPL"})
    init.send_new_order(cl_ord_id="R-1", symbol="AAPL", side="buy", quantity=Decimal("1"))
    init.send_new_order(cl_ord_id="R-2", symbol="NOPE", side="buy", quantity=Decimal("1"))
    assert init.run_until(
        lambda: harness.status_reached("R-1", "8") and harness.status_reached("R-2", "8"), WAIT
    )
    (r1,) = harness.reports("R-1")
    (r2,) = harness.reports("R-2")
    assert (r1.exec_type, r1.text) == ("8", "Symbol AAPL is not accepted by the broker")
    assert (r2.exec_type, r2.text) == ("8", "No price for NOPE")
    assert r1.leaves_qty == 0


def test_a_failing_price_source_rejects_the_order_and_the_broker_keeps_serving(harness):
    def broken(symbol: str) -> Decimal | None:
        if symbol == "BOOM":
            raise RuntimeError("database is down")
        return Decimal("10")

    harness.start_broker()
    harness.broker.price_for = broken
    init = harness.initiator()
    init.logon(timeout=WAIT)
    init.send_new_order(cl_ord_id="B-1", symbol="BOOM", side="buy", quantity=Decimal("1"))
    init.send_new_order(cl_ord_id="B-2", symbol="FINE", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("B-2", "2"), WAIT)
    assert harness.reports("B-1")[-1].text == "No price for BOOM"
    assert harness.broker.running


def test_duplicate_clordid_without_possdup_is_rejected(harness):
    init = _connected(harness)
    init.send_new_order(cl_ord_id="D-1", symbol="MSFT", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("D-1", "2"), WAIT)
    init.send_new_order(cl_ord_id="D-1", symbol="MSFT", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("D-1", "8"), WAIT)
    reject = harness.reports("D-1")[-1]
    assert (reject.exec_type, reject.text) == ("8", "Duplicate ClOrdID D-1")
    assert harness.broker.store.orders["D-1"]["cum"] == "1"


def test_non_marketable_limit_rests_and_is_cancelled(harness):
    init = _connected(harness)
    init.send_new_order(
        cl_ord_id="L-1",
        symbol="MSFT",
        side="buy",
        quantity=Decimal("5"),
        ord_type="limit",
        price=Decimal("350"),
    )
    assert init.run_until(lambda: harness.status_reached("L-1", "0"), WAIT)
    init.poll(0.3)
    assert [r.exec_type for r in harness.reports("L-1")] == ["0"]
    init.send_cancel(
        cl_ord_id="L-1-C", orig_cl_ord_id="L-1", symbol="MSFT", side="buy", quantity=Decimal("5")
    )
    assert init.run_until(lambda: harness.status_reached("L-1-C", "4"), WAIT)
    (cancel,) = harness.reports("L-1-C")
    assert (cancel.exec_type, cancel.orig_cl_ord_id, cancel.leaves_qty, cancel.cum_qty) == (
        "4",
        "L-1",
        Decimal("0"),
        Decimal("0"),
    )
    # Cancelling again, or an unknown order, gets an OrderCancelReject with the reason.
    init.send_cancel(
        cl_ord_id="L-1-C2", orig_cl_ord_id="L-1", symbol="MSFT", side="buy", quantity=Decimal("5")
    )
    init.send_cancel(
        cl_ord_id="X-C", orig_cl_ord_id="X", symbol="MSFT", side="buy", quantity=Decimal("5")
    )

    def rejects() -> dict[str, str]:
        return {r.fields["11"]: r.fields["58"] for r in harness.received if r.msg_type == "9"}

    assert init.run_until(lambda: len(rejects()) == 2, WAIT)
    assert rejects() == {"L-1-C2": "Order L-1 is already cancelled", "X-C": "Unknown order X"}


def test_marketable_limit_sell_fills_at_the_market_price(harness):
    init = _connected(harness)
    init.send_new_order(
        cl_ord_id="L-2",
        symbol="MSFT",
        side="sell",
        quantity=Decimal("2"),
        ord_type="limit",
        price=Decimal("399"),
    )
    assert init.run_until(lambda: harness.status_reached("L-2", "2"), WAIT)
    assert harness.reports("L-2")[-1].last_px == Decimal("400")


def test_state_file_holds_sequence_numbers_sent_messages_and_orders(harness):
    init = _connected(harness)
    init.send_new_order(cl_ord_id="S-1", symbol="MSFT", side="buy", quantity=Decimal("2"))
    assert init.run_until(lambda: harness.status_reached("S-1", "2"), WAIT)
    init.logout(timeout=WAIT)
    harness.broker.stop()
    state = json.loads(harness.state_path.read_text())
    assert (state["next_in"], state["next_out"]) == harness.store.load()
    sent = harness.broker.store.sent_rows()  # the append-only log beside the snapshot
    assert [row["type"] for row in sent] == ["A", "8", "8", "5"]
    assert [row["seq"] for row in sent] == [1, 2, 3, 4]
    assert "sent" not in state
    assert state["orders"]["S-1"]["status"] == "2"
    assert state["orders"]["S-1"]["cum"] == "2"
    assert not list(harness.state_path.parent.glob(".fix-broker-*"))  # no temp file left


def test_restarted_broker_does_not_reuse_exec_ids(harness):
    init = _connected(harness)
    init.send_new_order(cl_ord_id="E-1", symbol="MSFT", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("E-1", "2"), WAIT)
    init.logout(timeout=WAIT)
    harness.broker.stop()
    harness.start_broker()
    init = harness.initiator()
    init.logon(timeout=WAIT)
    init.send_new_order(cl_ord_id="E-2", symbol="MSFT", side="buy", quantity=Decimal("1"))
    assert init.run_until(lambda: harness.status_reached("E-2", "2"), WAIT)
    exec_ids = [r.exec_id for r in harness.reports()]
    assert len(exec_ids) == 4
    assert len(set(exec_ids)) == 4


@pytest.mark.django_db
def test_command_prices_orders_at_the_latest_stored_price():
    sec = factories.SecurityFactory(ticker="VTI")
    factories.PriceFactory(security=sec, as_of=date(2026, 11, 20), price=Decimal("250"))
    factories.PriceFactory(security=sec, as_of=date(2026, 11, 24), price=Decimal("255.5"))
    assert latest_price_for("VTI") == Decimal("255.5")
    assert latest_price_for("UNKNOWN") is None


def test_command_rejects_a_partial_fraction_outside_zero_one():
    with pytest.raises(CommandError, match="--partial must be a fraction between 0 and 1"):
        call_command("fix_broker", "--partial", "1.5")
