"""Drift dashboard server time with 10,000 accounts (DESIGN 12: under 300 ms, paginated, a
constant number of queries).

Builds a throw-away test database (never the configured one) holding 10,000 accounts in 5,000
households split between two PM teams, each account with a latest drift snapshot and two older
ones, some breached with an open alert, some not scannable, a few never scanned. Then times the
dashboard through ``django.test.Client`` (middleware, selectors, templates: the whole server
side) as a PM of team A (~5,000 visible accounts) and as Ops (all 10,000): the median of 20
requests per variant after a warm-up, for page 1 sorted by drift, a filtered and sorted page,
and the htmx partial, with the number of queries and their database time in one request. The
baseline, measured in the same run, is the bare ``drift_dashboard(...)[:50]`` query evaluated
alone: the least any page of 50 rows costs.

Usage: DATABASE_URL=postgres://... python bench/dashboard_bench.py [--accounts N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings_test")

import django

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

BATCH = 2000
TARGET_MS = 300


def _seed(n_accounts: int) -> dict:
    """The firm, in bulk; returns the users and a model id for the filtered variant."""
    from django.contrib.auth.models import Group, User
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import GroupObjectPermission

    from portfolios.models import (
        Account,
        DriftAlert,
        DriftSnapshot,
        Household,
        ModelPortfolio,
    )
    from rebalance_app.roles import Role

    rng = np.random.default_rng(20261125)
    teams = [Group.objects.get_or_create(name=f"Team {x}")[0] for x in "AB"]
    pm = User.objects.create_user("bench-pm", password="bench-pw-1")  # noqa: S106
    pm.groups.add(Group.objects.get(name=Role.PM.value), teams[0])
    ops = User.objects.create_user("bench-ops", password="bench-pw-1")  # noqa: S106
    ops.groups.add(Group.objects.get(name=Role.OPS.value))
    models = ModelPortfolio.objects.bulk_create(
        ModelPortfolio(name=name) for name in ("Growth", "Balanced", "Income", "Tax-aware core")
    )

    households = Household.objects.bulk_create(
        (
            Household(name=f"Bench Family {i:05d}", team=teams[i % 2])
            for i in range(n_accounts // 2)
        ),
        batch_size=BATCH,
    )
    ct = ContentType.objects.get_for_model(Household)
    perms = list(ct.permission_set.filter(codename__in=["view_household", "change_household"]))
    GroupObjectPermission.objects.bulk_create(
        (
            GroupObjectPermission(group=h.team, permission=p, content_type=ct, object_pk=str(h.pk))
            for h in households
            for p in perms
        ),
        batch_size=BATCH,
    )
    accounts = Account.objects.bulk_create(
        (
            Account(
                household=households[i // 2],
                name=f"Bench account {i:05d}",
                custodian="Schwab",
                account_number=f"B{i:07d}",
                taxable=bool(i % 2),
                cash_balance=Decimal("1000.00"),
                model=models[int(rng.integers(len(models)))],
            )
            for i in range(n_accounts)
        ),
        batch_size=BATCH,
    )

    now = timezone.now()
    total = np.abs(rng.normal(0.035, 0.03, size=n_accounts))
    breaches = np.where(total > 0.06, rng.integers(1, 5, size=n_accounts), 0)
    fate = rng.random(n_accounts)  # < 0.02 never scanned, < 0.05 not scannable
    snapshots = []
    for i, account in enumerate(accounts):
        if fate[i] < 0.02:
            continue
        snapshots.extend(
            DriftSnapshot(
                account=account,
                scanned_at=now - timedelta(days=age),
                is_latest=False,
                total_value=Decimal("250000"),
                total_drift=float(total[i]) * (1 - age / 4),
                max_drift=float(total[i]) / 2,
                cash_drift=0.001,
            )
            for age in (2, 1)
        )
        scannable = fate[i] >= 0.05
        snapshots.append(
            DriftSnapshot(
                account=account,
                scanned_at=now,
                is_latest=True,
                total_value=Decimal("250000") if scannable else None,
                total_drift=float(total[i]) if scannable else None,
                max_drift=float(total[i]) / 2 if scannable else None,
                cash_drift=float(rng.normal(0, 0.01)) if scannable else None,
                breach_count=int(breaches[i]) if scannable else 0,
                breached=bool(breaches[i]) and scannable,
                scannable=scannable,
                unscannable_reason="" if scannable else "Stale price for VTI.",
            )
        )
    DriftSnapshot.objects.bulk_create(snapshots, batch_size=BATCH)
    latest_breached = DriftSnapshot.objects.filter(is_latest=True, breached=True)
    DriftAlert.objects.bulk_create(
        (
            DriftAlert(
                account_id=s.account_id,
                raised_at=s.scanned_at,
                raised_snapshot=s,
                total_drift=s.total_drift,
                max_drift=s.max_drift,
                breach_count=s.breach_count,
            )
            for s in latest_breached
        ),
        batch_size=BATCH,
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    return {"pm": pm, "ops": ops, "model": models[1].pk, "snapshots": len(snapshots)}


def _median_ms(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    rows = []
    try:
        from django.test import Client

        from portfolios.selectors import accounts_visible_to
        from portfolios.selectors.drift import drift_dashboard

        started = time.perf_counter()
        firm = _seed(args.accounts)
        seed_s = time.perf_counter() - started
        variants = [
            ("page 1, sort -drift", {"sort": "-drift"}, {}),
            (
                "breached + model, sort -breaches",
                {"breached": "1", "model": str(firm["model"]), "sort": "-breaches"},
                {},
            ),
            ("htmx partial, sort cash_drift", {"sort": "cash_drift"}, {"HX-Request": "true"}),
        ]
        for who in ("pm", "ops"):
            user = firm[who]
            visible = accounts_visible_to(user).count()
            baseline = _median_ms(
                lambda user=user: list(drift_dashboard(user=user, sort="-drift")[:50]), args.repeat
            )
            client = Client()
            client.force_login(user)
            for label, params, headers in variants:

                def get(params=params, headers=headers, client=client):
                    response = client.get("/drift/", params, headers=headers)
                    assert response.status_code == 200, response.status_code
                    return response

                with CaptureQueriesContext(connection) as queries:
                    get()
                # read now: every request resets the connection's query log
                n_queries = len(queries)
                sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
                ms = _median_ms(get, args.repeat)
                rows.append(
                    {
                        "user": who,
                        "visible": visible,
                        "variant": label,
                        "median_ms": round(ms, 1),
                        "queries": n_queries,
                        "sql_ms": round(sql_ms, 1),
                        "baseline_ms": round(baseline, 1),
                        "ratio": round(ms / baseline, 1),
                    }
                )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(f"database {connection.vendor}, {args.accounts} accounts, seeded in {seed_s:.1f} s")
    header = (
        f"{'user':<5}{'visible':>8}  {'variant':<34}{'median ms':>10}{'queries':>9}"
        f"{'sql ms':>8}{'baseline ms':>13}{'x baseline':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['user']:<5}{r['visible']:>8}  {r['variant']:<34}{r['median_ms']:>10}"
            f"{r['queries']:>9}{r['sql_ms']:>8}{r['baseline_ms']:>13}{r['ratio']:>12}"
        )
    worst = max(r["median_ms"] for r in rows)
    print(f"slowest median {worst} ms (target under {TARGET_MS} ms)")
    print(
        json.dumps(
            {
                "bench": "dashboard",
                "database": connection.vendor,
                "accounts": args.accounts,
                "snapshots": firm["snapshots"],
                "repeat": args.repeat,
                "rows": rows,
                "slowest_median_ms": worst,
                "under_target": worst < TARGET_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
