"""Passwords: the policy (at least 12 characters, not a common password, no composition rules: NIST 800-63B) and
the hash (FAB's default, scrypt), in one place for sign-in, resets and seeding."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

MIN_LENGTH = 12
MAX_LENGTH = 128
_LIST = Path(__file__).with_name("common_passwords.txt")


@functools.lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    lines = _LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is refused, in words for the form; None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    # "password1234" and "Qwerty123456!" are the common password with something stuck on the end.
    stem = re.sub(r"[\d\W_]+$", "", lowered)
    if lowered in _common() or (len(stem) >= 6 and stem in _common()):
        return "This is a commonly used password; choose one that is harder to guess."
    if len(set(lowered)) <= 2:
        return "This password repeats the same characters; choose one that is harder to guess."
    if email and email.split("@")[0].lower() in lowered and len(email.split("@")[0]) >= 4:
        return "Do not use your email address in your password."
    return None


def hash_password(password: str) -> str:
    """FAB's default password hash (scrypt), with FAB's settings."""
    return generate_password_hash(
        password,
        method=current_app.config.get("FAB_PASSWORD_HASH_METHOD", "scrypt"),
        salt_length=current_app.config.get("FAB_PASSWORD_HASH_SALT_LENGTH", 16),
    )


def password_matches(stored_hash: str | None, password: str | None) -> bool:
    return check_password_hash(stored_hash or "", password or "")
