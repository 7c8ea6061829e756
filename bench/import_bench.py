"""Tax-lot import on PostgreSQL: 1,000,000 lots from CSV, end to end, against a raw COPY.

In a throw-away test database (never the configured one), creates the accounts and securities
the file refers to (bulk inserts), generates a lots CSV (``--rows``, default 1,000,000, over
``--accounts`` accounts and ``--securities`` securities, no two rows alike), then times in
this process:

1. the baseline: a raw ``COPY portfolios_taxlot (...) FROM STDIN`` of the same rows with their
   ids already resolved (the lower bound: no reading, no validation, no lookups); the rows are
   then removed so the real import starts from the same table;
2. the stages on their own: ``read_table`` (CSV to a frame of text) and ``import_validate``
   (types, ranges, dates, account and ticker lookups, duplicates);
3. ``import_process`` end to end on a submitted batch: claim, read, validate, write through
   COPY in one transaction, batch and audit updates.

Target (DESIGN 12): under 60 s, and within 3x of the raw COPY.
Usage: DATABASE_URL=postgres://... python bench/import_bench.py [--rows N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings_test")

import django

django.setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from django.db import connection  # noqa: E402

TARGET_SECONDS = 60
TARGET_RATIO = 3
CUSTODIAN = "Bench Custody"


def generate_firm(n_accounts: int, n_securities: int) -> tuple[list[int], list[int]]:
    """Households, accounts and securities in bulk; their ids in creation order."""
    from portfolios.models import Account, Household, Security

    households = Household.objects.bulk_create(
        [Household(name=f"Bench household {i}") for i in range(max(n_accounts // 4, 1))],
        batch_size=5000,
    )
    accounts = Account.objects.bulk_create(
        [
            Account(
                household=households[i // 4],
                name=f"Bench account {i}",
                custodian=CUSTODIAN,
                account_number=f"B{i:07d}",
                registration_type="individual",
            )
            for i in range(n_accounts)
        ],
        batch_size=5000,
    )
    securities = Security.objects.bulk_create(
        [
            Security(
                ticker=f"BN{i:04d}",
                name=f"Bench security {i}",
                asset_class="equity",
                security_type="equity",
            )
            for i in range(n_securities)
        ],
        batch_size=5000,
    )
    return [a.pk for a in accounts], [s.pk for s in securities]


def generate_lots(n: int, n_accounts: int, n_securities: int) -> pd.DataFrame:
    """Row i: account i mod A, security (i div A) mod S, so (account, security) pairs repeat
    only after A x S rows; quantity, basis and date vary, so no two rows are alike."""
    rng = np.random.default_rng(20261125)
    i = np.arange(n)
    account = i % n_accounts
    security = (i // n_accounts) % n_securities
    days = rng.integers(0, 3650, n)
    acquired = np.datetime64("2015-01-02") + days.astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "account": account,
            "security": security,
            "quantity": rng.integers(1, 2000, n) + (i // (n_accounts * n_securities)),
            "cost_basis": np.round(rng.uniform(1, 500, n), 2),
            "acquired_on": np.datetime_as_string(acquired),
        }
    )


def lots_csv(lots: pd.DataFrame) -> bytes:
    frame = pd.DataFrame(
        {
            "account_number": "B" + lots["account"].astype(str).str.zfill(7),
            "ticker": "BN" + lots["security"].astype(str).str.zfill(4),
            "quantity": lots["quantity"],
            "cost_basis": lots["cost_basis"],
            "acquired_on": lots["acquired_on"],
        }
    )
    return frame.to_csv(index=False).encode()


def raw_copy(lots: pd.DataFrame, account_ids: list[int], security_ids: list[int]) -> float:
    """The lower bound: COPY the same rows, ids resolved, text prepared beforehand."""
    rows = pd.DataFrame(
        {
            "account_id": np.asarray(account_ids)[lots["account"].to_numpy()],
            "security_id": np.asarray(security_ids)[lots["security"].to_numpy()],
            "quantity": lots["quantity"],
            "cost_basis": lots["cost_basis"],
            "acquired_on": lots["acquired_on"],
            "created_at": "2026-11-25T00:00:00+00:00",
        }
    )
    buffer = io.StringIO()
    rows.to_csv(buffer, index=False, header=False)
    data = buffer.getvalue()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        sql = (
            "COPY portfolios_taxlot (account_id, security_id, quantity, cost_basis, "
            "acquired_on, created_at) FROM STDIN (FORMAT csv)"
        )
        with cursor.cursor.copy(sql) as copy:
            copy.write(data)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM portfolios_taxlot")
        cursor.execute("VACUUM ANALYZE portfolios_taxlot")
    return elapsed


def submit(data: bytes) -> int:
    """Record a batch as ``import_submit`` does (stored file, audited), without running it."""
    from portfolios.services import imports

    real_process = imports.import_process
    imports.import_process = lambda **kwargs: {}  # submit only; timed separately below
    try:
        batch = imports.import_submit(
            actor="system:bench", kind="lots", file_name="bench-lots.csv", data=data, inline=True
        )
    finally:
        imports.import_process = real_process
    return batch.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--securities", type=int, default=500)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from portfolios import services
        from portfolios.imports.readers import read_table
        from portfolios.imports.validate import import_validate
        from portfolios.models import ImportBatch, TaxLot
        from portfolios.services.imports import import_process

        # No drift scan is requested after the import: nothing here would run it.
        services._holdings_changed_hooks.clear()

        account_ids, security_ids = generate_firm(args.accounts, args.securities)
        lots = generate_lots(args.rows, args.accounts, args.securities)
        data = lots_csv(lots)

        baseline = raw_copy(lots, account_ids, security_ids)

        started = time.perf_counter()
        frame = read_table(data=data, file_name="bench-lots.csv")
        read = time.perf_counter() - started
        started = time.perf_counter()
        validated = import_validate(kind="lots", frame=frame)
        validate = time.perf_counter() - started
        assert not validated.errors, validated.errors[:5]
        del frame, validated

        batch_id = submit(data)
        started = time.perf_counter()
        import_process(batch_id=batch_id)
        total = time.perf_counter() - started
        batch = ImportBatch.objects.get(pk=batch_id)
        assert batch.status == "succeeded", (batch.error, batch.errors[:5], batch.error_detail)
        written = TaxLot.objects.filter(import_batch_id=batch_id).count()
        assert written == args.rows, written
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    figures = {
        "bench": "import",
        "database": connection.vendor,
        "rows": args.rows,
        "file_mb": round(len(data) / 2**20, 1),
        "raw_copy_s": round(baseline, 2),
        "read_s": round(read, 2),
        "validate_s": round(validate, 2),
        "write_s": round(max(total - read - validate, 0), 2),
        "import_s": round(total, 2),
        "ratio_to_copy": round(total / baseline, 2),
        "rows_per_s": round(args.rows / total),
        "target_s": TARGET_SECONDS,
        "target_ratio": TARGET_RATIO,
        "meets_target": total < TARGET_SECONDS and total / baseline <= TARGET_RATIO,
    }
    print(f"{'measure':<40}{'value':>14}")
    print(f"{'database':<40}{figures['database']:>14}")
    print(f"{'lots (rows)':<40}{args.rows:>14,}")
    print(f"{'CSV size (MB)':<40}{figures['file_mb']:>14}")
    print(f"{'raw COPY, ids resolved (s)':<40}{figures['raw_copy_s']:>14}")
    print(f"{'  read_table (s)':<40}{figures['read_s']:>14}")
    print(f"{'  import_validate (s)':<40}{figures['validate_s']:>14}")
    print(f"{'  write + bookkeeping (s, the rest)':<40}{figures['write_s']:>14}")
    print(f"{'import_process end to end (s)':<40}{figures['import_s']:>14}")
    print(f"{'ratio to raw COPY (x, target <= 3)':<40}{figures['ratio_to_copy']:>14}")
    print(f"{'rows / s':<40}{figures['rows_per_s']:>14,}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
