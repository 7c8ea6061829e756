"""Browser journey of routing (DESIGN 9): ``ops`` routes an approved basket over FIX from
its page, watches the routing panel update itself (htmx) while the simulated broker fills
the blocks in two partial fills each, reads the allocation at the average price, then opens
an account and finds the new lot, the transaction and a fresh drift scan.

Runs with a real Celery worker and the simulated broker on 127.0.0.1; the routing task
re-runs compliance with the real engine.
"""

from __future__ import annotations

import os
import re
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest
from playwright.sync_api import Page, expect

from orders.models import BasketState, TradeBasket
from portfolios.models import DriftSnapshot
from tests.e2e.conftest import login
from tests.e2e.test_basket_approval import _role_permissions  # noqa: F401 - autouse
from tests.orders.routing_support import (  # noqa: F401 - fixtures
    account_a2,
    routable,
    sim_broker,
    xyz,
)
from tests.rebalance_app.conftest import celery_worker_app, live_worker  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.celery_worker]
FILL_TIMEOUT_MS = 60_000


@pytest.mark.usefixtures("live_worker")
def test_ops_routes_an_approved_basket_watches_it_fill_and_sees_the_new_lots(
    page: Page,
    live_server,
    console_errors,
    sim_broker,  # noqa: F811
    routable,  # noqa: F811
    account_a2,  # noqa: F811
    ops,
):
    sim_broker.prices.update({"XYZ": Decimal("101.25"), "AAPL": Decimal("150")})
    sim_broker.broker.partial_fill = 0.5
    sim_broker.broker.fill_delay = 0.5

    login(page, live_server, "ops")
    page.goto(f"{live_server.url}/baskets/{routable.pk}/")
    panel = page.locator("#basket-routing")
    expect(panel.get_by_role("heading", name=re.compile("Routing and fills"))).to_be_visible()
    expect(page.get_by_label("FIX 4.4 session")).to_be_checked()
    page.get_by_role("button", name="Route", exact=True).click()
    expect(page.locator(".messages")).to_contain_text(f"Basket #{routable.pk} queued for routing")

    # the panel polls until every block is filled
    expect(page.locator("#routing-basket-state")).to_have_text(
        "basket filled", timeout=FILL_TIMEOUT_MS
    )
    routable.refresh_from_db()
    assert routable.state == BasketState.FILLED
    xyz_block = page.locator('#blocks-table tbody.block[data-ticker="XYZ"]')
    expect(xyz_block.locator("tr.route")).to_have_attribute("data-state", "filled")
    expect(xyz_block.locator("tr.fill-row")).to_have_count(2)  # half, then the rest
    allocation = xyz_block.locator(f'table.allocations tr:has-text("{account_a2.account_number}")')
    expect(allocation.locator(".alloc-filled")).to_have_text("300")
    expect(allocation).to_contain_text("101.25")
    expect(page.get_by_role("button", name="Route", exact=True)).to_have_count(0)

    # the firm's executions
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Executions").click()
    expect(page.locator("#executions-table tbody tr")).to_have_count(4)

    # the account: the new lot at the average price and a fresh drift scan
    page.goto(f"{live_server.url}/accounts/{account_a2.pk}/")
    lots = page.locator("#lots")
    expect(lots).to_contain_text("XYZ")
    expect(lots).to_contain_text("101.25")
    expect(page.locator("#transactions")).to_contain_text("XYZ")
    deadline = time.monotonic() + 30
    while not DriftSnapshot.objects.filter(account=account_a2).exists():
        assert time.monotonic() < deadline, "no drift scan after the fill"
        time.sleep(0.3)
    page.reload()
    expect(page.locator("#drift-snapshot")).to_contain_text("Latest scan")
    assert TradeBasket.objects.get(pk=routable.pk).state == BasketState.FILLED
    assert console_errors == []


@pytest.mark.usefixtures("live_worker")
def test_ops_routes_to_a_custodian_trade_file_marks_it_sent_and_loads_confirmations(
    page: Page,
    live_server,
    console_errors,
    routable,  # noqa: F811
    account_a2,  # noqa: F811
    tmp_path,
    ops,
):
    import csv
    import hashlib
    import io

    login(page, live_server, "ops")
    page.goto(f"{live_server.url}/baskets/{routable.pk}/")
    page.get_by_label("Custodian trade file").check()
    page.get_by_role("button", name="Route", exact=True).click()
    link = page.locator("#trade-file-link")
    expect(link).to_be_visible(timeout=FILL_TIMEOUT_MS)
    with page.expect_download() as info:
        link.click()
    content = Path(info.value.path()).read_bytes()
    expect(page.locator("#trade-file-sha")).to_have_text(hashlib.sha256(content).hexdigest())
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert {r["account_number"] for r in rows} >= {account_a2.account_number}

    page.get_by_role("button", name="Mark sent to the custodian").click()
    expect(page.locator(".messages")).to_contain_text("marked sent to the custodian")
    expect(page.locator("#routing-basket-state")).to_have_text("basket routed")

    # the custodian confirms each block in full
    blocks = {}
    for r in rows:
        blocks[r["client_order_id"]] = blocks.get(r["client_order_id"], 0) + int(r["quantity"])
    confirmations = tmp_path / "confirmations.csv"
    confirmations.write_text(
        "client_order_id,exec_id,quantity,price\n"
        + "".join(f"{cid},CUST-{i},{qty},100.50\n" for i, (cid, qty) in enumerate(blocks.items()))
    )
    page.get_by_label(re.compile("Custodian confirmations")).set_input_files(str(confirmations))
    page.get_by_role("button", name="Load confirmations").click()
    expect(page.locator(".messages")).to_contain_text(f"{len(blocks)} confirmation row(s) loaded")
    expect(page.locator("#routing-basket-state")).to_have_text("basket filled")
    assert TradeBasket.objects.get(pk=routable.pk).state == BasketState.FILLED
    assert console_errors == []
