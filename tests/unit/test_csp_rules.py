"""Microsoft's rules for a new customer, each with one refused and one accepted example."""

from __future__ import annotations

import pytest

from app.csp.rules import (
    DOMAIN_MESSAGES,
    DOMAIN_RULES,
    company_name_problem,
    contact_email_problem,
    normalise_prefix,
    person_name_problem,
    prefix_problem,
)


@pytest.mark.parametrize(
    ("typed", "prefix"),
    [("  Enet123456 ", "enet123456"), ("enet.onmicrosoft.com", "enet"), ("ENET123.ONMICROSOFT.COM", "enet123")],
)
def test_prefixes_are_trimmed_lower_cased_and_lose_the_suffix(typed, prefix):
    assert normalise_prefix(typed) == prefix


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("", DOMAIN_MESSAGES["required"]),
        ("a" * 28, DOMAIN_MESSAGES["length"]),
        ("enet-123", DOMAIN_MESSAGES["characters"]),
        ("enet 123", DOMAIN_MESSAGES["characters"]),
        ("enet.nz", DOMAIN_MESSAGES["characters"]),
        ("énet", DOMAIN_MESSAGES["characters"]),
    ],
)
def test_domain_rules_refuse_naming_the_rule(prefix, message):
    assert prefix_problem(prefix) == message


@pytest.mark.parametrize("prefix", ["enet123456", "a", "a" * 27, "2degrees"])
def test_domain_rules_accept(prefix):
    assert prefix_problem(prefix) is None


def test_the_browser_gets_the_same_definition():
    assert DOMAIN_RULES["maxLength"] == 27 and DOMAIN_RULES["messages"] == DOMAIN_MESSAGES
    assert DOMAIN_RULES["pattern"] == "^[a-z0-9]+$"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("A", "more than a single character"),
        ("!!! ???", "only special characters or spaces"),
        ("1 2 3", "single characters separated by spaces"),
        ("LLC", "legal-form abbreviation"),
        ("Inc.", "legal-form abbreviation"),
        ("Studio 999", "three or more times in a row"),
    ],
)
def test_company_name_rules_refuse(name, rule):
    assert rule in company_name_problem(name)


@pytest.mark.parametrize("name", ["Enet Ltd", "3M New Zealand", "A1 Plumbing", "Kiwi & Co", "Tui Brewery 2024"])
def test_company_name_rules_accept(name):
    assert company_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("E", "more than a single character"),
        ("test", "placeholder"),
        ("Admin", "placeholder"),
        ("nobody", "placeholder"),
        ("x" * 41, "at most 40 characters"),
        ("12345", "only digits or special characters"),
        ("--", "only digits or special characters"),
    ],
)
def test_contact_name_rules_refuse(name, rule):
    assert rule in person_name_problem(name, "first name")


@pytest.mark.parametrize("name", ["Erin", "Jo", "Mary-Jane", "O'Neill", "Ngā"])
def test_contact_name_rules_accept(name):
    assert person_name_problem(name, "first name") is None


@pytest.mark.parametrize(
    ("email", "rule"),
    [
        ("someone@microsoft.com", "microsoft.com"),
        ("support@demoreseller.co.nz", "not on your own domain"),
    ],
)
def test_contact_email_rules_refuse(email, rule):
    assert rule in contact_email_problem(email, {"demoreseller.co.nz"})


def test_contact_email_rules_accept():
    assert contact_email_problem("erin@enet.example", {"demoreseller.co.nz"}) is None
