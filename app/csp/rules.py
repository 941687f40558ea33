"""What Microsoft accepts for a new customer: the onmicrosoft domain prefix, the company name and the contact.

One definition: the server checks these before any provider call, and the domain rules are handed to the
browser (``DOMAIN_RULES``) so the field checks the same thing as you type.
"""

from __future__ import annotations

import re

DOMAIN_SUFFIX = ".onmicrosoft.com"
DOMAIN_MAX_LENGTH = 27
DOMAIN_PATTERN = r"^[a-z0-9]+$"
DOMAIN_MESSAGES = {
    "required": "Enter the domain name you want before .onmicrosoft.com.",
    "length": f"Use at most {DOMAIN_MAX_LENGTH} characters.",
    "characters": "Use letters and digits only: no spaces, dots, hyphens or other characters.",
}
# Handed to the browser as JSON: the same rules, the same words.
DOMAIN_RULES = {
    "maxLength": DOMAIN_MAX_LENGTH,
    "pattern": DOMAIN_PATTERN,
    "suffix": DOMAIN_SUFFIX,
    "messages": DOMAIN_MESSAGES,
}


def normalise_prefix(text: str | None) -> str:
    """What the user means: trimmed, lower-cased, without a typed ``.onmicrosoft.com``."""
    prefix = (text or "").strip().lower()
    if prefix.endswith(DOMAIN_SUFFIX):
        prefix = prefix[: -len(DOMAIN_SUFFIX)]
    return prefix


def prefix_problem(prefix: str) -> str | None:
    """Which domain rule ``prefix`` (already normalised) breaks, in words; None when it keeps them all."""
    if not prefix:
        return DOMAIN_MESSAGES["required"]
    if len(prefix) > DOMAIN_MAX_LENGTH:
        return DOMAIN_MESSAGES["length"]
    if not re.fullmatch(DOMAIN_PATTERN, prefix):
        return DOMAIN_MESSAGES["characters"]
    return None


# Company names Microsoft refuses as they stand: a legal-form abbreviation alone is not a name.
_ABBREVIATIONS = {
    "llc",
    "inc",
    "ltd",
    "limited",
    "corp",
    "co",
    "plc",
    "pty",
    "gmbh",
    "ag",
    "sa",
    "bv",
    "nv",
    "lp",
    "llp",
    "nz",
    "company",
    "corporation",
    "incorporated",
}
_PLACEHOLDER_NAMES = {
    "test",
    "tester",
    "testing",
    "admin",
    "administrator",
    "nobody",
    "none",
    "null",
    "user",
    "unknown",
    "na",
    "n/a",
    "xxx",
    "asdf",
    "firstname",
    "lastname",
    "name",
    "sample",
    "demo",
}


def company_name_problem(name: str) -> str | None:
    """Microsoft's company-name rules, each refusal naming the rule."""
    name = (name or "").strip()
    if not name:
        return "Company name is required."
    if len(name) <= 1:
        return "A company name must be more than a single character."
    if not re.search(r"[^\W_]", name):
        return "A company name cannot be only special characters or spaces."
    if re.fullmatch(r"(\S\s+)+\S", name):
        return "A company name cannot be single characters separated by spaces (like “1 2 3”)."
    if re.sub(r"[^\w/]", "", name).lower() in _ABBREVIATIONS:
        return "A company name cannot be a legal-form abbreviation on its own (like “LLC” or “Inc”)."
    if re.search(r"(.)\1\1", name.lower()):
        return "A company name cannot repeat a character three or more times in a row (like “999”)."
    return None


def person_name_problem(name: str, label: str, whose: str = "contact") -> str | None:
    """Microsoft's rules for a contact's (or the agreement signatory's) first or last name (``label``: which)."""
    name = (name or "").strip()
    if not name:
        return f"The {whose}'s {label} is required."
    if len(name) <= 1:
        return f"The {whose}'s {label} must be more than a single character."
    if len(name) > 40:
        return f"The {whose}'s {label} must be at most 40 characters."
    if name.lower() in _PLACEHOLDER_NAMES:
        return f"The {whose}'s {label} cannot be a placeholder like “{name}”: use the real person's name."
    if not re.search(r"[^\W\d_]", name):
        return f"The {whose}'s {label} cannot be only digits or special characters."
    return None


def contact_email_problem(email: str, reseller_domains: set[str]) -> str | None:
    """The customer's contact for Microsoft is the customer's own person: not Microsoft, not the reseller."""
    domain = (email or "").strip().lower().rpartition("@")[2]
    if domain == "microsoft.com" or domain.endswith(".microsoft.com"):
        return "The contact email cannot be a microsoft.com address."
    if domain in reseller_domains:
        return f"The contact email must be the customer's, not on your own domain ({domain})."
    return None
