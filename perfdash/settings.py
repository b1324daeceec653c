"""perfdash settings: one module, configured from the environment (12-factor).

Every setting has a working local default; production overrides come from the
environment or a `.env` file next to manage.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The default only works for local hosts: a system check refuses it once ALLOWED_HOSTS is public.
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-secret-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "perfdash.dashboard.admin_site.PerfdashAdminConfig",
    "axes",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "perfdash.api",
    "perfdash.ingest",
    "perfdash.otlp",
    "perfdash.metrics",
    "perfdash.dashboard",
    "perfdash.alerts",
    "perfdash.forecasting",
    "perfdash.events",
    "perfdash.detect",
    "perfdash.health",
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
    "csp.middleware.CSPMiddleware",
    # Near the view: it answers the view's database errors (503 while the database is away).
    "perfdash.lib.unavailable.DatabaseUnavailableMiddleware",
    # Last: it answers for the login view once an address has failed too often.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "perfdash.urls"
ASGI_APPLICATION = "perfdash.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/perfdash"),
}
# A pool per process. Under ASGI every request runs on a thread of its own, and a persistent
# connection (CONN_MAX_AGE) stays with its thread: a burst of concurrent requests would leave
# one idle connection per thread and exhaust PostgreSQL's max_connections. The pool bounds each
# process's connections and reuses them; a request that finds it exhausted waits
# DB_POOL_TIMEOUT seconds, then gets the 503 of an unavailable database.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django may not as well
# With a pool: a connection PostgreSQL dropped while idle (a restart) is replaced, not handed out.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
POOL_TIMEOUT_S = env.float("DB_POOL_TIMEOUT", default=3.0)
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": 1,
    "max_size": env.int("DB_POOL_MAX", default=8),
    "timeout": POOL_TIMEOUT_S,
    # While PostgreSQL is away the pool retries with a growing delay; giving up soon lets the
    # next request try again at once, so service resumes as soon as the database is back.
    "reconnect_timeout": POOL_TIMEOUT_S,
}
# PostgreSQL's JIT compiles every read it estimates as costly, as a week of a thousand agents'
# rollups is, and the compiling takes about as long as the read. Off for perfdash's sessions
# unless DB_JIT_OFF=0 (a pooler such as PgBouncer may refuse startup options: then set
# `jit = off` on the database instead).
if env.bool("DB_JIT_OFF", default=True):
    DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")
# An explicit test name: Channels' live-server tests otherwise open `test_test_<name>`.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default="test_perfdash")}

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# perfdash's own keys (rate counters, throttles) start with this.
REDIS_KEY_PREFIX = env("REDIS_KEY_PREFIX", default="perfdash:")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 caps an asyncio pool at 100 connections; a burst of viewers joining at
        # once needs more.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "max_connections": 1000}]},
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# How long a message taken by a worker that died stays invisible before another worker
# gets it again. Must exceed the longest task; redelivery is harmless (batches are
# idempotent), so it can be short.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    # Sweep for messages of dead workers every few seconds (kombu's default is ~100 s).
    "unacked_restore_interval": env.int("CELERY_RESTORE_INTERVAL", default=5),
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# Publishing must fail fast when Redis is down so the API can answer 503.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}

# --- Ingest limits (docs/ingest-api.md) -------------------------------------------------------
INGEST_MAX_POINTS = env.int("INGEST_MAX_POINTS", default=10_000)
INGEST_MAX_TAGS = env.int("INGEST_MAX_TAGS", default=16)
INGEST_MAX_NAME_LENGTH = env.int("INGEST_MAX_NAME_LENGTH", default=128)
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=10 * 1024 * 1024)
INGEST_MAX_FUTURE_SECONDS = env.int("INGEST_MAX_FUTURE_SECONDS", default=600)
# Points per second per token; 0 disables the limit.
INGEST_RATE_LIMIT = env.int("INGEST_RATE_LIMIT", default=0)
# Cardinality (docs/operations.md, "Cardinality limits"); 0 disables each. Sized so that a whole
# fleet of 1000 agents may start at once on one token, with room to spare.
INGEST_NEW_SERIES_PER_MINUTE = env.int("INGEST_NEW_SERIES_PER_MINUTE", default=30_000)  # per token
INGEST_MAX_SERIES_PER_METRIC = env.int("INGEST_MAX_SERIES_PER_METRIC", default=100_000)
INGEST_MAX_METRICS = env.int("INGEST_MAX_METRICS", default=1_000)
# Tags that get rollups of their own, so reads and dashboards can filter and break down by
# them (perfdash/metrics/dimensions.py checks the list; at most 8). `type` is the token type
# (input, output) of tokens_total, as OpenTelemetry's gen_ai token usage sends it.
DEFAULT_DIMENSION_TAGS = ["tool", "model", "provider", "op", "version", "variant", "error", "type"]
DIMENSION_TAGS = tuple(t.strip() for t in env.list("DIMENSION_TAGS", default=DEFAULT_DIMENSION_TAGS))
# Values of one dimension tag first seen in a UTC day that get rollups of their own; later
# ones roll up under "_other".
DIMENSION_MAX_VALUES = env.int("DIMENSION_MAX_VALUES", default=200)
# Series each web process remembers as existing, so that a batch of known series needs no query.
INGEST_KNOWN_SERIES = env.int("INGEST_KNOWN_SERIES", default=100_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
# How long a batch id is remembered: a batch re-sent within this many days stores nothing
# again. It must outlast a collector's retries and spool (the SDK's spool holds days at most).
INGEST_IDEMPOTENCY_DAYS = env.int("INGEST_IDEMPOTENCY_DAYS", default=7)
# An accepted batch waits in the outbox (PostgreSQL) until stored. One still there this many
# seconds after its worker was woken gets another wake-up: its message was lost (a worker
# killed while holding it, Redis restarted without its data) or waits behind a backlog.
INGEST_REQUEUE_AFTER_S = env.int("INGEST_REQUEUE_AFTER_S", default=60)

# --- OTLP in (docs/otlp.md) -------------------------------------------------------------------
# Which attributes (of the data point, else of the resource) name the node and the agent: the
# first one present wins.
OTLP_NODE_ATTRIBUTES = env.list("OTLP_NODE_ATTRIBUTES", default=["host.name", "k8s.node.name"])
OTLP_AGENT_ATTRIBUTES = env.list(
    "OTLP_AGENT_ATTRIBUTES",
    default=["gen_ai.agent.id", "gen_ai.agent.name", "service.instance.id", "service.name"],
)
# Resource attributes that become tags (attribute=tag,...): a release's version, for comparisons.
OTLP_RESOURCE_TAGS = env.dict("OTLP_RESOURCE_TAGS", default={"service.version": "version"})

# --- Retention (days) -----------------------------------------------------------------------
RAW_RETENTION_DAYS = env.int("RAW_RETENTION_DAYS", default=7)
MINUTE_ROLLUP_RETENTION_DAYS = env.int("MINUTE_ROLLUP_RETENTION_DAYS", default=3)
ROLLUP_RETENTION_DAYS = env.int("ROLLUP_RETENTION_DAYS", default=90)
# Series and rollup keys that have not reported for ROLLUP_RETENTION_DAYS are removed daily,
# with their rows (perfdash/metrics/gc.py).

# --- Metric store ---------------------------------------------------------------------------
# Series whose ids each worker process keeps (the least recently used forgotten first). A
# series not kept is looked up again when it next reports, taking its turn with the workers
# making new series: keep it above the number of series the fleet reports.
STORE_SERIES_CACHE = env.int("STORE_SERIES_CACHE", default=100_000)

# --- Dashboard ---------------------------------------------------------------------------
NODE_CAPACITY_AGENTS = env.int("NODE_CAPACITY_AGENTS", default=1000)
# Live updates, per web process: open sockets per user and in all, and how many distinct views
# (page and filters) update every second; views beyond that update every LIVE_SLOW_INTERVAL_S.
LIVE_MAX_SOCKETS_PER_USER = env.int("LIVE_MAX_SOCKETS_PER_USER", default=20)
LIVE_MAX_SOCKETS = env.int("LIVE_MAX_SOCKETS", default=2000)
LIVE_MAX_VIEWS = env.int("LIVE_MAX_VIEWS", default=50)
LIVE_SLOW_INTERVAL_S = env.float("LIVE_SLOW_INTERVAL_S", default=10.0)
AGENT_MEMORY_TARGET_BYTES = env.int("AGENT_MEMORY_TARGET_BYTES", default=100 * 1000 * 1000)
# Tables and bars of nodes, agents, tools and models show this many rows, the rest merged into
# one "others" row: a flood of new names must not make pages, or their reads, grow with it.
BREAKDOWN_TOP_N = env.int("BREAKDOWN_TOP_N", default=20)
# A comparison answers "insufficient data" for a cohort with fewer points than this (or fewer
# than ten minutes with data), never a guess.
COMPARE_MIN_COUNT = env.int("COMPARE_MIN_COUNT", default=100)
# Peer outliers: no agent is judged among fewer peers than this, nor with fewer points.
OUTLIER_MIN_PEERS = env.int("OUTLIER_MIN_PEERS", default=5)
OUTLIER_MIN_COUNT = env.int("OUTLIER_MIN_COUNT", default=20)
# Targets drawn on the latency charts (the ElixirChain performance targets, docs/dashboard.md).
LATENCY_TARGETS = {
    "agent_response_ms": {"stat": "p95", "value": 2000},
    "tool_execution_ms": {"stat": "p90", "value": 5000},
    "memory_op_ms": {"stat": "p99", "value": 100},
}

# Deploy verification (docs/alerts.md): a deploy event tagged with a version is compared with
# the version before it once this long has passed (a duration from 10m to 12h), on the p95 of
# these metrics. `manage.py check` refuses bad values (alerts.E001, alerts.E002).
DEPLOY_VERIFY_AFTER = env("DEPLOY_VERIFY_AFTER", default="30m")
DEPLOY_VERIFY_METRICS = tuple(
    m.strip()
    for m in env.list(
        "DEPLOY_VERIFY_METRICS",
        default=["agent_response_ms", "tool_execution_ms", "llm_call_ms", "memory_op_ms"],
    )
)

# --- Capacity planning ---------------------------------------------------------------------
# Defaults for the capacity targets (each can be overridden per target in the admin).
NODE_MEMORY_BYTES = env.int("NODE_MEMORY_BYTES", default=16 * 1024**3)
# Points/s one ingest machine stores (bench/ingest.py measures it on yours).
INGEST_WORKER_POINTS_PER_S = env.int("INGEST_WORKER_POINTS_PER_S", default=200_000)

# --- Alerts ------------------------------------------------------------------------------
# Mail goes through Django's email backend, configured from EMAIL_URL
# (e.g. smtp+tls://user:password@smtp.example.com:587); the console backend in development.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="perfdash <perfdash@localhost>")
# Links in notifications point here.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")
# Outbound webhooks refuse private, loopback and link-local addresses unless allowed.
ALERTS_ALLOW_PRIVATE_URLS = env.bool("ALERTS_ALLOW_PRIVATE_URLS", default=False)
ALERTS_HTTP_TIMEOUT_S = env.float("ALERTS_HTTP_TIMEOUT_S", default=5.0)

# --- Web security --------------------------------------------------------------------------
# Behind HTTPS (SITE_URL https://…) cookies are secure, HSTS is on and plain HTTP is
# redirected; each is also settable on its own. The API paths are not redirected: collectors
# inside the network may post to INGEST_PORT over plain HTTP, and a redirected POST fails.
HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^api/", r"^v1/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 86400 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The header a TLS-terminating proxy sets; empty to trust none (a server reached directly).
_PROXY_SSL_HEADER = env("SECURE_PROXY_SSL_HEADER", default="X-Forwarded-Proto" if HTTPS else "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)
# Preloading is a commitment for the whole domain that only its owner can make: not asking
# for it is a choice, not an oversight.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Scripts only from our own static files (the pages have no inline scripts). Plotly sets
# inline styles on the elements it draws, and draws its icons as data: images.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # Counts failed logins and refuses an address after too many (django-axes).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Passwords in URL settings (REDIS_URL, DATABASE_URL, EMAIL_URL…) are masked on error pages.
DEFAULT_EXCEPTION_REPORTER_FILTER = "perfdash.lib.secrets.MaskingReporterFilter"

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".staticfiles"
# WhiteNoise serves static files from the app itself (no separate web server needed);
# with finders on, `collectstatic` is optional.
WHITENOISE_USE_FINDERS = True
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "perfdash.lib.staticfiles.PlotlyFinder",
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
