"""A fan-out of many accounts through a real Celery worker on Redis: one task per run, the
chord callback closes the batch, every run stores its proposal."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from compliance.models import AuditEvent
from portfolios.models import DriftSnapshot, RebalanceBatch
from portfolios.services.rebalance import rebalance_batch_request
from tests import factories
from tests.portfolios.rebalance_book import build_book
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

ACCOUNTS = 12


@pytest.mark.postgres
@pytest.mark.celery_worker
def test_a_batch_of_many_accounts_runs_through_the_worker_and_closes(
    live_worker,  # noqa: F811
    household_a,
    household_b,
    pm,
):
    book = build_book(household_a, household_b)
    accounts = [book.breached]
    for k in range(ACCOUNTS - 1):
        account = factories.AccountFactory(
            household=household_a,
            model=book.core,
            cash_balance=Decimal(1000 + 250 * k),
            min_trade_amount=Decimal("0"),
        )
        factories.TaxLotFactory(account=account, security=book.sec["AAA"], quantity=Decimal(60 + k))
        factories.TaxLotFactory(account=account, security=book.sec["BBB"], quantity=Decimal(30 + k))
        accounts.append(account)
    for account in accounts:
        DriftSnapshot.objects.create(account=account, breached=True, is_latest=True)

    batch = rebalance_batch_request(actor=pm, mode="full", model_id=book.core.pk)

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if batch.finished_at is not None:
            break
        time.sleep(0.2)
    batch = RebalanceBatch.objects.get(pk=batch.pk)
    assert batch.finished_at is not None, list(batch.runs.values_list("status", "error"))
    statuses = list(batch.runs.values_list("status", flat=True))
    assert statuses == ["succeeded"] * ACCOUNTS
    assert all(run.trades and run.input_hash for run in batch.runs.all())
    assert AuditEvent.objects.filter(action="rebalance_run.succeeded").count() == ACCOUNTS
    assert AuditEvent.objects.filter(action="rebalance_batch.finished").count() == 1
