"""``manage.py fix_broker``: run the simulated FIX 4.4 broker (an acceptor on 127.0.0.1) that
fills orders at the latest stored price, until SIGTERM or SIGINT. ``make run`` starts it so
the routing loop runs locally end to end; see docs/fix.md."""

from __future__ import annotations

import signal
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from orders.fix.broker import SimulatedBroker
from portfolios.models import Price

LISTENING = (
    "Simulated broker {sender} listening on {host}:{port} for {target} "
    "(state {state}); Ctrl-C to stop."
)
BAD_PARTIAL = "--partial must be a fraction between 0 and 1 (exclusive), got {value}."
STOPPED = "Simulated broker stopped."


def latest_price_for(ticker: str) -> Decimal | None:
    """The latest stored price of the security with this ticker, or None. Runs in the
    broker's thread for hours: drop a connection that went stale first."""
    if not connection.in_atomic_block:
        close_old_connections()
    return (
        Price.objects.filter(security__ticker=ticker)
        .order_by("-as_of")
        .values_list("price", flat=True)
        .first()
    )


class Command(BaseCommand):
    help = (
        "Run the simulated FIX 4.4 broker: accepts our session (SenderCompID "
        "FIX_TARGET_COMP_ID, TargetCompID FIX_SENDER_COMP_ID), acknowledges NewOrderSingles and "
        "fills them at the latest stored price of the ticker (rejecting tickers without a price "
        "or listed in --reject), cancels open orders, and keeps its sequence numbers and orders "
        "in a JSON state file so a restart continues the session. Runs until SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1)."
        )
        parser.add_argument(
            "--port",
            type=int,
            default=settings.FIX_PORT,
            help="TCP port to listen on (default FIX_PORT, %(default)s).",
        )
        parser.add_argument(
            "--state",
            default=str(settings.FIX_BROKER_STATE_PATH),
            help="JSON state file (sequence numbers, sent messages, orders); default "
            "FIX_BROKER_STATE_PATH, %(default)s.",
        )
        parser.add_argument(
            "--delay",
            type=float,
            default=0.5,
            help="Seconds between the acknowledgement and each fill (default %(default)s).",
        )
        parser.add_argument(
            "--partial",
            type=float,
            default=None,
            metavar="FRACTION",
            help="Fill FRACTION of each order first (at least 1 share), the rest later.",
        )
        parser.add_argument(
            "--no-complete",
            action="store_true",
            help="With --partial: never fill the rest (the order stays partially filled).",
        )
        parser.add_argument(
            "--reject",
            default="",
            metavar="SYMS",
            help="Comma-separated tickers the broker rejects (ExecType 8 with a Text).",
        )
        parser.add_argument(
            "--skip-seq-once",
            action="store_true",
            help="Skip one outbound sequence number (exercises the client's gap handling).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        partial = options["partial"]
        if partial is not None and not 0 < partial < 1:
            raise CommandError(BAD_PARTIAL.format(value=partial))
        reject = frozenset(s.strip().upper() for s in options["reject"].split(",") if s.strip())
        broker = SimulatedBroker(
            host=options["host"],
            port=options["port"],
            state_path=options["state"],
            price_for=latest_price_for,
            sender_comp_id=settings.FIX_TARGET_COMP_ID,
            target_comp_id=settings.FIX_SENDER_COMP_ID,
            fill_delay=options["delay"],
            partial_fill=partial,
            complete_partials=not options["no_complete"],
            reject_symbols=reject,
            skip_seq_once=options["skip_seq_once"],
        )
        port = broker.start()
        self.stdout.write(
            LISTENING.format(
                sender=settings.FIX_TARGET_COMP_ID,
                target=settings.FIX_SENDER_COMP_ID,
                host=options["host"],
                port=port,
                state=options["state"],
            )
        )

        def _stop(signum: int, frame: Any) -> None:
            broker.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while broker.running:
            broker.join(0.5)
        self.stdout.write(STOPPED)
