"""Admin of the portfolios app: reference data, models, households and accounts (audited
edits), books of record without a delete path, and read-only system records.

Two rules keep the admin from going around the services: a household's team is changed only
through ``household_assign_team`` (so the team's object permissions follow), and model
portfolio versions and targets are read-only (a change of targets is a new version, made by
``model_version_create``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from portfolios.models import (
    Account,
    CashFlow,
    DriftAlert,
    DriftPosition,
    DriftScan,
    DriftSnapshot,
    Household,
    ImportBatch,
    ModelPortfolio,
    ModelTarget,
    ModelVersion,
    Price,
    RebalanceBatch,
    RebalanceRun,
    Reconciliation,
    ReconciliationBreak,
    RiskModel,
    Security,
    TaxLot,
    Transaction,
)
from portfolios.services import holdings_changed, household_assign_team
from rebalance_app.admin import (
    AuditedModelAdmin,
    ReadOnlyInline,
    ReadOnlyModelAdmin,
    RetainedModelAdmin,
)

if TYPE_CHECKING:
    from typing import Any

    from django.forms import ModelForm
    from django.http import HttpRequest

_TEAM_PENDING = "_admin_household_team"


# ---------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------


@admin.register(Security)
class SecurityAdmin(AuditedModelAdmin):
    list_display = [
        "ticker",
        "name",
        "asset_class",
        "security_type",
        "sector",
        "esg_score",
        "round_lot",
        "wash_sale_group",
        "is_synthetic",
    ]
    list_filter = ["asset_class", "security_type", "sector", "is_synthetic"]
    search_fields = ["ticker", "name", "cusip", "isin", "wash_sale_group"]
    autocomplete_fields = ["tlh_substitutes"]
    raw_id_fields = ["import_batch"]


@admin.register(Price)
class PriceAdmin(AuditedModelAdmin):
    list_display = ["security", "as_of", "price", "source", "avg_daily_volume"]
    list_filter = ["source"]
    search_fields = ["security__ticker"]
    date_hierarchy = "as_of"
    raw_id_fields = ["security", "import_batch"]
    list_select_related = ["security"]
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Price, form: ModelForm, change: bool) -> None:
        from portfolios.services.drift import prices_changed

        securities = {obj.security_id}
        if change:
            securities.add(Price.objects.values_list("security_id", flat=True).get(pk=obj.pk))
        super().save_model(request, obj, form, change)
        prices_changed(security_ids=securities)


class ModelVersionInline(ReadOnlyInline):
    model = ModelVersion
    fields = ["version", "is_current", "cash_target", "note", "created_by", "created_at"]
    readonly_fields = fields
    ordering = ["-version"]


@admin.register(ModelPortfolio)
class ModelPortfolioAdmin(AuditedModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]
    inlines = [ModelVersionInline]


class ModelTargetInline(ReadOnlyInline):
    model = ModelTarget
    fields = ["security", "weight", "abs_band", "rel_band", "min_weight", "max_weight"]
    readonly_fields = fields
    show_change_link = False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyModelAdmin):
    list_display = ["model", "version", "is_current", "cash_target", "created_by", "created_at"]
    list_filter = ["is_current"]
    search_fields = ["model__name", "note"]
    list_select_related = ["model", "created_by"]
    inlines = [ModelTargetInline]


@admin.register(ModelTarget)
class ModelTargetAdmin(ReadOnlyModelAdmin):
    list_display = [
        "version",
        "security",
        "weight",
        "abs_band",
        "rel_band",
        "min_weight",
        "max_weight",
    ]
    search_fields = ["security__ticker", "version__model__name"]
    list_select_related = ["version__model", "security"]


# ---------------------------------------------------------------------------
# Households and accounts
# ---------------------------------------------------------------------------


class AccountInline(ReadOnlyInline):
    model = Account
    fields = ["account_number", "name", "registration_type", "model", "status", "cash_balance"]
    readonly_fields = fields


@admin.register(Household)
class HouseholdAdmin(AuditedModelAdmin):
    """The team is assigned through ``household_assign_team``, which moves the team's object
    permissions and audits the change itself (so the generic audit leaves ``team`` out)."""

    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name"]
    raw_id_fields = ["import_batch"]
    list_select_related = ["team"]
    inlines = [AccountInline]
    audit_exclude_fields = ("team",)

    def save_model(
        self, request: HttpRequest, obj: Household, form: ModelForm, change: bool
    ) -> None:
        request.__dict__.setdefault(_TEAM_PENDING, {})[id(obj)] = obj.team
        obj.team = Household.objects.get(pk=obj.pk).team if change else None
        super().save_model(request, obj, form, change)

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        obj = form.instance
        team = request.__dict__.get(_TEAM_PENDING, {}).pop(id(obj), obj.team)
        if team != obj.team:
            household_assign_team(household=obj, team=team, actor=request.user)
            obj.team = team


@admin.register(Account)
class AccountAdmin(AuditedModelAdmin):
    list_display = [
        "account_number",
        "name",
        "household",
        "custodian",
        "registration_type",
        "taxable",
        "model",
        "status",
        "cash_balance",
    ]
    list_filter = [
        "status",
        "registration_type",
        "taxable",
        "custodian",
        "household__team",
        "model",
    ]
    search_fields = ["account_number", "name", "household__name"]
    raw_id_fields = ["household", "import_batch"]
    list_select_related = ["household", "model"]
    # Cash moves only with trades, imports and cash flows, which keep the books in step.
    readonly_fields = ["cash_balance"]


@admin.register(TaxLot)
class TaxLotAdmin(RetainedModelAdmin):
    list_display = ["account", "security", "quantity", "cost_basis", "acquired_on"]
    search_fields = ["account__account_number", "security__ticker"]
    date_hierarchy = "acquired_on"
    raw_id_fields = ["account", "security", "import_batch"]
    list_select_related = ["account", "security"]
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: TaxLot, form: ModelForm, change: bool) -> None:
        accounts = {obj.account_id}
        if change:
            accounts.add(TaxLot.objects.values_list("account_id", flat=True).get(pk=obj.pk))
        super().save_model(request, obj, form, change)
        holdings_changed(account_ids=accounts)


@admin.register(Transaction)
class TransactionAdmin(RetainedModelAdmin):
    list_display = [
        "trade_date",
        "account",
        "security",
        "side",
        "quantity",
        "price",
        "realized_st",
        "realized_lt",
        "wash_sale_disallowed",
    ]
    list_filter = ["side"]
    search_fields = ["account__account_number", "security__ticker"]
    date_hierarchy = "trade_date"
    raw_id_fields = ["account", "security", "import_batch"]
    list_select_related = ["account", "security"]
    show_full_result_count = False


# ---------------------------------------------------------------------------
# System records (written by scans, imports and runs)
# ---------------------------------------------------------------------------


class DriftPositionInline(ReadOnlyInline):
    model = DriftPosition
    fields = ["security", "weight", "target", "drift", "breached"]
    readonly_fields = fields
    show_change_link = False


@admin.register(DriftSnapshot)
class DriftSnapshotAdmin(ReadOnlyModelAdmin):
    list_display = [
        "account",
        "scanned_at",
        "total_value",
        "total_drift",
        "max_drift",
        "cash_drift",
        "breach_count",
        "scannable",
    ]
    list_filter = ["scannable", "breached", "is_latest"]
    search_fields = ["account__account_number", "account__name"]
    date_hierarchy = "scanned_at"
    list_select_related = ["account"]
    raw_id_fields = ["account", "scan"]
    inlines = [DriftPositionInline]


@admin.register(DriftScan)
class DriftScanAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "trigger",
        "status",
        "created_at",
        "accounts_total",
        "accounts_scanned",
        "accounts_breached",
        "accounts_unscannable",
        "duration_ms",
    ]
    list_filter = ["trigger", "status"]
    date_hierarchy = "created_at"


@admin.register(DriftAlert)
class DriftAlertAdmin(ReadOnlyModelAdmin):
    list_display = ["account", "raised_at", "cleared_at", "total_drift", "breach_count"]
    list_filter = ["cleared_at"]
    search_fields = ["account__account_number", "account__name"]
    list_select_related = ["account"]
    raw_id_fields = ["account", "raised_snapshot", "cleared_snapshot"]
    show_full_result_count = False


@admin.register(DriftPosition)
class DriftPositionAdmin(ReadOnlyModelAdmin):
    list_display = ["snapshot", "security", "weight", "target", "drift", "breached"]
    list_filter = ["breached"]
    search_fields = ["security__ticker", "snapshot__account__account_number"]
    list_select_related = ["snapshot__account", "security"]
    show_full_result_count = False


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "kind",
        "file_name",
        "status",
        "rows_total",
        "rows_accepted",
        "dry_run",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "status", "dry_run"]
    search_fields = ["file_name", "sha256"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]


@admin.register(RebalanceBatch)
class RebalanceBatchAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "mode", "runs_total", "created_by", "created_at", "finished_at"]
    list_filter = ["mode"]
    list_select_related = ["created_by"]


@admin.register(RebalanceRun)
class RebalanceRunAdmin(ReadOnlyModelAdmin):
    list_display = [
        "id",
        "account",
        "mode",
        "status",
        "solver",
        "solve_ms",
        "created_by",
        "created_at",
    ]
    list_filter = ["mode", "status", "trigger", "solver"]
    search_fields = ["account__account_number", "input_hash"]
    date_hierarchy = "created_at"
    list_select_related = ["account", "created_by"]


@admin.register(CashFlow)
class CashFlowAdmin(ReadOnlyModelAdmin):
    """Cash flows change cash balances: they come in through imports (and later fills), never
    by hand here."""

    list_display = ["account", "flow_date", "kind", "amount", "import_batch"]
    list_filter = ["kind"]
    search_fields = ["account__account_number", "account__name"]
    date_hierarchy = "flow_date"
    list_select_related = ["account"]


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "as_of", "created_at", "accounts_compared", "break_count"]
    date_hierarchy = "created_at"


@admin.register(ReconciliationBreak)
class ReconciliationBreakAdmin(ReadOnlyModelAdmin):
    """Breaks are resolved on the reconciliation page (audited), not edited here."""

    list_display = [
        "account",
        "security",
        "custodian_quantity",
        "book_quantity",
        "difference",
        "resolved_at",
    ]
    list_filter = ["resolved_at"]
    search_fields = ["account__account_number"]
    list_select_related = ["account", "security"]


@admin.register(RiskModel)
class RiskModelAdmin(ReadOnlyModelAdmin):
    """Risk models are built by ``risk_model_build`` (audited); versions are never edited."""

    list_display = ["version", "as_of", "is_current", "method", "window", "created_at"]
    list_filter = ["is_current", "method"]
    date_hierarchy = "as_of"
