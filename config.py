"""Settings, read from the environment. The defaults are the embedded mode of DESIGN.md rule 6:
SQLite in ``instance/``, mail to ``instance/outbox/``, sessions in the database, the sandbox CSP
provider — so ``make run`` needs nothing installed. ``PORTAL_ENV=production`` demands the real parts.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_name

BASE_DIR = Path(__file__).resolve().parent
MODES = ("development", "testing", "production")
CSP_PROVIDERS = ("sandbox", "partner_center")
LOG_FORMATS = ("text", "json")
# A silent mail server holds the outbox worker this long per SMTP step, at most.
MAIL_TIMEOUT_MAX = 60


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it and says what is expected."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def _tax_rate(env: Mapping[str, str]) -> Decimal:
    """GST as a fraction (0.15 for New Zealand's 15 %): "0.15" or "15%"."""
    raw = (env.get("TAX_RATE") or "0.15").strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise ConfigError(
            f"TAX_RATE must be a fraction such as 0.15 or a percentage such as 15%, not {raw!r}"
        ) from None
    if not value.is_finite() or not 0 <= value < 1:
        raise ConfigError(f"TAX_RATE must be at least 0 and below 1 (100 %), not {raw!r}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, not {value}")
    return value


def _float_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0 seconds")
    return value


def _secret_key(env: Mapping[str, str], instance: Path, mode: str) -> str:
    key = env.get("SECRET_KEY", "")
    if key:
        if len(key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters long")
        return key
    if mode == "production":
        raise ConfigError("SECRET_KEY is required in production (at least 32 random characters)")
    # Generated once and kept, so sessions survive restarts without a constant in the code.
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _database_url(env: Mapping[str, str], instance: Path, mode: str, name: str = "DATABASE_URL") -> str:
    url = env.get(name, "")
    if not url:
        if mode == "production":
            raise ConfigError(f"{name} is required in production (postgresql://...)")
        instance.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{instance / 'portal.db'}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
        raise ConfigError(f"{name} must be a sqlite:// or postgresql:// URL, not {url.split(':')[0]}://")
    if mode == "production" and url.startswith("sqlite:"):
        raise ConfigError(f"{name} must point at PostgreSQL in production, not SQLite")
    return url


def _web_settings(env: Mapping[str, str], mode: str) -> dict[str, Any]:
    """Where the portal is reached: the base URL of every emailed link (never the request's Host header), the host
    names it answers to, and how many proxies in front of it may be believed about the client and the scheme."""
    base = env.get("PORTAL_BASE_URL", "").strip()
    if not base:
        if mode == "production":
            raise ConfigError("PORTAL_BASE_URL is required in production (e.g. https://partner.mycloudstore.co.nz)")
        base = f"http://127.0.0.1:{_int(env, 'PORT', 5000, minimum=1)}"
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"PORTAL_BASE_URL must be an http(s):// address such as https://portal.example, not {base!r}")
    if mode == "production" and parts.scheme != "https":
        raise ConfigError("PORTAL_BASE_URL must be an https:// address in production")
    base = base.rstrip("/")
    raw_hosts = (
        env.get("TRUSTED_HOSTS") or env.get("PORTAL_HOSTS") or ("" if mode == "production" else "127.0.0.1,localhost")
    )
    hosts = [h.strip().lower() for h in raw_hosts.split(",") if h.strip()]
    if parts.hostname not in hosts:
        hosts.insert(0, parts.hostname)
    secure = parts.scheme == "https"
    return {
        "PORTAL_BASE_URL": base,
        # Flask refuses any other Host header (400) before a view runs; FAB redirects only to these after sign-in.
        "TRUSTED_HOSTS": hosts,
        "FAB_SAFE_REDIRECT_HOSTS": hosts,
        "PROXY_COUNT": _int(env, "PROXY_COUNT", 0),
        "SESSION_COOKIE_SECURE": _bool(env, "SESSION_COOKIE_SECURE", secure),
        "HSTS": secure,
        "PREFERRED_URL_SCHEME": parts.scheme,
    }


def _engine_options(env: Mapping[str, str], url: str) -> dict[str, Any]:
    """The pool checks a connection before lending it (a restarted or cut server's connections are replaced, not
    handed out dead). On PostgreSQL a server that does not answer costs a new connection ``DATABASE_CONNECT_TIMEOUT``
    seconds, not the operating system's minutes; ``DATABASE_STATEMENT_TIMEOUT`` (seconds, 0: none) ends a statement
    that runs longer."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        connect_args: dict[str, Any] = {"connect_timeout": _int(env, "DATABASE_CONNECT_TIMEOUT", 5, minimum=1)}
        statement_timeout = _seconds_or_off(env, "DATABASE_STATEMENT_TIMEOUT")
        if statement_timeout:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
        options["connect_args"] = connect_args
    return options


def _seconds_or_off(env: Mapping[str, str], name: str) -> float:
    """A number of seconds, where empty or 0 means "no limit"."""
    raw = (env.get(name) or "").strip()
    if raw in ("", "0"):
        return 0.0
    return _float_seconds(env, name, 0.0)


def _log_format(env: Mapping[str, str]) -> str:
    value = env.get("LOG_FORMAT", "text").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return value


def _migration_url(env: Mapping[str, str], instance: Path, mode: str) -> str:
    if not env.get("MIGRATION_DATABASE_URL"):
        return ""
    return _database_url(env, instance, mode, name="MIGRATION_DATABASE_URL")


def _locale_settings(env: Mapping[str, str]) -> dict[str, str]:
    locale = env.get("PORTAL_LOCALE", "en_NZ")
    zone = env.get("PORTAL_TIMEZONE", "Pacific/Auckland")
    currency = env.get("PORTAL_CURRENCY", "NZD").upper()
    try:
        Locale.parse(locale)
    except (ValueError, UnknownLocaleError):
        raise ConfigError(f"PORTAL_LOCALE {locale!r} is not a known locale (for example en_NZ)") from None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"PORTAL_TIMEZONE {zone!r} is not a known time zone (for example Pacific/Auckland)") from None
    if len(currency) != 3 or get_currency_name(currency, locale="en") == currency:
        raise ConfigError(f"PORTAL_CURRENCY {currency!r} is not an ISO 4217 currency code (for example NZD)")
    return {"PORTAL_LOCALE": locale, "PORTAL_TIMEZONE": zone, "PORTAL_CURRENCY": currency}


def _mail_settings(env: Mapping[str, str], instance: Path, mode: str) -> dict[str, Any]:
    server = env.get("MAIL_SERVER", "")
    settings: dict[str, Any] = {
        "MAIL_DEFAULT_SENDER": env.get(
            "MAIL_DEFAULT_SENDER", "Mycloudstore Partner Portal <no-reply@mycloudstore.co.nz>"
        ),
        "MAIL_FILE_PATH": str(instance / "outbox"),
        # The mail outbox (app/services/outbox.py): each SMTP step gives up after MAIL_TIMEOUT seconds (the worker's
        # time, never a web request's); a failed mail is tried again after MAIL_RETRY_SECONDS, doubling each time, up
        # to MAIL_MAX_ATTEMPTS tries in all, then shows as failed (with Resend) on the Users tab.
        "MAIL_TIMEOUT": _int(env, "MAIL_TIMEOUT", 5, minimum=1),
        "MAIL_RETRY_SECONDS": _int(env, "MAIL_RETRY_SECONDS", 30, minimum=1),
        "MAIL_MAX_ATTEMPTS": _int(env, "MAIL_MAX_ATTEMPTS", 6, minimum=1),
    }
    if settings["MAIL_TIMEOUT"] > MAIL_TIMEOUT_MAX:
        raise ConfigError(f"MAIL_TIMEOUT must be at most {MAIL_TIMEOUT_MAX} seconds, not {settings['MAIL_TIMEOUT']}")
    if not server:
        if mode == "production":
            raise ConfigError("MAIL_SERVER is required in production (the SMTP host for activation emails)")
        settings["MAIL_BACKEND"] = "app.services.mail.OutboxEmailBackend"
        return settings
    settings.update(
        MAIL_BACKEND="smtp",
        MAIL_SERVER=server,
        MAIL_PORT=_int(env, "MAIL_PORT", 587, minimum=1),
        MAIL_USERNAME=env.get("MAIL_USERNAME") or None,
        MAIL_PASSWORD=env.get("MAIL_PASSWORD") or None,
        MAIL_USE_TLS=_bool(env, "MAIL_USE_TLS", True),
        MAIL_USE_SSL=_bool(env, "MAIL_USE_SSL", False),
    )
    if settings["MAIL_USE_TLS"] and settings["MAIL_USE_SSL"]:
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL cannot both be on")
    return settings


def _csp_settings(env: Mapping[str, str], mode: str) -> dict[str, Any]:
    provider = env.get("CSP_PROVIDER", "sandbox")
    if provider not in CSP_PROVIDERS:
        raise ConfigError(f"CSP_PROVIDER must be one of {', '.join(CSP_PROVIDERS)}, not {provider!r}")
    settings: dict[str, Any] = {
        "CSP_PROVIDER": provider,
        "CSP_SANDBOX_LATENCY_MS": _int(env, "CSP_SANDBOX_LATENCY_MS", 0),
        "CSP_SANDBOX_FAIL_RATE": _float(env, "CSP_SANDBOX_FAIL_RATE", 0.0),
        # Which sandbox operations the failure rate applies to (comma-separated method names; empty: all).
        "CSP_SANDBOX_FAIL_OPERATIONS": [
            o.strip() for o in env.get("CSP_SANDBOX_FAIL_OPERATIONS", "").split(",") if o.strip()
        ],
        "CSP_SANDBOX_SEED": _int(env, "CSP_SANDBOX_SEED", 0),
        # The share of sandbox changes that are made but whose answer is lost (a timeout after Microsoft acted).
        "CSP_SANDBOX_LOST_ANSWER_RATE": _float(env, "CSP_SANDBOX_LOST_ANSWER_RATE", 0.0),
        # How long one licence change may hold its subscription's lease (a crashed holder's lapses after this).
        "LICENCE_LEASE_SECONDS": _int(env, "LICENCE_LEASE_SECONDS", 60, minimum=1),
        # A provider operation "pending" longer than this lost its sender (a crash, a kill): it is sent again, with
        # the same MS-RequestId, by whoever finds it (a resend of its form, recover-operations, the worker's start).
        "OPERATION_TIMEOUT_SECONDS": _float_seconds(env, "OPERATION_TIMEOUT_SECONDS", 120.0),
        # A tenant "provisioning" longer than this lost its request (a crash, a kill): Microsoft is asked what exists.
        "TENANT_PROVISIONING_TIMEOUT_SECONDS": _float_seconds(env, "TENANT_PROVISIONING_TIMEOUT_SECONDS", 300.0),
        "PARTNER_CENTER_BASE_URL": env.get("PARTNER_CENTER_BASE_URL", "https://api.partnercenter.microsoft.com"),
        # Microsoft's partner API host, where the price sheet is downloaded (App+User tokens for its own audience).
        "PARTNER_API_BASE_URL": env.get("PARTNER_API_BASE_URL", "https://api.partner.microsoft.com"),
        # Where tokens come from (msal authority host; the tenant id is appended) and which CA bundle to trust.
        "PARTNER_CENTER_AUTHORITY": env.get("PARTNER_CENTER_AUTHORITY", "https://login.microsoftonline.com"),
        "PARTNER_CENTER_CA_BUNDLE": env.get("PARTNER_CENTER_CA_BUNDLE", ""),
        "PARTNER_CENTER_TENANT_ID": env.get("PARTNER_CENTER_TENANT_ID", ""),
        "PARTNER_CENTER_CLIENT_ID": env.get("PARTNER_CENTER_CLIENT_ID", ""),
        "PARTNER_CENTER_CLIENT_SECRET": env.get("PARTNER_CENTER_CLIENT_SECRET", ""),
        "PARTNER_CENTER_REFRESH_TOKEN": env.get("PARTNER_CENTER_REFRESH_TOKEN", ""),
        "PARTNER_CENTER_TIMEOUT_S": _float_seconds(env, "PARTNER_CENTER_TIMEOUT_S", 5.0),
        "PARTNER_CENTER_MAX_TRIES": _int(env, "PARTNER_CENTER_MAX_TRIES", 3, minimum=1),
        # The reseller-relationship invitation link of a linked tenant needs the partner's id.
        "PARTNER_CENTER_PARTNER_ID": env.get("PARTNER_CENTER_PARTNER_ID", ""),
        # Microsoft Graph, where the billed reconciliation data is exported (issue 14).
        "GRAPH_BASE_URL": env.get("GRAPH_BASE_URL", "https://graph.microsoft.com"),
        # GST on invoices (issue 14): New Zealand's 15 %.
        "TAX_RATE": _tax_rate(env),
    }
    if provider == "partner_center":
        for name in ("PARTNER_CENTER_TENANT_ID", "PARTNER_CENTER_CLIENT_ID", "PARTNER_CENTER_CLIENT_SECRET"):
            if not settings[name]:
                raise ConfigError(f"{name} is required when CSP_PROVIDER is partner_center")
    return settings


def load(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting of the app as a dict for ``app.config``; raises ConfigError on a bad one."""
    env = os.environ if environ is None else environ
    mode = env.get("PORTAL_ENV", "development")
    if mode not in MODES:
        raise ConfigError(f"PORTAL_ENV must be one of {', '.join(MODES)}, not {mode!r}")
    instance = Path(env.get("PORTAL_INSTANCE_PATH") or BASE_DIR / "instance").resolve()
    redis_url = env.get("REDIS_URL", "")
    if mode == "production" and not redis_url:
        raise ConfigError("REDIS_URL is required in production (rate limits and jobs shared by every worker)")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must be a redis:// URL, not {redis_url!r}")
    database_url = _database_url(env, instance, mode)

    settings: dict[str, Any] = {
        "PORTAL_ENV": mode,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": _secret_key(env, instance, mode),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(env, database_url),
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "REDIS_URL": redis_url,
        # Sessions, rate limits and job enqueues give up on a silent Redis after this long (seconds), once.
        "REDIS_SOCKET_TIMEOUT": _float_seconds(env, "REDIS_SOCKET_TIMEOUT", 1.0),
        # One log line per record: "text" (human, with the request id) or "json" (for a log collector).
        "LOG_FORMAT": _log_format(env),
        # Flask-AppBuilder
        "APP_NAME": "Mycloudstore Partner Portal",
        "AUTH_TYPE": 1,  # AUTH_DB
        "AUTH_ROLE_ADMIN": "Operator Admin",
        "AUTH_ROLE_PUBLIC": "Public",
        "AUTH_USER_REGISTRATION": False,
        "AUTH_RATE_LIMITED": True,
        "AUTH_RATE_LIMIT": env.get("AUTH_RATE_LIMIT", "10 per 20 second"),
        # Per address typed (security/throttle.py): free attempts, then a delay that doubles up to the maximum.
        "SIGN_IN_FREE_ATTEMPTS": _int(env, "SIGN_IN_FREE_ATTEMPTS", 5, minimum=1),
        "SIGN_IN_DELAY_SECONDS": _int(env, "SIGN_IN_DELAY_SECONDS", 30, minimum=1),
        "SIGN_IN_MAX_DELAY_SECONDS": _int(env, "SIGN_IN_MAX_DELAY_SECONDS", 900, minimum=1),
        "FAB_SECURITY_MANAGER_CLASS": "security.manager.PortalSecurityManager",
        "FAB_INDEX_VIEW": "views.partner.home.HomeView",
        "FAB_BASE_TEMPLATE": "portal/base.html",
        # The schema comes from migrations and roles from `flask portal sync-roles` (DESIGN.md rule 5).
        "FAB_CREATE_DB": False,
        "FAB_UPDATE_PERMS": _bool(env, "FAB_UPDATE_PERMS", False),
        "FAB_ADD_OPENAPI_VIEWS": False,
        "FAB_ADD_MENU_API": False,
        "FAB_ADD_SECURITY_API": False,
        "FAB_API_MAX_PAGE_SIZE": 100,
        "LANGUAGES": {"en": {"flag": "nz", "name": "English"}},
        "BABEL_DEFAULT_LOCALE": "en",
        # CSRF on every change (DESIGN.md rule 2); tokens live as long as the session does.
        "WTF_CSRF_ENABLED": True,
        "WTF_CSRF_TIME_LIMIT": None,
        # Server-side sessions: logging out ends them for good.
        "SESSION_STORE": "redis" if redis_url else "database",
        # Idle lifetime (renewed by every request) and absolute lifetime (from sign-in, whatever the activity).
        "PERMANENT_SESSION_LIFETIME": _int(env, "SESSION_LIFETIME_MINUTES", 480, minimum=5) * 60,
        "SESSION_ABSOLUTE_HOURS": _int(env, "SESSION_ABSOLUTE_HOURS", 12, minimum=1),
        # Expired database sessions are deleted on about one request in N; 0 leaves it to `flask session_cleanup`.
        "SESSION_CLEANUP_N_REQUESTS": _int(env, "SESSION_CLEANUP_N_REQUESTS", 0 if mode == "testing" else 200),
        "SESSION_COOKIE_NAME": "portal_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Rate limits: settings must be in place before appbuilder.init_app (FAB pitfall 4).
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", mode != "testing"),
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        # A moving window: N per minute means any 60 seconds, not per clock minute (no double burst at :59/:00).
        "RATELIMIT_STRATEGY": "moving-window",
        "RATELIMIT_HEADERS_ENABLED": True,
        # Product settings
        "OPERATOR_NAME": env.get("OPERATOR_NAME", "Mycloudstore"),
        "DEFAULT_MASTER_ADMIN_EMAIL": env.get("DEFAULT_MASTER_ADMIN_EMAIL", "default.masteradmin@mycloudstore.co.nz"),
        "ACTIVATION_LINK_HOURS": _int(env, "ACTIVATION_LINK_HOURS", 72, minimum=1),
        # A new tenant's first admin password: the one-time link mailed to the master admin works this long (issue 15)
        "HANDOVER_LINK_HOURS": _int(env, "HANDOVER_LINK_HOURS", 72, minimum=1),
        # Import users stops adding after this long (the rest: "import the same file again"), well inside a worker's
        # request timeout: the temporary passwords are on that one answer alone.
        "M365_IMPORT_SECONDS": _int(env, "M365_IMPORT_SECONDS", 20, minimum=1),
        "IMPERSONATION_MINUTES": _int(env, "IMPERSONATION_MINUTES", 60, minimum=1),
        # Two-factor authentication: required of operator and partner staff in production; optional otherwise.
        "MFA_REQUIRED": _bool(env, "MFA_REQUIRED", mode == "production"),
        "LIST_PAGE_SIZE": _int(env, "LIST_PAGE_SIZE", 25, minimum=1),
        "DOMAIN_CHECK_RATE_LIMIT": env.get("DOMAIN_CHECK_RATE_LIMIT", "60 per minute"),
        # CSP Report exports: larger ones run as background jobs; their files are kept this long.
        "EXPORT_DIR": env.get("EXPORT_DIR") or str(instance / "exports"),
        "EXPORT_JOB_THRESHOLD": _int(env, "EXPORT_JOB_THRESHOLD", 20000, minimum=0),
        "EXPORT_RETENTION_HOURS": _int(env, "EXPORT_RETENTION_HOURS", 24, minimum=1),
        # A running job beats every JOB_HEARTBEAT_SECONDS; one silent for JOB_STALE_SECONDS lost its worker (killed,
        # restarted) and is failed, ready for Retry. A thread-mode job still queued that long never started.
        "JOB_HEARTBEAT_SECONDS": _float_seconds(env, "JOB_HEARTBEAT_SECONDS", 10.0),
        "JOB_STALE_SECONDS": _float_seconds(env, "JOB_STALE_SECONDS", 60.0),
        # The periodic work (app/services/maintenance.py): recovery, mail retries, the reconciliation with Microsoft.
        # 0 turns the loop off (tests drive the tasks themselves).
        "MAINTENANCE_INTERVAL_SECONDS": _int(env, "MAINTENANCE_INTERVAL_SECONDS", 0 if mode == "testing" else 30),
        # `flask portal reconcile` also runs on its own this often (0: only when asked).
        "RECONCILE_EVERY_HOURS": _int(env, "RECONCILE_EVERY_HOURS", 0 if mode == "testing" else 24),
        # Tests of crashes: the process exits at this named point (app/faults.py); never honoured in production.
        "PORTAL_FAULT_POINT": env.get("PORTAL_FAULT_POINT", "") if mode != "production" else "",
        "EXPORT_ROWS_PER_SHEET": _int(env, "EXPORT_ROWS_PER_SHEET", 0),
        "LIST_PAGE_SIZE_MAX": _int(env, "LIST_PAGE_SIZE_MAX", 100, minimum=1),
        "DEMO_PASSWORD": env.get("DEMO_PASSWORD", ""),
        # The event log: the database refuses to delete younger events (app/db_guard.py); purge-events removes older.
        "EVENT_RETENTION_DAYS": _int(env, "EVENT_RETENTION_DAYS", 400, minimum=1),
        # The tables' owner, for `flask db upgrade` and `flask portal event-triggers` (default: DATABASE_URL).
        "MIGRATION_DATABASE_URL": _migration_url(env, instance, mode),
    }
    settings.update(_web_settings(env, mode))
    settings.update(_locale_settings(env))
    settings.update(_mail_settings(env, instance, mode))
    settings.update(_csp_settings(env, mode))
    if overrides:
        settings.update(overrides)
    return settings
