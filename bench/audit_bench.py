"""Audit trail throughput: chained, serialised appends and full-chain verification.

Every state change in the application appends one audit event, so the append path is on every
write. Measured against a baseline in the same run: plain single-row INSERTs of the same shape
without the lock, head read and hash (the floor for one-row-per-transaction writes).

Runs in a throw-away test database (never the configured one: the trail is append-only).
Usage: DATABASE_URL=postgres://... python bench/audit_bench.py [--events N]
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

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    n = args.events

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from compliance.models import AuditEvent
        from compliance.selectors import audit_chain_verify
        from compliance.services.audit import audit_record

        # baseline: one plain INSERT per transaction, no lock, no hash
        started = time.perf_counter()
        for i in range(n):
            with transaction.atomic():
                AuditEvent.objects.create(
                    seq=10_000_000 + i,
                    created_at=timezone.now(),
                    actor_label="bench",
                    action="bench.baseline",
                    object_type="bench",
                    object_id=str(i),
                    after={"i": i},
                    prev_hash="0" * 64,
                    hash=f"{i:064x}",
                )
        baseline = time.perf_counter() - started
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")
            cursor.execute("DELETE FROM compliance_auditevent")
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")

        started = time.perf_counter()
        for i in range(n):
            audit_record(
                actor="system:bench",
                action="bench.append",
                object_type="bench",
                object_id=i,
                after={"i": i},
            )
        chained = time.perf_counter() - started

        started = time.perf_counter()
        result = audit_chain_verify()
        verify = time.perf_counter() - started
        assert result.ok, result.message
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    figures = {
        "bench": "audit",
        "database": connection.vendor,
        "events": n,
        "baseline_insert_per_s": round(n / baseline),
        "chained_append_per_s": round(n / chained),
        "append_cost_ratio": round(chained / baseline, 2),
        "verify_events_per_s": round(n / verify),
    }
    print(f"{'measure':<34}{'value':>14}")
    print(f"{'database':<34}{figures['database']:>14}")
    print(f"{'events':<34}{n:>14}")
    print(f"{'plain INSERT / s (baseline)':<34}{figures['baseline_insert_per_s']:>14}")
    print(f"{'chained audit append / s':<34}{figures['chained_append_per_s']:>14}")
    print(f"{'append cost vs baseline (x)':<34}{figures['append_cost_ratio']:>14}")
    print(f"{'verify, events / s':<34}{figures['verify_events_per_s']:>14}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
