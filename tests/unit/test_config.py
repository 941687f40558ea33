"""Configuration: working embedded defaults; in production a wrong or missing setting stops start-up in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults(tmp_path):
    values = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert values["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert (values["PORTAL_LOCALE"], values["PORTAL_TIMEZONE"], values["PORTAL_CURRENCY"]) == (
        "en_NZ",
        "Pacific/Auckland",
        "NZD",
    )
    assert values["CSP_PROVIDER"] == "sandbox"
    assert values["MAIL_BACKEND"] == "app.services.mail.OutboxEmailBackend" and values["MAIL_FILE_PATH"] == str(
        tmp_path / "outbox"
    )
    assert values["SESSION_STORE"] == "database" and values["RATELIMIT_STORAGE_URI"] == "memory://"
    assert values["FAB_CREATE_DB"] is False and values["FAB_UPDATE_PERMS"] is False
    assert values["FAB_SAFE_REDIRECT_HOSTS"] == ["127.0.0.1", "localhost"]


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path)})["SECRET_KEY"]
    second = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path)})["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    other = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path / "other")})["SECRET_KEY"]
    assert other != first


def test_redis_url_moves_sessions_and_limits_to_redis(tmp_path):
    values = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert values["SESSION_STORE"] == "redis" and values["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"


PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "x" * 40,
    "DATABASE_URL": "postgresql://portal@db/portal",
    "REDIS_URL": "redis://cache:6379/0",
    "MAIL_SERVER": "smtp.example.com",
    "PORTAL_BASE_URL": "https://partner.mycloudstore.co.nz",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is required in production"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is required in production"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "must point at PostgreSQL in production"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be a sqlite:// or postgresql:// URL"),
        ({"REDIS_URL": ""}, "REDIS_URL is required in production"),
        ({"MAIL_SERVER": ""}, "MAIL_SERVER is required in production"),
        ({"CSP_PROVIDER": "magic"}, "CSP_PROVIDER must be one of sandbox, partner_center"),
        ({"CSP_PROVIDER": "partner_center"}, "PARTNER_CENTER_TENANT_ID is required"),
        ({"PORTAL_TIMEZONE": "Mars/Olympus"}, "PORTAL_TIMEZONE 'Mars/Olympus' is not a known time zone"),
        ({"PORTAL_CURRENCY": "XYZ"}, "PORTAL_CURRENCY 'XYZ' is not an ISO 4217 currency code"),
        ({"MAIL_PORT": "twenty-five"}, "MAIL_PORT must be a whole number"),
        ({"PORTAL_ENV": "staging"}, "PORTAL_ENV must be one of"),
        ({"PORTAL_BASE_URL": ""}, "PORTAL_BASE_URL is required in production"),
        ({"PORTAL_BASE_URL": "http://partner.example"}, "PORTAL_BASE_URL must be an https:// address in production"),
        ({"PORTAL_BASE_URL": "partner.example"}, "PORTAL_BASE_URL must be an http"),
    ],
)
def test_wrong_settings_name_the_setting(tmp_path, change, message):
    environ = {**PRODUCTION, "PORTAL_INSTANCE_PATH": str(tmp_path), **change}
    with pytest.raises(config.ConfigError, match=message):
        config.load(environ)


def test_a_complete_production_configuration_loads(tmp_path):
    values = config.load({**PRODUCTION, "PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert values["SESSION_COOKIE_SECURE"] is True and values["MAIL_BACKEND"] == "smtp"
    assert values["TRUSTED_HOSTS"] == ["partner.mycloudstore.co.nz"] and values["HSTS"] is True


def test_development_links_and_hosts_default_to_the_local_server(tmp_path):
    values = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path), "PORT": "8080"})
    assert values["PORTAL_BASE_URL"] == "http://127.0.0.1:8080"
    assert values["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost"] and values["SESSION_COOKIE_SECURE"] is False
    assert values["PROXY_COUNT"] == 0 and values["HSTS"] is False


def test_start_up_with_a_bad_setting_prints_one_line_and_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DATABASE_", "SECRET_", "REDIS_"))}
    env.update(
        PORTAL_ENV="production",
        PORTAL_INSTANCE_PATH=str(tmp_path),
        DATABASE_URL="postgresql://x@db/x",
        REDIS_URL="redis://cache:6379/0",
        MAIL_SERVER="smtp.example.com",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "Partner Portal cannot start: SECRET_KEY is required in production (at least 32 random characters)"
    ]


def test_event_retention_and_the_owners_url(tmp_path):
    values = config.load({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert values["EVENT_RETENTION_DAYS"] == 400 and values["MIGRATION_DATABASE_URL"] == ""
    owner = "postgresql://portal_owner@db/portal"
    values = config.load(
        {"PORTAL_INSTANCE_PATH": str(tmp_path), "EVENT_RETENTION_DAYS": "30", "MIGRATION_DATABASE_URL": owner}
    )
    assert values["EVENT_RETENTION_DAYS"] == 30 and values["MIGRATION_DATABASE_URL"] == owner
    with pytest.raises(config.ConfigError, match="EVENT_RETENTION_DAYS must be at least 1"):
        config.load({"PORTAL_INSTANCE_PATH": str(tmp_path), "EVENT_RETENTION_DAYS": "0"})
    with pytest.raises(config.ConfigError, match="MIGRATION_DATABASE_URL must be a sqlite:// or postgresql://"):
        config.load({"PORTAL_INSTANCE_PATH": str(tmp_path), "MIGRATION_DATABASE_URL": "mysql://x"})
