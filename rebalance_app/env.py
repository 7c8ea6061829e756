"""Environment variables that fail loudly: django-environ, but a malformed value stops the
process at start with ImproperlyConfigured naming the variable.

Plain django-environ reads ``DEBUG=maybe`` as False and lets ``int("abc")`` escape as a bare
ValueError; a deployment typo should say which variable is wrong instead.
"""

from __future__ import annotations

from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")

MALFORMED_BOOL = "{name}={value!r} is not a boolean: use one of {choices}."
MALFORMED_VALUE = "{name}={value!r} is not a valid {kind}: {error}"


class StrictEnv(environ.Env):
    """``environ.Env`` that raises ImproperlyConfigured on a value it cannot parse."""

    def get_value(
        self,
        var: str,
        cast: Any = None,
        default: Any = environ.Env.NOTSET,
        parse_default: bool = False,
    ) -> Any:
        name = f"{self.prefix}{var}"
        raw = self.ENVIRON.get(name)
        if cast is bool and raw is not None:
            allowed = (*self.BOOLEAN_TRUE_STRINGS, *BOOLEAN_FALSE_STRINGS)
            if raw.strip().lower() not in allowed:
                raise ImproperlyConfigured(
                    MALFORMED_BOOL.format(name=name, value=raw, choices=", ".join(allowed[:-1]))
                )
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            kind = getattr(cast, "__name__", str(cast))
            raise ImproperlyConfigured(
                MALFORMED_VALUE.format(name=name, value=raw, kind=kind, error=exc)
            ) from exc
