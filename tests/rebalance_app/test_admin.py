"""The Django admin: every model registered; adds, changes and deletes audited with before
and after values; no delete path for records the firm must keep; the audit trail, model
versions and the order workflow read-only; household teams changed only through the service."""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client, RequestFactory

from compliance.models import AuditEvent, ComplianceResult, Override
from orders.models import Execution, Order, OrderLot, TradeBasket
from portfolios.models import (
    Account,
    ImportBatch,
    ModelTarget,
    ModelVersion,
    Price,
    RebalanceRun,
    Security,
    TaxLot,
    Transaction,
)
from portfolios.selectors import accounts_visible_to
from portfolios.services import TargetSpec, model_version_create
from tests import factories

pytestmark = pytest.mark.django_db

RETAINED = [
    TaxLot,
    Transaction,
    RebalanceRun,
    TradeBasket,
    Order,
    OrderLot,
    ComplianceResult,
    Override,
    ImportBatch,
    Execution,
]
READ_ONLY = [AuditEvent, ModelVersion, ModelTarget, TradeBasket, Order, RebalanceRun]


class _FormFields(HTMLParser):
    """The values a browser would submit from the admin's change form."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in {"submit", "button", "file"}:
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.data[name] = a.get("value") or "on"
            else:
                self.data[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            if "multiple" not in a:
                self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data.lstrip("\n")


def change_form(client: Client, url: str) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 200
    parser = _FormFields()
    parser.feed(response.content.decode())
    return parser.data


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_every_model_of_the_three_apps_is_registered():
    models = [
        m
        for label in ("portfolios", "compliance", "orders")
        for m in apps.get_app_config(label).get_models()
    ]
    missing = [m._meta.label for m in models if m not in admin.site._registry]
    assert missing == []


@pytest.mark.parametrize("model", RETAINED, ids=lambda m: m.__name__)
def test_records_the_firm_must_keep_have_no_delete_permission(admin_user, model):
    request = RequestFactory().get("/")
    request.user = admin_user
    assert admin.site._registry[model].has_delete_permission(request) is False


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda m: m.__name__)
def test_system_written_records_are_read_only_in_the_admin(admin_user, model):
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    assert (
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request),
        model_admin.has_delete_permission(request),
        model_admin.has_view_permission(request),
    ) == (False, False, False, True)


def test_every_admin_list_add_and_change_page_renders(admin_client_, admin_user, account_a):
    request = RequestFactory().get("/")
    request.user = admin_user
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        if opts.app_label not in {"portfolios", "compliance", "orders"}:
            continue
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        assert admin_client_.get(url).status_code == 200, url
        expected = 200 if model_admin.has_add_permission(request) else 403
        assert admin_client_.get(url + "add/").status_code == expected, url
        obj = model._default_manager.first()
        if obj is not None:
            assert admin_client_.get(f"{url}{obj.pk}/change/").status_code == 200, url


def test_admin_change_of_an_account_is_audited_with_before_and_after(
    admin_client_, admin_user, account_a
):
    url = f"/admin/portfolios/account/{account_a.pk}/change/"
    data = change_form(admin_client_, url)
    data.update({"cash_reserve": "500.00", "status": "frozen"})
    response = admin_client_.post(url, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    account_a.refresh_from_db()
    assert (account_a.cash_reserve, account_a.status) == (Decimal("500.00"), "frozen")
    event = AuditEvent.objects.get(action="account.admin_change")
    assert (event.actor, event.object_type, event.object_id) == (
        admin_user,
        "portfolios.account",
        str(account_a.pk),
    )
    assert event.before == {"cash_reserve": "0.00", "status": "active"}
    assert event.after == {"cash_reserve": "500.00", "status": "frozen"}


def test_admin_save_without_changes_writes_no_audit_event(admin_client_, account_a):
    url = f"/admin/portfolios/account/{account_a.pk}/change/"
    assert admin_client_.post(url, change_form(admin_client_, url)).status_code == 302
    assert not AuditEvent.objects.filter(action="account.admin_change").exists()


def test_admin_add_of_a_security_is_audited_with_its_substitutes(admin_client_, security):
    data = change_form(admin_client_, "/admin/portfolios/security/add/")
    data.update(
        {
            "ticker": "VTI",
            "name": "Vanguard Total Market",
            "asset_class": "equity",
            "security_type": "etf",
            "round_lot": "1",
            "esg_tags": "[]",
            "tlh_substitutes": str(security.pk),
        }
    )
    response = admin_client_.post("/admin/portfolios/security/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    vti = Security.objects.get(ticker="VTI")
    event = AuditEvent.objects.get(action="security.admin_add")
    assert event.before is None
    assert (event.object_id, event.after["ticker"], event.after["tlh_substitutes"]) == (
        str(vti.pk),
        "VTI",
        ["AAPL"],
    )


def test_admin_delete_of_a_price_is_audited_with_what_was_deleted(admin_client_, security):
    price = security.prices.get()
    response = admin_client_.post(f"/admin/portfolios/price/{price.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Price.objects.filter(pk=price.pk).exists()
    event = AuditEvent.objects.get(action="price.admin_delete")
    assert (event.object_type, event.object_id, event.after) == (
        "portfolios.price",
        str(price.pk),
        None,
    )
    assert (event.before["price"], event.before["security"]) == ("150.000000", security.pk)


def test_admin_bulk_delete_action_audits_each_object(admin_client_, security):
    factories.PriceFactory(security=security, as_of="2026-11-23")
    prices = sorted(Price.objects.values_list("pk", flat=True))
    assert len(prices) == 2
    response = admin_client_.post(
        "/admin/portfolios/price/",
        {"action": "delete_selected", "_selected_action": prices, "post": "yes"},
    )
    assert response.status_code == 302
    assert not Price.objects.exists()
    deleted = AuditEvent.objects.filter(action="price.admin_delete").values_list(
        "object_id", flat=True
    )
    assert sorted(int(pk) for pk in deleted) == prices


def test_admin_cannot_delete_a_tax_lot(admin_client_, account_a):
    lot = account_a.lots.get()
    url = f"/admin/portfolios/taxlot/{lot.pk}/delete/"
    assert admin_client_.get(url).status_code == 403
    assert admin_client_.post(url, {"post": "yes"}).status_code == 403
    response = admin_client_.post(
        "/admin/portfolios/taxlot/",
        {"action": "delete_selected", "_selected_action": [lot.pk], "post": "yes"},
    )
    assert TaxLot.objects.filter(pk=lot.pk).exists()
    assert response.status_code in {200, 302}
    assert not AuditEvent.objects.filter(action="taxlot.admin_delete").exists()


def test_audit_event_admin_shows_events_but_cannot_change_or_delete_them(admin_client_, pm):
    from compliance.services.audit import audit_record

    event = audit_record(actor=pm, action="test.event", object_type="x", object_id=1)
    base = "/admin/compliance/auditevent/"
    assert admin_client_.get(base).status_code == 200
    view = admin_client_.get(f"{base}{event.pk}/change/")
    assert view.status_code == 200
    assert b'name="_save"' not in view.content
    assert admin_client_.post(f"{base}{event.pk}/change/", {"action": "forged"}).status_code == 403
    assert admin_client_.post(f"{base}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client_.get(f"{base}add/").status_code == 403
    event.refresh_from_db()
    assert event.action == "test.event"


def test_model_targets_of_a_version_cannot_be_edited_in_the_admin(
    admin_client_, admin_user, security
):
    model = factories.ModelPortfolioFactory(name="Core")
    version = model_version_create(
        model=model,
        targets=[TargetSpec(security.pk, Decimal("1"))],
        cash_target=Decimal("0"),
        actor=admin_user,
    )
    target = version.targets.get()
    url = f"/admin/portfolios/modeltarget/{target.pk}/change/"
    assert admin_client_.post(url, {"weight": "0.5"}).status_code == 403
    target.refresh_from_db()
    assert target.weight == Decimal("1")
    page = admin_client_.get(f"/admin/portfolios/modelportfolio/{model.pk}/change/")
    assert page.status_code == 200
    assert b"versions-TOTAL_FORMS" in page.content  # the versions inline is shown, read-only


def test_admin_team_change_of_a_household_moves_its_object_permissions(
    admin_client_, admin_user, pm, other_pm, account_a, team_b
):
    household = account_a.household
    url = f"/admin/portfolios/household/{household.pk}/change/"
    data = change_form(admin_client_, url)
    data.update({"team": str(team_b.pk), "name": "Alpha Family Trust"})
    assert admin_client_.post(url, data).status_code == 302
    household.refresh_from_db()
    assert (household.name, household.team) == ("Alpha Family Trust", team_b)
    assert list(accounts_visible_to(pm)) == []
    assert list(accounts_visible_to(other_pm)) == [account_a]
    assign = AuditEvent.objects.filter(action="household.assign_team").latest("seq")
    assert (assign.actor, assign.before, assign.after) == (
        admin_user,
        {"team": "Team A"},
        {"team": "Team B"},
    )
    change = AuditEvent.objects.get(action="household.admin_change")
    assert (change.before, change.after) == (
        {"name": "Alpha Family"},
        {"name": "Alpha Family Trust"},
    )


def test_admin_add_of_a_household_with_a_team_grants_that_team(admin_client_, pm, team_a):
    data = change_form(admin_client_, "/admin/portfolios/household/add/")
    data.update({"name": "Delta Family", "team": str(team_a.pk)})
    response = admin_client_.post("/admin/portfolios/household/add/", data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    from portfolios.selectors import households_visible_to

    assert [h.name for h in households_visible_to(pm)] == ["Delta Family"]
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-2:] == ["household.admin_add", "household.assign_team"]


def test_account_cash_balance_is_read_only_in_the_admin(admin_client_, account_a):
    url = f"/admin/portfolios/account/{account_a.pk}/change/"
    data = change_form(admin_client_, url)
    assert "cash_balance" not in data
    data["cash_balance"] = "999999.00"
    assert admin_client_.post(url, data).status_code == 302
    assert Account.objects.get(pk=account_a.pk).cash_balance == Decimal("1000.00")


def test_admin_group_membership_change_is_audited_without_the_password(
    admin_client_, admin_user, outsider
):
    from django.contrib.auth.models import Group

    pm_group = Group.objects.get(name="PM")
    url = f"/admin/auth/user/{outsider.pk}/change/"
    data = change_form(admin_client_, url)
    data["groups"] = str(pm_group.pk)
    assert admin_client_.post(url, data).status_code == 302
    assert list(outsider.groups.values_list("name", flat=True)) == ["PM"]
    event = AuditEvent.objects.get(action="user.admin_change")
    assert (event.actor, event.object_id, event.before, event.after) == (
        admin_user,
        str(outsider.pk),
        {"groups": []},
        {"groups": ["PM"]},
    )
    assert "password" not in str(event.before) + str(event.after)


def test_admin_password_change_is_audited_without_the_password(admin_client_, outsider):
    url = f"/admin/auth/user/{outsider.pk}/password/"
    response = admin_client_.post(
        url, {"password1": "a-new-pass-phrase-7", "password2": "a-new-pass-phrase-7"}
    )
    assert response.status_code == 302
    outsider.refresh_from_db()
    assert outsider.check_password("a-new-pass-phrase-7")
    event = AuditEvent.objects.get(action="user.admin_password_change")
    assert (event.object_id, event.before, event.after) == (str(outsider.pk), None, None)


def test_admin_price_change_rescans_the_accounts_holding_that_security(
    admin_user, account_a, account_b, security, django_capture_on_commit_callbacks, monkeypatch
):
    from django.test import Client

    from portfolios.models import Price
    from portfolios.services import drift as drift_services

    requested: list[list[int]] = []
    monkeypatch.setattr(
        drift_services,
        "drift_scan_request",
        lambda *, actor, account_ids, trigger: requested.append(sorted(account_ids)),
    )
    price = Price.objects.get(security=security)
    client = Client()
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/portfolios/price/{price.pk}/change/",
            {
                "security": security.pk,
                "as_of": price.as_of.isoformat(),
                "price": "151.00",
                "source": "manual",
                "avg_daily_volume": "",
                "import_batch": "",
            },
        )
    assert response.status_code == 302, response.content[:2000]
    assert requested == [sorted([account_a.pk, account_b.pk])]
