"""Tests of the problem arrays: validation, scaling to fractions of value, modes as bounds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from portfolios.optimizer import AccountProblem, Lots, Mode, ProblemInvalid, Securities
from portfolios.optimizer.problem import BUY_CAP, problem_arrays, problem_value

ROOT = Path(__file__).resolve().parents[3]


def two_securities(**kwargs: object) -> AccountProblem:
    """AAA at $100 (two lots: basis $50 and $150) and BBB at $50, $1,000 cash."""
    securities = Securities(
        price=np.array([100.0, 50.0]),
        target=np.array([0.5, 0.4]),
        band_lower=np.array([0.05, 0.05]),
        band_upper=np.array([0.05, 0.05]),
        min_weight=np.zeros(2),
        max_weight=np.ones(2),
        sector=np.array([0, 0]),
        no_buy=np.zeros(2, dtype=bool),
        no_sell=np.zeros(2, dtype=bool),
        half_spread=np.array([0.05, 0.0]),
        symbols=("AAA", "BBB"),
    )
    lots = Lots(
        security=np.array([0, 0, 1]),
        quantity=np.array([30.0, 30.0, 60.0]),
        basis=np.array([50.0, 150.0, 50.0]),
        long_term=np.array([True, False, True]),
        no_sell=np.zeros(3, dtype=bool),
    )
    base = AccountProblem(securities=securities, lots=lots, cash=1000.0)
    return replace(base, **kwargs)


def test_optimizer_package_does_not_import_django() -> None:
    code = "import portfolios.optimizer, sys; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)  # noqa: S603


def test_problem_value_is_cash_plus_lots_at_price() -> None:
    assert problem_value(two_securities()) == 1000.0 + 60 * 100.0 + 60 * 50.0


def test_arrays_scale_holdings_costs_and_tax_to_fractions_of_value() -> None:
    arrays = problem_arrays(
        two_securities(taxable=True, tax_rate_short=0.4, tax_rate_long=0.2, commission_rate=0.001)
    )
    assert arrays.value == 10_000.0
    np.testing.assert_allclose(arrays.w0, [0.6, 0.3])
    np.testing.assert_allclose(arrays.lot_cap, [0.3, 0.3, 0.3])
    np.testing.assert_allclose(arrays.cost_sec, [0.001 + 0.05 / 100, 0.001])
    # Gain fraction 1 - basis / price, times the holding-period rate.
    np.testing.assert_allclose(arrays.tax_lot, [0.5 * 0.2, -0.5 * 0.4, 0.0])
    assert arrays.cash0 == pytest.approx(0.1)


def test_non_taxable_account_has_no_tax_term() -> None:
    arrays = problem_arrays(two_securities(tax_rate_short=0.4, tax_rate_long=0.2))
    np.testing.assert_array_equal(arrays.tax_lot, np.zeros(3))


def test_restrictions_and_wash_sale_blocks_become_zero_caps() -> None:
    base = two_securities()
    securities = replace(base.securities, no_buy=np.array([True, False]))
    lots = replace(base.lots, no_sell=np.array([False, False, True]))
    arrays = problem_arrays(
        replace(
            base,
            securities=securities,
            lots=lots,
            wash_buy_blocked=np.array([False, True]),
            wash_sell_blocked=np.array([True, True, False]),
        )
    )
    np.testing.assert_array_equal(arrays.buy_cap, [0.0, 0.0])
    # The wash-sale block applies to the loss lot (basis 150) only.
    np.testing.assert_allclose(arrays.lot_cap, [0.3, 0.0, 0.0])


def test_cash_invest_mode_forbids_sells_and_cash_raise_adds_the_amount() -> None:
    invest = problem_arrays(two_securities(mode=Mode.CASH_INVEST))
    np.testing.assert_array_equal(invest.lot_cap, np.zeros(3))
    np.testing.assert_array_equal(invest.buy_cap, [BUY_CAP, BUY_CAP])
    raise_ = problem_arrays(two_securities(mode=Mode.CASH_RAISE, cash_amount=2000.0, reserve=500))
    assert raise_.cash_min == pytest.approx(0.25)


def test_tolerance_mode_trades_only_positions_outside_their_band() -> None:
    arrays = problem_arrays(two_securities(mode=Mode.TOLERANCE))
    # AAA is at 60% against 50% +- 5% (outside); BBB at 30% against 40% +- 5% (outside too).
    np.testing.assert_allclose(arrays.w_min, [0.45, 0.35])
    inside = two_securities(mode=Mode.TOLERANCE)
    inside = replace(inside, securities=replace(inside.securities, target=np.array([0.6, 0.3])))
    arrays = problem_arrays(inside)
    np.testing.assert_array_equal(arrays.buy_cap, [0.0, 0.0])
    np.testing.assert_array_equal(arrays.lot_cap, np.zeros(3))


def test_shape_key_ignores_values_but_not_the_lot_map() -> None:
    one = problem_arrays(two_securities())
    other = problem_arrays(two_securities(cash=5.0))
    assert one.shape_key(Mode.FULL) == other.shape_key(Mode.FULL)
    moved = two_securities()
    moved = replace(moved, lots=replace(moved.lots, security=np.array([0, 1, 1])))
    assert problem_arrays(moved).shape_key(Mode.FULL) != one.shape_key(Mode.FULL)


def test_bad_shapes_and_prices_are_rejected_with_a_message() -> None:
    base = two_securities()
    with pytest.raises(ProblemInvalid, match=r"^Every price must be positive; 1 are not\.$"):
        problem_arrays(replace(base, securities=replace(base.securities, price=np.array([1.0, 0]))))
    with pytest.raises(ProblemInvalid) as info:
        problem_arrays(replace(base, specific_var=np.ones(3)))
    assert info.value.message == "specific_var has shape (3,), expected (2,)."
    with pytest.raises(ProblemInvalid) as info:
        problem_arrays(replace(base, mode=Mode.TLH))
    assert info.value.message == "Tax-loss harvesting applies to taxable accounts only."


def test_an_esg_sell_out_is_target_and_maximum_zero_in_the_modes_that_sell() -> None:
    base = two_securities(taxable=True, substitutes={1: 0}, reserve=0.0)
    flagged = replace(base, securities=replace(base.securities, sell_out=np.array([False, True])))
    for mode in (Mode.FULL, Mode.TOLERANCE, Mode.CASH_RAISE):
        arrays = problem_arrays(replace(flagged, mode=mode, cash_amount=100.0))
        assert (arrays.target[1], arrays.w_min[1], arrays.w_max[1]) == (0.0, 0.0, 0.0)
        assert arrays.buy_cap[1] == 0.0
        assert arrays.lot_cap[2] == pytest.approx(0.3)
        assert arrays.sell_out is not None
        assert arrays.sell_out.tolist() == [False, True]
    invest = problem_arrays(replace(flagged, mode=Mode.CASH_INVEST))
    assert (invest.target[1], invest.w_max[1], invest.buy_cap[1]) == (0.0, 1.0, 0.0)
    assert invest.sell_out is not None
    assert not invest.sell_out.any()
    harvest = problem_arrays(replace(flagged, mode=Mode.TLH))
    assert harvest.buy_cap[1] == 0.0
    assert harvest.sell_out is not None
    assert not harvest.sell_out.any()


def test_new_security_fields_are_checked() -> None:
    base = two_securities()
    with pytest.raises(ProblemInvalid) as info:
        problem_arrays(
            replace(base, securities=replace(base.securities, sell_out=np.ones(3, bool)))
        )
    assert info.value.message == "sell_out has shape (3,), expected (2,)."
    with pytest.raises(ProblemInvalid) as info:
        problem_arrays(
            replace(base, securities=replace(base.securities, round_lot=np.array([100.0, -1])))
        )
    assert info.value.message == "Every round lot must be positive; 1 are not."


def test_shape_key_includes_the_sector_map() -> None:
    base = two_securities(sector_max=np.array([0.8, 0.8]))
    moved = replace(base, securities=replace(base.securities, sector=np.array([0, 1])))
    assert problem_arrays(base).shape_key(Mode.FULL) != problem_arrays(moved).shape_key(Mode.FULL)
