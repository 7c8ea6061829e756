"""Pages of the portfolios app: the accounts list (search and filters with htmx) and the account
detail (holdings against target, tax lots, recent transactions).

Views only parse input, call selectors and render. Every read goes through the visibility
selectors, so another team's account answers 404 exactly like an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from portfolios.charts import holdings_vs_target_figure
from portfolios.models import Account
from portfolios.selectors import (
    account_get,
    account_holdings,
    account_list,
    account_lots,
    account_transactions,
    accounts_visible_to,
    households_visible_to,
)
from portfolios.valuation import (
    AccountValue,
    account_market_values,
    holding_rows,
    holdings_unrealized,
    lot_rows,
)
from rebalance_app.exceptions import NotFound

ACCOUNTS_PER_PAGE = 50
RECENT_TRANSACTIONS = 50
MISSING_PRICE = "No price for {ticker}: valued at nothing; weights exclude it."


@dataclass(frozen=True)
class AccountRow:
    account: Account
    value: AccountValue

    @property
    def total(self) -> Decimal:
        return self.value.market_value + self.account.cash_balance


def _wants_partial(request: HttpRequest) -> bool:
    """An htmx swap gets the fragment; a history restore (cache miss) needs the whole page."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


@login_required
def account_list_view(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()[:100]
    team = request.GET.get("team", "").strip()[:150]
    model = request.GET.get("model", "").strip()
    if not model.isdigit():
        model = ""
    accounts = account_list(user=request.user, search=search, team=team, model=model)
    page = Paginator(accounts, ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    page_accounts = list(page.object_list)
    values = account_market_values(account_ids=[a.pk for a in page_accounts])
    context = {
        "page_obj": page,
        "rows": [AccountRow(a, values[a.pk]) for a in page_accounts],
        "search": search,
        "team": team,
        "model": model,
        "filtered": bool(search or team or model),
    }
    if _wants_partial(request):
        response = render(request, "portfolios/partials/_account_rows.html", context)
    else:
        context["teams"] = list(
            households_visible_to(request.user)
            .exclude(team=None)
            .order_by("team__name")
            .values_list("team__name", flat=True)
            .distinct()
        )
        context["models"] = list(
            accounts_visible_to(request.user)
            .exclude(model=None)
            .order_by("model__name")
            .values_list("model_id", "model__name")
            .distinct()
        )
        response = render(request, "portfolios/account_list.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
def account_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        account = account_get(user=request.user, pk=pk)
    except NotFound as exc:
        raise Http404(exc.message) from None
    holdings = account_holdings(account=account)
    version = account.model.current_version if account.model_id else None
    context = {
        "account": account,
        "model_version": version,
        "holdings": holdings,
        "holding_rows": holding_rows(holdings=holdings),
        "unrealized": holdings_unrealized(holdings=holdings),
        "missing_price_messages": [MISSING_PRICE.format(ticker=t) for t in holdings.missing_prices],
        "chart": holdings_vs_target_figure(holdings=holdings),
        "lots": lot_rows(
            lots=account_lots(account=account), holdings=holdings, today=timezone.localdate()
        ),
        "transactions": list(account_transactions(account=account)[:RECENT_TRANSACTIONS]),
        "recent_transactions": RECENT_TRANSACTIONS,
    }
    return render(request, "portfolios/account_detail.html", context)
