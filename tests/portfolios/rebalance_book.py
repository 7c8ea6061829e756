"""A small hand-built book for the rebalance tests (service, API, command, worker).

Securities AAA ($100), BBB ($50) and CCC ($20, AAA's harvesting substitute), priced on the
latest completed session. Model "Core": AAA 50%, BBB 40%, cash 10%, 2-point bands. Account
``breached`` (Team A, taxable) holds 70 AAA in two lots (40 long-term at a $60 basis, 30
short-term at a $120 basis: a loss) and 40 BBB, with $1,000 cash: AAA is 70% against 50%.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.utils import timezone

from portfolios.calendar import last_completed_session
from portfolios.services import TargetSpec, model_version_create
from rebalance_app.work import WorkStatus
from tests import factories

ACTOR = "system:test"


def build_book(household_a: Any, household_b: Any) -> SimpleNamespace:
    today = timezone.localdate()
    fresh = last_completed_session()
    sec = {}
    for ticker, price, sector in [
        ("AAA", "100", "Tech"),
        ("BBB", "50", "Energy"),
        ("CCC", "20", "Tech"),
    ]:
        sec[ticker] = factories.SecurityFactory(ticker=ticker, name=f"{ticker} Corp", sector=sector)
        factories.PriceFactory(security=sec[ticker], price=Decimal(price), as_of=fresh)
    sec["AAA"].tlh_substitutes.add(sec["CCC"])
    core = factories.ModelPortfolioFactory(name="Core")
    model_version_create(
        model=core,
        targets=[
            TargetSpec(sec["AAA"].pk, Decimal("0.5"), abs_band=Decimal("0.02")),
            TargetSpec(sec["BBB"].pk, Decimal("0.4"), abs_band=Decimal("0.02")),
        ],
        cash_target=Decimal("0.1"),
        actor=ACTOR,
    )

    def account(name: str, household: Any = household_a, **extra: Any) -> Any:
        fields = {"cash_balance": Decimal("1000"), "min_trade_amount": Decimal("0"), **extra}
        return factories.AccountFactory(name=name, household=household, model=core, **fields)

    breached = account("Breached", tlh_enabled=True)
    factories.TaxLotFactory(
        account=breached,
        security=sec["AAA"],
        quantity=Decimal("40"),
        cost_basis=Decimal("60"),
        acquired_on=today - timedelta(days=900),
    )
    factories.TaxLotFactory(
        account=breached,
        security=sec["AAA"],
        quantity=Decimal("30"),
        cost_basis=Decimal("120"),
        acquired_on=today - timedelta(days=100),
    )
    factories.TaxLotFactory(
        account=breached,
        security=sec["BBB"],
        quantity=Decimal("40"),
        cost_basis=Decimal("40"),
        acquired_on=today - timedelta(days=800),
    )
    other_team = account("Other team", household=household_b)
    factories.TaxLotFactory(account=other_team, security=sec["AAA"], quantity=Decimal("70"))
    return SimpleNamespace(
        sec=sec, core=core, breached=breached, other_team=other_team, fresh=fresh, today=today
    )


def finished(run: Any) -> bool:
    run.refresh_from_db()
    return run.status not in (WorkStatus.QUEUED, WorkStatus.RUNNING)
