"""Portfolio domain: securities and prices, model portfolios, households, accounts, lots,
transactions, drift snapshots, imports and rebalance runs (DESIGN 3).

Money and share quantities are Decimals in the database (shares to 6 places); the numerical
core converts to float arrays at its boundary. Rows that make up the books of record (lots,
transactions, runs) are protected from cascade deletes: Advisers Act Rule 204-2 asks for five
years of records.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rebalance_app.work import WorkItem

QTY = {"max_digits": 20, "decimal_places": 6}
MONEY = {"max_digits": 18, "decimal_places": 2}
PRICE = {"max_digits": 18, "decimal_places": 6}
WEIGHT = {"max_digits": 9, "decimal_places": 6}
RATE = {"max_digits": 6, "decimal_places": 4}


class AssetClass(models.TextChoices):
    EQUITY = "equity", "Equity"
    FIXED_INCOME = "fixed_income", "Fixed income"
    CASH = "cash", "Cash"
    ALTERNATIVE = "alternative", "Alternative"
    MULTI_ASSET = "multi_asset", "Multi-asset"


class SecurityType(models.TextChoices):
    EQUITY = "equity", "Equity"
    ETF = "etf", "ETF"
    MUTUAL_FUND = "mutual_fund", "Mutual fund"
    BOND = "bond", "Bond"
    CASH = "cash", "Cash"


class Security(models.Model):
    """A tradable instrument. ``wash_sale_group`` names a set of substantially identical
    securities (a wash sale in one is a wash sale in all); ``tlh_substitutes`` are the preferred
    replacements when harvesting a loss."""

    ticker = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    cusip = models.CharField(max_length=9, blank=True)
    isin = models.CharField(max_length=12, blank=True)
    asset_class = models.CharField(max_length=20, choices=AssetClass.choices)
    sector = models.CharField(max_length=60, blank=True)
    security_type = models.CharField(max_length=20, choices=SecurityType.choices)
    esg_score = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    esg_tags = models.JSONField(default=list, blank=True)
    round_lot = models.PositiveIntegerField(default=1)
    wash_sale_group = models.CharField(max_length=40, blank=True, db_index=True)
    tlh_substitutes = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="substitute_for"
    )
    is_synthetic = models.BooleanField(
        default=False, help_text="Demo security with generated prices (not market data)."
    )
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["ticker"]
        verbose_name_plural = "securities"
        constraints = [
            models.CheckConstraint(
                condition=Q(round_lot__gte=1), name="security_round_lot_positive"
            ),
            models.CheckConstraint(
                condition=Q(esg_score__isnull=True) | (Q(esg_score__gte=0) & Q(esg_score__lte=100)),
                name="security_esg_score_0_100",
            ),
        ]

    def __str__(self) -> str:
        return self.ticker


class Price(models.Model):
    """A daily closing price of a security (``as_of`` is the trading day of the close)."""

    security = models.ForeignKey(Security, on_delete=models.PROTECT, related_name="prices")
    as_of = models.DateField()
    price = models.DecimalField(**PRICE)
    source = models.CharField(max_length=40, default="import")
    avg_daily_volume = models.BigIntegerField(null=True, blank=True)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["security", "-as_of"]
        constraints = [
            models.UniqueConstraint(fields=["security", "as_of"], name="price_unique_per_day"),
            models.CheckConstraint(condition=Q(price__gt=0), name="price_positive"),
        ]
        indexes = [models.Index(fields=["security", "-as_of"], name="price_latest_idx")]

    def __str__(self) -> str:
        return f"{self.security_id} {self.as_of} {self.price}"


class ModelPortfolio(models.Model):
    """A target model. Its targets live in versions; editing creates a new version and the
    accounts that follow the model follow its current version."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def current_version(self) -> ModelVersion | None:
        return self.versions.filter(is_current=True).first()


class ModelVersion(models.Model):
    """One immutable version of a model's targets. Exactly one version per model is current."""

    model = models.ForeignKey(ModelPortfolio, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    is_current = models.BooleanField(default=True)
    cash_target = models.DecimalField(**WEIGHT, default=Decimal("0"))
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="model_version_unique"),
            models.UniqueConstraint(
                fields=["model"], condition=Q(is_current=True), name="model_one_current_version"
            ),
            models.CheckConstraint(
                condition=Q(cash_target__gte=0) & Q(cash_target__lte=1),
                name="model_version_cash_target_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version}"


class ModelTarget(models.Model):
    """A security's target weight in one model version, with its tolerance bands.

    A position breaches when |w - target| exceeds ``abs_band`` or |w - target| / target exceeds
    ``rel_band`` (either may be empty)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="targets")
    security = models.ForeignKey(Security, on_delete=models.PROTECT, related_name="+")
    weight = models.DecimalField(**WEIGHT)
    abs_band = models.DecimalField(**WEIGHT, null=True, blank=True)
    rel_band = models.DecimalField(**WEIGHT, null=True, blank=True)
    min_weight = models.DecimalField(**WEIGHT, null=True, blank=True)
    max_weight = models.DecimalField(**WEIGHT, null=True, blank=True)

    class Meta:
        ordering = ["version", "-weight"]
        constraints = [
            models.UniqueConstraint(fields=["version", "security"], name="model_target_unique"),
            models.CheckConstraint(
                condition=Q(weight__gte=0) & Q(weight__lte=1), name="model_target_weight_0_1"
            ),
            models.CheckConstraint(
                condition=Q(abs_band__isnull=True) | Q(abs_band__gte=0),
                name="model_target_abs_band_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(rel_band__isnull=True) | Q(rel_band__gte=0),
                name="model_target_rel_band_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} {self.security_id} {self.weight}"


class Household(models.Model):
    """Clients sharing tax treatment: wash sales span a household. Visibility is granted to PM
    team groups by django-guardian object permissions; accounts inherit it."""

    name = models.CharField(max_length=200)
    team = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="households",
        help_text="The PM team granted this household (kept in step with its object permissions).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RegistrationType(models.TextChoices):
    INDIVIDUAL = "individual", "Individual (taxable)"
    JOINT = "joint", "Joint (taxable)"
    TRUST = "trust", "Trust"
    IRA = "ira", "Traditional IRA"
    ROTH = "roth", "Roth IRA"
    CORPORATE = "corporate", "Corporate"
    FOUNDATION = "foundation", "Foundation"


TAX_DEFERRED_REGISTRATIONS = frozenset({RegistrationType.IRA, RegistrationType.ROTH})


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    FROZEN = "frozen", "Frozen"
    CLOSED = "closed", "Closed"


class Account(models.Model):
    """A custodial account of a household, following a model, with its rebalancing
    preferences. Its positions are the sums of its tax lots; cash is ``cash_balance``."""

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="accounts")
    name = models.CharField(max_length=200)
    custodian = models.CharField(max_length=60)
    account_number = models.CharField(max_length=40)
    registration_type = models.CharField(max_length=20, choices=RegistrationType.choices)
    taxable = models.BooleanField(default=True)
    model = models.ForeignKey(
        ModelPortfolio, null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    cash_balance = models.DecimalField(**MONEY, default=Decimal("0"))
    cash_reserve = models.DecimalField(**MONEY, default=Decimal("0"))
    st_tax_rate = models.DecimalField(**RATE, default=Decimal("0.37"))
    lt_tax_rate = models.DecimalField(**RATE, default=Decimal("0.20"))
    status = models.CharField(
        max_length=10, choices=AccountStatus.choices, default=AccountStatus.ACTIVE
    )
    # rebalancing preferences
    auto_propose = models.BooleanField(default=False, help_text="Auto-propose on breach.")
    allow_fractional = models.BooleanField(default=False)
    min_trade_amount = models.DecimalField(**MONEY, default=Decimal("100"))
    tlh_enabled = models.BooleanField(default=False, help_text="Tax-loss harvesting on.")
    gains_budget = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Annual realized-gains budget (empty: none)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["account_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["custodian", "account_number"], name="account_unique_number"
            ),
            models.CheckConstraint(condition=Q(cash_reserve__gte=0), name="account_reserve_nonneg"),
            models.CheckConstraint(
                condition=Q(st_tax_rate__gte=0)
                & Q(st_tax_rate__lte=1)
                & Q(lt_tax_rate__gte=0)
                & Q(lt_tax_rate__lte=1),
                name="account_tax_rates_0_1",
            ),
            models.CheckConstraint(
                condition=Q(min_trade_amount__gte=0), name="account_min_trade_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_number} {self.name}"


class TaxLot(models.Model):
    """Shares of one security bought on one date at one cost. Long-term after one year.

    A wash sale (``portfolios.tax``) may add a disallowed loss to the basis
    (``wash_sale_adjustment`` is the total added) and move ``acquired_on`` back to carry the
    sold shares' holding period; ``purchased_on`` then keeps the real purchase date.
    ``replacement_quantity`` shares were already used as replacement shares, so no share
    replaces two losses. Lots sold down to zero stay, for the record. The database defaults
    let raw ``COPY``/``INSERT`` writers (imports, benchmarks) omit the wash-sale columns."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lots")
    security = models.ForeignKey(Security, on_delete=models.PROTECT, related_name="lots")
    quantity = models.DecimalField(**QTY)
    cost_basis = models.DecimalField(**PRICE, help_text="Cost basis per share.")
    acquired_on = models.DateField()
    purchased_on = models.DateField(
        null=True,
        blank=True,
        help_text="Real purchase date when acquired_on carries a wash sale's holding period.",
    )
    wash_sale_adjustment = models.DecimalField(
        **MONEY,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="Total disallowed wash-sale loss added to this lot's basis.",
    )
    replacement_quantity = models.DecimalField(
        **QTY,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="Shares already used as replacement shares of a wash sale.",
    )
    opened_by = models.ForeignKey(
        "Transaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The buy that opened this lot.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["account", "security", "acquired_on"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0), name="taxlot_quantity_nonneg"),
            models.CheckConstraint(condition=Q(cost_basis__gte=0), name="taxlot_basis_nonneg"),
        ]
        indexes = [models.Index(fields=["account", "security"], name="taxlot_position_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.security_id} {self.quantity} @ {self.cost_basis}"


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Transaction(models.Model):
    """A trade in an account's history: needed for wash-sale look-back and for the record.

    ``realized_st``/``realized_lt`` of a sell are the *recognized* gain or loss: a loss
    disallowed by a wash sale is in ``wash_sale_disallowed`` instead (of which
    ``wash_sale_permanent`` can never be recovered). A fill books one sell per relieved
    ``lot``; ``reference`` is the caller's key (e.g. ``alloc:17``)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="transactions")
    security = models.ForeignKey(Security, on_delete=models.PROTECT, related_name="transactions")
    trade_date = models.DateField()
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**PRICE)
    realized_st = models.DecimalField(**MONEY, default=Decimal("0"))
    realized_lt = models.DecimalField(**MONEY, default=Decimal("0"))
    wash_sale_disallowed = models.DecimalField(**MONEY, default=Decimal("0"))
    wash_sale_matched_quantity = models.DecimalField(
        **QTY,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="Loss shares of this sale already matched to replacement shares.",
    )
    wash_sale_permanent = models.DecimalField(
        **MONEY,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="Part of the disallowed loss lost for good (replacement in an IRA or Roth).",
    )
    lot = models.ForeignKey(
        TaxLot,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The lot a sell relieved or a buy opened.",
    )
    reference = models.CharField(
        max_length=100, blank=True, default="", db_default="", db_index=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-trade_date", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="transaction_quantity_pos"),
            models.CheckConstraint(condition=Q(price__gt=0), name="transaction_price_pos"),
        ]
        indexes = [models.Index(fields=["account", "trade_date"], name="txn_account_date_idx")]

    def __str__(self) -> str:
        return f"{self.trade_date} {self.side} {self.quantity} {self.security_id}"

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.price


class ScanTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Scheduled (beat)"
    EVENT = "event", "Event (price, holdings, fill or cash change)"
    MANUAL = "manual", "Manual (page, API or command)"


class DriftScan(WorkItem):
    """One drift scan of the firm or of some accounts: a work row whose chunks are scanned by
    Celery tasks, with progress counters the pages and API poll."""

    trigger = models.CharField(max_length=10, choices=ScanTrigger.choices)
    account_ids = models.JSONField(
        null=True, blank=True, help_text="The accounts to scan; empty means the whole firm."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    accounts_total = models.PositiveIntegerField(default=0)
    accounts_scanned = models.PositiveIntegerField(default=0)
    accounts_breached = models.PositiveIntegerField(default=0)
    accounts_unscannable = models.PositiveIntegerField(default=0)
    alerts_raised = models.PositiveIntegerField(default=0)
    alerts_cleared = models.PositiveIntegerField(default=0)
    unscannable = models.JSONField(
        default=dict, blank=True, help_text="Account id -> why it could not be scanned."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"drift scan {self.pk} ({self.trigger}, {self.status})"


class DriftSnapshot(models.Model):
    """Account-level drift metrics from one scan. ``is_latest`` marks each account's newest
    snapshot (at most one per account), which the dashboard joins and sorts on."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="drift_snapshots")
    scan = models.ForeignKey(
        DriftScan, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots"
    )
    scanned_at = models.DateTimeField(default=timezone.now, db_index=True)
    is_latest = models.BooleanField(default=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    total_value = models.DecimalField(**MONEY, null=True, blank=True)
    total_drift = models.FloatField(null=True, blank=True)
    max_drift = models.FloatField(null=True, blank=True)
    cash_drift = models.FloatField(null=True, blank=True)
    breach_count = models.PositiveIntegerField(default=0)
    breached = models.BooleanField(default=False)
    not_in_model_count = models.PositiveIntegerField(default=0)
    model_not_held_count = models.PositiveIntegerField(default=0)
    scannable = models.BooleanField(default=True)
    unscannable_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-scanned_at"]
        indexes = [
            models.Index(fields=["account", "-scanned_at"], name="drift_account_latest_idx"),
            models.Index(
                fields=["-total_drift"], condition=Q(is_latest=True), name="drift_latest_sort_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(is_latest=True), name="drift_one_latest_per_account"
            ),
        ]

    def __str__(self) -> str:
        drift = f"{self.total_drift:.4f}" if self.total_drift is not None else "unscannable"
        return f"{self.account_id} {self.scanned_at:%Y-%m-%d %H:%M} {drift}"


class DriftPosition(models.Model):
    """One security's (or cash's, with no security) weight, target and drift in a snapshot.

    Kept for each account's latest snapshot and for breached snapshots; the positions of an
    older snapshot that did not breach are dropped when a newer scan replaces it."""

    # Derived rows written only by the scan, millions per firm scan: no database-level foreign
    # keys (their deferred row-by-row checks were half of a 100,000-account scan's time, see
    # docs/performance.md). Django still cascades from snapshots and protects securities, and
    # the unique (snapshot, security) index serves lookups by snapshot.
    snapshot = models.ForeignKey(
        DriftSnapshot,
        on_delete=models.CASCADE,
        related_name="positions",
        db_constraint=False,
        db_index=False,
    )
    security = models.ForeignKey(
        Security,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )
    weight = models.FloatField()
    target = models.FloatField()
    drift = models.FloatField()
    abs_band = models.FloatField(null=True, blank=True)
    rel_band = models.FloatField(null=True, blank=True)
    breached = models.BooleanField(default=False)
    in_model = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "security"], name="drift_position_unique")
        ]

    def __str__(self) -> str:
        return f"{self.security_id} w={self.weight:.4f} d={self.drift:+.4f}"


class DriftAlert(models.Model):
    """Raised once when an account newly breaches its bands; cleared when it is back inside.
    At most one open alert per account."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="drift_alerts")
    raised_at = models.DateTimeField(default=timezone.now)
    raised_snapshot = models.ForeignKey(
        DriftSnapshot, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_snapshot = models.ForeignKey(
        DriftSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total_drift = models.FloatField()
    max_drift = models.FloatField()
    breach_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(cleared_at__isnull=True),
                name="drift_one_open_alert_per_account",
            ),
        ]

    def __str__(self) -> str:
        state = "open" if self.cleared_at is None else "cleared"
        return f"alert {self.account_id} ({state})"


class ImportKind(models.TextChoices):
    SECURITIES = "securities", "Securities"
    PRICES = "prices", "Prices"
    MODELS = "models", "Models"
    ACCOUNTS = "accounts", "Households and accounts"
    LOTS = "lots", "Tax lots"
    TRANSACTIONS = "transactions", "Transactions"
    CASH_FLOWS = "cash_flows", "Cash flows"
    RESTRICTIONS = "restrictions", "Restrictions"
    CUSTODIAN_POSITIONS = "custodian_positions", "Custodian positions"
    DEMO = "demo", "Demo data (seed_demo)"


class ImportBatch(WorkItem):
    """Lineage of one import: what came in, from whom, with what result."""

    kind = models.CharField(max_length=30, choices=ImportKind.choices)
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    dry_run = models.BooleanField(default=False)
    forced = models.BooleanField(
        default=False, help_text="Imported although a batch with the same file and kind exists."
    )
    file = models.FileField(
        upload_to="imports/%Y/%m/",
        blank=True,
        help_text="The uploaded file as received (kept for lineage and for the worker).",
    )
    rows_total = models.PositiveIntegerField(default=0)
    rows_processed = models.PositiveIntegerField(default=0, help_text="Progress of a long import.")
    rows_accepted = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    summary = models.JSONField(
        default=dict, blank=True, help_text="What was written: counts, affected accounts."
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.kind} {self.file_name} ({self.status})"


class CashFlowKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    DIVIDEND = "dividend", "Dividend"
    INTEREST = "interest", "Interest"
    FEE = "fee", "Fee"


class CashFlow(models.Model):
    """Money into (positive) or out of (negative) an account's cash, e.g. a client deposit."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="cash_flows")
    flow_date = models.DateField()
    amount = models.DecimalField(**MONEY)
    kind = models.CharField(max_length=12, choices=CashFlowKind.choices)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-flow_date", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="cashflow_amount_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.flow_date} {self.kind} {self.amount} ({self.account_id})"


class Reconciliation(models.Model):
    """One comparison of a custodian position file with the books (lots and cash)."""

    import_batch = models.OneToOneField(
        "ImportBatch", on_delete=models.PROTECT, related_name="reconciliation"
    )
    as_of = models.DateField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    accounts_compared = models.PositiveIntegerField(default=0)
    positions_compared = models.PositiveIntegerField(default=0)
    break_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"reconciliation {self.pk} as of {self.as_of}: {self.break_count} breaks"


class ReconciliationBreak(models.Model):
    """A difference between the custodian's quantity and ours (security empty: cash). Open
    until resolved; accounts with open breaks are flagged."""

    reconciliation = models.ForeignKey(
        Reconciliation, on_delete=models.PROTECT, related_name="breaks"
    )
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="recon_breaks")
    security = models.ForeignKey(
        Security, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    custodian_quantity = models.DecimalField(**QTY)
    book_quantity = models.DecimalField(**QTY)
    difference = models.DecimalField(**QTY)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["account", "security"]
        indexes = [
            models.Index(
                fields=["account"], condition=Q(resolved_at__isnull=True), name="recon_open_idx"
            )
        ]

    def __str__(self) -> str:
        what = self.security_id or "cash"
        return f"break {self.account_id} {what}: {self.difference}"


class RebalanceMode(models.TextChoices):
    FULL = "full", "Full rebalance to target"
    TOLERANCE = "tolerance", "Tolerance-band rebalance"
    CASH_RAISE = "cash_raise", "Raise cash"
    CASH_INVEST = "cash_invest", "Invest cash (buy only)"
    TLH = "tlh", "Tax-loss harvest"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    INFEASIBLE = "infeasible", "Infeasible"
    FAILED = "failed", "Failed"


class RiskModel(models.Model):
    """A factor risk model ``Sigma = B F B' + D`` estimated from the price history (DESIGN 5).

    Stored as parallel arrays so one row loads the whole model: ``security_ids`` (N) with
    ``exposures`` (N x K, one row per security, regression betas on the factor returns),
    ``specific_var`` (N) and ``factor_cov`` (K x K). Variances are annualised (252 sessions).
    ``fallbacks`` maps a security id (as a string) to why its row is a fallback (too little
    history). Versions only grow; ``is_current`` marks the one the optimizer uses.
    """

    version = models.PositiveIntegerField(unique=True)
    as_of = models.DateField(db_index=True, help_text="Last price date used in the estimate.")
    is_current = models.BooleanField(default=True)
    method = models.CharField(max_length=40, default="etf_factor_regression")
    window = models.PositiveIntegerField(help_text="Daily returns in the estimation window.")
    min_observations = models.PositiveIntegerField()
    factors = models.JSONField(default=list, help_text="Factor names (ETF tickers), K of them.")
    factor_cov = models.JSONField(default=list)
    security_ids = models.JSONField(default=list)
    exposures = models.JSONField(default=list)
    specific_var = models.JSONField(default=list)
    fallbacks = models.JSONField(default=dict, blank=True)
    diagnostics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="one_current_risk_model"
            )
        ]

    def __str__(self) -> str:
        return f"risk model v{self.version} ({self.as_of})"


class RebalanceTrigger(models.TextChoices):
    MANUAL = "manual", "Proposed by a user"
    AUTO = "auto", "Auto-proposed on breach"
    REPLAY = "replay", "Re-run of a stored run"


class RebalanceBatch(models.Model):
    """Many accounts proposed together (a list, or every breached account of a model): one
    run per account, fanned out as one Celery task each; progress is counted from the runs."""

    mode = models.CharField(max_length=20, choices=RebalanceMode.choices)
    parameters = models.JSONField(default=dict, blank=True)
    selection = models.JSONField(default=dict, blank=True, help_text="How accounts were chosen.")
    skipped = models.JSONField(
        default=list, blank=True, help_text="Accounts not run, each with the reason."
    )
    runs_total = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "rebalance batches"

    def __str__(self) -> str:
        return f"batch {self.pk} {self.mode} ({self.runs_total} runs)"


class RebalanceRun(WorkItem):
    """One optimization of one account, with everything needed to reproduce and explain it.

    ``trades`` is the current proposal (after any edits by the PM); ``edits`` lists each edit
    with the trade before and after; ``input_snapshot`` holds the optimizer's inputs exactly
    (``input_hash`` is its SHA-256), so :func:`rebalance_run_replay` reproduces the trades.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="rebalance_runs")
    batch = models.ForeignKey(
        RebalanceBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    trigger = models.CharField(
        max_length=10, choices=RebalanceTrigger.choices, default=RebalanceTrigger.MANUAL
    )
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replays"
    )
    risk_model = models.ForeignKey(
        RiskModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    edits = models.JSONField(default=list, blank=True)
    timings_ms = models.JSONField(
        default=dict, blank=True, help_text="Milliseconds spent loading, solving and storing."
    )
    mode = models.CharField(max_length=20, choices=RebalanceMode.choices)
    parameters = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    solver = models.CharField(max_length=40, blank=True)
    solve_ms = models.FloatField(null=True, blank=True)
    objective_before = models.JSONField(default=dict, blank=True)
    objective_after = models.JSONField(default=dict, blank=True)
    input_hash = models.CharField(max_length=64, blank=True)
    input_snapshot = models.JSONField(default=dict, blank=True)
    trades = models.JSONField(default=list, blank=True)
    diagnostics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "-created_at"], name="run_account_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} {self.account_id} {self.mode} ({self.status})"
