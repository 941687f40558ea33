"""Orders are durable provider operations (issue 12, parts 1–2; issue 13: a cart, then its checkout): written and
committed before Microsoft is asked, each step sent with its MS-RequestId derived from the operation's, the same on
every try, and their form key tied to them. A process killed after Microsoft made the cart, or after it checked it out
(a real process exiting at a named fault point), leaves an operation pending, never a false "placed once": a resend of
the form says it is still being confirmed, and — past OPERATION_TIMEOUT_SECONDS — sends the same requests again, which
Microsoft answers with the cart and the subscriptions the first ones made. After every fault the portal equals the
provider."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess

import pytest
import time_machine
from sqlalchemy import func, select

from app import clock
from app.csp import get_provider
from app.models.csp import SandboxSubscription
from app.models.operations import ProviderOperation
from app.models.subscriptions import Subscription
from tests import clocked, ordering_steps
from tests.conftest import unscoped
from tests.integration.test_reports import ROOT

LATER = dt.timedelta(minutes=5)  # past the default OPERATION_TIMEOUT_SECONDS (120)
KEY = "0123456789abcdef0123456789abcdef"

ORDER = """
import sys
from app import create_app
from app.extensions import db
from app.models.accounts import Account
from app.models.catalog import Product
from app.services import ordering
from security import scoping

app = create_app()
with app.app_context(), scoping.bypass("test: an order whose process will be killed"):
    customer = db.session.get(Account, int(sys.argv[1]))
    ordering.order(customer, db.session.get(Product, int(sys.argv[2])).availabilities[0], 4, key=sys.argv[3])
    db.session.commit()
"""


def _counts(customer_id: int, sku_product_id: int) -> tuple[int, int]:
    """(the portal's subscriptions of the product, the sandbox's) for the customer."""
    with unscoped() as session:
        from app.models.accounts import Account
        from app.models.catalog import Product

        product = session.get(Product, sku_product_id)
        tenant = session.get(Account, customer_id).tenant.tenant_guid
        portal = session.scalar(
            select(func.count(Subscription.id)).where(
                Subscription.account_id == customer_id, Subscription.product_id == product.id
            )
        )
        provider = session.scalar(
            select(func.count(SandboxSubscription.id)).where(
                SandboxSubscription.tenant_id == tenant, SandboxSubscription.offer_id == product.sku
            )
        )
        return portal, provider


def _killed_order(database_url, tmp_path, customer_id: int, product_id: int, point: str = "after_create_order"):
    env = {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "killed"),
        "PYTHONPATH": str(ROOT),
        "PORTAL_FAULT_POINT": point,
    }
    done = subprocess.run(
        clocked.command("-c", ORDER, str(customer_id), str(product_id), KEY),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 137, done.stderr[-2000:]


def _review(client, customer_id: int, product_id: int):
    """The Review order page of 4 licences of the product's availability."""
    with unscoped() as session:
        from app.models.catalog import Product

        offer = session.get(Product, product_id).availabilities[0]
        form = {
            "product": offer.product.product_title,
            "sku": str(offer.product_id),
            "term": offer.term,
            "billing_frequency": offer.billing_frequency,
        }
    return ordering_steps.review(client, customer_id, form, 4)


def _resend(client, customer_id: int, product_id: int, key: str = KEY):
    """Place order (reviewed first) with the form key ``key``."""
    fields = ordering_steps.hidden_fields(_review(client, customer_id, product_id).text)
    response = ordering_steps.place(client, customer_id, fields, submission_key=key)
    if response.status_code == 302:
        return client.get(response.location)
    return response


@pytest.mark.parametrize("point", ["after_create_cart", "after_create_order"])
def test_an_order_killed_after_microsoft_placed_it_is_never_a_false_placed_once(
    app, world, tmp_path, database_url, customer_a_master_admin_client, point
):
    customer, product = world.accounts["customer_a"].id, world.rows["products"]["exchange"]
    before = _counts(customer, product)
    _killed_order(database_url, tmp_path, customer, product, point)
    bought = 1 if point == "after_create_order" else 0  # checked out at Microsoft, or only its cart made
    assert _counts(customer, product) == (before[0], before[1] + bought)  # nothing recorded here
    with unscoped() as session:
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.submission_key == KEY)).one()
        assert operation.state == "pending" and operation.kind == "order"

    client = customer_a_master_admin_client
    young = _resend(client, customer, product)
    assert "still being confirmed" in young.text and "already placed" not in young.text
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        settled = _resend(client, customer, product)
    assert "Ordered 4 ×" in settled.text
    assert _counts(customer, product) == (before[0] + 1, before[1] + 1)  # Microsoft did not buy twice
    again = _resend(client, customer, product)
    assert "already placed (4 ×" in again.text
    assert _counts(customer, product) == (before[0] + 1, before[1] + 1)
    with unscoped() as session:
        operation = session.scalars(select(ProviderOperation).where(ProviderOperation.submission_key == KEY)).one()
        assert operation.state == "succeeded" and operation.correlation_id


@pytest.mark.parametrize("point", ["after_create_cart", "after_create_order"])
def test_recover_operations_settles_a_killed_order_without_its_form(app, world, tmp_path, database_url, point):
    customer, product = world.accounts["customer_a"].id, world.rows["products"]["exchange"]
    before = _counts(customer, product)
    _killed_order(database_url, tmp_path, customer, product, point)
    assert "settled: 0" in app.test_cli_runner().invoke(args=["portal", "recover-operations"]).output
    with time_machine.travel(clock.utcnow().replace(tzinfo=dt.UTC) + LATER, tick=True):
        result = app.test_cli_runner().invoke(args=["portal", "recover-operations"])
    assert "settled: 1" in result.output, result.output
    assert _counts(customer, product) == (before[0] + 1, before[1] + 1)


def _order_page_key(client, customer_id: int, product_id: int) -> str:
    page = _review(client, customer_id, product_id).text
    return re.search(r'name="submission_key" value="([0-9a-f]{32})"', page).group(1)


def test_a_failed_or_unanswered_order_is_retried_with_the_same_request(app, world, customer_a_master_admin_client):
    """Refused, the form comes back with its key; unanswered (placed, the answer lost), the resend gets Microsoft's
    first answer: one subscription at Microsoft and here either way."""
    customer, product = world.accounts["customer_a"].id, world.rows["products"]["basic"]
    client = customer_a_master_admin_client
    with app.app_context():
        sandbox = get_provider()
    saved = (sandbox.fail_rate, sandbox.fail_operations, sandbox.lost_answer_rate)
    try:
        for fault in ("refused", "answer lost"):
            before = _counts(customer, product)
            key = _order_page_key(client, customer, product)
            if fault == "refused":
                sandbox.fail_rate, sandbox.fail_operations = 1.0, frozenset({"checkout_cart"})
            else:
                sandbox.lost_answer_rate = 1.0
            failed = _resend(client, customer, product, key)
            assert failed.status_code == 400 and "Microsoft did not confirm the order" in failed.text
            assert f'value="{key}"' in failed.text  # the same form, the same key: a resend retries the same request
            assert _counts(customer, product)[0] == before[0]
            sandbox.fail_rate, sandbox.lost_answer_rate = 0.0, 0.0
            placed = _resend(client, customer, product, key)
            assert "Ordered 4 ×" in placed.text
            assert _counts(customer, product) == (before[0] + 1, before[1] + 1)
    finally:
        sandbox.fail_rate, sandbox.fail_operations, sandbox.lost_answer_rate = saved
