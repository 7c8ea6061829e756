"""API access rules shared by every app: authentication order and model-level read access.

Object visibility (which household, which account) is not decided here: the querysets come
from the visibility selectors, so an invisible object is simply absent (404).
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

# Token first: DRF answers an unauthenticated request with the first class's
# ``WWW-Authenticate`` header, and only then is the answer 401 (session auth has no header,
# so with it first the answer is a 403 that a client cannot tell from a role refusal).
API_AUTHENTICATION_CLASSES = [TokenAuthentication, SessionAuthentication]


class ModelViewPermission(BasePermission):
    """Read-only access for users holding the model's ``view_<model>`` permission.

    The roles grant it on reference data (securities, prices, models) to every role; a
    logged-in user with no role holds none and is refused (403).
    """

    message = "Your role does not allow reading this data."

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method not in SAFE_METHODS:
            return False
        model = view.get_queryset().model
        opts = model._meta
        return bool(request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"))
