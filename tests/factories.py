"""factory_boy factories for the domain models."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import factory
from django.contrib.auth.models import Group, User

from portfolios.models import (
    Account,
    AssetClass,
    Household,
    ModelPortfolio,
    Price,
    RegistrationType,
    Security,
    SecurityType,
    TaxLot,
    Transaction,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests-1")


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class SecurityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Security
        django_get_or_create = ("ticker",)

    ticker = factory.Sequence(lambda n: f"SEC{n}")
    name = factory.LazyAttribute(lambda o: f"{o.ticker} Inc.")
    asset_class = AssetClass.EQUITY
    security_type = SecurityType.EQUITY
    sector = "Information Technology"


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    security = factory.SubFactory(SecurityFactory)
    as_of = date(2026, 11, 24)
    price = Decimal("100")
    source = "test"


class ModelPortfolioFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelPortfolio

    name = factory.Sequence(lambda n: f"Model {n}")


class HouseholdFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Household

    name = factory.Sequence(lambda n: f"Household {n}")


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    household = factory.SubFactory(HouseholdFactory)
    name = factory.Sequence(lambda n: f"Account {n}")
    custodian = "Schwab"
    account_number = factory.Sequence(lambda n: f"ACC{n:06d}")
    registration_type = RegistrationType.INDIVIDUAL
    taxable = True
    cash_balance = Decimal("1000.00")


class TaxLotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaxLot

    account = factory.SubFactory(AccountFactory)
    security = factory.SubFactory(SecurityFactory)
    quantity = Decimal("10")
    cost_basis = Decimal("80")
    acquired_on = date(2024, 1, 2)


class TransactionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Transaction

    account = factory.SubFactory(AccountFactory)
    security = factory.SubFactory(SecurityFactory)
    trade_date = date(2024, 1, 2)
    side = "buy"
    quantity = Decimal("10")
    price = Decimal("80")
