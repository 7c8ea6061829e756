"""Binds the request id and client IP of each request to the audit context."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from rebalance_app.context import request_context


def client_ip(request: HttpRequest) -> str:
    # Behind a proxy the deployment sets the proxy up to overwrite REMOTE_ADDR; we do not trust
    # X-Forwarded-For from the client.
    return request.META.get("REMOTE_ADDR", "")


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bound = structlog.contextvars.get_contextvars().get("request_id")
        request_id = str(bound or request.headers.get("X-Request-ID") or uuid.uuid4())
        with request_context(request_id=request_id, ip=client_ip(request)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
