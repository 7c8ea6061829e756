"""Races on PostgreSQL, with real threads and real row locks: two Ops users approving the same
basket at once make exactly one approval and one audit event; two submits at once make one
compliance run. Each critical section is slowed down on purpose so that, without the row lock,
both threads would pass the state check and the test would fail."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection

from compliance.models import AuditEvent, ComplianceResult, ComplianceRule
from orders import services
from orders.models import BasketState, TradeBasket
from orders.services import basket_approve, basket_submit
from rebalance_app.exceptions import InvalidTransition
from rebalance_app.roles import ROLE_PERMISSIONS
from tests.orders.conftest import make_basket

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _role_permissions(db):
    """Transactional tests flush the database, and with it the role groups' permissions that
    migrations granted: grant them again for this test."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role.value)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def _race(*calls):
    """Run the calls in threads released together; return (results, errors)."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []

    def run(call):
        try:
            barrier.wait()
            results.append(call())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def _slow(monkeypatch, name, seconds=0.4):
    original = getattr(services, name)

    def slowed(**kwargs):
        time.sleep(seconds)
        return original(**kwargs)

    monkeypatch.setattr(services, name, slowed)


def test_two_approvers_at_once_make_one_approval_and_one_event(
    monkeypatch, pm, ops, ops2, account_a, security
):
    basket = make_basket(
        creator=pm,
        account=account_a,
        security=security,
        state=BasketState.PENDING_APPROVAL,
        submitted_by=pm,
    )
    _slow(monkeypatch, "basket_orders_hash")  # inside the lock, after the state check
    results, errors = _race(
        lambda: basket_approve(actor=ops, basket_id=basket.pk),
        lambda: basket_approve(actor=ops2, basket_id=basket.pk),
    )
    assert len(results) == 1
    assert len(errors) == 1
    assert isinstance(errors[0], InvalidTransition)
    assert errors[0].extra["state"] == "approved"
    basket.refresh_from_db()
    assert basket.state == BasketState.APPROVED
    assert basket.approved_by == results[0].approved_by
    assert AuditEvent.objects.filter(action="basket.approved").count() == 1


def test_two_submits_at_once_make_one_compliance_run(monkeypatch, pm, account_a, security):
    pytest.importorskip("compliance.services.checks")
    ComplianceRule.objects.all().update(enabled=False)
    ComplianceRule.objects.create(rule_type="short_sale", name="No short sales", severity="hard")
    basket = make_basket(creator=pm, account=account_a, security=security)
    _slow(monkeypatch, "_compliance_check")  # the real engine, slowed
    results, errors = _race(
        lambda: basket_submit(actor=pm, basket_id=basket.pk),
        lambda: basket_submit(actor=pm, basket_id=basket.pk),
    )
    assert len(results) == 1
    assert [type(e) for e in errors] == [InvalidTransition]
    basket = TradeBasket.objects.get(pk=basket.pk)
    assert basket.state == BasketState.PENDING_APPROVAL
    assert AuditEvent.objects.filter(action="compliance.check").count() == 1
    assert AuditEvent.objects.filter(action="basket.submitted").count() == 1
    assert set(
        ComplianceResult.objects.filter(basket=basket).values_list("check_run", flat=True)
    ) == {1}
