"""Compliance domain: restrictions, configured rules, their results and overrides, and the
tamper-evident audit trail (DESIGN 6 and 8)."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RestrictionScope(models.TextChoices):
    FIRM = "firm", "Firm-wide"
    HOUSEHOLD = "household", "Household"
    ACCOUNT = "account", "Account"


class RestrictionKind(models.TextChoices):
    NO_BUY = "no_buy", "No buy"
    NO_SELL = "no_sell", "No sell"
    NO_TRADE = "no_trade", "No trade"


class Restriction(models.Model):
    """A restricted-list entry: one of security, sector or ESG tag, at one scope."""

    scope = models.CharField(max_length=10, choices=RestrictionScope.choices)
    household = models.ForeignKey(
        "portfolios.Household", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    account = models.ForeignKey(
        "portfolios.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    security = models.ForeignKey(
        "portfolios.Security", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sector = models.CharField(max_length=60, blank=True)
    esg_tag = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=10, choices=RestrictionKind.choices)
    reason = models.CharField(max_length=300)
    effective_from = models.DateField(default=timezone.localdate)
    effective_to = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "portfolios.ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="firm", household__isnull=True, account__isnull=True)
                    | Q(scope="household", household__isnull=False, account__isnull=True)
                    | Q(scope="account", account__isnull=False, household__isnull=True)
                ),
                name="restriction_scope_target",
            ),
            models.CheckConstraint(
                condition=(
                    Q(security__isnull=False, sector="", esg_tag="")
                    | Q(security__isnull=True, sector__gt="", esg_tag="")
                    | Q(security__isnull=True, sector="", esg_tag__gt="")
                ),
                name="restriction_one_subject",
            ),
        ]

    def __str__(self) -> str:
        subject = self.security_id or self.sector or self.esg_tag
        return f"{self.kind} {subject} ({self.scope})"


class Severity(models.TextChoices):
    HARD = "hard", "Hard block"
    WARNING = "warning", "Warning"


class RuleScope(models.TextChoices):
    FIRM = "firm", "Firm"
    MODEL = "model", "Model"
    ACCOUNT = "account", "Account"


class ComplianceRule(models.Model):
    """A configured pre-trade rule: which check (``rule_type``), its parameters and severity."""

    rule_type = models.CharField(max_length=40)
    name = models.CharField(max_length=120)
    parameters = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.HARD)
    scope = models.CharField(max_length=10, choices=RuleScope.choices, default=RuleScope.FIRM)
    model = models.ForeignKey(
        "portfolios.ModelPortfolio",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    account = models.ForeignKey(
        "portfolios.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rule_type", "name"]

    def __str__(self) -> str:
        return self.name


class ComplianceResult(models.Model):
    """The outcome of one rule on one basket (or one order of it) at one check."""

    rule = models.ForeignKey(ComplianceRule, on_delete=models.PROTECT, related_name="results")
    basket = models.ForeignKey(
        "orders.TradeBasket", on_delete=models.PROTECT, related_name="compliance_results"
    )
    order = models.ForeignKey(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="compliance_results",
    )
    check_run = models.PositiveIntegerField(default=1, help_text="Which check of the basket.")
    passed = models.BooleanField()
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.rule_id} {'pass' if self.passed else 'FAIL'}: {self.message}"


class Override(models.Model):
    """A compliance officer's written override of a hard failure."""

    result = models.OneToOneField(
        ComplianceResult, on_delete=models.PROTECT, related_name="override"
    )
    overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    justification = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"override of result {self.result_id} by {self.overridden_by_id}"


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained audit trail (DESIGN 8).

    ``hash = SHA-256(prev_hash + canonical JSON of the event)``; ``seq`` is gap-free and unique.
    On PostgreSQL, triggers reject UPDATE, DELETE and TRUNCATE; the application has no code path
    that changes an event.
    """

    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
    )
    actor_label = models.CharField(
        max_length=150, help_text="Username, or 'system:<task>' for work done by the system."
    )
    action = models.CharField(max_length=80, db_index=True)
    object_type = models.CharField(max_length=80, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    reason = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["created_at"], name="audit_created_idx"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="audit_append_only",
                operation=pgtrigger.Update | pgtrigger.Delete,
            ),
            pgtrigger.Trigger(
                name="audit_no_truncate",
                operation=pgtrigger.Truncate,
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                func=(
                    "RAISE EXCEPTION 'audit events are append-only: TRUNCATE of % is not "
                    "allowed', TG_TABLE_NAME; RETURN NULL;"
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"
