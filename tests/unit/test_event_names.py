"""The Event Log names actions and targets in words; an action nobody named yet still never shows dotted."""

from __future__ import annotations

import pytest

from app import db_guard
from app.services.events import ACTION_NAMES, action_choices, action_name, target_name


@pytest.mark.parametrize(
    "action, words",
    [
        ("auth.login", "Signed in"),
        ("auth.login_failed", "Sign-in failed"),
        ("report.exported", "Exported a report"),
        ("impersonation.started", "Launched the customer portal"),
        ("mfa.recovery_code_used", "Used a recovery code"),
        ("widget.frobbed_twice", "Widget frobbed twice"),
        ("m365_user.archived", "Microsoft 365 user archived"),
        ("", "Something"),
    ],
)
def test_action_names(action, words):
    assert action_name(action) == words


def test_every_named_action_reads_as_words_and_names_are_unique():
    assert all("." not in name and "_" not in name for name in ACTION_NAMES.values())
    assert len(set(ACTION_NAMES.values())) == len(ACTION_NAMES)  # a filter choice is one action


def test_targets_and_the_customer_portals_choices():
    assert target_name("PortalUser") == "User" and target_name("MicrosoftTenant") == "Microsoft tenant"
    assert target_name("SomethingNew") == "Something new" and target_name(None) == ""
    offered = dict(action_choices(customer_portal=True))
    assert "auth.login" in offered and "reseller.created" not in offered and "product.created" not in offered


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_retention_is_written_into_the_triggers(dialect):
    ddl = " ".join(db_guard.create_statements(dialect, 30))
    assert "30 days" in ddl and "400" not in ddl
    with pytest.raises(ValueError):
        db_guard.create_statements(dialect, 0)
