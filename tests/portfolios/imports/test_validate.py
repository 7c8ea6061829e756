"""Validating import files of every kind against the database: resolved ids for good files,
and for bad ones every error with its line, column and a message a person understands."""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from portfolios.demo import demo_seed
from portfolios.imports.readers import read_table
from portfolios.imports.validate import ERROR_CAP, import_validate
from portfolios.models import Account, ModelPortfolio, Security
from rebalance_app.exceptions import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db

TODAY = date(2026, 11, 25)  # a Wednesday; Thanksgiving (no session) is the next day
SESSION = "2026-11-24"
SATURDAY = "2026-11-21"
FUTURE = "2026-12-01"


def _validate(kind: str, text: str, file_name: str = "file.csv", today: date = TODAY):
    frame = read_table(data=text.encode(), file_name=file_name)
    return import_validate(kind=kind, frame=frame, today=today)


def _error(line: int, column: str, message: str) -> dict:
    return {"line": line, "column": column, "message": message}


@pytest.fixture
def book(account_a, account_b, security):
    """AAPL (with a price), KO and MSFT; account_a (team A) and account_b (team B)."""
    return {
        "AAPL": security,
        "KO": factories.SecurityFactory(ticker="KO", name="The Coca-Cola Company"),
        "MSFT": factories.SecurityFactory(ticker="MSFT", name="Microsoft Corporation"),
        "a": account_a,
        "b": account_b,
    }


# ---------------------------------------------------------------------------
# Header, file-wide rules and the error report
# ---------------------------------------------------------------------------


def test_import_validate_names_each_missing_required_column_on_line_1(book):
    result = _validate("prices", "ticker,date\nAAPL,2026-11-24\n")

    assert result.errors == [_error(1, "price", "missing required column 'price'")]
    assert result.rows == 1


def test_import_validate_reports_an_unknown_column_and_still_checks_the_rows(book):
    result = _validate("prices", f"ticker,date,price,prise\nAAPL,{SESSION},abc,1\n")

    assert result.errors == [
        _error(
            1,
            "prise",
            "unknown column 'prise' (the prices columns are: ticker, date, price, source, "
            "avg_daily_volume)",
        ),
        _error(2, "price", "not a number: 'abc'"),
    ]


def test_import_validate_refuses_an_unknown_kind():
    with pytest.raises(ValidationFailed) as info:
        import_validate(kind="holdings", frame=pd.DataFrame({"line": [2]}))

    assert info.value.message == (
        "Unknown import kind 'holdings': use one of securities, prices, models, accounts, lots, "
        "transactions, cash_flows, restrictions, custodian_positions."
    )


def test_import_validate_accepts_a_file_with_a_bom_and_mixed_case_headers(book):
    data = f"\ufeffTicker,Date,Price\r\nAAPL,{SESSION},151.5\r\n".encode()
    frame = read_table(data=data, file_name="prices.csv")

    result = import_validate(kind="prices", frame=frame, today=TODAY)

    assert result.errors == []
    assert result.frame["security_id"].tolist() == [book["AAPL"].pk]


def test_import_validate_reports_all_errors_of_a_file_in_line_order(book):
    number = book["a"].account_number
    text = (
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        f"{number},AAPL,10,100,2024-01-02\n"
        f"{number},ZZZZ,10,100,2024-01-02\n"
        f"{number},KO,-5,100,2024-01-02\n"
        f"{number},MSFT,10,100,{FUTURE}\n"
    )

    result = _validate("lots", text)

    assert result.errors == [
        _error(3, "ticker", "unknown ticker ZZZZ"),
        _error(4, "quantity", "quantity must be greater than 0 (got -5)"),
        _error(5, "acquired_on", f"date {FUTURE} is in the future"),
    ]
    assert result.error_count == 3


def test_import_validate_caps_the_list_and_says_how_many_more_errors_there_are(book):
    number = book["a"].account_number
    rows = "".join(f"{number},AAPL,-{i + 1},100,2024-01-02\n" for i in range(ERROR_CAP + 500))
    text = "account_number,ticker,quantity,cost_basis,acquired_on\n" + rows

    result = _validate("lots", text)

    assert len(result.errors) == ERROR_CAP + 1
    assert result.errors[0] == _error(2, "quantity", "quantity must be greater than 0 (got -1)")
    assert result.errors[-1] == _error(ERROR_CAP + 2, "", "... and 500 more errors")
    assert result.error_count == ERROR_CAP + 500


def test_import_validate_reports_a_blank_required_value_and_not_a_number_once_each(book):
    text = f"ticker,date,price\nAAPL,{SESSION},\nKO,{SESSION},1.2.3\n,{SESSION},5\n"

    result = _validate("prices", text)

    assert result.errors == [
        _error(2, "price", "price is required"),
        _error(3, "price", "not a number: '1.2.3'"),
        _error(4, "ticker", "ticker is required"),
    ]


def test_import_validate_accepts_an_xlsx_with_numbers_and_dates_in_cells(book):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["ticker", "date", "price", "avg_daily_volume"])
    sheet.append(["AAPL", datetime(2026, 11, 24), 151.25, 1_000_000])  # noqa: DTZ001 (Excel: naive)
    buffer = io.BytesIO()
    workbook.save(buffer)
    frame = read_table(data=buffer.getvalue(), file_name="prices.xlsx")

    result = import_validate(kind="prices", frame=frame, today=TODAY)

    assert result.errors == []
    row = result.frame.iloc[0]
    assert (row["security_id"], row["price"], row["avg_daily_volume"]) == (
        book["AAPL"].pk,
        151.25,
        1_000_000,
    )
    assert row["date"] == pd.Timestamp("2026-11-24")


# ---------------------------------------------------------------------------
# securities
# ---------------------------------------------------------------------------


def test_securities_file_validates_with_existing_ids_and_typed_columns(book):
    text = (
        "ticker,name,asset_class,security_type,sector,cusip,isin,esg_score,esg_tags,round_lot\n"
        "aapl,Apple Inc.,Equity,equity,Information Technology,037833100,US0378331005,71.5,"
        "tech; large_cap,1\n"
        "VTI,=Vanguard Total Stock Market ETF,equity,etf,Multi-sector,,,,,100\n"
    )

    result = _validate("securities", text)

    assert result.errors == []
    frame = result.frame
    assert frame["ticker"].tolist() == ["AAPL", "VTI"]
    assert frame["security_id"].tolist() == [book["AAPL"].pk, pd.NA]
    assert frame["asset_class"].tolist() == ["equity", "equity"]
    assert frame["esg_tags"].tolist() == [["tech", "large_cap"], []]
    assert frame["round_lot"].tolist() == [1, 100]
    assert frame["name"].tolist()[1] == "=Vanguard Total Stock Market ETF"
    assert frame.attrs["columns"] == [
        "ticker", "name", "asset_class", "security_type", "sector", "cusip", "isin",
        "esg_score", "esg_tags", "round_lot",
    ]  # fmt: skip


def test_securities_file_with_bad_values_reports_each(book):
    text = (
        "ticker,name,asset_class,security_type,esg_score,round_lot,cusip\n"
        "AAA,A,stock,equity,101,1,\n"
        "BBB,,equity,etf,50,0.5,12345\n"
        "CASH,Cash,cash,cash,,,\n"
        "AAA,Again,equity,equity,,,\n"
    )

    result = _validate("securities", text)

    assert result.errors == [
        _error(
            2,
            "asset_class",
            "asset_class must be one of equity, fixed_income, cash, alternative, multi_asset "
            "(got 'stock')",
        ),
        _error(2, "esg_score", "esg_score must be between 0 and 100 (got 101)"),
        _error(3, "name", "name is required"),
        _error(3, "round_lot", "not a whole number: '0.5'"),
        _error(3, "cusip", "cusip must be 9 letters or digits (got 12345)"),
        _error(4, "ticker", "CASH is reserved for the cash row of models and position files"),
        _error(5, "", "duplicate of line 2"),
    ]


# ---------------------------------------------------------------------------
# prices
# ---------------------------------------------------------------------------


def test_prices_file_validates_with_the_security_ids(book):
    text = f"ticker,date,price,source,avg_daily_volume\nAAPL,{SESSION},151.5,vendor,1000\n"
    text += f"KO,{SESSION},60,,\n"

    result = _validate("prices", text)

    assert result.errors == []
    assert result.frame["security_id"].tolist() == [book["AAPL"].pk, book["KO"].pk]
    assert result.frame["price"].tolist() == [151.5, 60.0]
    assert result.frame["avg_daily_volume"].tolist() == [1000, pd.NA]


def test_prices_on_a_weekend_a_holiday_or_in_the_future_are_refused(book):
    text = (
        "ticker,date,price\n"
        f"AAPL,{SATURDAY},150\n"
        "AAPL,2025-11-27,150\n"
        f"AAPL,{FUTURE},150\n"
        "AAPL,11/24/2026,150\n"
        "ZZZZ,2026-11-23,0\n"
        f"KO,{SESSION},1\n"
        f"ko,{SESSION},2\n"
    )

    result = _validate("prices", text)

    assert result.errors == [
        _error(2, "date", f"date {SATURDAY} is not an NYSE trading day"),
        _error(3, "date", "date 2025-11-27 is not an NYSE trading day"),
        _error(4, "date", f"date {FUTURE} is in the future"),
        _error(5, "date", "not a date: '11/24/2026' (use YYYY-MM-DD)"),
        _error(6, "ticker", "unknown ticker ZZZZ"),
        _error(6, "price", "price must be greater than 0 (got 0)"),
        _error(8, "", "duplicate of line 7"),
    ]


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


def test_models_file_validates_a_new_model_and_a_new_version_of_an_existing_one(book):
    existing = factories.ModelPortfolioFactory(name="Core Equity")
    text = (
        "model,ticker,weight,abs_band,rel_band,min_weight,max_weight\n"
        "core equity,AAPL,0.6,0.02,0.25,0.5,0.7\n"
        "core equity,KO,0.38,0.02,,,\n"
        "Core Equity,CASH,0.02,,,,\n"
        "Income,MSFT,1,,,,\n"
    )

    result = _validate("models", text)

    assert result.errors == []
    frame = result.frame
    assert frame["model_id"].tolist() == [existing.pk, existing.pk, existing.pk, pd.NA]
    assert frame["security_id"].tolist() == [book["AAPL"].pk, book["KO"].pk, pd.NA, book["MSFT"].pk]


def test_models_whose_weights_do_not_sum_to_100_percent_are_refused(book):
    text = (
        "model,ticker,weight\n"
        "Core Equity,AAPL,0.5\n"
        "Core Equity,KO,0.47\n"
        "Core Equity,CASH,0.02\n"
        "Income,MSFT,0.9999\n"
    )

    result = _validate("models", text)

    assert result.errors == [
        _error(2, "weight", "model 'Core Equity' weights sum to 99.00%, not 100%")
    ]


def test_models_file_with_bad_rows_reports_each(book):
    text = (
        "model,ticker,weight,abs_band,min_weight,max_weight\n"
        "M,AAPL,0.5,,0.6,0.4\n"
        "M,AAPL,0.3,,,\n"
        "M,CASH,0.2,0.01,,\n"
        "N,ZZZZ,1.5,,,\n"
    )

    result = _validate("models", text)

    assert result.errors == [
        _error(2, "min_weight", "min_weight 0.6 is above max_weight 0.4"),
        _error(3, "", "duplicate of line 2"),
        _error(4, "abs_band", "the CASH row takes a weight only (found abs_band 0.01)"),
        _error(5, "ticker", "unknown ticker ZZZZ"),
        _error(5, "weight", "weight must be between 0 and 1 (got 1.5)"),
    ]


# ---------------------------------------------------------------------------
# accounts
# ---------------------------------------------------------------------------


def test_accounts_file_validates_updates_and_new_accounts_and_households(book, team_a):
    model = factories.ModelPortfolioFactory(name="Core Equity")
    a = book["a"]
    text = (
        "household,custodian,account_number,name,registration_type,taxable,model,team,"
        "cash_balance,st_tax_rate,allow_fractional\n"
        f"alpha family,schwab,{a.account_number},Alpha Taxable,Individual,yes,Core Equity,"
        "team a,2500.50,0.37,no\n"
        "Nguyen Family,Fidelity,Z99-000001,Nguyen Roth,roth,false,,Team A,0,,1\n"
    )

    result = _validate("accounts", text)

    assert result.errors == []
    frame = result.frame
    assert frame["account_id"].tolist() == [a.pk, pd.NA]
    assert frame["household_id"].tolist() == [a.household_id, pd.NA]
    assert frame["model_id"].tolist() == [model.pk, pd.NA]
    assert frame["team_id"].tolist() == [team_a.pk, team_a.pk]
    assert frame["taxable"].tolist() == [True, False]
    assert frame["allow_fractional"].tolist() == [False, True]
    assert frame["cash_balance"].tolist() == [2500.5, 0.0]


def test_accounts_file_with_bad_rows_reports_each(book, team_a, team_b):
    text = (
        "household,custodian,account_number,name,registration_type,taxable,model,team\n"
        "New Family,Schwab,N-1,New IRA,ira,true,Nope,Team A\n"
        "New Family,Schwab,N-2,New Joint,joint,maybe,,Team B\n"
        "Other,Schwab,N-3,Other,joint,true,,Ops\n"
        "Other,schwab,N-3,Other,joint,true,,Team Z\n"
    )

    result = _validate("accounts", text)

    assert result.errors == [
        _error(2, "taxable", "a ira account is tax-deferred: taxable must be false"),
        _error(2, "model", "unknown model 'Nope'"),
        _error(3, "taxable", "not true or false: 'maybe' (use true/false, yes/no or 1/0)"),
        _error(
            3, "team", "household 'New Family' has team 'Team A' on line 2: one team per household"
        ),
        _error(4, "team", "'Ops' is a role, not a PM team"),
        _error(5, "team", "unknown team 'Team Z'"),
        _error(5, "", "duplicate of line 4"),
    ]


# ---------------------------------------------------------------------------
# lots
# ---------------------------------------------------------------------------


def test_lots_file_validates_with_account_and_security_ids(book):
    a, b = book["a"], book["b"]
    text = (
        "account_number,custodian,ticker,quantity,cost_basis,acquired_on\n"
        f"{a.account_number},,AAPL,10,150.25,2024-01-02\n"
        f"{b.account_number},SCHWAB,ko,2.5,0,{TODAY.isoformat()}\n"
    )

    result = _validate("lots", text)

    assert result.errors == []
    frame = result.frame
    assert frame["account_id"].tolist() == [a.pk, b.pk]
    assert frame["security_id"].tolist() == [book["AAPL"].pk, book["KO"].pk]
    assert frame["quantity"].tolist() == [10.0, 2.5]
    assert frame["acquired_on"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp(TODAY)]
    assert frame["line"].tolist() == [2, 3]


def test_lots_file_with_each_kind_of_bad_value_reports_each(book):
    a = book["a"]
    number = a.account_number
    text = (
        "account_number,custodian,ticker,quantity,cost_basis,acquired_on\n"
        f"{number},,AAPL,abc,100,2024-01-02\n"
        f"{number},,AAPL,-5,-1,2024-01-02\n"
        f"NOPE-1,,AAPL,1,1,2024-01-02\n"
        f"{number},Fidelity,AAPL,1,1,2024-01-02\n"
        f"{number},,ZZZZ,1,1,{FUTURE}\n"
        f"{number},,AAPL,1,1,2024-01-02\n"
        f"{number},schwab,AAPL,1.0,1,2024-01-02\n"
    )

    result = _validate("lots", text)

    assert result.errors == [
        _error(2, "quantity", "not a number: 'abc'"),
        _error(3, "quantity", "quantity must be greater than 0 (got -5)"),
        _error(3, "cost_basis", "cost_basis must not be negative (got -1)"),
        _error(4, "account_number", "unknown account NOPE-1"),
        _error(5, "account_number", f"unknown account {number} at Fidelity"),
        _error(6, "ticker", "unknown ticker ZZZZ"),
        _error(6, "acquired_on", f"date {FUTURE} is in the future"),
        _error(8, "", "duplicate of line 7"),
    ]


def test_lots_need_the_custodian_when_an_account_number_exists_at_two(book):
    factories.AccountFactory(custodian="Fidelity", account_number="SHARED-1")
    shared = factories.AccountFactory(custodian="Pershing", account_number="SHARED-1")
    text = (
        "account_number,custodian,ticker,quantity,cost_basis,acquired_on\n"
        "SHARED-1,,AAPL,1,1,2024-01-02\n"
        "SHARED-1,pershing,AAPL,1,1,2024-01-02\n"
    )

    result = _validate("lots", text)

    assert result.errors == [
        _error(
            2,
            "account_number",
            "account SHARED-1 exists at several custodians (Fidelity, Pershing): fill in the "
            "custodian column",
        )
    ]
    assert result.frame["account_id"].tolist()[1] == shared.pk


def test_lots_whose_required_column_is_missing_are_refused_on_line_1(book):
    result = _validate("lots", "account_number,ticker,quantity,acquired_on\nX,AAPL,1,2024-01-02\n")

    assert result.errors == [_error(1, "cost_basis", "missing required column 'cost_basis'")]


# ---------------------------------------------------------------------------
# transactions
# ---------------------------------------------------------------------------


def test_transactions_file_validates_and_reports_bad_rows(book):
    a = book["a"]
    text = (
        "account_number,ticker,trade_date,side,quantity,price,realized_st,realized_lt,"
        "wash_sale_disallowed\n"
        f"{a.account_number},AAPL,2026-11-02,BUY,10,150,,,\n"
        f"{a.account_number},KO,2026-11-03,sell,5,60,-12.5,0,12.5\n"
    )

    good = _validate("transactions", text)

    assert good.errors == []
    assert good.frame["side"].tolist() == ["buy", "sell"]
    assert good.frame["account_id"].tolist() == [a.pk, a.pk]
    assert good.frame["realized_st"].tolist()[1] == -12.5

    bad = _validate(
        "transactions",
        "account_number,ticker,trade_date,side,quantity,price\n"
        f"{a.account_number},AAPL,2026-11-02,hold,10,0\n"
        f"{a.account_number},AAPL,{FUTURE},buy,10,1\n",
    )

    assert bad.errors == [
        _error(2, "side", "side must be one of buy, sell (got 'hold')"),
        _error(2, "price", "price must be greater than 0 (got 0)"),
        _error(3, "trade_date", f"date {FUTURE} is in the future"),
    ]


# ---------------------------------------------------------------------------
# cash flows
# ---------------------------------------------------------------------------


def test_cash_flows_file_validates_and_keeps_formula_like_notes_as_text(book):
    a = book["a"]
    text = (
        "account_number,date,amount,kind,note\n"
        f'{a.account_number},2026-11-02,5000,deposit,=HYPERLINK("x")\n'
        f"{a.account_number},2026-11-03,-25.5,fee,+advisory fee\n"
        f"{a.account_number},2026-11-04,12,dividend,-\n"
        f"{a.account_number},2026-11-05,-100,withdrawal,@client\n"
    )

    result = _validate("cash_flows", text)

    assert result.errors == []
    assert result.frame["note"].tolist() == ['=HYPERLINK("x")', "+advisory fee", "-", "@client"]
    assert result.frame["amount"].tolist() == [5000.0, -25.5, 12.0, -100.0]
    assert result.frame["account_id"].tolist() == [a.pk] * 4


def test_cash_flows_with_a_zero_or_wrongly_signed_amount_are_refused(book):
    a = book["a"]
    text = (
        "account_number,date,amount,kind\n"
        f"{a.account_number},2026-11-02,0,deposit\n"
        f"{a.account_number},2026-11-02,-500,deposit\n"
        f"{a.account_number},2026-11-02,500,withdrawal\n"
        f"{a.account_number},2026-11-02,500,bonus\n"
    )

    result = _validate("cash_flows", text)

    assert result.errors == [
        _error(2, "amount", "amount must not be 0"),
        _error(3, "amount", "a deposit must be positive (got -500)"),
        _error(4, "amount", "a withdrawal must be negative (got 500)"),
        _error(
            5,
            "kind",
            "kind must be one of deposit, withdrawal, dividend, interest, fee (got 'bonus')",
        ),
    ]


# ---------------------------------------------------------------------------
# restrictions
# ---------------------------------------------------------------------------


def test_restrictions_file_validates_each_scope(book):
    a = book["a"]
    text = (
        "scope,household,account_number,custodian,ticker,sector,esg_tag,kind,reason,"
        "effective_from,effective_to\n"
        "firm,,,,AAPL,,,no_buy,@insider list,2026-01-01,\n"
        "household,ALPHA FAMILY,,,,Energy,,no_trade,Client request,,\n"
        f"account,,{a.account_number},Schwab,,,fossil_fuels,no_sell,-ESG screen,,2027-01-01\n"
    )

    result = _validate("restrictions", text)

    assert result.errors == []
    frame = result.frame
    assert frame["household_id"].tolist() == [pd.NA, a.household_id, pd.NA]
    assert frame["account_id"].tolist() == [pd.NA, pd.NA, a.pk]
    assert frame["security_id"].tolist() == [book["AAPL"].pk, pd.NA, pd.NA]
    assert frame["reason"].tolist() == ["@insider list", "Client request", "-ESG screen"]


def test_restrictions_file_with_bad_rows_reports_each(book):
    a = book["a"]
    text = (
        "scope,household,account_number,ticker,sector,kind,reason,effective_from,effective_to\n"
        "household,,,AAPL,,no_buy,r,,\n"
        f"firm,,{a.account_number},AAPL,,no_buy,r,,\n"
        "household,Nobody,,AAPL,Energy,no_buy,r,,\n"
        "firm,,,,,no_buy,r,2026-02-01,2026-01-01\n"
        "firm,,,AAPL,,no_buy,r,,\n"
        "firm,,,aapl,,no_buy,other reason,,\n"
    )

    result = _validate("restrictions", text)

    assert result.errors == [
        _error(2, "household", "household is required when scope is household"),
        _error(3, "account_number", "account_number must be empty when scope is firm"),
        _error(4, "household", "unknown household 'Nobody'"),
        _error(4, "", "give exactly one of ticker, sector or esg_tag (found 2)"),
        _error(5, "effective_to", "effective_to 2026-01-01 is before effective_from 2026-02-01"),
        _error(5, "", "give exactly one of ticker, sector or esg_tag (found none)"),
        _error(7, "", "duplicate of line 6"),
    ]


# ---------------------------------------------------------------------------
# custodian positions
# ---------------------------------------------------------------------------


def test_custodian_positions_file_validates_with_cash_rows(book):
    a, b = book["a"], book["b"]
    text = (
        "account_number,custodian,ticker,quantity,as_of\n"
        f"{a.account_number},Schwab,AAPL,10,{SESSION}\n"
        f"{a.account_number},Schwab,CASH,1000.00,{SESSION}\n"
        f"{b.account_number},Schwab,AAPL,0,{SESSION}\n"
    )

    result = _validate("custodian_positions", text)

    assert result.errors == []
    assert result.frame["account_id"].tolist() == [a.pk, a.pk, b.pk]
    assert result.frame["security_id"].tolist() == [book["AAPL"].pk, pd.NA, book["AAPL"].pk]


def test_custodian_positions_with_two_dates_or_a_repeated_position_are_refused(book):
    a = book["a"]
    text = (
        "account_number,ticker,quantity,as_of\n"
        f"{a.account_number},AAPL,10,{SESSION}\n"
        f"{a.account_number},KO,-1,2026-11-23\n"
        f"{a.account_number},AAPL,11,{SESSION}\n"
    )

    result = _validate("custodian_positions", text)

    assert result.errors == [
        _error(3, "quantity", "quantity must not be negative (got -1)"),
        _error(
            3,
            "as_of",
            f"as_of 2026-11-23 differs from {SESSION} on line 2: a position file has one as_of "
            "date",
        ),
        _error(4, "", "duplicate of line 2"),
    ]


def test_values_with_a_decimal_of_the_database_limits_are_refused(book):
    a = book["a"]
    text = (
        "account_number,ticker,quantity,cost_basis,acquired_on\n"
        f"{a.account_number},AAPL,1e15,1,2024-01-02\n"
        f"{a.account_number},AAPL,inf,1,1899-12-31\n"
    )

    result = _validate("lots", text)

    assert result.errors == [
        _error(2, "quantity", "quantity is too large (got 1e15)"),
        _error(3, "quantity", "not a number: 'inf'"),
        _error(3, "acquired_on", "date 1899-12-31 is out of range (1900-01-01 to 2199-12-31)"),
    ]


def test_accounts_money_columns_take_decimals(book):
    result = _validate(
        "accounts",
        "household,custodian,account_number,name,registration_type,taxable,cash_reserve\n"
        "H,Schwab,X-1,X,joint,1,-1\n",
    )

    assert result.errors == [
        _error(2, "cash_reserve", "cash_reserve must not be negative (got -1)")
    ]
    assert Decimal(str(result.frame["cash_reserve"].iloc[0])) == Decimal("-1")


# ---------------------------------------------------------------------------
# The documented examples (docs/examples/) against the demo firm of seed_demo
# ---------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
EXAMPLE_KINDS = [
    "securities", "prices", "models", "accounts", "lots", "transactions", "cash_flows",
    "restrictions", "custodian_positions",
]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
def test_every_documented_example_validates_against_the_demo_firm():
    demo_seed(password=None, history_days=300)
    files = [EXAMPLES / f"{kind}.csv" for kind in EXAMPLE_KINDS] + [EXAMPLES / "prices.xlsx"]

    results = {
        path.name: import_validate(
            kind=path.stem, frame=read_table(data=path.read_bytes(), file_name=path.name)
        )
        for path in files
    }

    assert {name: r.errors for name, r in results.items()} == {path.name: [] for path in files}
    lots = results["lots.csv"].frame
    okafor = Account.objects.get(custodian="Schwab", account_number="8841-2207")
    ramirez = Account.objects.get(custodian="Pershing", account_number="RPK-104477")
    lindqvist = Account.objects.get(custodian="Fidelity", account_number="Z31-558204")
    assert lots["account_id"].tolist() == [
        okafor.pk,
        okafor.pk,
        lindqvist.pk,
        ramirez.pk,
        ramirez.pk,
    ]
    tickers = Security.objects.in_bulk(field_name="ticker")
    assert lots["security_id"].tolist() == [
        tickers[t].pk for t in ["AAPL", "MSFT", "QUAL", "JNJ", "KO"]
    ]
    models = results["models.csv"].frame
    factor_tilt = ModelPortfolio.objects.get(name="Factor Tilt")
    assert set(models["model_id"].dropna()) == {factor_tilt.pk}
    accounts = results["accounts.csv"].frame
    assert accounts["account_id"].tolist() == [pd.NA, pd.NA, okafor.pk]


@pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")
def test_the_documented_file_with_errors_reports_the_six_errors_of_the_walkthrough():
    demo_seed(password=None, history_days=300)
    path = EXAMPLES / "lots-with-errors.csv"

    result = import_validate(
        kind="lots", frame=read_table(data=path.read_bytes(), file_name=path.name)
    )

    assert result.errors == [
        _error(3, "quantity", "quantity must be greater than 0 (got -5)"),
        _error(4, "ticker", "unknown ticker ZZZZ"),
        _error(5, "account_number", "unknown account 9999-0000 at Schwab"),
        _error(6, "quantity", "not a number: 'ten'"),
        _error(7, "acquired_on", "date 2099-01-02 is in the future"),
        _error(8, "", "duplicate of line 2"),
    ]
