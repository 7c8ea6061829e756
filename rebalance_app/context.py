"""Who is acting, from where: the request context that audit events record.

The middleware sets it for web and API requests; tasks and commands set a system actor.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    ip: str = ""


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "request_context",
    default=RequestContext(),  # noqa: B039 - immutable default
)


def current_context() -> RequestContext:
    return _current.get()


@contextmanager
def request_context(*, request_id: str = "", ip: str = "") -> Iterator[RequestContext]:
    ctx = RequestContext(request_id=request_id, ip=ip)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
