"""List pages: bounded page sizes, 400 for bad paging arguments, and SQL statements that do not grow with rows."""

from __future__ import annotations

import re

import pytest

from app.models.accounts import Account
from tests import factories
from tests.conftest import count_statements, unscoped


@pytest.mark.parametrize(
    "query", ["psize_AccountView=abc", "page_AccountView=-1", "psize_AccountView=1e9", "page_AccountView=99999999999"]
)
def test_bad_paging_arguments_are_a_400(ops_admin_client, query):
    assert ops_admin_client.get(f"/accountview/list/?{query}").status_code == 400


def _add_customers(app, world, how_many: int) -> None:
    with unscoped() as session:
        reseller = session.get(Account, world.accounts["reseller_a"].id)
        basic = session.get(factories.Product, world.rows["products"]["basic"])
        for i in range(how_many):
            customer = Account(kind="customer", name=f"Bulk Customer {i:03d}", parent=reseller)
            session.add(customer)
            session.flush()
            factories.subscription(customer, basic, 5)
        session.commit()


def test_page_size_is_capped(app, world, ops_admin_client):
    _add_customers(app, world, 120)
    page = ops_admin_client.get("/accountview/list/?psize_AccountView=1000").text
    assert len(re.findall(r'/accountview/show/\d+"', page)) == app.config["LIST_PAGE_SIZE_MAX"]


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/2/sub-accounts",
        "/accounts/2/products/csp-report",
        "/accounts/2/products/usage-chart",
        "/accounts/4/users",
        "/?renewals=90",
        "/accountview/list/",
        "/subscriptionview/list/",
        "/m365userview/list/",
        "/tenantview/list/",
        "/eventview/list/",
        "/productview/list/",
        "/",
    ],
)
def test_statements_per_page_do_not_grow_with_rows(app, world, ops_admin_client, path):
    ops_admin_client.get(path)  # warm up: first-request work is not what we measure
    with count_statements(app) as few:
        assert ops_admin_client.get(path).status_code == 200
    _add_customers(app, world, 30)
    with count_statements(app) as many:
        assert ops_admin_client.get(path).status_code == 200
    assert len(many) == len(few), f"{path}: {len(few)} statements with few rows, {len(many)} with more"
    assert len(few) <= 20, f"{path}: {len(few)} statements"
