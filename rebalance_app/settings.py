"""Settings: one module, driven by environment variables, with production-safe defaults.

Every variable is listed in docs/configuration.md. DEBUG is off unless set; a missing
SECRET_KEY outside debug, or a malformed value, stops the process at start with
ImproperlyConfigured rather than running half-configured.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from rebalance_app.env import StrictEnv

BASE_DIR = Path(__file__).resolve().parent.parent

env = StrictEnv()  # a malformed value raises ImproperlyConfigured naming the variable
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (50+ random characters) or DEBUG=1 for "
            "local development."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # third party
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "guardian",
    "pgtrigger",
    "django_celery_beat",
    "axes",
    "csp",
    "django_structlog",  # propagates the request id to Celery tasks
    # ours
    "rebalance_app",
    "portfolios",
    "compliance",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "rebalance_app.middleware.AuditContextMiddleware",
    # axes must be last: it turns a lockout into a response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "rebalance_app.urls"
WSGI_APPLICATION = "rebalance_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rebalance_app.context_processors.roles",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------
# Embedded default: a SQLite file under var/. DATABASE_URL switches to PostgreSQL.
# An empty DATABASE_URL counts as unset.
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    name = DATABASES["default"]["NAME"]
    if name and name != ":memory:" and not str(name).startswith("file:"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so the web server and the
    # worker queue for it instead of failing with "database is locked" mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 30}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------
# Auth, roles, object permissions, lockout
# ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
GUARDIAN_RAISE_403 = False

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Lockout is per username on purpose: rotating user agents or cookies (axes.W006's worry) does
# not get around it, and an IP lockout would lock out a whole office behind one NAT address.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

# ---------------------------------------------------------------------------
# Internationalisation
# ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "America/New_York"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------
# Static files
# ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Uploaded import files, kept for lineage and read by the worker that imports them. Workers on
# other machines need this on shared storage (or a django-storages backend).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
MEDIA_URL = "/media/"
# Imports with more rows than this run in a Celery task; smaller ones in the request.
IMPORT_ASYNC_ROWS = env.int("IMPORT_ASYNC_ROWS", default=5000)
# Upload size limit for imports (bytes).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# ---------------------------------------------------------------------------
# Security (production-safe unless DEBUG)
# ---------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# load balancers probe /health/ over plain HTTP inside the network
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # plotly.js writes <style> elements at run time
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "worker-src": [SELF, "blob:"],
    }
}

# ---------------------------------------------------------------------------
# Redis and Celery
# ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
# The queue tasks go to when nothing routes them elsewhere, chord callbacks sent by a worker
# included: give each environment sharing one Redis its own.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A message not acknowledged within the visibility timeout is redelivered by Redis; every task
# must be killed (hard limit) well before that, or a slow task would run twice at once.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=900)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=840)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT, or tasks are killed "
        "before they can clean up."
    )
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be below CELERY_VISIBILITY_TIMEOUT, or Redis redelivers "
        "tasks that are still running."
    )

# Work rows (RebalanceRun, ImportBatch, ...) stuck in queued/running longer than this are
# re-enqueued by the sweep; after WORK_MAX_ATTEMPTS they are marked failed.
WORK_STUCK_AFTER_SECONDS = env.int("WORK_STUCK_AFTER_SECONDS", default=CELERY_TASK_TIME_LIMIT + 60)
WORK_MAX_ATTEMPTS = env.int("WORK_MAX_ATTEMPTS", default=3)
if WORK_STUCK_AFTER_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "WORK_STUCK_AFTER_SECONDS must be above CELERY_TASK_TIME_LIMIT, or the sweep re-enqueues "
        "work that a worker is still allowed to be running."
    )

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    }
}

# ---------------------------------------------------------------------------
# Routing and execution (FIX 4.4 session to the broker, custodian trade files)
# ---------------------------------------------------------------------------
FIX_HOST = env.str("FIX_HOST", default="127.0.0.1")
FIX_PORT = env.int("FIX_PORT", default=9878)
FIX_SESSION_NAME = env.str("FIX_SESSION_NAME", default="broker")
FIX_SENDER_COMP_ID = env.str("FIX_SENDER_COMP_ID", default="REBAL")
FIX_TARGET_COMP_ID = env.str("FIX_TARGET_COMP_ID", default="SIMBROKER")
FIX_HEARTBEAT_SECONDS = env.int("FIX_HEARTBEAT_SECONDS", default=30)
FIX_CONNECT_TIMEOUT_SECONDS = env.float("FIX_CONNECT_TIMEOUT_SECONDS", default=5.0)
# How long a routing task stays logged on waiting for execution reports before it logs out
# and leaves the rest to the periodic FIX sync.
FIX_ROUTE_WAIT_SECONDS = env.float("FIX_ROUTE_WAIT_SECONDS", default=20.0)
FIX_SYNC_SECONDS = env.int("FIX_SYNC_SECONDS", default=30)
# The simulated broker's persisted state (sequence numbers, orders, sent messages).
FIX_BROKER_STATE_PATH = env.path(
    "FIX_BROKER_STATE_PATH", default=BASE_DIR / "var" / "fix-broker-state.json"
)
# ClOrdIDs are <prefix>-<block id>-<route id>: unique across restarts and installations.
FIX_CLORDID_PREFIX = env.str("FIX_CLORDID_PREFIX", default="RB")

# ---------------------------------------------------------------------------
# Audit trail
# ---------------------------------------------------------------------------
# Append-only file of (sequence, hash) checkpoints of the audit chain head, kept outside the
# database so that a rewritten or truncated chain can be detected.
AUDIT_CHECKPOINT_PATH = env.path(
    "AUDIT_CHECKPOINT_PATH", default=BASE_DIR / "var" / "audit-checkpoints.jsonl"
)
AUDIT_CHECKPOINT_MINUTES = env.int("AUDIT_CHECKPOINT_MINUTES", default=5)

# ---------------------------------------------------------------------------
# REST framework and OpenAPI
# ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "rebalance_app.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"token": "20/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rebalancing service API",
    "DESCRIPTION": "Portfolio drift, rebalancing, pre-trade compliance, orders and audit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two models have a field named "trigger" with different choices: name each enum.
    "ENUM_NAME_OVERRIDES": {
        "ScanTriggerEnum": "portfolios.models.ScanTrigger",
        "RebalanceTriggerEnum": "portfolios.models.RebalanceTrigger",
        "OrderStatusEnum": "orders.models.OrderStatus",
        "RestrictionKindEnum": "compliance.models.RestrictionKind",
        "ImportKindEnum": "portfolios.models.ImportKind",
        "AccountStatusEnum": "portfolios.models.AccountStatus",
        "BasketStateEnum": "orders.models.BasketState",
        "RouteStateEnum": "orders.models.RouteState",
    },
}

# ---------------------------------------------------------------------------
# Logging: JSON lines in production, readable in development; request id on every line
# ---------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("LOG_JSON", default=not DEBUG)

from rebalance_app.logging import configure_structlog

LOGGING = configure_structlog(json=LOG_JSON, level=LOG_LEVEL)
DJANGO_STRUCTLOG_CELERY_ENABLED = True

# ---------------------------------------------------------------------------
# Application
# ---------------------------------------------------------------------------
DEMO_PASSWORD_DEFAULT = "rebalance-demo-2026"  # noqa: S105 - documented demo default
STALE_PRICE_TRADING_DAYS = env.int("STALE_PRICE_TRADING_DAYS", default=3)

# ---------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------
# Accounts per chunk task of a firm scan: one transaction and one bulk read each.
DRIFT_SCAN_CHUNK_SIZE = env.int("DRIFT_SCAN_CHUNK_SIZE", default=5000)
# Absolute band of a position that has no band of its own (a held security outside the
# model, a model target without bands, cash), as a weight: 0.03 is 3 percentage points.
DRIFT_DEFAULT_ABS_BAND = env.float("DRIFT_DEFAULT_ABS_BAND", default=0.03)
# Snapshots older than this that are neither an account's latest nor an alert's are deleted.
DRIFT_SNAPSHOT_RETENTION_DAYS = env.int("DRIFT_SNAPSHOT_RETENTION_DAYS", default=400)
if DRIFT_SCAN_CHUNK_SIZE < 1:
    raise ImproperlyConfigured("DRIFT_SCAN_CHUNK_SIZE must be at least 1.")
if not 0 <= DRIFT_DEFAULT_ABS_BAND <= 1:
    raise ImproperlyConfigured("DRIFT_DEFAULT_ABS_BAND must be a weight between 0 and 1.")

# ---------------------------------------------------------------------------
# Rebalancing (optimizer)
# ---------------------------------------------------------------------------
# Transaction costs in the objective: commission as a fraction of traded notional, and the
# half bid-ask spread in basis points of price (cash-like securities trade without a spread).
REBALANCE_COMMISSION_RATE = env.float("REBALANCE_COMMISSION_RATE", default=0.0)
REBALANCE_HALF_SPREAD_BPS = env.float("REBALANCE_HALF_SPREAD_BPS", default=2.0)
# Mode of the proposal made for an account that asked for one when it newly breaches.
REBALANCE_AUTO_MODE = env.str("REBALANCE_AUTO_MODE", default="tolerance")
# Tax-loss harvesting sells lots whose loss is at least this fraction of their cost.
REBALANCE_TLH_LOSS_THRESHOLD = env.float("REBALANCE_TLH_LOSS_THRESHOLD", default=0.05)
# Runs of a batch per Celery task: the task reads the chunk's inputs in one go.
REBALANCE_BATCH_CHUNK_SIZE = env.int("REBALANCE_BATCH_CHUNK_SIZE", default=20)
if REBALANCE_BATCH_CHUNK_SIZE < 1:
    raise ImproperlyConfigured("REBALANCE_BATCH_CHUNK_SIZE must be at least 1.")
if not 0 <= REBALANCE_COMMISSION_RATE < 0.1:
    raise ImproperlyConfigured("REBALANCE_COMMISSION_RATE must be a fraction in [0, 0.1).")
if not 0 <= REBALANCE_HALF_SPREAD_BPS < 1000:
    raise ImproperlyConfigured("REBALANCE_HALF_SPREAD_BPS must be in [0, 1000) basis points.")
if REBALANCE_AUTO_MODE not in ("full", "tolerance"):
    raise ImproperlyConfigured("REBALANCE_AUTO_MODE must be 'full' or 'tolerance'.")
if not 0 <= REBALANCE_TLH_LOSS_THRESHOLD < 1:
    raise ImproperlyConfigured("REBALANCE_TLH_LOSS_THRESHOLD must be a fraction in [0, 1).")

# ---------------------------------------------------------------------------
# Risk model
# ---------------------------------------------------------------------------
# Tickers of the factor ETFs whose daily returns are the factors of Sigma = B F B' + D.
RISK_FACTOR_TICKERS = [
    t.strip().upper()
    for t in env.list("RISK_FACTOR_TICKERS", default=["MTUM", "QUAL", "SIZE", "USMV", "VLUE"])
    if t.strip()
]
# Daily returns in the estimation window, and the fewest a security needs to be regressed.
RISK_MODEL_WINDOW = env.int("RISK_MODEL_WINDOW", default=252)
RISK_MODEL_MIN_OBSERVATIONS = env.int("RISK_MODEL_MIN_OBSERVATIONS", default=60)
if not RISK_FACTOR_TICKERS:
    raise ImproperlyConfigured("RISK_FACTOR_TICKERS must name at least one factor ETF.")
if RISK_MODEL_WINDOW < 2:
    raise ImproperlyConfigured("RISK_MODEL_WINDOW must be at least 2 sessions.")
if not len(RISK_FACTOR_TICKERS) + 2 <= RISK_MODEL_MIN_OBSERVATIONS <= RISK_MODEL_WINDOW:
    raise ImproperlyConfigured(
        "RISK_MODEL_MIN_OBSERVATIONS must be at least the number of factor tickers + 2 and at "
        "most RISK_MODEL_WINDOW."
    )
