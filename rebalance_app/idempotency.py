"""``Idempotency-Key`` for POST actions of the API (the IETF httpapi idempotency-key draft).

A client sends ``Idempotency-Key: <unique string>`` with a POST. The first request with that
key (per user) is remembered by its fingerprint (method, path and a SHA-256 of the canonical
JSON body) and, once answered, by its response:

- an identical retry gets the first response again (header ``Idempotent-Replayed: true``);
- the same key with a different request (body, path or method) answers 422;
- a retry while the first request is still being processed answers 409.

Responses of 5xx and unexpected errors are not kept, so the key can be retried. Keys are
kept ``KEY_TTL``; a request left in flight longer than ``IN_FLIGHT_TIMEOUT`` (its worker
died) may be claimed again. Requests without the header are processed as usual.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from rebalance_app.exceptions import ApplicationError, InvalidTransition, ValidationFailed
from rebalance_app.models import IdempotencyKey, IdempotencyStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from rest_framework.request import Request

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEY_TTL = timedelta(hours=24)
IN_FLIGHT_TIMEOUT = timedelta(minutes=10)

MSG_KEY_TOO_LONG = "The Idempotency-Key header may be at most 255 characters."
MSG_KEY_REUSED = (
    "Idempotency-Key {key!r} was already used for a different request: use a new key for a "
    "new request."
)
MSG_IN_FLIGHT = (
    "A request with Idempotency-Key {key!r} is still being processed: retry when it is done."
)


class IdempotencyKeyReused(ApplicationError):
    """The same key came with a different request."""

    http_status = 422


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, the path and the canonical JSON of the parsed body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _claim(*, user: Any, key: str, method: str, path: str, fingerprint: str) -> Response | None:
    """Claim ``key`` for this request (None: go ahead), or the answer for a retry."""
    now = timezone.now()
    with transaction.atomic():
        # The user's expired keys go (this one included, so it may be used afresh).
        IdempotencyKey.objects.filter(user=user, created_at__lt=now - KEY_TTL).delete()
        IdempotencyKey.objects.filter(
            user=user,
            key=key,
            status=IdempotencyStatus.IN_FLIGHT,
            created_at__lt=now - IN_FLIGHT_TIMEOUT,
        ).delete()
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user=user, key=key, method=method, path=path, request_hash=fingerprint
            )
    except IntegrityError:
        pass
    else:
        return None
    existing = IdempotencyKey.objects.get(user=user, key=key)
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(MSG_KEY_REUSED.format(key=key), {"key": key})
    if existing.status == IdempotencyStatus.IN_FLIGHT:
        raise InvalidTransition(MSG_IN_FLIGHT.format(key=key), {"key": key})
    return Response(
        existing.response_body,
        status=existing.response_status,
        headers={REPLAYED_HEADER: "true"},
    )


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate a DRF view method (an ``@action`` or ``create``) so that it honours the
    ``Idempotency-Key`` header as the module describes."""

    @wraps(view)
    def wrapper(self: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view(self, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(MSG_KEY_TOO_LONG, {"key": key[:MAX_KEY_LENGTH]})
        fingerprint = request_fingerprint(
            method=request.method or "POST", path=request.path, body=request.data
        )
        replay = _claim(
            user=request.user,
            key=key,
            method=request.method or "POST",
            path=request.path,
            fingerprint=fingerprint,
        )
        if replay is not None:
            return replay
        try:
            try:
                response = view(self, request, *args, **kwargs)
            except Exception as exc:  # the answer DRF would give, so it can be kept
                response = self.handle_exception(exc)
        except BaseException:
            IdempotencyKey.objects.filter(user=request.user, key=key).delete()
            raise
        if response.status_code >= 500:
            IdempotencyKey.objects.filter(user=request.user, key=key).delete()
            return response
        IdempotencyKey.objects.filter(user=request.user, key=key).update(
            status=IdempotencyStatus.DONE,
            response_status=response.status_code,
            response_body=_jsonable(response.data),
            completed_at=timezone.now(),
        )
        return response

    return wrapper
