"""Test settings: the main settings plus speed-ups that only make sense in tests."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 50)

from rebalance_app.settings import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
ALLOWED_HOSTS = ["*"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
AUDIT_CHECKPOINT_PATH = os.path.join(
    tempfile.gettempdir(), f"audit-checkpoints-{os.getpid()}.jsonl"
)
LOG_JSON = False
LOGGING = configure_structlog(json=False, level="WARNING")
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "1000/min"}}
MEDIA_ROOT = os.path.join(tempfile.gettempdir(), f"rebalance-test-media-{os.getpid()}")
