"""The Primary Domain Name field in a real browser: validating..., available, not available (each with its icon from
the app's own icon font, never a system glyph), the format rules at once, a provider error, and — with a slow
provider — never a verdict for a value no longer typed."""

from __future__ import annotations

import re

import pytest

from app.models.accounts import Account
from app.models.csp import SandboxDomain
from tests import factories
from tests.conftest import unscoped
from tests.mail import body_of, empty_outbox, outbox_messages

try:
    from playwright.sync_api import expect
except ImportError:  # the ``browser`` fixture skips these tests (or fails them under REQUIRE_E2E=1)
    expect = None

# Every text the status line shows, with the field's value at that moment.
RECORD_STATUS = """() => {
  window.statusHistory = [];
  const status = document.getElementById('domain-status');
  const input = document.getElementById('domain_prefix');
  new MutationObserver(() => window.statusHistory.push({text: status.textContent, value: input.value}))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""


MASTER = "mara@anchormarine.example"


@pytest.fixture
def tenant_form(page, sign_in, world):
    with unscoped() as session:
        session.add_all([SandboxDomain(prefix=p) for p in ("enet123", "contoso", "microsoft")])
        session.commit()
    sign_in(page, world.users["reseller_a_admin"].email)
    page.goto(f"/accounts/{world.accounts['customer_a2'].id}/microsoft-tenant/new")
    page.evaluate(RECORD_STATUS)
    return page


def _status(page):
    return page.locator("#domain-status")


def test_taken_then_available(tenant_form):
    field = tenant_form.locator("#domain_prefix")
    field.press_sequentially("enet123")
    expect(_status(tenant_form)).to_have_text("enet123.onmicrosoft.com is not available")
    expect(_status(tenant_form).locator(".fa-exclamation-circle[aria-hidden=true]")).to_have_count(1)
    field.press_sequentially("456")
    expect(_status(tenant_form)).to_have_text("enet123456.onmicrosoft.com is available")
    expect(_status(tenant_form).locator(".fa-check-circle[aria-hidden=true]")).to_have_count(1)
    texts = [entry["text"] for entry in tenant_form.evaluate("window.statusHistory")]
    assert "validating..." in texts


def test_format_rules_answer_at_once_without_asking(tenant_form):
    asked = []
    tenant_form.on("request", lambda r: asked.append(r.url) if "/microsoft-tenant/check" in r.url else None)
    tenant_form.locator("#domain_prefix").fill("enet-123")
    expect(_status(tenant_form)).to_have_text(
        "Use letters and digits only: no spaces, dots, hyphens or other characters."
    )
    tenant_form.locator("#domain_prefix").fill("a" * 28)
    expect(_status(tenant_form)).to_have_text("Use at most 27 characters.")
    assert asked == []


def test_upper_case_is_lower_cased(tenant_form):
    tenant_form.locator("#domain_prefix").fill("ENET123456")
    expect(_status(tenant_form)).to_have_text("enet123456.onmicrosoft.com is available")


def test_a_provider_error_is_never_shown_as_available(tenant_form, sandbox):
    sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"check_domain"})
    tenant_form.locator("#domain_prefix").fill("enet123456")
    expect(_status(tenant_form)).to_have_text("Couldn't check availability — try again")


def test_typing_quickly_never_leaves_a_stale_verdict(tenant_form, sandbox):
    sandbox.latency_ms = 800
    field = tenant_form.locator("#domain_prefix")
    field.press_sequentially("enet123", delay=120)
    field.press_sequentially("4567", delay=450)  # each pause passes the debounce: checks overlap in flight
    expect(_status(tenant_form)).to_have_text("enet1234567.onmicrosoft.com is available", timeout=15_000)
    for entry in tenant_form.evaluate("window.statusHistory"):
        shown = re.search(r"(\w+)\.onmicrosoft\.com", entry["text"])
        if shown:
            assert shown.group(1) == entry["value"].lower(), entry


def test_create_the_tenant_from_the_form(tenant_form, app, world):
    with unscoped() as session:  # the master admin the one-time link goes to (issue 15)
        factories.user(session.get(Account, world.accounts["customer_a2"].id), MASTER, master_admin=True)
        session.commit()
    empty_outbox(app)
    tenant_form.locator("#domain_prefix").fill("anchormarine")
    expect(_status(tenant_form)).to_have_text("anchormarine.onmicrosoft.com is available")
    for field, value in {
        "contact_first_name": "Ana",
        "contact_last_name": "Anchor",
        "contact_email": "ana@anchormarine.example",
        "phone": "09 555 0111",
        "address_line1": "1 Wharf Road",
        "city": "Auckland",
        "postcode": "1010",
        "signer_first_name": "Ana",
        "signer_last_name": "Anchor",
        "signer_email": "ana@anchormarine.example",
    }.items():
        tenant_form.locator(f"#{field}").fill(value)
    tenant_form.locator("#agreement").check()
    tenant_form.get_by_role("button", name="Create tenant").click()
    # Issue 15: the first global admin's user name and temporary password, shown once on the answer
    expect(tenant_form.locator('[data-test="admin-user-name"]')).to_have_text("admin@anchormarine.onmicrosoft.com")
    expect(tenant_form.locator('[data-test="admin-password"]')).to_have_text(re.compile(r"^\S{16,}$"))
    password = tenant_form.locator('[data-test="admin-password"]').inner_text()
    tenant_form.get_by_role("link", name="Done").click()
    expect(tenant_form.locator('[data-test="tenant-status"]')).to_have_text("Active")
    # The master admin's one-time link: the password once, then never again
    (mail,) = [m for m in outbox_messages(app) if m["To"] == MASTER]
    assert password not in mail.as_string()
    link = re.search(r"https?://[^\s\"<>]+/handover/[^\s\"<>]+", body_of(mail)).group(0)
    tenant_form.goto(re.sub(r"^https?://[^/]+", "", link))
    tenant_form.get_by_role("button", name="Show the temporary password").click()
    expect(tenant_form.locator('[data-test="password"]')).to_have_text(password)
    tenant_form.reload()
    expect(tenant_form.get_by_role("heading", name="This link has already been used")).to_be_visible()
    tenant_form.goto(f"/accounts/{world.accounts['customer_a2'].id}/products/microsoft-tenant")
    expect(tenant_form.locator('[data-test="primary-domain"]')).to_have_text("anchormarine.onmicrosoft.com")
