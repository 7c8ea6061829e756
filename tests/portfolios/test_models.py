"""Structural rules the database itself enforces (constraints, protected deletes)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from portfolios.models import ModelVersion, TaxLot
from tests import factories

pytestmark = pytest.mark.django_db


def _violates(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


def test_tickers_are_unique():
    factories.SecurityFactory(ticker="XOM")
    from portfolios.models import Security

    assert _violates(
        lambda: Security.objects.create(
            ticker="XOM", name="dup", asset_class="equity", security_type="equity"
        )
    )


def test_lot_quantity_cannot_be_negative():
    lot = factories.TaxLotFactory()
    lot.quantity = Decimal("-1")
    assert _violates(lambda: lot.save())


def test_fractional_shares_are_kept_to_six_places():
    lot = factories.TaxLotFactory(quantity=Decimal("1.123456"))
    lot.refresh_from_db()
    assert lot.quantity == Decimal("1.123456")


def test_a_model_has_at_most_one_current_version():
    model = factories.ModelPortfolioFactory()
    ModelVersion.objects.create(model=model, version=1, is_current=True)
    assert _violates(lambda: ModelVersion.objects.create(model=model, version=2, is_current=True))


def test_target_weights_lie_between_zero_and_one():
    from portfolios.models import ModelTarget

    model = factories.ModelPortfolioFactory()
    version = ModelVersion.objects.create(model=model, version=1)
    sec = factories.SecurityFactory()
    assert _violates(
        lambda: ModelTarget.objects.create(version=version, security=sec, weight=Decimal("1.5"))
    )


def test_prices_must_be_positive_and_unique_per_day():
    price = factories.PriceFactory(as_of=date(2026, 1, 5))
    assert _violates(
        lambda: factories.PriceFactory(security=price.security, as_of=date(2026, 1, 5))
    )
    assert _violates(
        lambda: factories.PriceFactory(
            security=price.security, as_of=date(2026, 1, 6), price=Decimal("0")
        )
    )


def test_deleting_an_account_with_lots_is_refused():
    lot = factories.TaxLotFactory()
    with pytest.raises(ProtectedError):
        lot.account.delete()
    assert TaxLot.objects.filter(pk=lot.pk).exists()


def test_deleting_a_security_with_history_is_refused():
    txn = factories.TransactionFactory()
    with pytest.raises(ProtectedError):
        txn.security.delete()


def test_audit_events_cannot_be_cascade_deleted_with_their_actor(pm):
    from compliance.services.audit import audit_record

    audit_record(actor=pm, action="test.x")
    with pytest.raises(ProtectedError):
        pm.delete()
