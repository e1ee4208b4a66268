"""Django settings. Every value that differs between machines comes from the environment, here only."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import tempfile
from pathlib import Path

import dj_database_url

from app import embedded
from app.core import logs
from app.startup import SettingError, number

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ.get("DJANGO_ENV", "development")
PRODUCTION = ENV == "production"
TESTING = os.environ.get("EVENTFOLD_TESTING") == "1"

# What production cannot start without, and how to make a value: these have no safe default (a
# generated secret or an embedded server would be wrong there, and silently so).
REQUIRED_IN_PRODUCTION = {
    "SECRET_KEY": 'a long random string, made with python -c "import secrets; print(secrets.token_urlsafe(50))"',
    "ALLOWED_HOSTS": "the comma-separated host names the site is served under, e.g. eventfold.example.com",
    "EVENTFOLD_MASTER_KEY": "32 random bytes in URL-safe base64, made once with python -c "
    '"import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())" and kept in your secret store',
    "DATABASE_URL": "the PostgreSQL server, e.g. postgresql://eventfold:PASSWORD@db:5432/eventfold",
    "REDIS_URL": "the Redis server, e.g. redis://redis:6379/0",
}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes", "on")


def _require_production_environment() -> None:
    """Stop a production process at once, naming every missing variable in one sentence each,
    rather than with a KeyError, or later, or with a development default."""
    missing = [name for name in REQUIRED_IN_PRODUCTION if not os.environ.get(name, "").replace(",", " ").strip()]
    if missing:
        how = REQUIRED_IN_PRODUCTION
        raise SettingError(" ".join(f"{n} must be set when DJANGO_ENV=production: {how[n]}." for n in missing))
    raw = os.environ["EVENTFOLD_MASTER_KEY"].strip()
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:  # found now, not at the first personal data written or read
        raise SettingError(
            f"EVENTFOLD_MASTER_KEY must be 32 random bytes in URL-safe base64 (this one is not): "
            f"{REQUIRED_IN_PRODUCTION['EVENTFOLD_MASTER_KEY']}."
        )


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """`X-Forwarded-Proto` (meaning "https") or `Name: value`, as Django's request.META key and value."""
    if not value.strip():
        return None
    name, _, expected = value.partition(":")
    return "HTTP_" + name.strip().upper().replace("-", "_"), expected.strip() or "https"


if PRODUCTION:
    _require_production_environment()
    SECRET_KEY = os.environ["SECRET_KEY"].strip()
    DEBUG = False
    ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS")
    # TLS everywhere (docs/deployment.md, "Production settings"). Plain http is redirected, but for
    # the probes, which a balancer or orchestrator sends to the server itself without TLS.
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # Django matches them without the leading slash
    SECURE_HSTS_SECONDS = number("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _env_flag("SECURE_HSTS_PRELOAD", True)
    # Off only by choice (the preload list binds a whole registered domain): then the deploy
    # check's reminder about it is that choice, not a finding.
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Only when TLS ends at a balancer that sets this header on every request and drops it from
    # clients: from anyone else it would make plain http pass for https.
    SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(os.environ.get("SECURE_PROXY_SSL_HEADER", ""))
    CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS") or [
        "https://" + ("*" + host if host.startswith(".") else host) for host in ALLOWED_HOSTS if host != "*"
    ]
else:
    SECRET_KEY = os.environ.get("SECRET_KEY") or embedded.secret_file("secret_key")
    DEBUG = os.environ.get("DEBUG", "1") == "1" and not TESTING
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",  # the login throttle (app/core/throttle.py)
    "ninja",  # the API docs page from local static files, not a CDN
    "eventstore",
    "projections",
    "app.core",
    "app.integration",
    "app.ledger",
    "app.api",
    "app.console",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the console's pinned static files, in production too
    "app.core.unavailable.Unavailable",  # the database or Redis out of reach: 503 with Retry-After, not 500
    "app.core.unavailable.SessionMiddleware",  # Django's; a session save that meets a lost database: 503
    "django.middleware.common.CommonMiddleware",
    "app.api.ratelimit.RateLimitMiddleware",  # /api/ only
    "app.api.middleware.ApiBodyMiddleware",
    "app.api.query_params.UnknownQueryParameters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # a locked-out login answers 429 (app.core.views.locked_out)
]

# The REST API's own chain (see app/asgi.py): bearer tokens, no cookies, async-native only.
API_MIDDLEWARE = [
    "app.core.security.SecurityMiddleware",  # Django's, without its thread hops: HTTPS only, HSTS
    "app.api.ratelimit.RateLimitMiddleware",
    "app.api.middleware.ApiBodyMiddleware",
    "app.api.query_params.UnknownQueryParameters",
]

ROOT_URLCONF = "app.urls"
ASGI_APPLICATION = "app.asgi.application"
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
                "app.console.access.console",
            ]
        },
    }
]


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if PRODUCTION:
        raise RuntimeError("DATABASE_URL must be set in production")
    return embedded.database_url(user=embedded.app_role())  # the embedded server started by `make run` / `make test`


def _owner_url() -> str | None:
    """The owner role's URL: DATABASE_OWNER_URL, or the embedded server's owner beside its app role."""
    url = os.environ.get("DATABASE_OWNER_URL")
    if url or os.environ.get("DATABASE_URL") or PRODUCTION:
        return url or None
    return embedded.database_url(user=embedded.owner_role())


def _owner_database(default: dj_database_url.DBConfig, url: str) -> dj_database_url.DBConfig | None:
    """The `owner` alias, which `manage.py migrate` runs as (eventstore/roles.py): the role, password,
    host and port of DATABASE_OWNER_URL (host and port default to DATABASE_URL's), on DATABASE_URL's
    database, options and test database always, so the two can never point at different logs.
    None when it names the application role itself: one role, as with DATABASE_URL alone."""
    given = dj_database_url.parse(url)
    if not given.get("USER"):
        raise RuntimeError("DATABASE_OWNER_URL must name its role (postgresql://owner:pw@host/db)")
    if not default.get("USER"):
        raise RuntimeError("with DATABASE_OWNER_URL set, DATABASE_URL must name the application role")
    if given["USER"] == default["USER"]:
        return None
    owner = default.copy()
    owner["USER"] = given["USER"]
    owner["PASSWORD"] = given.get("PASSWORD") or ""
    owner["HOST"] = given.get("HOST") or default.get("HOST", "")
    owner["PORT"] = given.get("PORT") or default.get("PORT", "")
    owner["CONN_MAX_AGE"] = 0  # migrations only: no connection kept
    owner["OPTIONS"] = {**default.get("OPTIONS", {}), **given.get("OPTIONS", {})}
    owner["TEST"] = dict(default.get("TEST", {}))
    return owner


DATABASES = {"default": dj_database_url.parse(_database_url(), conn_max_age=600)}
# Server-side prepared statements: the event store prepares its fixed statements (Django's own
# client-side-bound queries are not affected). Set to None behind a transaction-mode pgbouncer.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_eventfold")}
# DATABASE_URL is the application role; DATABASE_OWNER_URL, when set, the role that owns the log
# and runs the migrations (docs/deployment.md, "The database roles"). The embedded server has both.
if (_owner := _owner_url()) and (_owner_db := _owner_database(DATABASES["default"], _owner)):
    DATABASES["owner"] = _owner_db
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url()
# Every Redis client (the wake-up flags, the rate limit, the cache the login throttle counts in,
# Channels, the Celery broker) gives up on a connect or a reply after this long: a Redis that is
# hung, or gone without closing its connections, must not hold a request (or a publish) for ever.
REDIS_TIMEOUT_S = number("REDIS_TIMEOUT_S", 0.5, whole=False)
REDIS_CLIENT_OPTIONS = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}


def _celery_broker(redis_url: str) -> str:
    # Celery (kombu) spells a unix socket redis+socket://, redis-py and channels_redis unix://
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or _celery_broker(REDIS_URL)
# Integration messages (app/integration): RabbitMQ when AMQP_URL is set, else the Redis above.
AMQP_URL = os.environ.get("AMQP_URL", "").strip()
INTEGRATION_BROKER_URL = (
    os.environ.get("INTEGRATION_BROKER_URL", "").strip() or AMQP_URL or _celery_broker(REDIS_URL)
)  # INTEGRATION_BROKER_URL: another broker still (tests point a worker at one of their own)
EVENTFOLD_EXCHANGE = os.environ.get("EVENTFOLD_EXCHANGE", "eventfold").strip() or "eventfold"
INTEGRATION_CONNECT_TIMEOUT_S = number("INTEGRATION_CONNECT_TIMEOUT_S", 2, whole=False)
# The inbox (app/integration/inbox.py, `manage.py consume_inbox`; docs/integration.md).
EVENTFOLD_INBOX_QUEUE = os.environ.get("EVENTFOLD_INBOX_QUEUE", "eventfold.inbox").strip() or "eventfold.inbox"
INBOX_PREFETCH = number("INBOX_PREFETCH", 4, least=1)
INBOX_MAX_ATTEMPTS = number("INBOX_MAX_ATTEMPTS", 5, least=1)  # a transient failure's tries, then parked
INBOX_RETRY_BACKOFF_S = number("INBOX_RETRY_BACKOFF_S", 0.5, whole=False)  # doubled after each try
INBOX_MAX_BODY_BYTES = number("INBOX_MAX_BODY_BYTES", 65536, least=1)
INBOX_RETENTION_S = number("INBOX_RETENTION_S", 7 * 86400)
DEAD_LETTER_RETENTION_S = number("DEAD_LETTER_RETENTION_S", 30 * 86400)  # settled ones
# Outside readers (docs/integration.md): live streams per web process, their keep-alive, and how
# long a subscription's consumer keeps its buckets without fetching.
LIVE_MAX_STREAMS = number("LIVE_MAX_STREAMS", 100, least=1)
LIVE_HEARTBEAT_S = number("LIVE_HEARTBEAT_S", 15, whole=False)
SUBSCRIPTION_LEASE_S = number("SUBSCRIPTION_LEASE_S", 30, whole=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes every database connection before and after each task unless this
# is set: a catch-up (one every few commands) then paid for a new PostgreSQL backend, its login and
# cold caches, and lost its prepared statements. A worker keeps its connection for this many tasks;
# Django's checks (CONN_MAX_AGE, a connection that failed) and libpq's still run before each task
# (app/core/connections.py), and a catch-up whose kept connection the server dropped runs again
# once on a new one (projections/tasks.py).
CELERY_DB_REUSE_MAX = number("CELERY_DB_REUSE_MAX", 1000, least=1)
# (a worker's BRPOP waits up to 1 s for a task: a reply may take that much longer)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S + 1}
    if CELERY_BROKER_URL.startswith("redis")
    else {}
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING, as every process does (app/celery.py)
# A prefix keeps the tests' queues apart from a `make run` sharing the same Redis.
QUEUE_PREFIX = os.environ.get("EVENTFOLD_QUEUE_PREFIX", "")
QUEUES = {name: QUEUE_PREFIX + name for name in ("celery", "projections", "rebuilds")}
CELERY_TASK_DEFAULT_QUEUE = QUEUES["celery"]
CELERY_TASK_ROUTES = {
    "projections.*": {"queue": QUEUES["projections"]},
    "rebuilds.*": {"queue": QUEUES["rebuilds"]},
    "ledger.*": {"queue": QUEUES["projections"]},  # process-manager work, beside catch-up
}
CELERY_BEAT_SCHEDULE = {
    "projections-safety-net": {"task": "projections.tick", "schedule": 3.0},
    "ledger-expire-transfers": {"task": "ledger.expire_transfers", "schedule": 5.0},
    "core-sweep-idempotency": {"task": "core.sweep_idempotency", "schedule": 600.0},  # keys past 24 h
    "integration-sweep-inbox": {"task": "integration.sweep_inbox", "schedule": 600.0},  # past their retention
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": dict(REDIS_CLIENT_OPTIONS),
    }
}

# Logins (app/core/throttle.py, django-axes): every login goes through Django's authenticate(), the
# console's /login/ and /admin/ alike. Failures count in the cache per username (normalised as the
# login does) and client address, and per address across usernames; a lock lasts the cool-off.
LOGIN_MAX_FAILURES = number("LOGIN_MAX_FAILURES", 5, least=1)  # per username and address
LOGIN_MAX_FAILURES_PER_ADDRESS = number("LOGIN_MAX_FAILURES_PER_ADDRESS", 20, least=1)  # any usernames
LOGIN_COOLOFF_S = number("LOGIN_COOLOFF_S", 300)  # a lock lasts this long after the last failure
# Proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated); none by
# default: the client address is the connection's. uvicorn's command line follows the same variable.
TRUSTED_PROXIES = [p.strip() for p in os.environ.get("EVENTFOLD_TRUSTED_PROXIES", "").split(",") if p.strip()]
for _proxy in TRUSTED_PROXIES:
    ipaddress.ip_network(_proxy, strict=False)  # a typo stops the start, not a login
AUTHENTICATION_BACKENDS = ["app.core.throttle.ThrottleBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "app.core.throttle.LoginThrottle"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # and per address: LoginThrottle
AXES_FAILURE_LIMIT = "app.core.throttle.failure_limit"
AXES_COOLOFF_TIME = "app.core.throttle.cool_off"
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # a lock ends on time, however often it is tried
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "app.core.throttle.login_username"
AXES_CLIENT_IP_CALLABLE = "app.core.throttle.client_address"
AXES_LOCKOUT_CALLABLE = "app.core.views.locked_out"
AXES_ENABLE_ADMIN = False  # the attempts live in the cache, not in axes' tables
AXES_VERBOSE = False

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # (a websocket's receive blocks in Redis for up to 5 s, channels_redis's brpop_timeout)
        "CONFIG": {
            "hosts": [
                {"address": REDIS_URL, "socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S + 5}
            ]
        },
    }
}

# Wraps the per-subject keys that encrypt personal data in events (32 bytes, URL-safe base64).
if PRODUCTION:
    EVENTFOLD_MASTER_KEY = os.environ["EVENTFOLD_MASTER_KEY"].strip()
else:
    EVENTFOLD_MASTER_KEY = os.environ.get("EVENTFOLD_MASTER_KEY") or embedded.secret_file("master_key")

CONSISTENCY_TIMEOUT_S = number("CONSISTENCY_TIMEOUT_S", 5, whole=False)  # ?consistent_with= waits at most this
BACKPRESSURE_MAX_LAG = number("BACKPRESSURE_MAX_LAG", 50000)  # events not yet projected
BACKPRESSURE_RETRY_AFTER_S = 5
# Each process reads the published lag at most this often (projections/backpressure.py).
BACKPRESSURE_READ_EVERY_S = number("BACKPRESSURE_READ_EVERY_S", 1, whole=False)
# A catch-up task waits this long before it takes the buckets waiting for it, so that the appends
# of that moment join it: a catch-up's cost is mostly per task, not per event (docs/design.md,
# "Wake-ups"; docs/benchmarks.md, P2). Read models lag by up to this much more; 0 takes them at once.
CATCH_UP_GATHER_S = number("CATCH_UP_GATHER_MS", 20, whole=False) / 1000
# A transfer still pending this long after its request, its debit not confirmed, fails as expired.
EVENTFOLD_TRANSFER_DEADLINE_S = number("EVENTFOLD_TRANSFER_DEADLINE_S", 60, whole=False)
# Rebuilds (projections/rebuild.py): events per batch (each commits with the rebuild's checkpoint),
# and how long a running rebuild may show no progress before beat hands it to a new chain of slices.
REBUILD_BATCH_EVENTS = number("REBUILD_BATCH_EVENTS", 10000, least=1)
REBUILD_STALLED_AFTER_S = number("REBUILD_STALLED_AFTER_S", 30, whole=False)
API_MAX_BODY_BYTES = number("API_MAX_BODY_BYTES", 64 * 1024, least=1)
# The REST API's rate limit (app/api/ratelimit.py): requests per window per bearer token, and per
# client address for requests without a valid token; 0 turns either off. The per-token default is
# generous on purpose (2,000 a second: the benchmark's clients are never held back); a production
# deployment sets it to what one client may fairly send (docs/deployment.md: 1200, say).
API_RATE_LIMIT = number("API_RATE_LIMIT", 120000)
API_ANON_RATE_LIMIT = number("API_ANON_RATE_LIMIT", 300)
API_RATE_WINDOW_S = number("API_RATE_WINDOW_S", 60, least=1)
# How long each web process keeps a bearer token's lookup (app/api/auth.py): the delay within
# which revoking a token, deactivating a user or changing a role takes effect (0: no cache).
API_TOKEN_CACHE_S = number("API_TOKEN_CACHE_S", 5, whole=False)

# Prometheus metrics (app/core/metrics.py, docs/operations/metrics.md). prometheus_client's
# multiprocess mode: every web and worker process on this machine writes its counters to files in
# one directory, and any web process's GET /metrics adds them up. The variable must be in the
# environment before prometheus_client is imported, and children inherit it; the tests get a
# directory of their own per run, so a `make run` beside them is never counted.
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
    Path(tempfile.mkdtemp(prefix="eventfold-metrics-test-"))
    if TESTING
    else Path(tempfile.gettempdir()) / f"eventfold-metrics-{os.getuid()}"
    if PRODUCTION
    else embedded.data_dir() / "metrics"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
Path(METRICS_DIR).mkdir(parents=True, exist_ok=True)
# GET /metrics without a bearer token: for a scraper inside a private network only.
METRICS_ALLOW_ANONYMOUS = _env_flag("METRICS_ALLOW_ANONYMOUS", False)

EVENTSTORE = {
    "SNAPSHOT_EVERY": number("EVENTSTORE_SNAPSHOT_EVERY", 100),
}

# Categories whose events expire, KurrentDB's $maxAge / $maxCount per category (eventstore.retention):
# {"category": {"max_age": seconds, "max_count": events kept per stream}}. Readers leave expired
# events out at once; `manage.py enforce_retention` deletes them. None ships: the ledger's events
# (accounts, transfers) never expire, and an aggregate's category is refused.
EVENTFOLD_RETENTION: dict[str, dict[str, int]] = {}

# Django's four: not like the username or e-mail, at least 12 characters (PCI DSS 4.0, 8.3.6, for
# a system that moves money), not a common password, not only digits. Every place that sets a
# console password applies them: the console's user form, create_token --password, changepassword.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Each event type's JSON schema per version, committed (eventstore/contracts.py, `manage.py event_schemas`)
EVENT_SCHEMA_DIR = BASE_DIR / "schemas" / "events"
INTEGRATION_SCHEMA_DIR = BASE_DIR / "schemas" / "integration"  # the published integration events' schemas
WHITENOISE_USE_FINDERS = True  # serve straight from the apps' static folders, collectstatic or not
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# Logs (app/core/logs.py, docs/operations/logging-and-tracing.md): JSON lines in production,
# readable ones elsewhere; a level for the root and, optionally, per logger ("celery=WARNING,app=DEBUG").
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json" if PRODUCTION else "console").strip().lower()
try:
    LOGGING = logs.settings_logging(
        fmt=LOG_FORMAT,
        level=os.environ.get("LOG_LEVEL", "INFO").strip(),
        levels=logs.parse_levels(os.environ.get("LOG_LEVELS", "")),
    )
except ValueError as exc:
    raise SettingError(str(exc)) from None
LOGGING_CONFIG = "app.core.logs.configure"
# Traces (app/core/telemetry.py): on when OTEL_TRACES_EXPORTER names exporters (otlp, console) and
# OTEL_SDK_DISABLED is not true. The SDK and its exporters read the other OTEL_* variables themselves.
TRACES_EXPORTERS: list[str] = []
if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
    TRACES_EXPORTERS = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if "none" in TRACES_EXPORTERS:
        TRACES_EXPORTERS = []
    if set(TRACES_EXPORTERS) - {"otlp", "console"}:
        raise SettingError(
            f"OTEL_TRACES_EXPORTER takes otlp, console (or both, comma-separated) or none, "
            f"not {os.environ['OTEL_TRACES_EXPORTER'].strip()!r}."
        )
# The console's event page links an event's trace id here ("{trace_id}" is replaced), e.g.
# http://localhost:16686/trace/{trace_id} for Jaeger; unset: the trace id is shown, unlinked.
EVENTFOLD_TRACE_URL = os.environ.get("EVENTFOLD_TRACE_URL", "").strip()
if EVENTFOLD_TRACE_URL and (
    "{trace_id}" not in EVENTFOLD_TRACE_URL or not EVENTFOLD_TRACE_URL.startswith(("http://", "https://"))
):
    raise SettingError(
        "EVENTFOLD_TRACE_URL must be an http(s) URL with {trace_id} where the trace id goes, "
        "e.g. http://localhost:16686/trace/{trace_id} (Jaeger)."
    )
