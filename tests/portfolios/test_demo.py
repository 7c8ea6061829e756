"""The demo firm (`seed_demo`): users and roles, team visibility, prices shifted onto the latest
XNYS sessions with the data's returns, realistic lots, models, idempotence and scale accounts.

Most tests seed only the last HISTORY rows of the price data to stay fast; the command's default
loads the whole history.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import exchange_calendars as xcals
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from guardian.models import GroupObjectPermission

from compliance.models import AuditEvent
from portfolios import demo
from portfolios.demo import demo_scale, demo_seed, xnys_last_completed_session
from portfolios.management.commands.seed_demo import IF_EMPTY_SKIPPED
from portfolios.models import (
    Account,
    Household,
    ModelPortfolio,
    Price,
    Security,
    Side,
    TaxLot,
    Transaction,
)
from portfolios.selectors import accounts_visible_to, households_visible_to, latest_prices
from rebalance_app.exceptions import ValidationFailed
from rebalance_app.roles import Role

pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")

HISTORY = 400
PASSWORD = "demo-pw-for-tests"
TEAM_A_HOUSEHOLDS = {"Okafor Family", "Lindqvist Family", "Ramirez Family Trust"}
TEAM_B_HOUSEHOLDS = {"Chen-Nakamura Family", "Whitfield Family", "Patel Household"}


def _seed(password: str | None = PASSWORD) -> demo.DemoSeedResult:
    return demo_seed(password=password, history_days=HISTORY)


def _counts() -> dict[str, int]:
    return {
        **demo.demo_counts(),
        "audit": AuditEvent.objects.count(),
        "groups": Group.objects.count(),
        "users": get_user_model().objects.count(),
        "permissions": GroupObjectPermission.objects.count(),
    }


def _user(username: str):
    return get_user_model().objects.get(username=username)


def _expected_last_session() -> date:
    now = pd.Timestamp(timezone.now())
    calendar = xcals.get_calendar("XNYS", start=(now - pd.Timedelta(days=30)).strftime("%Y-%m-%d"))
    closes = calendar.closes
    return closes[closes <= now].index[-1].date()


@pytest.mark.django_db
def test_demo_seed_creates_the_users_with_their_roles_and_password():
    _seed()

    expected = {
        "pm": {Role.PM.value, "Team A"},
        "pm2": {Role.PM.value, "Team B"},
        "ops": {Role.OPS.value},
        "ops2": {Role.OPS.value},
        "compliance": {Role.COMPLIANCE.value},
        "admin": {Role.ADMIN.value},
    }
    for username, groups in expected.items():
        user = _user(username)
        assert set(user.groups.values_list("name", flat=True)) == groups, username
        assert user.check_password(PASSWORD), username
    admin = _user("admin")
    assert admin.is_superuser
    assert admin.is_staff
    assert not _user("pm").is_superuser


@pytest.mark.django_db
def test_demo_seed_resets_existing_passwords_only_when_one_is_given(settings):
    _seed(password=None)
    pm = _user("pm")
    assert pm.check_password(settings.DEMO_PASSWORD_DEFAULT)
    pm.set_password("changed-by-the-user-1")
    pm.save()

    result = _seed(password=None)
    assert _user("pm").check_password("changed-by-the-user-1")
    assert ("pm", "PM, Team A", "(unchanged)") in result.users

    result = _seed(password="new-demo-pw-2")
    assert _user("pm").check_password("new-demo-pw-2")
    assert ("pm", "PM, Team A", "new-demo-pw-2") in result.users


@pytest.mark.django_db
def test_each_demo_team_sees_only_its_own_households():
    _seed()
    pm, pm2, ops = _user("pm"), _user("pm2"), _user("ops")

    assert set(households_visible_to(pm).values_list("name", flat=True)) == TEAM_A_HOUSEHOLDS
    assert set(households_visible_to(pm2).values_list("name", flat=True)) == TEAM_B_HOUSEHOLDS
    pm_accounts = accounts_visible_to(pm)
    assert pm_accounts.count() == 6
    assert set(pm_accounts.values_list("household__team__name", flat=True)) == {"Team A"}
    assert accounts_visible_to(pm2).count() == 6
    assert not accounts_visible_to(pm).filter(pk__in=accounts_visible_to(pm2)).exists()
    assert accounts_visible_to(ops).count() == 12


@pytest.mark.django_db
def test_demo_prices_end_on_the_latest_completed_xnys_session_and_keep_the_data_returns():
    _seed()
    expected_end = _expected_last_session()
    data = pd.read_csv(
        demo.DATA_DIR / "sp500_dataset.csv.gz", parse_dates=["Date"], index_col="Date"
    ).iloc[-HISTORY:]

    for ticker in ("AAPL", "XOM", "RRC"):
        rows = list(
            Price.objects.filter(security__ticker=ticker)
            .order_by("as_of")
            .values_list("as_of", "price", "source")
        )
        assert len(rows) == HISTORY
        assert rows[-1][0] == expected_end
        assert {r[2] for r in rows} == {demo.SOURCE_REAL}
        stored = [float(r[1]) for r in rows]
        original = data[ticker].tolist()
        assert stored == pytest.approx(original, abs=1e-9)
        stored_returns = [b / a for a, b in pairwise(stored)]
        data_returns = [b / a for a, b in pairwise(original)]
        assert stored_returns == pytest.approx(data_returns, rel=1e-12)

    calendar = xcals.get_calendar("XNYS", start=str(expected_end - timedelta(days=800)))
    dates = pd.DatetimeIndex(
        Price.objects.filter(security__ticker="AAPL")
        .order_by("as_of")
        .values_list("as_of", flat=True)
    )
    sessions = calendar.sessions_window(pd.Timestamp(expected_end), -HISTORY)
    assert list(dates) == list(sessions)


@pytest.mark.django_db
def test_demo_synthetic_securities_are_labelled_and_cash_stays_at_one():
    _seed()

    synthetic = Security.objects.filter(is_synthetic=True)
    assert set(synthetic.values_list("ticker", flat=True)) == {"AGGD", "CASHX"}
    assert all("(synthetic demo)" in s.name for s in synthetic)
    assert set(Price.objects.filter(security__in=synthetic).values_list("source", flat=True)) == {
        demo.SOURCE_SYNTHETIC
    }
    assert set(Price.objects.filter(security__ticker="CASHX").values_list("price", flat=True)) == {
        Decimal("1")
    }
    aggd = Security.objects.get(ticker="AGGD")
    assert aggd.asset_class == "fixed_income"
    assert Security.objects.get(ticker="CASHX").security_type == "cash"
    assert Security.objects.get(ticker="XOM").esg_tags == ["fossil_fuels"]
    assert Security.objects.get(ticker="MTUM").security_type == "etf"
    assert set(
        Security.objects.get(ticker="KO").tlh_substitutes.values_list("ticker", flat=True)
    ) == {"PEP"}


@pytest.mark.django_db
def test_demo_lots_include_losses_short_term_lots_and_matching_buys():
    _seed()
    prices = latest_prices()
    end = max(d for _, d in prices.values())
    lots = list(TaxLot.objects.all())

    losses = [lot for lot in lots if prices[lot.security_id][0] < lot.cost_basis]
    gains = [lot for lot in lots if prices[lot.security_id][0] > lot.cost_basis]
    short_term = [lot for lot in lots if lot.acquired_on > end - timedelta(days=365)]
    assert len(losses) >= 10
    assert len(gains) >= 10
    assert len(short_term) >= 10
    assert len(short_term) < len(lots)
    for lot in lots[:50]:
        day_price = Price.objects.get(security_id=lot.security_id, as_of=lot.acquired_on).price
        assert lot.cost_basis == day_price
        assert Transaction.objects.filter(
            account_id=lot.account_id,
            security_id=lot.security_id,
            trade_date=lot.acquired_on,
            side=Side.BUY,
            quantity=lot.quantity,
            price=lot.cost_basis,
        ).exists()
    sells = Transaction.objects.filter(side=Side.SELL)
    assert sells.exists()
    assert all(s.realized_st + s.realized_lt > 0 for s in sells)
    assert all(s.account.taxable for s in sells)


@pytest.mark.django_db
def test_demo_models_sum_to_100_percent_and_core_equity_has_a_second_version():
    _seed()

    assert set(ModelPortfolio.objects.values_list("name", flat=True)) == set(demo.MODELS)
    for model in ModelPortfolio.objects.all():
        version = model.current_version
        total = version.cash_target + sum(t.weight for t in version.targets.all())
        assert total == Decimal("1"), model.name
        assert version.cash_target > 0
        assert {t.abs_band for t in version.targets.all()} == {Decimal("0.02")}
        assert {t.rel_band for t in version.targets.all()} == {Decimal("0.25")}
    core = ModelPortfolio.objects.get(name="Core Equity")
    assert list(core.versions.order_by("version").values_list("version", "is_current")) == [
        (1, False),
        (2, True),
    ]


@pytest.mark.django_db
def test_demo_seed_twice_changes_nothing_the_second_time():
    _seed()
    first = _counts()

    _seed()

    assert _counts() == first
    assert first["accounts"] == 12
    assert first["households"] == 6
    assert AuditEvent.objects.filter(action="demo.seed").count() == 4


@pytest.mark.django_db
def test_demo_scale_adds_generated_accounts_visible_to_the_right_team():
    _seed()
    before = Account.objects.count()

    demo_scale(accounts=7, history_days=HISTORY)
    demo_scale(accounts=7, history_days=HISTORY)

    generated = Account.objects.filter(account_number__startswith=demo.GENERATED_PREFIX)
    assert Account.objects.count() == before + 14
    assert generated.count() == 14
    assert sorted(generated.values_list("account_number", flat=True))[-1] == "G-00000014"
    pm, pm2 = _user("pm"), _user("pm2")
    for account in generated.select_related("household__team"):
        team = account.household.team.name
        assert accounts_visible_to(pm).filter(pk=account.pk).exists() == (team == "Team A")
        assert accounts_visible_to(pm2).filter(pk=account.pk).exists() == (team == "Team B")
        assert account.lots.exists()
        model_ids = set(account.model.current_version.targets.values_list("security_id", flat=True))
        assert set(account.lots.values_list("security_id", flat=True)) <= model_ids
    teams = set(generated.values_list("household__team__name", flat=True))
    assert teams == {"Team A", "Team B"}
    assert AuditEvent.objects.filter(action="demo.scale").count() == 2
    assert Household.objects.filter(name__contains="(G-").count() == len(
        set(generated.values_list("household_id", flat=True))
    )


@pytest.mark.django_db
def test_demo_scale_needs_the_demo_first():
    with pytest.raises(ValidationFailed) as exc:
        demo_scale(accounts=3, history_days=HISTORY)

    assert exc.value.message == demo.DEMO_NOT_SEEDED


@pytest.mark.django_db
def test_seed_demo_command_seeds_then_if_empty_skips():
    out = io.StringIO()
    call_command(
        "seed_demo", "--password", PASSWORD, "--history-days", str(HISTORY), "--accounts", "3",
        stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "compliance   Compliance             demo-pw-for-tests" in text
    assert "accounts: 15" in text
    counts = _counts()

    out = io.StringIO()
    call_command("seed_demo", "--if-empty", stdout=out)

    assert out.getvalue().strip() == IF_EMPTY_SKIPPED
    assert _counts() == counts


@pytest.mark.django_db
def test_seed_demo_if_empty_skips_when_any_account_exists(account_a):
    out = io.StringIO()

    call_command("seed_demo", "--if-empty", stdout=out)

    assert out.getvalue().strip() == IF_EMPTY_SKIPPED
    assert not Security.objects.filter(ticker="MSFT").exists()


@pytest.mark.django_db
def test_seed_demo_rejects_a_history_too_short():
    with pytest.raises(CommandError) as exc:
        call_command("seed_demo", "--history-days", "20", stdout=io.StringIO())

    assert str(exc.value) == demo.HISTORY_TOO_SHORT.format(min=demo.MIN_HISTORY_DAYS, n=20)
    assert not get_user_model().objects.filter(username="pm").exists()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 3 July 2024 closed early at 13:00 New York (17:00 UTC); 4 July is a holiday.
        (datetime(2024, 7, 3, 16, 59, tzinfo=UTC), date(2024, 7, 2)),
        (datetime(2024, 7, 3, 17, 1, tzinfo=UTC), date(2024, 7, 3)),
        (datetime(2024, 7, 5, 19, 0, tzinfo=UTC), date(2024, 7, 3)),
        (datetime(2024, 7, 5, 20, 0, tzinfo=UTC), date(2024, 7, 5)),
        (datetime(2024, 7, 7, 12, 0, tzinfo=UTC), date(2024, 7, 5)),
    ],
)
def test_latest_completed_xnys_session_counts_only_sessions_that_have_closed(now, expected):
    assert xnys_last_completed_session(now=now) == expected
