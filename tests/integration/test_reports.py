"""The CSP Report: the page, Export Subscription and Export Users opened with openpyxl (headers, types, values,
formula injection cell by cell), sheets that overflow, background jobs (thread and RQ), exact money, the Usage
Chart, snapshot-usage — and the cross-tenant case for every report and job."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import zipfile
from decimal import Decimal
from io import BytesIO
from pathlib import Path

import openpyxl
import pytest
import redis
from sqlalchemy import event, func, select

from app import clock
from app.extensions import db
from app.models.accounts import Account
from app.models.events import Event
from app.models.jobs import BackgroundJob
from app.models.subscriptions import M365User, Subscription, UsagePoint
from tests import factories
from tests.conftest import csrf_token, login_to, make_app, unscoped
from tests.integration.test_scoping import database_fingerprint

ROOT = Path(__file__).resolve().parents[2]
INJECTIONS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(1,1)", "\tTab", "\rReturn"]


def _workbook(response) -> openpyxl.Workbook:
    assert response.status_code == 200, response.text[:300]
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return openpyxl.load_workbook(BytesIO(response.data))


def _sheet_xml(response) -> str:
    with zipfile.ZipFile(BytesIO(response.data)) as archive:
        return "".join(archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/"))


def _text(value):
    """A cell's text as Excel shows it (openpyxl leaves OOXML's escape of a carriage return as it is)."""
    return value.replace("_x000D_", "\r") if isinstance(value, str) else value


def _post(client, path):
    """An export or download: a POST with the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_token(client)})


def _export(client, account_id, kind):
    """Export Subscription / Export Users: a POST with the page's CSRF token, as the CSP Report's buttons send it."""
    return client.post(f"/accounts/{account_id}/reports/{kind}.xlsx", data={"csrf_token": csrf_token(client)})


def _rows(sheet):
    return [tuple(_text(cell.value) for cell in row) for row in sheet.iter_rows(min_row=3)]


# -- the page -------------------------------------------------------------------------------------------------------


def test_customer_report_page(world, reseller_a_admin_client):
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/products/csp-report").text
    assert "CSP REPORT" in page
    assert ">Usage Chart</a>" in page
    for button in ("Export Subscription", "Export Users"):
        assert f">{button}</button>" in page  # POST forms with the CSRF token
    table = page.split('class="table table-condensed subscriptions-report"')[1].split("</table>")[0]
    assert re.findall(r"<th[^>]*>([^<]*)</th>", table.split("</thead>")[0]) == [
        "Description",
        "Licenses",
        "Term",
        "Billing frequency",
        "Renew on date",
        "Cancellable until",
        "Price",
        "Price per licence per month",
        "Price per month in total",
        "Cost per licence per month",
        "Cost per month in total",
        "Margin per licence per month",
        "Margin per month in total",
        "Change at renewal",
    ]
    renew = (clock.today() + dt.timedelta(days=10)).strftime("%d/%m/%Y")
    assert re.search(
        rf"Microsoft 365 Business Basic .*title=\"SKU TEST-BASIC · monthly\".*?<td>3/4</td>\s*"
        rf"<td[^>]*>1 year</td>\s*<td[^>]*>Monthly</td>\s*<td>{renew}</td>\s*<td[^>]*></td>\s*"
        rf"<td[^>]*>\$9\.00</td>",
        table,
        re.S,
    )
    assert "Bluebird" not in page


def test_partner_users_and_customers_never_see_cost(world, reseller_a_user_client, customer_a_master_admin_client):
    page = reseller_a_user_client.get(f"/accounts/{world.accounts['customer_a'].id}/products/csp-report").text
    assert "Cost per" not in page and "Margin per" not in page and "$7.65" not in page
    assert (
        customer_a_master_admin_client.get(
            f"/accounts/{world.accounts['customer_a'].id}/products/csp-report"
        ).status_code
        == 403
    )


def _expected_cents(customer_ids) -> tuple[Decimal, Decimal]:
    with unscoped() as session:
        subs = session.scalars(select(Subscription).where(Subscription.account_id.in_(customer_ids))).all()
        return (
            sum((s.unit_price * s.quantity for s in subs), Decimal("0")),
            sum((s.unit_cost * s.quantity for s in subs), Decimal("0")),
        )


def test_reseller_report_groups_by_customer_with_exact_totals(world, reseller_a_admin_client):
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a2"].id)
        item = factories.product("Odd cents", "ODD-CENTS", "0.35", "0.29")
        factories.subscription(customer, item, 7)
        session.commit()
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/products/csp-report").text
    groups = re.findall(r'class="active customer-group"><th[^>]*><a[^>]*>([^<]+)</a>', page)
    assert groups == ["Aardvark Farms", "Anchor Marine"]
    price, cost = _expected_cents([world.accounts["customer_a"].id, world.accounts["customer_a2"].id])
    assert f'data-test="monthly-total">${price:,.2f} a month' in page
    assert f'data-test="monthly-margin">${price - cost:,.2f}' in page


# -- the subscription report -------------------------------------------------------------------------------------


def test_export_subscription_has_real_types_and_the_database_values(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    response = _export(reseller_a_admin_client, customer, "subscriptions")
    today = clock.today()
    assert response.headers["Content-Disposition"].endswith(f"aardvark-farms-subscriptions-{today:%Y-%m-%d}.xlsx")
    book = _workbook(response)
    assert book.sheetnames == ["Subscriptions"]
    sheet = book["Subscriptions"]
    assert (
        "Subscription report — Aardvark Farms — exported" in sheet["A1"].value
        and "Pacific/Auckland" in sheet["A1"].value
    )
    headers = [c.value for c in sheet[2]]
    assert headers == [
        "Reseller",
        "Customer",
        "Primary domain",
        "Product",
        "SKU",
        "Licenses assigned",
        "Licenses total",
        "Term",
        "Billing frequency",
        "Renew on",
        "Auto-renew",
        "Cancellable until",
        "Change at renewal",
        "Price",
        "Price per licence per month",
        "Price per month in total",
        "Cost (per licence per billing period)",
        "Cost per licence per month",
        "Cost per month in total",
        "Margin per licence per month",
        "Margin per month in total",
    ]
    assert all(c.font.bold for c in sheet[2]) and sheet.freeze_panes == "A3" and sheet.auto_filter.ref
    rows = _rows(sheet)
    with unscoped() as session:
        subs = session.scalars(
            select(Subscription).where(Subscription.account_id == customer).order_by(Subscription.id)
        ).all()
        expected = sorted((s.product.name, s.assigned, s.quantity, s.renew_on, s.unit_price) for s in subs)
    got = sorted((r[3], r[5], r[6], r[9].date(), Decimal(str(r[13]))) for r in rows)
    assert got == expected
    basic = next(r for r in rows if r[3] == "Microsoft 365 Business Basic")
    assert basic[:3] == ("Alpha Partners Ltd", "Aardvark Farms", "aardvark.onmicrosoft.com")
    assert basic[7:9] == ("1 year", "Monthly")
    assert isinstance(basic[5], int) and isinstance(basic[9], dt.datetime) and isinstance(basic[13], (int, float))
    assert Decimal(str(basic[15])) == Decimal("36.00") and Decimal(str(basic[20])) == Decimal("5.40")
    money_cell = sheet.cell(row=3 + rows.index(basic), column=14)
    assert "$" in money_cell.number_format and "0.00" in money_cell.number_format
    assert sheet.cell(row=3 + rows.index(basic), column=10).number_format == "dd/mm/yyyy"


def test_partner_users_export_without_costs(world, reseller_a_user_client):
    book = _workbook(_export(reseller_a_user_client, world.accounts["customer_a"].id, "subscriptions"))
    assert [c.value for c in book.active[2]][-3:] == [
        "Price",
        "Price per licence per month",
        "Price per month in total",
    ]


def test_workbook_money_equals_the_page_to_the_cent(world, reseller_a_admin_client):
    reseller = world.accounts["reseller_a"].id
    book = _workbook(_export(reseller_a_admin_client, reseller, "subscriptions"))
    total = sum(Decimal(str(r[15])).quantize(Decimal("0.01")) for r in _rows(book.active))
    price, _ = _expected_cents([world.accounts["customer_a"].id, world.accounts["customer_a2"].id])
    assert total == price


def test_formula_injection_stays_text(world, reseller_a_admin_client):
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        customer.name = INJECTIONS[0]
        for i, text in enumerate(INJECTIONS):
            factories.m365_user(customer, f"x{i}@aardvark.onmicrosoft.com", name=text)
        session.commit()
    for kind in ("subscriptions", "users"):
        response = _export(reseller_a_admin_client, world.accounts["customer_a"].id, kind)
        xml = _sheet_xml(response)
        assert "<f>" not in xml and "<hyperlink" not in xml and "HYPERLINK(" not in xml.split("<sheetData>")[0]
        book = _workbook(response)
        for sheet in book.worksheets:
            for row in sheet.iter_rows(min_row=3):
                for cell in row:
                    if _text(cell.value) in INJECTIONS:
                        assert cell.data_type == "s" and cell.quotePrefix, (sheet.title, cell.coordinate)
        if kind == "users":
            names = {r[2] for r in _rows(book["Microsoft 365 users"])}
            assert set(INJECTIONS) <= names  # shown as that very text
            assert _rows(book["Microsoft 365 users"])[0][1] == INJECTIONS[0]


# -- the user report --------------------------------------------------------------------------------------------------


def test_export_users_has_both_sheets(world, login, reseller_a_admin_client):
    login(world.users["customer_a_master_admin"].email)  # a last login to show
    response = _export(reseller_a_admin_client, world.accounts["reseller_a"].id, "users")
    assert response.headers["Content-Disposition"].endswith(f"alpha-partners-ltd-users-{clock.today():%Y-%m-%d}.xlsx")
    book = _workbook(response)
    assert book.sheetnames == ["Microsoft 365 users", "Portal users"]
    m365 = book["Microsoft 365 users"]
    assert [c.value for c in m365[2]] == [
        "Reseller",
        "Customer",
        "Display name",
        "User name",
        "Status",
        "Licences held",
    ]
    rows = {r[3]: r for r in _rows(m365)}
    assert rows["p0@aardvark.onmicrosoft.com"][5] == "Exchange Online (Plan 1), Microsoft 365 Business Basic"
    assert rows["p2@aardvark.onmicrosoft.com"][5] == "Microsoft 365 Business Basic"
    portal = book["Portal users"]
    assert [c.value for c in portal[2]] == [
        "Reseller",
        "Customer",
        "Name",
        "Email",
        "Mobile",
        "Status",
        "Last login",
        "Admin",
        "Master Admin",
        "CP3 enabled",
    ]
    master = next(r for r in _rows(portal) if r[3] == world.users["customer_a_master_admin"].email)
    assert master[5] == "Active" and isinstance(master[6], dt.datetime) and master[7:] == ("Yes", "Yes", "Yes")
    with unscoped() as session:
        a_ids = [world.accounts["customer_a"].id, world.accounts["customer_a2"].id]
        assert len(rows) == session.scalar(select(func.count(M365User.id)).where(M365User.account_id.in_(a_ids)))


def test_a_full_sheet_continues_on_a_numbered_sheet(app, world, reseller_a_admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_ROWS_PER_SHEET", 4)  # 2 data rows a sheet
    with unscoped() as session:
        customer = session.get(Account, world.accounts["customer_a"].id)
        for i in range(4):
            factories.m365_user(customer, f"more{i}@aardvark.onmicrosoft.com")
        session.commit()
        total = session.scalar(select(func.count(M365User.id)).where(M365User.account_id == customer.id))
    book = _workbook(_export(reseller_a_admin_client, world.accounts["customer_a"].id, "users"))
    m365 = [s for s in book.sheetnames if s.startswith("Microsoft 365 users")]
    assert m365 == ["Microsoft 365 users"] + [f"Microsoft 365 users ({n})" for n in range(2, len(m365) + 1)]
    assert sum(len(_rows(book[name])) for name in m365) == total == 7
    assert all(len(_rows(book[name])) <= 2 for name in m365)
    assert [c.value for c in book["Microsoft 365 users (2)"][2]][0] == "Reseller"


# -- scoping ----------------------------------------------------------------------------------------------------------


def test_reseller_b_exports_contain_nothing_of_reseller_a(world, reseller_b_admin_client):
    reseller = world.accounts["reseller_b"].id
    for kind in ("subscriptions", "users"):
        book = _workbook(_export(reseller_b_admin_client, reseller, kind))
        for sheet in book.worksheets:
            for row in _rows(sheet):
                assert "Alpha Partners Ltd" not in row and "Aardvark Farms" not in row and "Anchor Marine" not in row


@pytest.mark.parametrize("path", ["products/csp-report", "products/usage-chart", "products/usage-chart.xlsx"])
def test_another_reseller_gets_404(world, reseller_b_admin_client, path):
    before = database_fingerprint()
    for account in ("customer_a", "reseller_a"):
        url = f"/accounts/{world.accounts[account].id}/{path}"
        answer = _post(reseller_b_admin_client, url) if path.endswith(".xlsx") else reseller_b_admin_client.get(url)
        assert answer.status_code == 404
    assert database_fingerprint() == before


@pytest.mark.parametrize("kind", ["subscriptions", "users"])
def test_another_reseller_cannot_export_or_start_a_job(app, world, reseller_b_admin_client, monkeypatch, kind):
    before = database_fingerprint()
    for threshold in (20000, 0):  # at once, and as a background job
        monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", threshold)
        for account in ("customer_a", "reseller_a"):
            assert _export(reseller_b_admin_client, world.accounts[account].id, kind).status_code == 404
    assert database_fingerprint() == before


@pytest.mark.parametrize("threshold", [20000, 0])
def test_an_export_is_a_post_a_get_changes_nothing(app, world, reseller_a_admin_client, monkeypatch, threshold):
    """An export records an event and a large one starts a job: a GET (a link on another site) does neither."""
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", threshold)
    customer = world.accounts["customer_a"].id
    before = database_fingerprint()
    assert reseller_a_admin_client.get(f"/accounts/{customer}/reports/users.xlsx").status_code == 405
    no_token = reseller_a_admin_client.post(f"/accounts/{customer}/reports/users.xlsx")
    assert no_token.status_code == 400
    assert database_fingerprint() == before


# -- background jobs ---------------------------------------------------------------------------------------------------


def _join_job_thread(job_id: str) -> None:
    for thread in threading.enumerate():
        if thread.name == f"export-{job_id}":
            thread.join(timeout=60)


def _start_job(client, account_id, kind="users"):
    response = _export(client, account_id, kind)
    assert response.status_code == 302
    return re.search(r"job=([0-9a-f-]+)", response.location).group(1)


def _more_people(customer_key, world, count):
    with unscoped() as session:
        session.execute(
            M365User.__table__.insert(),
            [
                {
                    "account_id": world.accounts[customer_key].id,
                    "display_name": f"Bulk {i}",
                    "user_principal_name": f"bulk{i}@aardvark.onmicrosoft.com",
                    "status": "active",
                    "created_on": dt.datetime(2026, 1, 1),
                }
                for i in range(count)
            ],
        )
        session.commit()


def test_a_large_export_runs_in_the_background_with_progress(app, world, reseller_a_admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 10)
    _more_people("customer_a", world, 2500)
    updates = []

    def watch(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE background_job") and "rows_done" in statement:
            updates.append(parameters)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", watch)
    try:
        job_id = _start_job(reseller_a_admin_client, world.accounts["reseller_a"].id)
        _join_job_thread(job_id)
    finally:
        event.remove(engine, "before_cursor_execute", watch)
    assert len(updates) >= 4  # running at 0, then 1000, 2000 and the end: the progress advanced
    status = reseller_a_admin_client.get(f"/reports/jobs/{job_id}").get_json()
    assert status["status"] == "done" and status["rows_done"] == status["rows_total"] > 2500
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['reseller_a'].id}/products/csp-report").text
    assert 'data-test="job-download"' in page and "progress-bar" in page
    book = _workbook(_post(reseller_a_admin_client, status["download_url"]))
    assert len(_rows(book["Microsoft 365 users"])) == 2500 + 3


def test_job_downloads_belong_to_their_requester(app, world, login, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 0)
    requester = login(world.users["reseller_a_admin"].email)
    job_id = _start_job(requester, world.accounts["customer_a"].id, "subscriptions")
    _join_job_thread(job_id)
    for who in ("reseller_a_user", "reseller_b_admin", "customer_a_master_admin"):
        other = login(world.users[who].email)
        assert _post(other, f"/reports/jobs/{job_id}/download").status_code in (403, 404), who
        assert other.get(f"/reports/jobs/{job_id}").status_code in (403, 404), who
    assert _post(login(world.users["ops_admin"].email), f"/reports/jobs/{job_id}/download").status_code == 200
    assert requester.get(f"/reports/jobs/{job_id}/download").status_code == 405  # a download is audited: POST
    assert _post(requester, f"/reports/jobs/{job_id}/download").status_code == 200
    with unscoped() as session:
        downloads = session.scalars(select(Event).where(Event.action == "report.downloaded")).all()
        assert len(downloads) == 2 and all(e.target_id == job_id for e in downloads)


def test_a_failed_job_says_so_and_can_be_retried(app, world, reseller_a_admin_client, monkeypatch, tmp_path):
    monkeypatch.setitem(app.config, "EXPORT_JOB_THRESHOLD", 0)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the exports folder should be")
    monkeypatch.setitem(app.config, "EXPORT_DIR", str(blocked))
    job_id = _start_job(reseller_a_admin_client, world.accounts["customer_a"].id, "subscriptions")
    _join_job_thread(job_id)
    status = reseller_a_admin_client.get(f"/reports/jobs/{job_id}").get_json()
    assert status["status"] == "failed" and status["error"]
    page = reseller_a_admin_client.get(f"/accounts/{world.accounts['customer_a'].id}/products/csp-report").text
    assert "Failed:" in page and ">Retry<" in page
    monkeypatch.setitem(app.config, "EXPORT_DIR", str(tmp_path / "exports"))
    reseller_a_admin_client.post(
        f"/reports/jobs/{job_id}/retry", data={"csrf_token": csrf_token(reseller_a_admin_client)}
    )
    _join_job_thread(job_id)
    assert reseller_a_admin_client.get(f"/reports/jobs/{job_id}").get_json()["status"] == "done"


def test_rq_worker_runs_the_job_and_another_app_serves_it(app, world, tmp_path, database_url, monkeypatch):
    """A job started through one app instance (with REDIS_URL: RQ on the machine's Redis), run by a real `rq worker`
    process (``worker.py``, beside run.py), then polled and downloaded through another app instance (the session's)."""
    redis_url = "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(redis_url).flushdb()
    export_dir = tmp_path / "exports"
    monkeypatch.setitem(app.config, "EXPORT_DIR", str(export_dir))
    queued = make_app(
        tmp_path / "rq-app", database_url, REDIS_URL=redis_url, EXPORT_JOB_THRESHOLD=0, EXPORT_DIR=str(export_dir)
    )
    client = login_to(queued, world.users["reseller_a_admin"].email)
    job_id = _start_job(client, world.accounts["customer_a"].id, "subscriptions")
    with unscoped() as session:
        assert session.get(BackgroundJob, job_id).status == "queued"
    env = {
        **os.environ,
        "PORTAL_ENV": "testing",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "worker"),
        "EXPORT_DIR": str(export_dir),
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.run(
        [sys.executable, "worker.py", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    served_by = login_to(app, world.users["reseller_a_admin"].email)
    status = served_by.get(f"/reports/jobs/{job_id}").get_json()
    assert status["status"] == "done", (status, worker.stderr[-2000:])
    book = _workbook(_post(served_by, status["download_url"]))
    assert {r[3] for r in _rows(book.active)} == {"Microsoft 365 Business Basic", "Exchange Online (Plan 1)"}
    redis.Redis.from_url(redis_url).flushdb()


# -- usage chart and snapshot-usage ----------------------------------------------------------------------------------


def test_usage_chart_page_and_its_data(world, reseller_a_admin_client):
    customer = world.accounts["customer_a"].id
    with unscoped() as session:
        sub = session.get(Subscription, world.rows["a"]["subscription"])
        session.add(
            UsagePoint(
                account_id=customer,
                subscription_id=sub.id,
                quantity=2,
                assigned=1,
                unit_price=sub.unit_price,
                recorded_at=clock.utcnow() - dt.timedelta(days=100),
            )
        )
        session.commit()
    page = reseller_a_admin_client.get(f"/accounts/{customer}/products/usage-chart").text
    assert 'class="usage-chart"' in page and "/static/vendor/plotly.min.js" in page and "cdn" not in page.lower()
    row = page.split("<th>Microsoft 365 Business Basic</th>")[1].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert len(cells) == 12 and cells[-1] == "3/4" and "1/2" in cells
    assert reseller_a_admin_client.get(f"/accounts/{customer}/products/usage-chart.xlsx").status_code == 405
    book = _workbook(_post(reseller_a_admin_client, f"/accounts/{customer}/products/usage-chart.xlsx"))
    assert book.sheetnames == ["Licences", "Monthly spend"]
    with unscoped() as session:
        exported = session.scalars(select(Event).where(Event.action == "report.exported")).one()
        assert exported.account_id == customer and "Usage chart" in exported.summary and exported.request_id
    assert reseller_a_admin_client.get("/static/vendor/plotly.min.js").status_code == 200


def test_snapshot_usage_records_only_changes(app, world):
    runner = app.test_cli_runner()
    assert "Usage points recorded: 0." in runner.invoke(args=["portal", "snapshot-usage"]).output
    with unscoped() as session:
        session.get(Subscription, world.rows["a"]["subscription"]).quantity = 9
        session.commit()
    assert "Usage points recorded: 1." in runner.invoke(args=["portal", "snapshot-usage"]).output
    assert "Usage points recorded: 0." in runner.invoke(args=["portal", "snapshot-usage"]).output
    with unscoped() as session:
        latest = session.scalars(
            select(UsagePoint)
            .where(UsagePoint.subscription_id == world.rows["a"]["subscription"])
            .order_by(UsagePoint.id.desc())
        ).first()
        assert latest.quantity == 9
