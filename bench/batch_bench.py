"""Batch optimization end to end: many accounts through Celery on PostgreSQL (load, solve, store).

In a throw-away test database: ``seed_demo`` plus ``--accounts`` generated accounts (default
10,000) and the risk model. Then:

1. the baseline: ``rebalance_run_execute`` of a sample of accounts one after another in this
   process (no Celery, no broker): the per-account cost of load, solve and store;
2. for each worker count (default 1 and 2): a Celery worker (prefork, ``--concurrency W``) is
   started on a queue of its own, one batch of every account is requested through the service
   (``rebalance_batch_request``: one task per account, a chord), and the wall time from the
   request to the batch's close is measured, with the time split into load, solve and store
   from the runs' own timings.

Target (DESIGN 12): 10,000 accounts in under 3 minutes on this 2-core machine, scaling
near-linearly with worker processes. Usage:
DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/batch_bench.py [--accounts N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebalance_app.settings_test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

ACTOR = "system:bench"
SAMPLE = 200
TARGET_S = 180


def seed(accounts: int) -> dict[str, int]:
    from portfolios.demo import demo_analyze, demo_scale, demo_seed
    from portfolios.models import Account, TaxLot

    demo_seed(password=None, history_days=400)
    demo_scale(accounts=accounts)
    demo_analyze()
    return {"accounts": Account.objects.count(), "lots": TaxLot.objects.count()}


def account_ids() -> list[int]:
    from portfolios.models import Account, AccountStatus

    return list(
        Account.objects.filter(status=AccountStatus.ACTIVE, model__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def baseline(ids: list[int]) -> dict[str, float]:
    """Sequential in-process runs: the per-account cost without Celery."""
    from portfolios.models import RebalanceRun
    from portfolios.services.rebalance import rebalance_run_execute, rebalance_run_request

    sample = ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE]
    runs = [
        rebalance_run_request(actor=ACTOR, account_id=pk, mode="full", enqueue=False)
        for pk in sample
    ]
    started = time.perf_counter()
    for run in runs:
        rebalance_run_execute(run_id=run.pk)
    elapsed = time.perf_counter() - started
    done = RebalanceRun.objects.filter(pk__in=[r.pk for r in runs])
    split = _split(done)
    return {
        "accounts": len(runs),
        "total_s": round(elapsed, 2),
        "ms_per_account": round(1000 * elapsed / len(runs), 2),
        **split,
    }


def _split(runs) -> dict[str, float]:
    timings = [r.timings_ms for r in runs.only("timings_ms")]
    out: dict[str, float] = {}
    for part in ("load", "solve", "store"):
        values = [t[part] for t in timings if part in t]
        out[f"{part}_ms_median"] = round(statistics.median(values), 2) if values else 0.0
        out[f"{part}_s_total"] = round(sum(values) / 1000, 1)
    statuses: dict[str, int] = {}
    for status in runs.values_list("status", flat=True):
        statuses[status] = statuses.get(status, 0) + 1
    out["statuses"] = statuses  # type: ignore[assignment]
    return out


def worker_start(concurrency: int, queue: str) -> subprocess.Popen[bytes]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "rebalance_app.settings_test",
        # Chord callbacks are sent by the worker to its default queue: make it this one.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
    }
    cmd = [
        str(ROOT / ".venv" / "bin" / "celery"),
        "-A",
        "rebalance_app",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)  # noqa: S603 - our own venv's celery


def batch_through_celery(ids: list[int], workers: int) -> dict[str, object]:
    from portfolios.models import RebalanceBatch
    from portfolios.services.rebalance import rebalance_batch_request
    from rebalance_app.celery import app

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    proc = worker_start(workers, queue)
    try:
        time.sleep(4)  # let the worker processes import Django and cvxpy
        started = time.perf_counter()
        batch = rebalance_batch_request(actor=ACTOR, mode="full", account_ids=ids)
        requested = time.perf_counter() - started
        while True:
            time.sleep(0.5)
            batch = RebalanceBatch.objects.get(pk=batch.pk)
            if batch.finished_at is not None:
                break
            if time.perf_counter() - started > 30 * 60:
                raise SystemExit("batch did not finish in 30 minutes")
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    split = _split(batch.runs.all())
    return {
        "workers": workers,
        "accounts": batch.runs_total,
        "request_s": round(requested, 2),
        "total_s": round(elapsed, 1),
        "accounts_per_s": round(batch.runs_total / elapsed, 1),
        **split,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This bench needs PostgreSQL: set DATABASE_URL=postgres://...")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        sys.exit("This bench needs Redis: set REDIS_URL=redis://...")

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        started = time.perf_counter()
        firm = seed(args.accounts)
        seed_s = time.perf_counter() - started
        ids = account_ids()
        base = baseline(ids)
        batches = [batch_through_celery(ids, w) for w in args.workers]
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(f"firm: {firm['accounts']:,} accounts, {firm['lots']:,} lots (seeded in {seed_s:.0f} s)")
    print(
        f"baseline (in process, no Celery, {base['accounts']} accounts): "
        f"{base['ms_per_account']} ms per account (load {base['load_ms_median']} / solve "
        f"{base['solve_ms_median']} / store {base['store_ms_median']} ms median)"
    )
    head = [
        "workers",
        "accounts",
        "total_s",
        "acc/s",
        "load_med",
        "solve_med",
        "store_med",
        "load_tot_s",
        "solve_tot_s",
        "store_tot_s",
        "vs_target",
    ]
    print("".join(f"{h:>12}" for h in head))
    for b in batches:
        row = [
            b["workers"],
            b["accounts"],
            b["total_s"],
            b["accounts_per_s"],
            b["load_ms_median"],
            b["solve_ms_median"],
            b["store_ms_median"],
            b["load_s_total"],
            b["solve_s_total"],
            b["store_s_total"],
            round(float(b["total_s"]) / TARGET_S, 2),
        ]  # type: ignore[arg-type]
        print("".join(f"{v:>12}" for v in row))
        print(f"{'':>12}statuses: {b['statuses']}")
    scaling = None
    if len(batches) >= 2:
        scaling = round(float(batches[0]["total_s"]) / float(batches[-1]["total_s"]), 2)  # type: ignore[arg-type]
        print(
            f"speed-up from {batches[0]['workers']} to {batches[-1]['workers']} workers: {scaling}x"
        )
    print(
        json.dumps(
            {
                "bench": "batch",
                "accounts": firm["accounts"],
                "lots": firm["lots"],
                "baseline": base,
                "batches": batches,
                "scaling": scaling,
                "target_s": TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main()
