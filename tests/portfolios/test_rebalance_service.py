"""The rebalance service on a hand-built book: a run from request to stored proposal, its
reproduction from the stored inputs, bad requests refused with their exact message and no row,
wash sales and restrictions from the database, infeasible runs, trade edits, draft baskets,
batches and auto-propose."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import AuditEvent, Restriction
from orders.models import BasketState, Order, OrderLot, TradeBasket
from orders.services import MSG_RUN_IN_BASKET, basket_create_from_runs
from portfolios.models import (
    AccountStatus,
    ModelTarget,
    RebalanceBatch,
    RebalanceRun,
    RebalanceTrigger,
    RegistrationType,
)
from portfolios.services import rebalance as svc
from portfolios.services.rebalance import (
    rebalance_auto_propose,
    rebalance_batch_request,
    rebalance_problem_build,
    rebalance_run_execute,
    rebalance_run_replay,
    rebalance_run_request,
    rebalance_run_trade_edit,
)
from rebalance_app.exceptions import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    StalePrice,
    ValidationFailed,
)
from tests import factories
from tests.portfolios.rebalance_book import build_book

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(household_a, household_b):
    return build_book(household_a, household_b)


def propose(actor: Any, account: Any, mode: str = "full", **params: Any) -> RebalanceRun:
    run = rebalance_run_request(
        actor=actor, account_id=account.pk, mode=mode, parameters=params, enqueue=False
    )
    rebalance_run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def trade(run: RebalanceRun, ticker: str) -> dict[str, Any]:
    return next(t for t in run.trades if t["ticker"] == ticker)


def test_a_full_rebalance_sells_the_overweight_loss_lot_buys_the_underweight_and_is_stored(
    book, pm
):
    run = propose(pm, book.breached)

    assert run.status == "succeeded", run.error
    assert run.solver
    assert run.solve_ms > 0
    aaa, bbb = trade(run, "AAA"), trade(run, "BBB")
    assert (aaa["side"], bbb["side"]) == ("sell", "buy")
    assert aaa["reason"] == "drift"
    assert aaa["explanation"]
    # Only the short-term lot at a loss is relieved: a realized loss, a negative tax.
    assert {lot["long_term"] for lot in aaa["lots"]} == {False}
    assert aaa["realized_st"] < 0
    assert aaa["realized_lt"] == 0
    assert sum(lot["quantity"] for lot in aaa["lots"]) == aaa["quantity"]
    metrics = run.diagnostics["metrics"]
    assert metrics["total_drift_after"] < metrics["total_drift_before"]
    assert metrics["cash_after"] >= 0
    assert metrics["violations"] == []
    assert run.input_hash
    assert len(run.input_hash) == 64
    assert run.model_version.model == book.core
    assert set(run.timings_ms) == {"load", "solve", "store"}
    actions = list(
        AuditEvent.objects.filter(object_type="portfolios.rebalancerun", object_id=str(run.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["rebalance_run.requested", "rebalance_run.succeeded"]


def test_whole_shares_unless_the_account_allows_fractions(book, pm):
    run = propose(pm, book.breached)
    assert all(float(t["quantity"]).is_integer() for t in run.trades)


def test_a_replay_of_a_stored_run_reproduces_its_trades_and_hash(book, pm):
    run = propose(pm, book.breached)
    # Prices move afterwards: the replay uses the stored inputs, not today's data.
    factories.PriceFactory(
        security=book.sec["AAA"], price=Decimal("300"), as_of=book.fresh + timedelta(days=1)
    )

    replay = rebalance_run_replay(actor=pm, run_id=run.pk)
    rebalance_run_execute(run_id=replay.pk)
    replay.refresh_from_db()

    assert replay.status == "succeeded"
    assert replay.trigger == RebalanceTrigger.REPLAY
    assert replay.replay_of == run
    assert replay.input_hash == run.input_hash
    assert replay.diagnostics["replay"] == {"original": run.pk, "matches": True, "differences": []}
    assert [(t["ticker"], t["quantity"]) for t in replay.trades] == [
        (t["ticker"], t["quantity"]) for t in run.trades
    ]


def no_run_made(before: int = 0) -> bool:
    return RebalanceRun.objects.count() == before


def test_an_unknown_account_and_another_teams_account_are_not_found(book, pm):
    with pytest.raises(NotFound, match=r"^Account 999999 not found\.$"):
        rebalance_run_request(actor=pm, account_id=999999, mode="full")
    with pytest.raises(NotFound):
        rebalance_run_request(actor=pm, account_id=book.other_team.pk, mode="full")
    assert no_run_made()


def test_ops_may_see_an_account_but_not_propose_for_it(book, ops):
    with pytest.raises(PermissionDenied) as info:
        rebalance_run_request(actor=ops, account_id=book.breached.pk, mode="full")
    assert info.value.message == svc.MSG_NOT_ALLOWED.format(
        account=f"{book.breached.account_number} (Breached)"
    )
    assert no_run_made()


def test_tax_loss_harvesting_is_refused_in_an_ira(book, pm):
    book.breached.taxable = False
    book.breached.registration_type = RegistrationType.IRA
    book.breached.save()
    with pytest.raises(ValidationFailed) as info:
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="tlh")
    assert info.value.message == (
        f"Tax-loss harvesting applies to taxable accounts only; account "
        f"{book.breached.account_number} (Breached) is a Traditional IRA account."
    )
    assert no_run_made()


def test_a_cash_raise_larger_than_the_account_is_refused(book, pm):
    with pytest.raises(ValidationFailed) as info:
        rebalance_run_request(
            actor=pm,
            account_id=book.breached.pk,
            mode="cash_raise",
            parameters={"cash_amount": "20000"},
        )
    assert info.value.message == (
        f"Cannot raise $20,000.00: account {book.breached.account_number} (Breached) is worth "
        "$10,000.00 in all, and $0.00 of it is its cash reserve."
    )
    with pytest.raises(ValidationFailed, match="A cash raise needs a positive amount"):
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="cash_raise")
    assert no_run_made()


def test_a_stale_price_is_refused_by_name(book, pm):
    book.sec["BBB"].prices.all().update(as_of=book.fresh - timedelta(days=30))
    with pytest.raises(StalePrice) as info:
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="full")
    stale_day = book.fresh - timedelta(days=30)
    assert info.value.message == (
        f"Stale or missing price for BBB (last {stale_day}): import current prices before "
        "rebalancing."
    )
    assert no_run_made()


def test_a_model_that_does_not_sum_to_100_percent_is_refused(book, pm):
    ModelTarget.objects.filter(security=book.sec["BBB"]).update(weight=Decimal("0.3"))
    with pytest.raises(ValidationFailed) as info:
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="full")
    assert info.value.message == (
        "Model 'Core' v1 weights sum to 90.00% including cash, not 100%: fix the model before "
        "rebalancing."
    )
    assert no_run_made()


def test_a_frozen_account_an_unknown_mode_and_an_unknown_parameter_are_refused(book, pm):
    with pytest.raises(ValidationFailed, match=r"^Unknown mode 'yolo': choose one of full, "):
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="yolo")
    with pytest.raises(ValidationFailed, match=r"^Unknown parameter 'cash_amount' for mode full"):
        rebalance_run_request(
            actor=pm, account_id=book.breached.pk, mode="full", parameters={"cash_amount": 5}
        )
    book.breached.status = AccountStatus.FROZEN
    book.breached.save()
    with pytest.raises(ValidationFailed, match="is frozen: no rebalance can be proposed"):
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="full")
    assert no_run_made()


def test_a_second_request_while_one_is_in_progress_is_refused(book, pm):
    first = rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="full", enqueue=False)
    with pytest.raises(InvalidTransition) as info:
        rebalance_run_request(actor=pm, account_id=book.breached.pk, mode="full")
    assert info.value.extra == {"run": first.pk}
    assert no_run_made(1)


def test_a_recent_loss_sale_in_the_household_blocks_buying_it_back(book, pm):
    sister = factories.AccountFactory(household=book.breached.household, model=book.core)
    factories.TransactionFactory(
        account=sister,
        security=book.sec["BBB"],
        side="sell",
        quantity=Decimal("5"),
        price=Decimal("45"),
        realized_st=Decimal("-25"),
        trade_date=book.today - timedelta(days=10),
    )
    run = propose(pm, book.breached)

    assert run.status == "succeeded"
    assert "BBB" not in [t["ticker"] for t in run.trades if t["side"] == "buy"]
    assert any("BBB sold at a loss" in w for w in run.diagnostics["warnings"])


def test_a_recent_purchase_in_the_household_blocks_selling_its_loss_lots(book, pm):
    sister = factories.AccountFactory(household=book.breached.household, model=book.core)
    factories.TransactionFactory(
        account=sister,
        security=book.sec["AAA"],
        side="buy",
        quantity=Decimal("5"),
        price=Decimal("100"),
        trade_date=book.today - timedelta(days=3),
    )
    run = propose(pm, book.breached)

    assert run.status == "succeeded"
    aaa = trade(run, "AAA")
    assert {lot["long_term"] for lot in aaa["lots"]} == {True}  # the gain lot, not the loss lot


def test_a_no_sell_restriction_is_respected(book, pm):
    Restriction.objects.create(
        scope="account",
        account=book.breached,
        security=book.sec["AAA"],
        kind="no_sell",
        reason="Client instruction",
    )
    run = propose(pm, book.breached)

    assert run.status == "succeeded"
    assert "AAA" not in [t["ticker"] for t in run.trades]
    assert any("No sell AAA (Client instruction)" in w for w in run.diagnostics["warnings"])


def test_conflicting_constraints_make_an_infeasible_run_that_names_them(book, pm):
    book.breached.cash_reserve = Decimal("5000")
    book.breached.save()
    Restriction.objects.create(scope="firm", sector="Tech", kind="no_sell", reason="Blackout")
    Restriction.objects.create(
        scope="firm", security=book.sec["BBB"], kind="no_sell", reason="Blackout"
    )
    run = propose(pm, book.breached)

    assert run.status == "infeasible"
    assert "cash reserve" in run.error.lower()
    assert run.diagnostics["conflicts"]
    assert run.input_hash  # the inputs are kept so the conflict can be examined
    assert AuditEvent.objects.filter(
        action="rebalance_run.infeasible", object_id=str(run.pk)
    ).exists()


def test_removing_a_trade_recomputes_the_metrics_and_records_the_edit(book, pm):
    run = propose(pm, book.breached)
    before = run.diagnostics["metrics"]

    edited = rebalance_run_trade_edit(
        actor=pm, run_id=run.pk, security_id=book.sec["BBB"].pk, quantity=0, note="keep cash"
    )

    assert "BBB" not in [t["ticker"] for t in edited.trades]
    after = edited.diagnostics["metrics"]
    assert after["cash_after"] > before["cash_after"]
    assert after["total_drift_after"] > before["total_drift_after"]
    assert edited.edits[-1]["ticker"] == "BBB"
    assert edited.edits[-1]["after"] == 0
    assert edited.diagnostics["proposed"] == run.diagnostics["proposed"]
    event = AuditEvent.objects.get(action="rebalance_run.trade_edited")
    assert (event.before["quantity"], event.after["quantity"], event.reason) == (
        trade(run, "BBB")["quantity"],
        0,
        "keep cash",
    )


def test_editing_a_sell_relieves_lots_again_and_checks_the_quantity(book, pm):
    run = propose(pm, book.breached)

    edited = rebalance_run_trade_edit(
        actor=pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity=35
    )
    lots = trade(edited, "AAA")["lots"]
    assert sum(x["quantity"] for x in lots) == 35
    assert [x["long_term"] for x in lots] == [False, True]  # the loss lot first, then the gain
    assert trade(edited, "AAA")["edited"] is True

    with pytest.raises(ValidationFailed) as info:
        rebalance_run_trade_edit(
            actor=pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity=71
        )
    assert info.value.message == svc.MSG_EDIT_QUANTITY.format(ticker="AAA", limit=70.0, got=71)
    with pytest.raises(ValidationFailed, match=r"trades whole shares only: 2\.5"):
        rebalance_run_trade_edit(
            actor=pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity="2.5"
        )


def test_a_draft_basket_is_made_once_from_a_run_and_then_locks_it_when_submitted(book, pm):
    run = propose(pm, book.breached)

    basket = basket_create_from_runs(actor=pm, run_ids=[run.pk])

    assert basket.state == BasketState.DRAFT
    assert list(basket.runs.all()) == [run]
    orders = {o.security.ticker: o for o in Order.objects.filter(basket=basket)}
    assert set(orders) == {t["ticker"] for t in run.trades}
    assert orders["AAA"].quantity == Decimal(str(trade(run, "AAA")["quantity"]))
    assert OrderLot.objects.filter(order=orders["AAA"]).count() == len(trade(run, "AAA")["lots"])
    assert AuditEvent.objects.filter(action="basket.created", object_id=str(basket.pk)).exists()

    with pytest.raises(InvalidTransition) as info:
        basket_create_from_runs(actor=pm, run_ids=[run.pk])
    assert info.value.message == MSG_RUN_IN_BASKET.format(
        run=run.pk, basket=basket.pk, state="Draft"
    )
    assert TradeBasket.objects.count() == 1

    # Its orders were copied from the trades: the run is locked while the basket is live.
    with pytest.raises(InvalidTransition) as locked:
        rebalance_run_trade_edit(
            actor=pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity=1
        )
    assert locked.value.message == svc.MSG_RUN_LOCKED.format(
        run=run.pk, basket=basket.pk, state="Draft"
    )
    TradeBasket.objects.filter(pk=basket.pk).update(state=BasketState.CANCELLED)
    rebalance_run_trade_edit(actor=pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity=1)


def test_another_team_cannot_edit_or_basket_a_run(book, pm, other_pm):
    run = propose(pm, book.breached)
    with pytest.raises(NotFound):
        rebalance_run_trade_edit(
            actor=other_pm, run_id=run.pk, security_id=book.sec["AAA"].pk, quantity=1
        )
    with pytest.raises(NotFound):
        basket_create_from_runs(actor=other_pm, run_ids=[run.pk])


def test_cash_invest_only_buys_and_cash_raise_raises_the_amount(book, pm):
    book.breached.cash_balance = Decimal("5000")
    book.breached.save()
    invest = propose(pm, book.breached, mode="cash_invest")
    assert invest.status == "succeeded"
    assert invest.trades
    assert {t["side"] for t in invest.trades} == {"buy"}
    invest_cash = invest.diagnostics["metrics"]["cash_after"]
    assert 0 <= invest_cash < 5000

    raise_run = propose(pm, book.breached, mode="cash_raise", cash_amount="3000")
    assert raise_run.status == "succeeded"
    # The amount is on top of the reserve ($0 here); cash already held counts towards it.
    assert raise_run.diagnostics["metrics"]["cash_after"] >= 3000 - 0.01


def test_tax_loss_harvest_sells_the_loss_lot_and_buys_the_substitute(book, pm):
    run = propose(pm, book.breached, mode="tlh")

    assert run.status == "succeeded", run.error
    aaa, ccc = trade(run, "AAA"), trade(run, "CCC")
    assert aaa["side"] == "sell"
    assert aaa["reason"] == "tlh"
    assert [lot["long_term"] for lot in aaa["lots"]] == [False]
    assert ccc["side"] == "buy"
    assert ccc["reason"] == "tlh"


def test_a_batch_of_every_breached_account_of_a_model_skips_with_reasons(
    book, pm, django_capture_on_commit_callbacks, monkeypatch
):
    from portfolios.models import DriftSnapshot

    frozen = factories.AccountFactory(
        household=book.breached.household, model=book.core, status=AccountStatus.FROZEN
    )
    for account in (book.breached, frozen, book.other_team):
        DriftSnapshot.objects.create(account=account, breached=True, is_latest=True)
    dispatched: list[Any] = []
    monkeypatch.setattr(svc, "_batch_dispatch", lambda b, ids: dispatched.append((b, ids)))

    with django_capture_on_commit_callbacks(execute=True):
        batch = rebalance_batch_request(actor=pm, mode="full", model_id=book.core.pk)

    runs = list(batch.runs.all())
    assert [r.account for r in runs] == [book.breached]  # the other team's account is not PM's
    assert batch.skipped == [
        {
            "account": frozen.pk,
            "reason": f"Account {frozen.account_number} ({frozen.name}) is frozen: no "
            "rebalance can be proposed for it.",
        }
    ]
    assert dispatched == [(batch.pk, [runs[0].pk])]
    event = AuditEvent.objects.get(action="rebalance_batch.requested")
    assert event.after["runs"] == 1

    rebalance_run_execute(run_id=runs[0].pk)
    assert svc.rebalance_batch_finish(batch_id=batch.pk)["finished"] is True
    assert RebalanceBatch.objects.get(pk=batch.pk).finished_at is not None


def test_a_batch_with_nothing_to_run_says_why(book, pm):
    with pytest.raises(ValidationFailed, match=r"^No account to rebalance: no breached account"):
        rebalance_batch_request(actor=pm, mode="full", model_id=book.core.pk)
    with pytest.raises(ValidationFailed, match="either a list of accounts or a model"):
        rebalance_batch_request(actor=pm, mode="full")


def test_auto_propose_creates_an_auto_run_for_accounts_that_asked_and_audits_skips(book):
    book.breached.auto_propose = True
    book.breached.save()
    frozen = factories.AccountFactory(
        household=book.breached.household,
        model=book.core,
        auto_propose=True,
        status=AccountStatus.FROZEN,
    )
    created = rebalance_auto_propose(account_ids=[book.breached.pk, frozen.pk, book.other_team.pk])

    run = RebalanceRun.objects.get()
    assert created == [run.pk]
    assert (run.account, run.trigger, run.mode) == (book.breached, "auto", "tolerance")
    skip = AuditEvent.objects.get(action="rebalance_run.auto_skipped")
    assert skip.object_id == str(frozen.pk)
    assert "frozen" in skip.reason


def test_a_new_breach_of_an_auto_propose_account_asks_for_a_proposal(
    book, django_capture_on_commit_callbacks, monkeypatch
):
    from portfolios.services import drift as drift_svc
    from portfolios.services.drift import drift_scan_create, drift_scan_execute

    book.breached.auto_propose = True
    book.breached.save()
    sent: list[Any] = []
    monkeypatch.setattr(drift_svc, "_auto_propose_send", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=True):
        scan = drift_scan_create(
            actor="system:test", account_ids=[book.breached.pk], trigger="manual"
        )
        drift_scan_execute(scan=scan)
    assert sent == [[book.breached.pk]]


def test_the_problem_snapshot_holds_the_account_inputs(book):
    ctx = rebalance_problem_build(account=book.breached, mode="full", parameters={})
    p = ctx.problem
    assert p.securities.symbols == ("AAA", "BBB")
    assert p.cash == 1000.0
    assert p.taxable
    real = [i for i, lot_id in enumerate(ctx.lot_ids) if lot_id is not None]
    assert [bool(p.lots.long_term[i]) for i in real] == [True, False, True]
    # Each security is padded to the same number of lots (2 here): one compiled shape per size.
    assert list(p.lots.security) == [0, 0, 1, 1]
    assert p.lots.quantity[3] == 0
    snap = ctx.as_snapshot()
    assert snap["lot_ids"] == ctx.lot_ids
    assert snap["security_ids"] == ctx.security_ids


def test_the_rebalance_command_prints_the_trades(book, capsys):
    call_command("rebalance", book.breached.account_number, "--mode", "full")
    out = capsys.readouterr().out
    assert "succeeded" in out
    assert "AAA" in out
    assert "BBB" in out
    with pytest.raises(CommandError, match="Unknown account 'nope'"):
        call_command("rebalance", "nope", "--mode", "full")
    with pytest.raises(CommandError, match="Cannot raise"):
        call_command("rebalance", str(book.breached.pk), "--mode", "cash_raise", "--cash", "1e9")
