"""Portfolio services: team assignment moves object permissions, model versioning, account edits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compliance.models import AuditEvent
from portfolios.selectors import accounts_visible_to, households_visible_to
from portfolios.services import (
    TargetSpec,
    account_update,
    household_assign_team,
    model_version_create,
)
from rebalance_app.exceptions import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db


def test_household_assign_team_moves_visibility_from_one_team_to_the_other(
    pm, other_pm, household_a, account_a, team_b, admin_user
):
    assert account_a in accounts_visible_to(pm)
    household_assign_team(household=household_a, team=team_b, actor=admin_user)
    assert account_a not in accounts_visible_to(pm)
    assert account_a in accounts_visible_to(other_pm)
    event = AuditEvent.objects.filter(action="household.assign_team").order_by("-seq").first()
    assert (event.before, event.after, event.actor) == (
        {"team": "Team A"},
        {"team": "Team B"},
        admin_user,
    )


def test_visibility_each_pm_sees_only_their_teams_households(pm, other_pm, account_a, account_b):
    assert list(accounts_visible_to(pm)) == [account_a]
    assert list(accounts_visible_to(other_pm)) == [account_b]
    assert list(households_visible_to(pm)) == [account_a.household]


@pytest.mark.parametrize("persona", ["ops", "compliance", "admin_user"])
def test_visibility_firm_roles_see_every_account(request, persona, account_a, account_b):
    user = request.getfixturevalue(persona)
    assert set(accounts_visible_to(user)) == {account_a, account_b}


def test_visibility_a_user_without_a_role_sees_nothing(outsider, account_a, account_b):
    assert list(accounts_visible_to(outsider)) == []


def _model_with_two_securities():
    model = factories.ModelPortfolioFactory(name="Core")
    a, b = factories.SecurityFactory(ticker="AAA"), factories.SecurityFactory(ticker="BBB")
    return model, a, b


def test_model_version_create_makes_a_new_current_version_and_keeps_the_old(pm):
    model, a, b = _model_with_two_securities()
    v1 = model_version_create(
        model=model,
        targets=[TargetSpec(a.pk, Decimal("0.6")), TargetSpec(b.pk, Decimal("0.38"))],
        cash_target=Decimal("0.02"),
        actor=pm,
    )
    v2 = model_version_create(
        model=model,
        targets=[TargetSpec(a.pk, Decimal("0.5")), TargetSpec(b.pk, Decimal("0.48"))],
        cash_target=Decimal("0.02"),
        actor=pm,
        note="tilt",
    )
    v1.refresh_from_db()
    assert (v1.version, v1.is_current, v2.version, v2.is_current) == (1, False, 2, True)
    assert model.current_version == v2
    assert {t.security.ticker: t.weight for t in v1.targets.all()} == {
        "AAA": Decimal("0.6"),
        "BBB": Decimal("0.38"),
    }
    event = AuditEvent.objects.filter(action="model.version_create").order_by("-seq").first()
    assert event.after["version"] == 2
    assert event.reason == "tilt"


def test_model_version_create_refuses_weights_not_summing_to_100_percent(pm):
    model, a, b = _model_with_two_securities()
    with pytest.raises(ValidationFailed) as err:
        model_version_create(
            model=model,
            targets=[TargetSpec(a.pk, Decimal("0.6")), TargetSpec(b.pk, Decimal("0.3"))],
            cash_target=Decimal("0.02"),
            actor=pm,
        )
    assert err.value.message == (
        "Model 'Core' weights sum to 92.0000% including cash; they must sum to 100% (within 0.01%)."
    )
    assert model.versions.count() == 0


def test_model_version_create_refuses_a_security_listed_twice(pm):
    model, a, _ = _model_with_two_securities()
    with pytest.raises(ValidationFailed, match="lists AAA more than once"):
        model_version_create(
            model=model,
            targets=[TargetSpec(a.pk, Decimal("0.5")), TargetSpec(a.pk, Decimal("0.5"))],
            cash_target=Decimal("0"),
            actor=pm,
        )


def test_account_update_records_only_changed_fields(pm, account_a):
    account_update(
        account=account_a,
        actor=pm,
        data={"cash_reserve": Decimal("2500.00"), "name": account_a.name},
    )
    event = AuditEvent.objects.filter(action="account.update").get()
    assert event.before == {"cash_reserve": "0.00"}
    assert event.after == {"cash_reserve": "2500.00"}


def test_account_update_refuses_fields_that_only_trades_change(pm, account_a):
    with pytest.raises(ValidationFailed, match="cannot be edited: cash_balance"):
        account_update(account=account_a, actor=pm, data={"cash_balance": Decimal("1")})
    assert not AuditEvent.objects.filter(action="account.update").exists()


@pytest.mark.parametrize("persona", ["ops", "compliance", "other_pm"])
def test_account_update_refuses_users_without_change_permission(request, persona, account_a):
    from rebalance_app.exceptions import PermissionDenied

    user = request.getfixturevalue(persona)
    with pytest.raises(PermissionDenied) as err:
        account_update(account=account_a, actor=user, data={"cash_reserve": Decimal("1")})
    assert err.value.message == f"You may view account {account_a.pk} but not change it."
    account_a.refresh_from_db()
    assert account_a.cash_reserve == Decimal("0")
