"""Drift scan end to end on PostgreSQL: load, compute and store a whole-firm scan.

Generates a firm in a throw-away test database with bulk SQL (default 100,000 accounts with
20-50 positions each, 1-2 tax lots per position, 2,000 securities, 20 models), then times, in
this process (not through Celery):

1. the baseline: a raw ``COPY (SELECT lots summed per account and security) TO STDOUT`` of the
   same inputs, the lower bound for the load;
2. a first whole-firm scan (``drift_scan_run`` over every account in one transaction): load,
   compute, store, alerts;
3. a second scan (steady state: every latest snapshot flips, unbreached positions are deleted);
4. the same scan run as the Celery tasks run it, chunk by chunk (``DRIFT_SCAN_CHUNK_SIZE``),
   in-process.

Target (DESIGN 12): a whole-firm scan of 100,000 accounts in under 60 s.
Usage: DATABASE_URL=postgres://... python bench/drift_scan_bench.py [--accounts N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings_test")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

SECURITIES = 2000
MODELS = 20
BREACH_EVERY = 50  # every 50th account holds 2.5x one of its targets: a breach
OUTSIDE_EVERY = 10  # every 10th account holds a security outside its model (1%)
NO_MODEL_EVERY = 1000  # ... and these have no model
NO_PRICE_EVERY = 1000  # ... and these hold a security that has no price


def _sql(statement: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.rowcount


def _rows(statement: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall()


def generate_firm(n_accounts: int) -> dict[str, int]:
    """Securities with five days of prices, models, households, accounts and lots, in bulk."""
    from decimal import Decimal

    from portfolios.calendar import last_completed_session, session_offset
    from portfolios.models import ModelPortfolio, ModelTarget, ModelVersion

    today = last_completed_session()
    days = [session_offset(today, -k) for k in range(5)]
    _sql(
        "INSERT INTO portfolios_security (ticker, name, cusip, isin, asset_class, sector, "
        "security_type, esg_tags, round_lot, wash_sale_group, is_synthetic, created_at) "
        "SELECT 'S' || lpad(i::text, 5, '0'), 'Security ' || i, '', '', 'equity', 'Sector ' || "
        "(i %% 11), 'equity', '[]'::jsonb, 1, '', true, now() FROM generate_series(1, %s) i",
        [SECURITIES + 1],
    )
    # The last security (S02001) never gets a price: accounts holding it are unscannable.
    _sql(
        "INSERT INTO portfolios_price (security_id, as_of, price, source) "
        "SELECT s.id, d.day, round((10 + (s.id * 37 %% 490))::numeric * (1 + d.k * 0.001), 4), "
        "'bench' FROM portfolios_security s CROSS JOIN unnest(%s::date[], %s::int[]) AS d(day, k) "
        "WHERE s.ticker <> %s",
        [days, list(range(5)), f"S{SECURITIES + 1:05d}"],
    )
    security_ids = [row[0] for row in _rows("SELECT id FROM portfolios_security ORDER BY id")]
    security_ids = security_ids[:SECURITIES]
    for m in range(MODELS):
        model = ModelPortfolio.objects.create(name=f"Bench model {m}")
        version = ModelVersion.objects.create(model=model, version=1, cash_target=Decimal("0.02"))
        n = 20 + (m * 7) % 31  # 20..50 securities
        start = (m * 97) % (SECURITIES - n)
        weight = Decimal("0.98") / n
        weights = [weight.quantize(Decimal("0.000001"))] * n
        weights[0] += Decimal("0.98") - sum(weights)
        ModelTarget.objects.bulk_create(
            ModelTarget(
                version=version,
                security_id=security_ids[start + k],
                weight=weights[k],
                abs_band=Decimal("0.02") if k % 2 == 0 else None,
                rel_band=Decimal("0.25") if k % 3 == 0 else None,
            )
            for k in range(n)
        )
    model_ids = list(ModelPortfolio.objects.order_by("pk").values_list("pk", flat=True))
    _sql(
        "INSERT INTO portfolios_household (name, created_at) "
        "SELECT 'Household ' || i, now() FROM generate_series(1, %s) i",
        [(n_accounts + 1) // 2],
    )
    first_household = _rows("SELECT min(id) FROM portfolios_household")[0][0]
    # Account value V = 100,000 .. 1,000,000; cash is the 2% target of V.
    _sql(
        "INSERT INTO portfolios_account (household_id, name, custodian, account_number, "
        "registration_type, taxable, model_id, cash_balance, cash_reserve, st_tax_rate, "
        "lt_tax_rate, status, auto_propose, allow_fractional, min_trade_amount, tlh_enabled, "
        "created_at) "
        "SELECT %s + (i - 1) / 2, 'Account ' || i, 'Bench', 'B' || lpad(i::text, 8, '0'), "
        "'individual', true, "
        "CASE WHEN i %% %s = 13 THEN NULL ELSE (%s::bigint[])[1 + i %% %s] END, "
        "0.02 * (100000 + (i * 7919) %% 900000), 0, 0.37, 0.20, 'active', i %% 7 = 0, false, "
        "100, false, now() FROM generate_series(1, %s) i",
        [first_household, NO_MODEL_EVERY, model_ids, MODELS, n_accounts],
    )
    _sql("SELECT setseed(0.42)")
    # Lots of every model target, quantity near the target weight (+-10%), split in one or
    # two lots; every BREACH_EVERY-th account holds 2.5x its first target.
    lots = _sql(
        "INSERT INTO portfolios_taxlot (account_id, security_id, quantity, cost_basis, "
        "acquired_on, created_at) "
        "SELECT a.id, t.security_id, round(t.weight * (100000 + (a.id * 7919) %% 900000) / "
        "p.price * (CASE WHEN a.id %% %s = 0 AND t.rn = 1 THEN 2.5 ELSE 0.9 + 0.2 * random() END)"
        "::numeric / n.lots, 6), round(p.price * (0.6 + 0.8 * random())::numeric, 4), "
        "date '2024-01-02' + (random() * 600)::int, now() "
        "FROM portfolios_account a "
        "JOIN portfolios_modelversion mv ON mv.model_id = a.model_id AND mv.is_current "
        "JOIN (SELECT version_id, security_id, weight, row_number() OVER (PARTITION BY "
        "version_id ORDER BY security_id) AS rn FROM portfolios_modeltarget) t "
        "ON t.version_id = mv.id "
        "JOIN portfolios_price p ON p.security_id = t.security_id AND p.as_of = %s "
        "CROSS JOIN LATERAL (SELECT 1 + ((a.id + t.security_id) %% 3 = 0)::int AS lots) n "
        "CROSS JOIN LATERAL generate_series(1, n.lots) k",
        [BREACH_EVERY, today],
    )
    # Held outside the model (about 1% of value), and a held security with no price.
    lots += _sql(
        "INSERT INTO portfolios_taxlot (account_id, security_id, quantity, cost_basis, "
        "acquired_on, created_at) "
        "SELECT a.id, s.id, round(0.01 * (100000 + (a.id * 7919) %% 900000) / p.price, 6), "
        "p.price, date '2024-01-02', now() FROM portfolios_account a "
        "JOIN portfolios_security s ON s.id = %s "
        "JOIN portfolios_price p ON p.security_id = s.id AND p.as_of = %s "
        "WHERE a.id %% %s = 3 OR a.model_id IS NULL",
        [security_ids[-1], today, OUTSIDE_EVERY],
    )
    lots += _sql(
        "INSERT INTO portfolios_taxlot (account_id, security_id, quantity, cost_basis, "
        "acquired_on, created_at) "
        "SELECT a.id, s.id, 10, 10, date '2024-01-02', now() FROM portfolios_account a "
        "JOIN portfolios_security s ON s.ticker = %s WHERE a.id %% %s = 7",
        [f"S{SECURITIES + 1:05d}", NO_PRICE_EVERY],
    )
    _sql("ANALYZE")
    return {"accounts": n_accounts, "lots": lots}


def baseline_copy() -> tuple[float, int]:
    """Raw COPY of lots summed per account and security: the floor of the load."""
    sql = (
        "COPY (SELECT account_id, security_id, SUM(quantity::float8) FROM portfolios_taxlot "
        "GROUP BY account_id, security_id ORDER BY account_id, security_id) "
        "TO STDOUT (FORMAT BINARY)"
    )
    started = time.perf_counter()
    size = 0
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for block in copy:
            size += len(block)
    return time.perf_counter() - started, size


def timed_scan(label: str) -> dict[str, float | int | str]:
    """A whole-firm scan in one transaction, as one chunk."""
    from portfolios.models import DriftScan
    from portfolios.services.drift import drift_scan_create, drift_scan_run
    from rebalance_app.work import work_claim

    scan = drift_scan_create(actor="system:bench")
    work_claim(model=DriftScan, pk=scan.pk)
    DriftScan.objects.filter(pk=scan.pk).update(chunks_total=1)
    started = time.perf_counter()
    summary = drift_scan_run(scan=scan)
    total = time.perf_counter() - started
    scan.refresh_from_db()
    assert scan.status == "succeeded", scan.status
    return {
        "scan": label,
        "total_s": round(total, 2),
        "load_s": round(summary.load_s, 2),
        "compute_s": round(summary.compute_s, 3),
        "store_s": round(summary.store_s, 2),
        "alerts_s": round(summary.alerts_s, 2),
        "lock_s": round(summary.lock_s, 2),
        "commit_s": round(summary.commit_s, 2),
        "rows": summary.rows,
        "scanned": summary.accounts_scanned,
        "unscannable": summary.accounts_unscannable,
        "breached": summary.accounts_breached,
        "alerts_raised": summary.alerts_raised,
        "positions_written": summary.positions_written,
        "positions_deleted": summary.positions_deleted,
    }


def chunked_scan() -> dict[str, float | int | str]:
    """The same scan as the tasks run it: chunk after chunk, each its own transaction."""
    from portfolios.services.drift import drift_scan_create, drift_scan_execute

    scan = drift_scan_create(actor="system:bench")
    started = time.perf_counter()
    run = drift_scan_execute(scan=scan)
    total = time.perf_counter() - started
    assert run.scan.status == "succeeded", run.scan.status
    return {
        "scan": f"chunked ({settings.DRIFT_SCAN_CHUNK_SIZE}/chunk, {len(run.chunks)} chunks)",
        "total_s": round(total, 2),
        "load_s": round(sum(c.load_s for c in run.chunks), 2),
        "compute_s": round(sum(c.compute_s for c in run.chunks), 3),
        "store_s": round(sum(c.store_s for c in run.chunks), 2),
        "alerts_s": round(sum(c.alerts_s for c in run.chunks), 2),
        "lock_s": round(sum(c.lock_s for c in run.chunks), 2),
        "commit_s": round(sum(c.commit_s for c in run.chunks), 2),
        "rows": sum(c.rows for c in run.chunks),
        "scanned": run.scan.accounts_scanned,
        "unscannable": run.scan.accounts_unscannable,
        "breached": run.scan.accounts_breached,
        "alerts_raised": run.scan.alerts_raised,
        "positions_written": sum(c.positions_written for c in run.chunks),
        "positions_deleted": sum(c.positions_deleted for c in run.chunks),
    }


def lean_positions() -> None:
    """What-if: DriftPosition without its two foreign-key constraints (checked row by row at
    commit) and without the snapshot_id index that the unique (snapshot, security) index
    already covers. Applied to the throw-away database only, to size a proposed model change."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'portfolios_driftposition'::regclass AND contype = 'f'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE portfolios_driftposition DROP CONSTRAINT "{name}"')
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'portfolios_driftposition' "
            "AND indexdef LIKE '%%(snapshot_id)'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--what-if-lean-positions",
        action="store_true",
        help="Drop DriftPosition's FK constraints and redundant index first (see lean_positions).",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        started = time.perf_counter()
        firm = generate_firm(args.accounts)
        generate_s = time.perf_counter() - started
        if args.what_if_lean_positions:
            lean_positions()
        baseline_s, baseline_bytes = baseline_copy()
        scans = [timed_scan("first (whole firm, 1 transaction)")]
        scans.append(timed_scan("second (steady state)"))
        scans.append(chunked_scan())
        from portfolios.models import DriftPosition, DriftSnapshot

        latest = DriftSnapshot.objects.filter(is_latest=True).count()
        positions = DriftPosition.objects.count()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    header = [
        "scan",
        "total_s",
        "lock_s",
        "load_s",
        "compute_s",
        "store_s",
        "alerts_s",
        "commit_s",
    ]
    if args.what_if_lean_positions:
        print("WHAT-IF: DriftPosition without FK constraints and the snapshot_id index")
    print(f"firm: {firm['accounts']:,} accounts, {firm['lots']:,} lots, {SECURITIES:,} securities")
    print(f"generated in {generate_s:.1f} s")
    print(f"baseline raw COPY of summed lots: {baseline_s:.2f} s ({baseline_bytes / 1e6:.0f} MB)")
    print(f"{header[0]:<42}" + "".join(f"{h:>11}" for h in header[1:]))
    for s in scans:
        print(f"{s['scan']:<42}" + "".join(f"{s[h]:>11}" for h in header[1:]))
    print(
        f"{'':<42}rows {scans[0]['rows']:,}, scanned {scans[0]['scanned']:,}, unscannable "
        f"{scans[0]['unscannable']:,}, breached {scans[0]['breached']:,}, alerts raised "
        f"{scans[0]['alerts_raised']:,}"
    )
    print(f"latest snapshots {latest:,}; position rows kept {positions:,}")
    figures = {
        "bench": "drift_scan",
        "database": connection.vendor,
        "accounts": firm["accounts"],
        "lots": firm["lots"],
        "rows": scans[0]["rows"],
        "baseline_copy_s": round(baseline_s, 2),
        "first_scan_s": scans[0]["total_s"],
        "steady_scan_s": scans[1]["total_s"],
        "chunked_scan_s": scans[2]["total_s"],
        "load_vs_baseline": round(scans[1]["load_s"] / baseline_s, 2),
        "target_s": 60,
        "what_if_lean_positions": args.what_if_lean_positions,
        "scans": scans,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
