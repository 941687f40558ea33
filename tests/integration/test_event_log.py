"""The Event Log screens — the partner portal's menu list, an account's tab, the customer portal's log: readable
action names, filters (New Zealand days, person, action, target), pages, Export as .xlsx (a POST, itself an event),
the same scope as ever, and another reseller answered 404 with nothing changed."""

from __future__ import annotations

import datetime as dt
import re
from io import BytesIO
from urllib.parse import parse_qsl

import openpyxl
import pytest
from sqlalchemy import select

from app.models.events import Event
from app.services import event_log
from security.models import PortalUser
from tests.conftest import count_statements, csrf_token, unscoped
from tests.integration.test_scoping import database_fingerprint

# 11:30 UTC on 10 March 2025 is 00:30 on 11 March in Auckland (NZDT, +13).
NZ_MIDNIGHT_PLUS = dt.datetime(2025, 3, 10, 11, 30)


def _add(account_id: int, action: str = "test.thing", when: dt.datetime | None = None, **values) -> int:
    with unscoped() as session:
        event = Event(
            account_id=account_id,
            action=action,
            actor_label=values.pop("actor_label", "tester@example.com"),
            summary=values.pop("summary", action),
            occurred_at=when or dt.datetime(2025, 6, 1, 0, 0),
            **values,
        )
        session.add(event)
        session.commit()
        return event.id


def _rows(page: str) -> str:
    return page.split("<tbody>")[1].split("</tbody>")[0]


def _summaries(page: str) -> list[str]:
    return re.findall(r"<td>(marker [^<]*)</td>", _rows(page))


def _tab(world, who="customer_a") -> str:
    return f"/accounts/{world.accounts[who].id}/events"


def _export(client, url: str, **filters):
    return client.post(url, data={"csrf_token": csrf_token(client), **filters})


def _sheet_rows(response) -> list[tuple]:
    assert response.status_code == 200, response.text[:500]
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(BytesIO(response.data))
    return [tuple(row) for row in book["Event log"].iter_rows(min_row=3, values_only=True)]


# -- readable names ---------------------------------------------------------------------------------------------------


def test_actions_are_named_in_words_never_dotted(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    _add(customer, "auth.login", summary="marker a")
    _add(customer, "impersonation.started", summary="marker b")
    _add(customer, "widget.frobbed_twice", summary="marker c")  # an action nobody named yet
    rows = _rows(reseller_a_admin_client.get(_tab(world)).text)
    for words in ("Signed in", "Launched the customer portal", "Widget frobbed twice"):
        assert f'<td class="event-action">{words}</td>' in rows
    assert not re.search(r'class="event-action">[^<]*\.', rows)


# -- filters ----------------------------------------------------------------------------------------------------------


def test_dates_are_new_zealand_days(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    _add(customer, when=NZ_MIDNIGHT_PLUS, summary="marker nz-11-march")
    _add(customer, when=NZ_MIDNIGHT_PLUS - dt.timedelta(hours=1), summary="marker nz-10-march")
    client = reseller_a_admin_client
    on_11th = client.get(f"{_tab(world)}?since=2025-03-11&until=2025-03-11").text
    assert _summaries(on_11th) == ["marker nz-11-march"]
    on_10th = client.get(f"{_tab(world)}?until=2025-03-10").text
    assert _summaries(on_10th) == ["marker nz-10-march"]
    assert _summaries(client.get(f"{_tab(world)}?since=2025-03-10").text) == [
        "marker nz-11-march",
        "marker nz-10-march",
    ]


def test_filter_by_person_action_and_target(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    master = world.users["customer_a_master_admin"]
    partner = world.users["reseller_a_admin"]
    _add(customer, "auth.login", actor_label=master.email, actor_id=master.id, summary="marker own sign-in")
    _add(
        customer,
        "licence.assigned",
        actor_label=master.email,
        actor_id=master.id,
        on_behalf_of_id=partner.id,
        target_type="Subscription",
        target_id="77",
        summary="marker launched change",
    )
    _add(customer, "licence.assigned", actor_label="cli:seed-demo", summary="marker by a script")
    client, tab = reseller_a_admin_client, _tab(world)
    # A portal user is found by part of the address, as the actor or as the partner user behind a launched change;
    # anyone else (a script, an unknown address) by the exact label.
    assert _summaries(client.get(f"{tab}?person=ALPHA.example").text) == ["marker launched change"]
    assert set(_summaries(client.get(f"{tab}?person={master.email.split('@')[0]}").text)) == {
        "marker own sign-in",
        "marker launched change",
    }
    assert _summaries(client.get(f"{tab}?person=%25").text) == []  # a LIKE wildcard is just a character
    assert set(_summaries(client.get(f"{tab}?action=licence.assigned").text)) == {
        "marker launched change",
        "marker by a script",
    }
    assert _summaries(client.get(f"{tab}?target=Subscription&target_ref=77").text) == ["marker launched change"]
    assert _summaries(client.get(f"{tab}?target=Subscription&target_ref=78").text) == []
    assert _summaries(client.get(f"{tab}?person=cli").text) == []
    page = client.get(f"{tab}?action=licence.assigned&person=CLI:seed-demo").text
    assert _summaries(page) == ["marker by a script"]
    assert re.search(r'<option selected value="licence.assigned">|<option value="licence.assigned" selected>', page)
    # A row's target links to all of that target's events.
    assert f'href="{tab}?target=Subscription&amp;target_ref=77"' in _rows(client.get(tab).text)


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=yesterday", "since"),
        ("until=2025-02-30", "until"),
        ("since=0001-01-01", "since"),
        ("until=9999-12-31", "until"),
        ("since=2025-03-02&until=2025-03-01", "until"),
        ("action=auth.nothing", "action"),
        ("target=Nothing", "target"),
        ("person=" + "x" * 400, "person"),
    ],
)
def test_bad_filters_get_a_message_beside_the_field(world, reseller_a_admin_client, query, field):
    answer = reseller_a_admin_client.get(f"{_tab(world)}?{query}")
    assert answer.status_code == 400
    assert f'data-error-for="{field}"' in answer.text and "Correct the filters above." in answer.text
    before = database_fingerprint()
    assert _export(reseller_a_admin_client, f"{_tab(world)}.xlsx", **dict(parse_qsl(query))).status_code == 400
    assert database_fingerprint() == before


def test_pages_keep_the_filters(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    for i in range(30):
        _add(
            customer,
            "licence.assigned",
            when=dt.datetime(2025, 6, 1) + dt.timedelta(minutes=i),
            summary=f"marker {i:02d}",
        )
    _add(customer, "auth.login", summary="marker other")
    first = reseller_a_admin_client.get(f"{_tab(world)}?action=licence.assigned").text
    assert _summaries(first)[:2] == ["marker 29", "marker 28"] and len(_summaries(first)) == 25
    assert "Showing 1 to 25 of 30 entries" in first
    older = re.search(r'href="([^"]*page=2[^"]*)"', first).group(1).replace("&amp;", "&")
    assert "action=licence.assigned" in older
    second = reseller_a_admin_client.get(older).text
    assert _summaries(second) == [f"marker {i:02d}" for i in range(4, -1, -1)]


def test_counting_stops_at_the_cap(world, reseller_a_admin_client, monkeypatch):
    monkeypatch.setattr(event_log, "COUNT_CAP", 20)
    customer = world.accounts["customer_a"].id
    for i in range(30):
        _add(customer, summary=f"marker {i}")
    page = reseller_a_admin_client.get(_tab(world)).text
    assert "of 20+ entries" in page


# -- the three logs, their scope and their statements ------------------------------------------------------------


def test_the_menu_list_shows_every_account_in_scope_and_filters(world, reseller_a_admin_client):
    _add(world.accounts["customer_a"].id, "auth.login", summary="marker customer a")
    _add(world.accounts["reseller_a"].id, "auth.login", summary="marker reseller a")
    _add(world.accounts["customer_b"].id, "auth.login", summary="marker customer b")
    _add(world.accounts["reseller_a"].id, "auth.logout", summary="marker logout")
    page = reseller_a_admin_client.get("/eventview/list/?action=auth.login").text
    assert set(_summaries(page)) == {"marker customer a", "marker reseller a"}
    assert "<th>Account</th>" in page


def test_the_customer_portal_log_filters_and_exports(world, customer_a_master_admin_client):
    customer = world.accounts["customer_a"].id
    _add(customer, "licence.assigned", summary="marker mine")
    _add(world.accounts["customer_b"].id, "licence.assigned", summary="marker theirs")
    client, base = customer_a_master_admin_client, f"/portal/{customer}/events"
    page = client.get(f"{base}?action=licence.assigned").text
    assert _summaries(page) == ["marker mine"]
    assert 'value="reseller.created"' not in page  # the operator's and resellers' actions are not offered
    rows = _sheet_rows(_export(client, f"{base}.xlsx", action="licence.assigned"))
    assert [r[6] for r in rows] == ["marker mine"] and rows[0][4] == "Assigned a licence"
    with unscoped() as session:
        exported = session.scalars(select(Event).where(Event.action == "event_log.exported")).one()
        assert exported.account_id == customer and "1 event(s)" in exported.summary


@pytest.mark.parametrize(
    "path",
    [
        "/eventview/list/",
        "/accounts/{customer_a}/events",
        "/eventview/list/?since=2025-01-01&until=2025-12-31&person=e&action=auth.login&target=PortalUser",
    ],
)
def test_statements_do_not_grow_with_the_rows_shown(app, world, reseller_a_admin_client, path):
    path = path.format(customer_a=world.accounts["customer_a"].id)
    client = reseller_a_admin_client
    client.get(path)
    with count_statements(app) as few:
        assert client.get(path).status_code == 200
    for i in range(30):
        _add(
            world.accounts["customer_a"].id,
            "auth.login",
            actor_label=f"person{i}@example.com",
            on_behalf_of_id=world.users["reseller_a_admin"].id,
            target_type="PortalUser",
            target_id=str(i),
        )
    with count_statements(app) as many:
        page = client.get(path)
        assert page.status_code == 200 and len(re.findall(r"<tr data-event=", page.text)) == 25
    assert len(many) == len(few), f"{path}: {len(few)} statements with few rows, {len(many)} with more"


def test_the_customer_portal_statements_do_not_grow(app, world, customer_a_master_admin_client):
    path = f"/portal/{world.accounts['customer_a'].id}/events"
    customer_a_master_admin_client.get(path)
    with count_statements(app) as few:
        customer_a_master_admin_client.get(path)
    for i in range(30):
        _add(world.accounts["customer_a"].id, "auth.login", target_type="PortalUser", target_id=str(i))
    with count_statements(app) as many:
        customer_a_master_admin_client.get(path)
    assert len(many) == len(few)


# -- export -----------------------------------------------------------------------------------------------------------


def test_export_writes_what_the_filters_select_safely_and_is_an_event(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    _add(customer, "licence.assigned", when=NZ_MIDNIGHT_PLUS, summary='=HYPERLINK("http://evil.example")')
    _add(customer, "licence.assigned", when=NZ_MIDNIGHT_PLUS - dt.timedelta(days=2), summary="marker too early")
    _add(customer, "auth.login", when=NZ_MIDNIGHT_PLUS, summary="marker other action")
    url = f"{_tab(world)}.xlsx"
    assert reseller_a_admin_client.get(url).status_code == 405
    assert reseller_a_admin_client.post(url, data={"action": "licence.assigned"}).status_code == 400  # no CSRF
    answer = _export(reseller_a_admin_client, url, since="2025-03-11", action="licence.assigned")
    assert re.match(
        r"attachment; filename=aardvark-farms-event-log-\d{4}-\d\d-\d\d\.xlsx", answer.headers["Content-Disposition"]
    )
    rows = _sheet_rows(answer)
    assert len(rows) == 1
    when, account, by, behalf, action, target, summary, address, request_id = rows[0]
    assert (account, by, action, summary) == (
        "Aardvark Farms",
        "tester@example.com",
        "Assigned a licence",
        '=HYPERLINK("http://evil.example")',
    )
    assert when == dt.datetime(2025, 3, 11, 0, 30)  # New Zealand time
    book = openpyxl.load_workbook(BytesIO(answer.data))
    assert book["Event log"]["G3"].data_type == "s"  # text, never a formula
    with unscoped() as session:
        exported = session.scalars(select(Event).where(Event.action == "event_log.exported")).one()
        assert exported.account_id == customer and exported.actor_label == world.users["reseller_a_admin"].email
        assert "1 event(s)" in exported.summary and "Assigned a licence" in exported.summary
        assert exported.request_id == answer.headers["X-Request-ID"]


def test_export_is_capped_at_the_newest_rows(world, reseller_a_admin_client, monkeypatch):
    monkeypatch.setattr(event_log, "EXPORT_MAX_ROWS", 3)
    customer = world.accounts["customer_a"].id
    for i in range(5):
        _add(customer, when=dt.datetime(2025, 6, 1) + dt.timedelta(minutes=i), summary=f"marker {i}")
    rows = _sheet_rows(_export(reseller_a_admin_client, f"{_tab(world)}.xlsx", since="2025-06-01", until="2025-06-01"))
    assert [r[6] for r in rows][:3] == ["marker 4", "marker 3", "marker 2"] and len(rows) == 3
    with unscoped() as session:
        assert (
            "more matched" in session.scalars(select(Event.summary).where(Event.action == "event_log.exported")).one()
        )


def test_the_menu_export_covers_the_scope(world, reseller_b_admin_client):
    _add(world.accounts["customer_a"].id, summary="marker a")
    _add(world.accounts["customer_b"].id, summary="marker b")
    rows = _sheet_rows(_export(reseller_b_admin_client, "/eventview/export"))
    summaries = {r[6] for r in rows}
    assert "marker b" in summaries and "marker a" not in summaries
    with unscoped() as session:
        exported = session.scalars(select(Event).where(Event.action == "event_log.exported")).one()
        assert exported.account_id == world.accounts["reseller_b"].id


def test_a_partner_user_may_export_a_customer_user_may_not_reach_the_partner_log(world, reseller_a_user_client, login):
    assert _export(reseller_a_user_client, f"{_tab(world)}.xlsx").status_code == 200
    customer = login(world.users["customer_a_master_admin"].email)
    assert _export(customer, "/eventview/export").status_code == 403


# -- another reseller -------------------------------------------------------------------------------------------------

FILTERS = [
    "",
    "?since=2025-01-01",
    "?until=2025-12-31",
    "?person=alpha",
    "?action=auth.login",
    "?target=PortalUser&target_ref=1",
    "?page=2",
    "?since=bad",
]


@pytest.mark.parametrize("who", ["customer_a", "reseller_a"])
def test_another_reseller_gets_404_for_every_route_and_filter(world, reseller_b_admin_client, who):
    account = world.accounts[who].id
    _add(account, "auth.login", actor_label=world.users["reseller_a_admin"].email, summary="marker a")
    client = reseller_b_admin_client
    token = csrf_token(client)
    before = database_fingerprint()
    for query in FILTERS:
        assert client.get(f"/accounts/{account}/events{query}").status_code == 404, query
    for filters in ({}, {"action": "auth.login"}, {"person": "alpha", "since": "2025-01-01"}, {"since": "bad"}):
        answer = client.post(f"/accounts/{account}/events.xlsx", data={"csrf_token": token, **filters})
        assert answer.status_code == 404, filters
    assert database_fingerprint() == before


def test_another_resellers_own_log_shows_none_of_a_through_any_filter(world, reseller_b_admin_client):
    a_user = world.users["reseller_a_admin"]
    with unscoped() as session:
        a_login = session.get(PortalUser, a_user.id)
        a_target = str(a_login.id)
    _add(
        world.accounts["customer_a"].id,
        "auth.login",
        actor_label=a_user.email,
        target_type="PortalUser",
        target_id=a_target,
        summary="marker a",
    )
    _add(world.accounts["customer_b"].id, "auth.login", summary="marker b")
    for query in FILTERS[:-2] + [f"?person={a_user.email}", f"?target=PortalUser&target_ref={a_target}"]:
        page = reseller_b_admin_client.get(f"/eventview/list/{query}").text
        assert "marker a" not in page and "alpha" not in _rows(page), query
    rows = _sheet_rows(_export(reseller_b_admin_client, "/eventview/export", person=a_user.email))
    assert rows == []


# -- price lists: a markup gives the buy price away ------------------------------------------------------------------


def test_price_list_changes_are_shown_only_to_those_who_may_see_costs(
    world, reseller_a_user_client, reseller_a_admin_client
):
    """A sell rule's event ("buy + 15 %") names the markup on the reseller's buy price: a Partner User (no costs)
    finds it neither on the page nor in the export; the CSP Admin finds both."""
    reseller = world.accounts["reseller_a"].id
    _add(reseller, action="price_rule.created", summary="marker markup buy + 15 %")
    _add(reseller, action="test.thing", summary="marker other")
    for client, sees in ((reseller_a_user_client, False), (reseller_a_admin_client, True)):
        page = client.get("/eventview/list/").text
        rows = _sheet_rows(_export(client, "/eventview/export"))
        summaries = {r[6] for r in rows}
        assert "marker other" in page and "marker other" in summaries
        assert ("marker markup" in page) is sees
        assert ("marker markup buy + 15 %" in summaries) is sees
