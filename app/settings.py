"""Django settings. Every value that differs between machines comes from the environment, here only."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from app import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ.get("DJANGO_ENV", "development")
PRODUCTION = ENV == "production"
TESTING = os.environ.get("EVENTFOLD_TESTING") == "1"

if PRODUCTION:
    SECRET_KEY = os.environ["SECRET_KEY"]
    DEBUG = False
    ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
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
    "ninja",  # the API docs page from local static files, not a CDN
    "eventstore",
    "projections",
    "app.core",
    "app.ledger",
    "app.api",
    "app.console",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the console's pinned static files, in production too
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "app.api.ratelimit.RateLimitMiddleware",  # /api/ only
    "app.api.middleware.ApiBodyMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# The REST API's own chain (see app/asgi.py): bearer tokens, no cookies, async-native only.
API_MIDDLEWARE = ["app.api.ratelimit.RateLimitMiddleware", "app.api.middleware.ApiBodyMiddleware"]

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
    return embedded.database_url()  # the embedded server started by `make run` / `make test`


DATABASES = {"default": dj_database_url.parse(_database_url(), conn_max_age=600)}
# Server-side prepared statements: the event store prepares its fixed statements (Django's own
# client-side-bound queries are not affected). Set to None behind a transaction-mode pgbouncer.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_eventfold")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url()


def _celery_broker(redis_url: str) -> str:
    # Celery (kombu) spells a unix socket redis+socket://, redis-py and channels_redis unix://
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or _celery_broker(REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
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
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
LOGIN_MAX_FAILURES = int(os.environ.get("LOGIN_MAX_FAILURES", "5"))
LOGIN_FAILURE_WINDOW_S = 300

CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}

# Wraps the per-subject keys that encrypt personal data in events (32 bytes, URL-safe base64).
if PRODUCTION:
    EVENTFOLD_MASTER_KEY = os.environ["EVENTFOLD_MASTER_KEY"]
else:
    EVENTFOLD_MASTER_KEY = os.environ.get("EVENTFOLD_MASTER_KEY") or embedded.secret_file("master_key")

CONSISTENCY_TIMEOUT_S = float(os.environ.get("CONSISTENCY_TIMEOUT_S", "5"))  # ?consistent_with= waits at most this
BACKPRESSURE_MAX_LAG = int(os.environ.get("BACKPRESSURE_MAX_LAG", "50000"))  # events not yet projected
BACKPRESSURE_RETRY_AFTER_S = 5
# A transfer still pending this long after its request, its debit not confirmed, fails as expired.
EVENTFOLD_TRANSFER_DEADLINE_S = float(os.environ.get("EVENTFOLD_TRANSFER_DEADLINE_S", "60"))
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(64 * 1024)))
# The REST API's rate limit (app/api/ratelimit.py): requests per window per bearer token, and per
# client address for requests without a valid token; 0 turns either off.
API_RATE_LIMIT = int(os.environ.get("API_RATE_LIMIT", "120000"))
API_ANON_RATE_LIMIT = int(os.environ.get("API_ANON_RATE_LIMIT", "300"))
API_RATE_WINDOW_S = int(os.environ.get("API_RATE_WINDOW_S", "60"))

EVENTSTORE = {
    "SNAPSHOT_EVERY": int(os.environ.get("EVENTSTORE_SNAPSHOT_EVERY", "100")),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True  # serve straight from the apps' static folders, collectstatic or not
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
