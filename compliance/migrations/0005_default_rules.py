"""One enabled firm-wide rule per rule type of DESIGN 6, with default parameters and
severities (docs/features/compliance.md). Compliance edits or disables them afterwards; a rule
is never deleted once it has results."""

from django.db import migrations

DEFAULT_RULES = [
    ("restricted_list", "Restricted list", "hard", {"scopes": ["firm", "household", "account"]}),
    ("short_sale", "No short sales", "hard", {}),
    ("cash_overdraft", "No cash overdraft", "hard", {"respect_reserve": True}),
    ("account_status", "Account frozen or closed", "hard", {}),
    ("wash_sale", "Wash sales", "hard", {}),
    ("stale_price", "Stale or missing price", "hard", {"trading_days": None}),
    (
        "concentration",
        "Concentration limits",
        "warning",
        {"max_security_weight": 0.25, "max_sector_weight": 0.40, "exempt_tickers": []},
    ),
    ("post_trade_drift", "Post-trade drift", "warning", {"extra_tolerance": 0.0}),
    (
        "min_trade",
        "Minimum trade amount",
        "warning",
        {"min_amount": None, "allow_full_liquidation": True},
    ),
    (
        "adv",
        "Order size vs average daily volume",
        "warning",
        {"max_adv_fraction": 0.05, "fail_when_missing": False},
    ),
    ("duplicate_order", "Duplicate order", "warning", {}),
    (
        "esg",
        "ESG minimum score",
        "warning",
        {"excluded_tags": [], "min_score": 20.0, "fail_missing_score": False},
    ),
    ("gains_budget", "Realized-gains budget", "warning", {"tolerance": 0.0}),
]


def create_default_rules(apps, schema_editor):
    ComplianceRule = apps.get_model("compliance", "ComplianceRule")
    for rule_type, name, severity, parameters in DEFAULT_RULES:
        if ComplianceRule.objects.filter(rule_type=rule_type, scope="firm").exists():
            continue
        ComplianceRule.objects.create(
            rule_type=rule_type,
            name=name,
            severity=severity,
            scope="firm",
            parameters=parameters,
            enabled=True,
        )


def remove_default_rules(apps, schema_editor):
    ComplianceRule = apps.get_model("compliance", "ComplianceRule")
    for rule_type, name, _severity, _parameters in DEFAULT_RULES:
        ComplianceRule.objects.filter(
            rule_type=rule_type, name=name, scope="firm", results__isnull=True
        ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0004_imports_reconciliation"),
    ]

    operations = [
        migrations.RunPython(create_default_rules, remove_default_rules),
    ]
