"""API plumbing shared by every app: the exception handler that maps ApplicationError to
``{"message": ..., "extra": {...}}`` and the token endpoint."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from rebalance_app.exceptions import ApplicationError

LOCKED_OUT_MESSAGE = (
    "This account is locked after too many failed sign-in attempts. Try again in {minutes} "
    "minutes or ask an administrator."
)


class AccountLockedOut(ApplicationError):
    """Too many failed sign-ins for this username (django-axes)."""

    http_status = 429


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404 | drf_exceptions.NotFound):
        response.data = {"message": "Not found.", "extra": {}}
    elif isinstance(exc, drf_exceptions.ValidationError):
        response.data = {"message": "Invalid input.", "extra": {"fields": response.data}}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"message": str(response.data["detail"]), "extra": {}}
    return response


class TokenThrottle(AnonRateThrottle):
    scope = "token"


class ObtainTokenView(ObtainAuthToken):
    """POST username and password, get ``{"token": ...}`` for ``Authorization: Token ...``."""

    throttle_classes = [TokenThrottle]

    @extend_schema(
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={200: inline_serializer("TokenResponse", {"token": serializers.CharField()})},
    )
    def post(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        from django.conf import settings

        from compliance.services.audit import audit_record

        try:
            response = super().post(request, *args, **kwargs)
        except drf_exceptions.ValidationError:
            # django-axes marks the request it saw (DRF's) when the username is locked out
            if getattr(request, "axes_locked_out", False):
                minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
                raise AccountLockedOut(LOCKED_OUT_MESSAGE.format(minutes=minutes)) from None
            raise
        token_user = Token.objects.select_related("user").get(key=response.data["token"]).user
        audit_record(actor=token_user, action="auth.token", obj=token_user)
        return response
