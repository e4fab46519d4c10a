"""BeamClaw settings, read from the environment (12-factor): one module for every machine.

DEBUG is off unless DEBUG=1 (`make run` and the tests set it). With DEBUG off the platform
refuses to start without SECRET_KEY and FERNET_KEYS; production also sets DATABASE_URL,
REDIS_URL, ALLOWED_HOSTS and METRICS_TOKEN.
"""

from __future__ import annotations

import json
import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("BEAMCLAW_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def refuse_to_start(problem: str) -> None:
    """Stop the process with one line saying what to set (no traceback: it is not a bug)."""
    raise SystemExit(f"BeamClaw will not start: {problem}")


def _production_secrets_missing() -> list[str]:
    present = {
        "SECRET_KEY": bool(os.environ.get("SECRET_KEY", "").strip()),
        "FERNET_KEYS": bool(env_list("FERNET_KEYS", [])),  # " , " lists no key
    }
    return [name for name, given in present.items() if not given]


if not DEBUG and (missing := _production_secrets_missing()):
    refuse_to_start(
        f"DEBUG is off and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
        "set. Set SECRET_KEY to a long random string and FERNET_KEYS to one or more Fernet "
        "keys (comma-separated, newest first), or set DEBUG=1 on a development machine."
    )


def _secret_key() -> str:
    """SECRET_KEY from the environment, else (DEBUG only) a dev key generated once in var/."""
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: docs work offline
    "django_celery_beat",
    "beamclaw",
    "tenants",
    "agents",
    "fleet",
    "marketplace",
    "bench",
]

# Every one runs on the event loop under ASGI (beamclaw/middleware.py says how): an API
# request reaches its view without a thread hop.
MIDDLEWARE = [
    "beamclaw.middleware.SecurityHeaders",  # Django's SecurityMiddleware
    "beamclaw.middleware.StaticFiles",  # WhiteNoise, under STATIC_URL only
    "beamclaw.api.errors.json_errors_middleware",
    "beamclaw.middleware.SlashRedirects",  # Django's CommonMiddleware
    "beamclaw.middleware.SessionPaths",  # session, CSRF, auth, messages: SESSION_PATHS only
    "beamclaw.middleware.FrameOptions",  # Django's XFrameOptionsMiddleware
]
# The paths that use a cookie session: the admin, and the ops API (staff may sign in there
# with the admin's session).
SESSION_PATHS = ["/admin/", "/api/v1/ops/"]
# Django looks for its own middleware by name; ours above are those, or run them, and
# beamclaw/checks.py runs the deploy checks Django would run for them.
SILENCED_SYSTEM_CHECKS = [
    "admin.E408",  # AuthenticationMiddleware: run by SessionPaths
    "admin.E409",  # MessageMiddleware: run by SessionPaths
    "admin.E410",  # SessionMiddleware: run by SessionPaths
    "security.W001",  # SecurityMiddleware: SecurityHeaders is it
    "security.W002",  # XFrameOptionsMiddleware: FrameOptions is it
    "security.W003",  # CsrfViewMiddleware: run by SessionPaths on the cookie paths
]

ROOT_URLCONF = "beamclaw.urls"
WSGI_APPLICATION = "beamclaw.wsgi.application"
ASGI_APPLICATION = "beamclaw.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "beamclaw" / "templates"],  # overrides of the admin's templates
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

# --- Database -------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'beamclaw.sqlite3'}"


def _database(url: str) -> dict:
    config = dj_database_url.parse(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside the one writer; IMMEDIATE makes writers queue on
        # the busy timeout instead of failing with "database is locked" on upgrade.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        config["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # psycopg's pool: a turn returns its connection while it waits on the model, and the
        # close() Celery's Django fix-up makes around every task just hands the connection
        # back instead of opening a new PostgreSQL backend each time.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "pool": {
                "min_size": env_int("DB_POOL_MIN", 2),
                "max_size": env_int("DB_POOL_MAX", 16),
                "timeout": env_float("DB_POOL_TIMEOUT", 30.0),
            }
        }
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -----------------------------------------------------------------

REDIS_SCHEMES = {"redis", "rediss", "unix"}
BROKER_SCHEMES = REDIS_SCHEMES | {"amqp", "amqps", "pyamqp", "memory"}


def env_url(name: str, default: str, schemes: set[str] | None) -> str:
    """A URL from the environment, or stop the process with one line saying what is wrong.

    Unset means the default; set but empty or malformed is a mistake (an empty broker URL
    would make kombu fall back to amqp://localhost and queue work where nobody listens).
    `schemes` None accepts any scheme.
    """
    value = os.environ.get(name)
    if value is None:
        return default
    parts = urlsplit(value.strip())
    known = parts.scheme in schemes if schemes else bool(parts.scheme)
    if not known or not (parts.hostname or parts.path.strip("/") or schemes is None):
        shown = repr(value) if value.strip() else "empty"
        accepted = f" (scheme {', '.join(sorted(schemes))})" if schemes else ""
        raise SystemExit(
            f"Configuration error: {name} is {shown}; expected a URL such as "
            f"{default}{accepted}, or leave {name} unset for {default}."
        )
    return value.strip()


REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", REDIS_SCHEMES)
# Every key BeamClaw writes starts with `<REDIS_KEY_PREFIX>:<installation id>:`, the id a
# migration stores in the database (beamclaw.installation), so installations sharing one
# Redis server never touch each other's data. BEAMCLAW_INSTALLATION_ID overrides it.
REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "bc")
INSTALLATION_ID = os.environ.get("BEAMCLAW_INSTALLATION_ID", "")

CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, BROKER_SCHEMES)
CELERY_RESULT_BACKEND = env_url("CELERY_RESULT_BACKEND", REDIS_URL, None)
CELERY_DEFAULT_QUEUE = "beamclaw"
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 8)
# Periodic platform jobs; django-celery-beat's scheduler copies these into its table.
CELERY_BEAT_SCHEDULE = {
    "reap-stale-turns": {
        "task": "agents.reap_stale_turns",
        "schedule": env_float("REAPER_INTERVAL_SECONDS", 5.0),
        "options": {"expires": 30},
    },
    "compute-capacity": {
        "task": "agents.compute_capacity",
        "schedule": env_float("CAPACITY_INTERVAL_SECONDS", 5.0),
        "options": {"expires": 30},
    },
}

# --- Auth, API ------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.api.auth.IsTenant"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["beamclaw.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "beamclaw.api.pagination.CursorPagination",
    "DEFAULT_SCHEMA_CLASS": "beamclaw.api.schema.AutoSchemaWithErrors",
    "EXCEPTION_HANDLER": "beamclaw.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["tenants.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": os.environ.get("API_RATE_LIMIT", "6000/min")},
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 50,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "BeamClaw API",
    "DESCRIPTION": (
        "Multi-tenant AI agent orchestration. Authenticate with "
        "`Authorization: Bearer <api key>`; every call is scoped to the key's tenant. "
        'Errors are always `{"error": {"code", "message", "details"}}` (`ErrorResponse`), '
        "with the statuses each operation lists."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64"},
        "version": {"type": "string", "pattern": "^[0-9A-Za-z.+-]{1,64}$"},
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Swagger UI would otherwise send the schema to validator.swagger.io for a badge.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {"QueueModeEnum": "agents.models.QueueMode"},
}

# --- Runtime --------------------------------------------------------------------------

# Fernet key(s) for secrets at rest (provider credentials, channel tokens), comma-separated,
# newest first. Required when DEBUG is off; with DEBUG on, derived from SECRET_KEY if unset.
FERNET_KEYS = env_list("FERNET_KEYS", [])


def _check_fernet_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            refuse_to_start(
                f"FERNET_KEYS entry {position} is not a Fernet key (32 url-safe base64-encoded "
                "bytes). Make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            )


_check_fernet_keys(FERNET_KEYS)

OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 60.0)
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", 3)
PROVIDER_BACKOFF_BASE = env_float("PROVIDER_BACKOFF_BASE", 0.5)
# PROVIDER_TIMEOUT bounds each network wait; a whole model call (retries included) ends
# by PROVIDER_CALL_DEADLINE, and an answer (decoded) may be at most this many bytes: a
# streamed 64k-token answer is about 15 MB of events.
PROVIDER_CALL_DEADLINE = env_float("PROVIDER_CALL_DEADLINE", 300.0)
PROVIDER_MAX_RESPONSE_BYTES = env_int("PROVIDER_MAX_RESPONSE_BYTES", 32_000_000)
# One JSON document (a non-streamed answer, or one streamed event) is parsed whole, at
# many times its size in memory; it may be at most this many bytes.
PROVIDER_MAX_DOCUMENT_BYTES = env_int("PROVIDER_MAX_DOCUMENT_BYTES", 2_000_000)
# Whether a tenant's own base URL may reach private, loopback and link-local addresses
# (a model server on the operator's network); off, only public addresses.
PROVIDER_BASE_URL_ALLOW_PRIVATE = env_bool("PROVIDER_BASE_URL_ALLOW_PRIVATE", False)
# The longest wait for the DNS lookup of a tenant's URL (a base URL, http_fetch), in
# seconds; a call's own deadline shortens it.
OUTBOUND_DNS_TIMEOUT = env_float("OUTBOUND_DNS_TIMEOUT", 5.0)

MESSAGE_MAX_BYTES = env_int("MESSAGE_MAX_BYTES", 100_000)
# Request bodies larger than this are refused with 413 before they are parsed (Django's own
# limit, which the API's JSON parser and the webhooks both honour).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
# JSON nested deeper than this is refused with 400 (deep nesting only ever comes from abuse,
# and would exhaust the interpreter's stack wherever the data is walked later).
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64)
TURN_LEASE_SECONDS = env_float("TURN_LEASE_SECONDS", 30.0)
TURN_LEASE_RENEW_SECONDS = env_float("TURN_LEASE_RENEW_SECONDS", 10.0)
# A turn found `running` by a new lease holder more often than this was killing its
# workers (or they kept dying under it): it fails with `worker_lost`.
TURN_MAX_ATTEMPTS = env_int("TURN_MAX_ATTEMPTS", 3)
# The reaper (a celery-beat task) runs this often. It re-dispatches a running turn whose
# lease has been gone for TURN_LEASE_GRACE_SECONDS (its worker died), and a queued turn
# that has waited TURN_REDISPATCH_AFTER_SECONDS with nobody holding its session (its
# Celery message was lost, e.g. Redis restarted, or the broker was down at submission).
REAPER_INTERVAL_SECONDS = env_float("REAPER_INTERVAL_SECONDS", 5.0)
TURN_LEASE_GRACE_SECONDS = env_float("TURN_LEASE_GRACE_SECONDS", 15.0)
TURN_REDISPATCH_AFTER_SECONDS = env_float("TURN_REDISPATCH_AFTER_SECONDS", 30.0)
# On SIGTERM a worker hands its turns back at their next step boundary; a model or tool
# call in flight is allowed this long to finish (the provider timeout bounds it anyway).
WORKER_SHUTDOWN_GRACE_SECONDS = env_float("WORKER_SHUTDOWN_GRACE_SECONDS", 30.0)
# Each worker renews its entry in the registry (fleet.registry) this often; an entry
# lives three heartbeats, so a dead worker drops out of the list within that.
WORKER_HEARTBEAT_SECONDS = env_float("WORKER_HEARTBEAT_SECONDS", 5.0)
# Each worker checks this often that it consumes exactly its tenants' queues under the
# shard map (a missed broadcast, a reshard, a deleted tenant heal within this).
QUEUE_RECONCILE_SECONDS = env_float("QUEUE_RECONCILE_SECONDS", 3.0)
WAIT_MAX_SECONDS = 60
# Event streams and `wait=` requests one web process holds open at once; each holds one
# Redis connection, so past this a new one answers 503 instead of exhausting the pool.
STREAMS_PER_PROCESS_MAX = env_int("STREAMS_PER_PROCESS_MAX", 1900)
# Connections of a web process's asyncio Redis client for blocking reads: one per open
# stream or `wait`, plus a margin. Redis itself accepts 10,000 clients by default.
REDIS_ASYNC_MAX_CONNECTIONS = env_int("REDIS_ASYNC_MAX_CONNECTIONS", STREAMS_PER_PROCESS_MAX + 100)
# Connections of its client for short commands (the rate limit, stream slots): a pool of
# its own, so open streams never starve them.
REDIS_ASYNC_COMMAND_CONNECTIONS = env_int("REDIS_ASYNC_COMMAND_CONNECTIONS", 100)
# A stream's slot in its tenant's count (Tenant.max_concurrent_streams) is a lease renewed
# while it is open: a web process that dies frees its slots within this.
STREAM_LEASE_SECONDS = env_float("STREAM_LEASE_SECONDS", 30.0)
# How often a web process re-checks the keys of its open streams: a revoked key or a
# suspended tenant loses its streams within this.
STREAM_ACCESS_CHECK_SECONDS = env_float("STREAM_ACCESS_CHECK_SECONDS", 2.0)
# A web process answers an API key it admitted this recently without the database
# (tenants.admitted_keys): a key revoked, or a tenant suspended, in another process is
# refused here within this; in this process at once. 0 turns the cache off.
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 2.0)
# Retry-After of a stream refused over a cap (streams end when clients leave: no schedule).
STREAM_RETRY_AFTER_SECONDS = 5

# --- Capacity: how many workers each shard needs (fleet.capacity) --------------------------
# The hash shard count workers are started with (--shard k/N); the signal is per shard.
WORKER_SHARDS = env_int("WORKER_SHARDS", 1)
CAPACITY_INTERVAL_SECONDS = env_float("CAPACITY_INTERVAL_SECONDS", 5.0)
CAPACITY_WORKER_CONCURRENCY = env_int("CAPACITY_WORKER_CONCURRENCY", 8)  # threads per worker
CAPACITY_TARGET_UTILISATION = env_float("CAPACITY_TARGET_UTILISATION", 0.8)
CAPACITY_BACKLOG_SECONDS = env_float("CAPACITY_BACKLOG_SECONDS", 10.0)
# Arrivals are counted over this window: shorter follows a burst's end sooner.
CAPACITY_ARRIVAL_WINDOW_SECONDS = env_float("CAPACITY_ARRIVAL_WINDOW_SECONDS", 30.0)
CAPACITY_MAX_WAIT_SECONDS = env_float("CAPACITY_MAX_WAIT_SECONDS", 5.0)
CAPACITY_MIN_WORKERS = env_int("CAPACITY_MIN_WORKERS", 1)
CAPACITY_MAX_WORKERS = env_int("CAPACITY_MAX_WORKERS", 10)
CAPACITY_SCALE_DOWN_WINDOW_SECONDS = env_float("CAPACITY_SCALE_DOWN_WINDOW_SECONDS", 120.0)
CAPACITY_DEFAULT_SERVICE_SECONDS = env_float("CAPACITY_DEFAULT_SERVICE_SECONDS", 10.0)
# The model provider's request limit shared by all workers (0: none known): more workers
# than it can keep busy would only wait on 429s.
PROVIDER_REQUESTS_PER_MINUTE = env_int("PROVIDER_REQUESTS_PER_MINUTE", 0)
# Over the requests-per-minute limit, a turn sleeps in place for a wait up to this long;
# a longer one parks the turn (checkpointed, back in the queue) until it may go on.
RATE_LIMIT_INLINE_WAIT_SECONDS = env_float("RATE_LIMIT_INLINE_WAIT_SECONDS", 2.0)
EVENT_STREAM_TTL_SECONDS = env_int("EVENT_STREAM_TTL_SECONDS", 24 * 3600)
SSE_HEARTBEAT_SECONDS = env_float("SSE_HEARTBEAT_SECONDS", 15.0)

TOOLS_HTTP_ALLOW_PRIVATE = env_bool("TOOLS_HTTP_ALLOW_PRIVATE", False)
TOOLS_HTTP_ALLOWED_HOSTS = env_list("TOOLS_HTTP_ALLOWED_HOSTS", [])
TOOLS_HTTP_MAX_BYTES = env_int("TOOLS_HTTP_MAX_BYTES", 100_000)
TOOLS_HTTP_TIMEOUT = env_float("TOOLS_HTTP_TIMEOUT", 10.0)

# Model prices in USD per million tokens, for UsageRecord.cost (tenants/metering.py). A
# model is priced by its exact name, else by the longest entry it extends with a dash (a
# dated snapshot such as gpt-4o-2024-08-06 costs what gpt-4o costs), else by
# DEFAULT_MODEL_PRICE. MODEL_PRICES_JSON adds or replaces entries:
# '{"my-model": {"input": 1.5, "output": 6}}'.
MODEL_PRICES: dict[str, dict[str, Decimal]] = {
    "gpt-4o-mini": {"input": Decimal("0.15"), "output": Decimal("0.60")},
    "gpt-4o": {"input": Decimal("2.50"), "output": Decimal("10.00")},
    "claude-3-5-haiku-latest": {"input": Decimal("0.80"), "output": Decimal("4.00")},
    "claude-3-5-haiku": {"input": Decimal("0.80"), "output": Decimal("4.00")},
    "claude-sonnet-4": {"input": Decimal("3"), "output": Decimal("15")},
    "offline-1": {"input": Decimal("0"), "output": Decimal("0")},
}


def _model_prices_from_env(name: str) -> dict[str, dict[str, Decimal]]:
    raw = os.environ.get(name) or "{}"
    try:
        # Prices go straight to Decimal: a float would bill 0.15 as 0.1499999...
        prices = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        return {
            str(model): {"input": Decimal(price["input"]), "output": Decimal(price["output"])}
            for model, price in prices.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError, InvalidOperation) as exc:
        raise ImproperlyConfigured(
            f'{name} must be a JSON object {{"<model>": {{"input": <USD per 1M tokens>, '
            f'"output": <USD per 1M tokens>}}}}: {exc!r}'
        )


MODEL_PRICES.update(_model_prices_from_env("MODEL_PRICES_JSON"))
DEFAULT_MODEL_PRICE = {"input": Decimal("0"), "output": Decimal("0")}

# Prometheus multiprocess mode (beamclaw/metrics.py): every process on this host (web,
# workers) writes its samples to files in this directory and GET /metrics adds them up.
# prometheus_client decides on multiprocess mode when it is first imported, by this
# environment variable, so it is exported here, before anything imports the client; child
# processes inherit it. Whoever starts the platform empties it first (scripts/dev.py does;
# `beamclaw.metrics.reset_multiprocess_dir()`), or dead processes' files would be counted.
# A relative path is taken from the project root, so every process agrees on it.
PROMETHEUS_MULTIPROC_DIR = BASE_DIR / (
    os.environ.get("PROMETHEUS_MULTIPROC_DIR") or VAR_DIR / "prometheus"
)
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
# GET /metrics is an operator endpoint: it requires `Authorization: Bearer <METRICS_TOKEN>`
# (what Prometheus sends with `authorization:`). Without a token it is refused unless DEBUG
# is on or the operator serves it to anyone on purpose (METRICS_PUBLIC=1, behind a firewall).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)

# Channels (agents/channels): the Slack and Discord Web API roots are settings so tests and
# staging can point them at a fake. A reply that fails with 429/5xx is retried with
# exponential backoff (or the Retry-After asked for), up to CHANNEL_DELIVERY_MAX_ATTEMPTS.
SLACK_API_BASE_URL = os.environ.get("SLACK_API_BASE_URL", "https://slack.com/api")
DISCORD_API_BASE_URL = os.environ.get("DISCORD_API_BASE_URL", "https://discord.com/api/v10")
CHANNEL_HTTP_TIMEOUT = env_float("CHANNEL_HTTP_TIMEOUT", 10.0)
CHANNEL_DELIVERY_MAX_ATTEMPTS = env_int("CHANNEL_DELIVERY_MAX_ATTEMPTS", 6)
CHANNEL_DELIVERY_BACKOFF_BASE = env_float("CHANNEL_DELIVERY_BACKOFF_BASE", 2.0)
# A reply longer than this many messages is cut, with a note: an answer of megabytes must
# not become thousands of posts (nor cost a worker the time to split it).
CHANNEL_REPLY_MAX_PARTS = env_int("CHANNEL_REPLY_MAX_PARTS", 10)
# Signed webhook requests older (or newer) than this are refused as replays.
CHANNEL_SIGNATURE_MAX_AGE_SECONDS = env_int("CHANNEL_SIGNATURE_MAX_AGE_SECONDS", 300)

# Staff logins (the admin's form, the ops API's HTTP Basic): after this many failures from
# one address within the window, further attempts from it are refused until the window
# ends; one user name failing this often from all addresses together is refused
# everywhere (beamclaw/login_throttle.py).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
LOGIN_FAILURE_LIMIT_PER_USER = env_int("LOGIN_FAILURE_LIMIT_PER_USER", 100)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 300)

# --- i18n, static ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every start when it is missing

# --- Logging --------------------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "beamclaw.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
