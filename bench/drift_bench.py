"""Drift engine speed: the whole firm through ``drift_compute`` against a numpy lower bound.

Generates a firm (default 100,000 accounts x 50 rows = 5 million rows, one cash row per
account, grouped by account) with a fixed seed, then times, best of ``--repeat`` after a warm-up:

- the engine, ``portfolios.drift.drift_compute`` (inputs built once, outside the timing);
- a tight numpy lower bound over the same arrays: account boundaries, account totals, weights,
  drift and total drift with ``np.add.reduceat`` (and the same with ``np.bincount``; the faster
  of the two is the bound). It is the least work any implementation must do: no bands, no
  breach flags, no counts, no unscannable checks;
- a per-account pandas loop (a Python loop over accounts, pandas inside) on a subset of
  accounts, extrapolated linearly to the whole firm.

Pure maths: no database, no Django. DESIGN 12 target: engine / bound <= 3.
Usage: python bench/drift_bench.py [--accounts N] [--positions P] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portfolios.drift import DriftInputs, drift_compute

SEED = 20240604
LOOP_ACCOUNTS = 2_000


def firm_generate(n_accounts: int, positions: int, seed: int = SEED) -> DriftInputs:
    """A random firm: ``positions`` rows per account (the last one cash), grouped by account.

    A row is a model security (95%; held 99.5% of the time) or a held security outside the model
    (target 0, a small weight). Targets (cash included) sum to 1 per account; held weights are
    the targets scattered by about 8% (relative) and renormalised; account values range from
    $50k to $5M and prices from $5 to $500. Bands are absolute (2%, on 80% of rows) and/or
    relative (25%, on 50%). One account in a thousand has a stale price and one in a thousand
    a missing price, so the unscannable paths run too.
    """
    rng = np.random.default_rng(seed)
    n = n_accounts * positions
    shape = (n_accounts, positions)
    account = np.repeat(np.arange(n_accounts, dtype=np.int64), positions)
    is_cash = np.zeros(shape, dtype=bool)
    is_cash[:, -1] = True
    is_cash = is_cash.ravel()

    in_model = (rng.random(n) < 0.95) | is_cash
    held = ~in_model | (rng.random(n) < 0.995) | is_cash
    raw = np.where(in_model, rng.uniform(0.5, 1.5, n), 0.0).reshape(shape)
    target = (raw / raw.sum(axis=1, keepdims=True)).ravel()
    weight = np.where(in_model, target * rng.lognormal(0.0, 0.08, n), rng.uniform(0, 0.01, n))
    weight = np.where(held, weight, 0.0).reshape(shape)
    weight = (weight / weight.sum(axis=1, keepdims=True)).ravel()
    account_value = np.repeat(np.exp(rng.uniform(np.log(5e4), np.log(5e6), n_accounts)), positions)
    price = np.where(is_cash, 1.0, rng.uniform(5.0, 500.0, n))
    quantity = weight * account_value / price
    abs_band = np.where(rng.random(n) < 0.8, 0.02, np.nan)
    rel_band = np.where(rng.random(n) < 0.5, 0.25, np.nan)

    stale = np.zeros(n, dtype=bool)
    bad = rng.choice(n_accounts, size=max(n_accounts // 500, 2), replace=False)
    stale_acc, missing_acc = bad[: len(bad) // 2], bad[len(bad) // 2 :]
    stale[stale_acc * positions] = True
    quantity[stale_acc * positions] = 10.0
    price[missing_acc * positions] = np.nan
    quantity[missing_acc * positions] = 10.0

    return DriftInputs(
        account=account,
        quantity=quantity,
        price=price,
        stale=stale,
        target=target,
        abs_band=abs_band,
        rel_band=rel_band,
        in_model=in_model,
        is_cash=is_cash,
        n_accounts=n_accounts,
    )


def bound_reduceat(inputs: DriftInputs) -> np.ndarray:
    """Least work: boundaries, totals, weights, drift and total drift, via ``reduceat``.

    One array allocated, every later step in place: nothing is kept but the totals.
    """
    acc = inputs.account
    starts = np.flatnonzero(acc[1:] != acc[:-1])
    starts += 1
    starts = np.concatenate(([0], starts))
    counts = np.diff(starts, append=acc.shape[0])
    value = np.multiply(inputs.quantity, inputs.price)
    totals = np.add.reduceat(value, starts)
    value /= np.repeat(totals, counts)
    value -= inputs.target
    np.abs(value, out=value)
    return 0.5 * np.add.reduceat(value, starts)


def bound_bincount(inputs: DriftInputs) -> np.ndarray:
    """The same least work via ``bincount`` (no boundaries needed)."""
    acc = inputs.account
    value = np.multiply(inputs.quantity, inputs.price)
    totals = np.bincount(acc, weights=value, minlength=inputs.n_accounts)
    value /= totals[acc]
    value -= inputs.target
    np.abs(value, out=value)
    return 0.5 * np.bincount(acc, weights=value, minlength=inputs.n_accounts)


def pandas_loop(inputs: DriftInputs, n_accounts: int) -> int:
    """The naive way: one pandas frame per account, for the first ``n_accounts`` accounts."""
    rows = int(np.searchsorted(inputs.account, n_accounts))
    frame = pd.DataFrame(
        {
            name: getattr(inputs, name)[:rows]
            for name in (
                "account",
                "quantity",
                "price",
                "stale",
                "target",
                "abs_band",
                "rel_band",
                "in_model",
                "is_cash",
            )
        }
    )
    breached_accounts = 0
    for _, pos in frame.groupby("account", sort=True):
        held = pos["quantity"] > 0
        if (held & pos["price"].isna()).any() or (held & pos["stale"]).any():
            continue
        value = pos["quantity"] * pos["price"].fillna(0.0)
        total = value.sum()
        if total <= 0:
            continue
        drift = value / total - pos["target"]
        abs_drift = drift.abs()
        over_abs = abs_drift > pos["abs_band"].fillna(np.inf)
        rel = (abs_drift / pos["target"]).where(pos["target"] > 0, 0.0)
        over_rel = (pos["target"] > 0) & (rel > pos["rel_band"].fillna(np.inf))
        breaches = int((over_abs | over_rel).sum())
        _ = (
            0.5 * abs_drift.sum(),
            abs_drift[~pos["is_cash"]].max(),
            drift[pos["is_cash"]].sum(),
            int((held & ~pos["in_model"] & ~pos["is_cash"]).sum()),
            int((pos["in_model"] & ~held & ~pos["is_cash"]).sum()),
        )
        breached_accounts += breaches > 0
    return breached_accounts


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--positions", type=int, default=50, help="rows per account, cash incl.")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n_accounts, positions, repeat = args.accounts, args.positions, args.repeat
    if positions < 1 or n_accounts < 1 or repeat < 1:
        parser.error("--accounts, --positions and --repeat must be at least 1")

    started = time.perf_counter()
    inputs = firm_generate(n_accounts, positions)
    generate = time.perf_counter() - started
    rows = inputs.account.shape[0]

    # the engine and the bound must agree on the scannable accounts before any timing counts
    result = drift_compute(inputs)
    ok = result.scannable
    reference = bound_bincount(inputs)
    assert np.allclose(result.total_drift[ok], reference[ok], rtol=0, atol=1e-12)
    assert np.allclose(bound_reduceat(inputs)[ok], reference[ok], rtol=0, atol=1e-12)

    engine = best_of(lambda: drift_compute(inputs), repeat)
    bound_r = best_of(lambda: bound_reduceat(inputs), repeat)
    bound_b = best_of(lambda: bound_bincount(inputs), repeat)
    bound = min(bound_r, bound_b)

    loop_accounts = min(LOOP_ACCOUNTS, n_accounts)
    started = time.perf_counter()
    loop_breached = pandas_loop(inputs, loop_accounts)
    loop_subset = time.perf_counter() - started
    assert loop_breached == int(result.account_breached[:loop_accounts].sum())
    loop_full = loop_subset * n_accounts / loop_accounts

    figures = {
        "bench": "drift_engine",
        "accounts": n_accounts,
        "positions_per_account": positions,
        "rows": rows,
        "repeat": repeat,
        "generate_s": round(generate, 3),
        "engine_s": round(engine, 4),
        "bound_reduceat_s": round(bound_r, 4),
        "bound_bincount_s": round(bound_b, 4),
        "bound_s": round(bound, 4),
        "engine_over_bound": round(engine / bound, 2),
        "pandas_loop_accounts_timed": loop_accounts,
        "pandas_loop_s_extrapolated": round(loop_full, 2),
        "pandas_loop_over_engine": round(loop_full / engine, 1),
        "accounts_breached": int(result.account_breached.sum()),
        "accounts_unscannable": int((~ok).sum()),
    }
    label = 46
    print(f"{'measure':<{label}}{'value':>14}")
    print(f"{'rows (accounts x positions)':<{label}}{rows:>14,}")
    print(f"{'engine drift_compute, s (best of ' + str(repeat) + ')':<{label}}{engine:>14.4f}")
    print(f"{'lower bound, reduceat, s':<{label}}{bound_r:>14.4f}")
    print(f"{'lower bound, bincount, s':<{label}}{bound_b:>14.4f}")
    print(f"{'engine / bound (target <= 3)':<{label}}{engine / bound:>14.2f}")
    loop_label = f"pandas loop, s (extrapolated from {loop_accounts:,})"
    print(f"{loop_label:<{label}}{loop_full:>14.2f}")
    print(f"{'pandas loop / engine':<{label}}{loop_full / engine:>14.1f}")
    print(f"{'accounts breached':<{label}}{figures['accounts_breached']:>14,}")
    print(f"{'accounts unscannable':<{label}}{figures['accounts_unscannable']:>14,}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
