"""Microsoft's licence-based price sheet: read in Microsoft's format (BOM, zip), refused whole with line numbers,
imported idempotently; the sandbox's and the demo's sheets; Catalogue ▸ Products and ▸ Price changes with its upload,
for operator staff only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal
from types import SimpleNamespace

import pytest
from flask_appbuilder import Model
from sqlalchemy import func, select

from app import clock
from app.csp import sandbox_pricesheet
from app.models.catalog import Availability, CataloguePrice, Product
from app.models.events import Event
from app.services import pricesheet
from app.services.pricesheet import PriceSheetRefused
from tests.conftest import count_statements, csrf_token, unscoped

COLUMNS = [
    "ProductTitle",
    "ProductId",
    "SkuId",
    "SkuTitle",
    "Publisher",
    "SkuDescription",
    "UnitOfMeasure",
    "TermDuration",
    "BillingPlan",
    "Market",
    "Currency",
    "UnitPrice",
    "PricingTierRangeMin",
    "PricingTierRangeMax",
    "EffectiveStartDate",
    "EffectiveEndDate",
    "Tags",
    "ERP Price",
    "Segment",
]
E3 = "CFQ7TTC0LFLX:0001"


def _this_month() -> dt.date:
    return clock.today().replace(day=1)


def _row(month: dt.date | None = None, **values) -> dict[str, str]:
    month = month or _this_month()
    last = pricesheet.next_month_start(month) - dt.timedelta(days=1)
    row = {
        "ProductTitle": "Microsoft 365 Business Basic",
        "ProductId": "CFQ7TTC0LH18",
        "SkuId": "0001",
        "SkuTitle": "Microsoft 365 Business Basic",
        "Publisher": "Microsoft Corporation",
        "SkuDescription": "Business Basic",
        "UnitOfMeasure": "",
        "TermDuration": "P1Y",
        "BillingPlan": "Monthly",
        "Market": "NZ",
        "Currency": "NZD",
        "UnitPrice": "7.65",
        "PricingTierRangeMin": "",
        "PricingTierRangeMax": "",
        "EffectiveStartDate": f"{month.month}/1/{month.year} 12:00:00 AM",
        "EffectiveEndDate": f"{last.month}/{last.day}/{last.year} 11:59:59 PM",
        "Tags": "License",
        "ERP Price": "9.00",
        "Segment": "Commercial",
    }
    row.update(values)
    return row


def _sheet(*rows: dict[str, str], columns=COLUMNS, bom: bool = True) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, quoting=csv.QUOTE_ALL, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pricesheet_NZ.csv", data)
    return buffer.getvalue()


def _import(data: bytes, market: str = "NZ") -> pricesheet.ImportResult:
    with unscoped():
        return pricesheet.import_sheet(data, market)


def _catalogue() -> dict[str, list[tuple]]:
    """Every catalogue row, as values (imported_on included: an idempotent import rewrites nothing)."""
    with unscoped() as session:
        return {
            model.__tablename__: sorted(
                tuple(getattr(row, column.key) for column in model.__table__.columns)
                for row in session.scalars(select(model))
            )
            for model in (Product, Availability, CataloguePrice)
        }


def _rows_everywhere() -> dict[str, int]:
    with unscoped() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Model.metadata.sorted_tables
            if table.name != "server_session"
        }


def _price(sku: str, term: str, frequency: str, valid_from: dt.date) -> SimpleNamespace | None:
    """The stored price's values (read in a session of its own)."""
    with unscoped() as session:
        price = session.scalars(
            select(CataloguePrice)
            .join(Availability, Availability.id == CataloguePrice.availability_id)
            .join(Product, Product.id == Availability.product_id)
            .where(
                Product.sku == sku,
                Availability.term == term,
                Availability.billing_frequency == frequency,
                CataloguePrice.valid_from == valid_from,
            )
        ).first()
        if price is None:
            return None
        return SimpleNamespace(**{c.key: getattr(price, c.key) for c in CataloguePrice.__table__.columns})


# --- reading Microsoft's format ----------------------------------------------------------------------------------


def test_the_sample_sheet_imports_as_csv_with_a_bom_and_as_a_zip(app, world):
    data = sandbox_pricesheet.sheet("NZ", None, clock.today())
    assert data.startswith(b"\xef\xbb\xbf")  # as Microsoft's downloads
    csv_rows, csv_result = pricesheet.read_sheet(data)
    zip_rows, zip_result = pricesheet.read_sheet(_zip(data))
    assert csv_rows == zip_rows and csv_result == zip_result and csv_result.rows == 30

    result = _import(_zip(data))
    assert (result.products_added, result.availabilities_added, result.prices_added) == (8, 30, 30)
    month = _this_month()
    premium = _price("CFQ7TTC0LCHC:0002", "P1Y", "monthly", month)
    assert (premium.unit_cost, premium.erp_price) == (Decimal("14.7000"), Decimal("17.3000"))
    assert premium.valid_until == pricesheet.next_month_start(month) - dt.timedelta(days=1)
    upfront = _price("CFQ7TTC0LCHC:0002", "P1Y", "annual", month)
    assert upfront.erp_price == Decimal("197.71")  # 17.30 / 1.05 × 12, half up to the cent
    assert _price("CFQ7TTC0LCHC:0002", "P1M", "monthly", month).erp_price == Decimal("20.76")  # 17.30 × 1.20
    assert _price(E3, "P3Y", "triennial", month).erp_price > _price(E3, "P3Y", "annual", month).erp_price
    with unscoped() as session:
        product = session.scalars(select(Product).where(Product.sku == "CFQ7TTC0LH18:0001")).one()
        assert (product.name, product.product_title) == ("Microsoft 365 Business Basic",) * 2
        event = session.scalars(select(Event).where(Event.action == "pricesheet.imported")).one()
        assert event.account_id == world.accounts["operator"].id and "30 price(s) added" in event.summary


def test_only_the_markets_commercial_licence_rows_of_the_first_tier_are_imported(app, world):
    data = _sheet(
        _row(),
        _row(Segment="Education", **{"ERP Price": "4.00"}),
        _row(Segment="Charity", **{"ERP Price": "2.00"}),
        _row(Market="AU", Currency="AUD"),
        _row(Tags="Azure", TermDuration="payG-1"),
        _row(TermDuration="P1M", PricingTierRangeMin="301", PricingTierRangeMax="2400"),
    )
    rows, result = pricesheet.read_sheet(data, "nz")
    assert len(rows) == 1 and (result.skipped_segment, result.skipped_market, result.skipped_other) == (2, 1, 2)
    assert rows[0].erp_price == Decimal("9.00") and rows[0].line == 2
    # Microsoft's documented example has no Segment column: such a sheet is read as Commercial.
    plain = [c for c in COLUMNS if c != "Segment"]
    assert len(pricesheet.read_sheet(_sheet(_row(), columns=plain, bom=False))[0]) == 1


@pytest.mark.parametrize(
    "bad, line, reason",
    [
        ({"TermDuration": "P2Y"}, 3, "unknown TermDuration 'P2Y'"),
        ({"BillingPlan": "Fortnightly"}, 3, "unknown BillingPlan 'Fortnightly'"),
        ({"TermDuration": "P1M", "BillingPlan": "Annual"}, 3, "a P1M term cannot be billed Annual"),
        ({"UnitPrice": "-0.01"}, 3, "UnitPrice '-0.01' is negative"),
        ({"ERP Price": "abc"}, 3, "ERP Price 'abc' is not a number"),
        ({"ERP Price": "NaN"}, 3, "ERP Price 'NaN' is not a number"),
        ({"UnitPrice": "1e309"}, 3, "UnitPrice '1e309' is too large"),
        ({"UnitPrice": "9" * 40}, 3, "too large"),
        ({"ProductId": ""}, 3, "empty ProductId"),
        ({"EffectiveStartDate": "31/31/2026"}, 3, "EffectiveStartDate '31/31/2026' is not a date"),
        ({"Currency": "NZDOLLAR"}, 3, "not a three-letter code"),
        ({"SkuId": "0001"}, 3, "again (first at line 2)"),
    ],
)
def test_a_bad_row_refuses_the_whole_sheet_with_its_line(app, world, bad, line, reason):
    before = _rows_everywhere()
    data = _sheet(_row(), _row(**{"SkuId": "0002", "SkuTitle": "Other", **bad}), _row(SkuId="0003"))
    with pytest.raises(PriceSheetRefused) as refused:
        _import(data)
    assert [(found_line, text) for found_line, text in refused.value.errors if reason in text] == [
        (line, refused.value.errors[0][1])
    ], refused.value.errors
    assert any(f"line {line}: " in text for text in refused.value.lines())
    assert _rows_everywhere() == before  # nothing half-imported


@pytest.mark.parametrize(
    "data, reason",
    [
        (
            _sheet(_row(), columns=[c for c in COLUMNS if c not in ("ERP Price", "BillingPlan")]),
            "BillingPlan, ERP Price",
        ),
        (b"", "the sheet is empty"),
        (b"\xff\xfe\x00junk", "not UTF-8"),
        (b"PK\x03\x04broken", "not a readable zip"),
    ],
    ids=["missing columns", "empty", "not text", "broken zip"],
)
def test_a_sheet_that_is_not_microsofts_is_refused_at_line_1(app, world, data, reason):
    before = _rows_everywhere()
    with pytest.raises(PriceSheetRefused) as refused:
        _import(data)
    assert refused.value.errors[0][0] == 1 and reason in refused.value.errors[0][1]
    assert _rows_everywhere() == before


def test_a_short_row_is_refused_with_its_line():
    text = _sheet(_row()).decode("utf-8-sig") + '"Microsoft 365 E3","CFQ7TTC0LFLX","0001"\r\n'
    with pytest.raises(PriceSheetRefused) as refused:
        pricesheet.read_sheet(text.encode())
    assert refused.value.errors == [(3, "3 column(s) where the header has 19")]


def test_importing_the_same_sheet_twice_changes_nothing(app, world):
    data = sandbox_pricesheet.sheet("NZ", None, clock.today())
    _import(data)
    catalogue, everything = _catalogue(), _rows_everywhere()
    again = _import(_zip(data))
    assert not again.changed and again.prices_unchanged == 30
    assert _catalogue() == catalogue and _rows_everywhere() == everything  # no event either


def test_a_new_price_for_the_month_replaces_the_old_one_and_a_rename_follows_microsoft(app, world):
    _import(_sheet(_row()))
    result = _import(_sheet(_row(SkuTitle="Microsoft 365 Business Basic (no Teams)", UnitPrice="7.70")))
    assert (result.prices_changed, result.products_renamed, result.prices_added) == (1, 1, 0)
    assert _price("CFQ7TTC0LH18:0001", "P1Y", "monthly", _this_month()).unit_cost == Decimal("7.70")


def test_four_decimal_prices_are_kept_exactly(app, world):
    """Numeric(14, 4) on SQLite and PostgreSQL: the sheet's four decimals come back as they were written."""
    _import(_sheet(_row(UnitPrice="12.3456", **{"ERP Price": "9999999.9999"}), _row(SkuId="0002", UnitPrice="1.23455")))
    month = _this_month()
    exact = _price("CFQ7TTC0LH18:0001", "P1Y", "monthly", month)
    assert (exact.unit_cost, exact.erp_price) == (Decimal("12.3456"), Decimal("9999999.9999"))
    assert _price("CFQ7TTC0LH18:0002", "P1Y", "monthly", month).unit_cost == Decimal("1.2346")  # half up to four


def test_an_open_ended_price_has_no_end(app, world):
    _import(_sheet(_row(EffectiveEndDate="12/31/9999 11:59:59 PM"), _row(SkuId="0002", EffectiveEndDate="")))
    assert _price("CFQ7TTC0LH18:0001", "P1Y", "monthly", _this_month()).valid_until is None
    assert _price("CFQ7TTC0LH18:0002", "P1Y", "monthly", _this_month()).valid_until is None


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_imports_a_file_and_refuses_a_bad_one(app, world, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(_sheet(_row(), _row(Segment="Education")))
    bad.write_bytes(_sheet(_row(SkuId="0009"), _row(BillingPlan="Weekly")))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["portal", "import-pricesheet", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 price(s) added" in result.output and "skipped 1 of other segments" in result.output
    before = _rows_everywhere()
    refused = runner.invoke(args=["portal", "import-pricesheet", str(bad)])
    assert refused.exit_code == 1 and "line 3: unknown BillingPlan 'Weekly'" in refused.output
    assert "nothing was imported" in refused.output and _rows_everywhere() == before
    assert runner.invoke(args=["portal", "import-pricesheet"]).exit_code == 2  # neither a file nor --download


def test_cli_downloads_next_months_sheet_from_the_provider(app, world):
    next_month = pricesheet.next_month_start(_this_month())
    runner = app.test_cli_runner()
    result = runner.invoke(args=["portal", "import-pricesheet", "--download", "--month", f"{next_month:%Y%m}"])
    assert result.exit_code == 0, result.output
    assert f"for {next_month:%m/%Y}" in result.output and "30 price(s) added" in result.output
    assert _price(E3, "P1Y", "monthly", next_month) is not None
    bad = runner.invoke(args=["portal", "import-pricesheet", "--download", "--month", "2026-13"])
    assert bad.exit_code == 1 and "YYYYMM" in bad.output


# --- the sandbox and the demo --------------------------------------------------------------------------------------


def test_the_sandbox_publishes_every_month_with_one_change_from_one_month_to_the_next():
    today = dt.date(2026, 12, 15)
    december, january = sandbox_pricesheet.sheet("NZ", None, today), sandbox_pricesheet.sheet("NZ", "202701", today)
    dec_rows, _ = pricesheet.read_sheet(december)
    jan_rows, _ = pricesheet.read_sheet(january)
    assert {r.valid_from for r in dec_rows} == {dt.date(2026, 12, 1)}
    assert {r.valid_until for r in jan_rows} == {dt.date(2027, 1, 31)}
    changed = {
        (a.sku, a.term, a.billing_frequency): (a.erp_price, b.erp_price)
        for a, b in zip(dec_rows, jan_rows, strict=True)
        if (a.unit_cost, a.erp_price) != (b.unit_cost, b.erp_price)
    }
    assert {sku for sku, _, _ in changed} == {E3}  # Microsoft 365 E3: 5 % more in even months
    assert changed[(E3, "P1Y", "monthly")] == (Decimal("63.0000"), Decimal("60.0000"))
    assert changed[(E3, "P1Y", "annual")] == (Decimal("719.9955"), Decimal("685.7100"))  # four decimals


def test_the_demo_has_this_months_and_next_months_prices(app):
    result = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", "demo-password-for-tests"])
    assert result.exit_code == 0, result.output
    this_month = _this_month()
    next_month = pricesheet.next_month_start(this_month)
    for sku, erp in (("CFQ7TTC0LCHC:0002", "17.30"), ("CFQ7TTC0LH16:0001", "5.50"), ("CFQ7TTC0LH18:0001", "9.00")):
        for month in (this_month, next_month):
            assert _price(sku, "P1Y", "monthly", month).erp_price == Decimal(erp)
    assert _price(E3, "P1Y", "monthly", this_month).erp_price != _price(E3, "P1Y", "monthly", next_month).erp_price
    with unscoped() as session:
        assert session.scalar(select(func.count()).where(Event.action == "pricesheet.imported")) == 2
    again = app.test_cli_runner().invoke(args=["portal", "seed-demo"])
    assert "Demo data already present." in again.output


# --- Catalogue ▸ Products and ▸ Price changes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, sees_cost", [("reseller_a_user", False), ("reseller_a_admin", False), ("ops_admin", True)]
)
def test_a_products_page_shows_its_availabilities_with_this_months_prices(world, login, who, sees_cost):
    _import(_sheet(_row(), _row(TermDuration="P1M", UnitPrice="9.18", **{"ERP Price": "10.8"})))
    with unscoped() as session:
        product_id = session.scalars(select(Product.id).where(Product.sku == "CFQ7TTC0LH18:0001")).one()
    page = login(world.users[who].email).get(f"/productview/show/{product_id}")
    assert page.status_code == 200 and "ERP price" in page.text
    assert "1 year" in page.text and "1 month" in page.text and "$10.80" in page.text and "$9.00" in page.text
    assert ("Microsoft's cost" in page.text) is sees_cost
    assert ("$7.65" in page.text) is sees_cost and ("$9.18" in page.text) is sees_cost


def _two_months(change: bool = True) -> None:
    this_month = _this_month()
    next_month = pricesheet.next_month_start(this_month)
    _import(
        _sheet(
            _row(this_month),
            _row(this_month, SkuId="0002", SkuTitle="Going away"),
            _row(next_month, UnitPrice="8.0325" if change else "7.65", **{"ERP Price": "9.45" if change else "9.00"}),
            _row(next_month, SkuId="0003", SkuTitle="Brand new", TermDuration="P1M"),
        )
    )


def test_price_changes_shows_next_months_changes_before_they_apply(world, ops_admin_client):
    page = ops_admin_client.get("/catalogue/price-changes/")
    assert page.status_code == 200 and "has not been imported yet" in page.text
    assert 'href="/catalogue/price-changes/"' in ops_admin_client.get("/", follow_redirects=True).text  # the menu
    _two_months()
    page = ops_admin_client.get("/catalogue/price-changes/")
    assert page.status_code == 200
    assert 'data-change="changed" data-sku="CFQ7TTC0LH18:0001"' in page.text
    assert "$9.00 → $9.45" in page.text and "+5.00 %" in page.text and "$7.65 → $8.0325" in page.text
    assert 'data-change="new" data-sku="CFQ7TTC0LH18:0003"' in page.text
    assert 'data-change="withdrawn" data-sku="CFQ7TTC0LH18:0002"' in page.text


def test_price_changes_statements_do_not_grow_with_rows(app, world, ops_admin_client):
    _two_months()
    ops_admin_client.get("/catalogue/price-changes/")
    with count_statements(app) as few:
        assert ops_admin_client.get("/catalogue/price-changes/").status_code == 200
    next_month = pricesheet.next_month_start(_this_month())
    _import(_sheet(*[_row(next_month, SkuId=f"1{i:03}", SkuTitle=f"SKU {i}", UnitPrice="1") for i in range(30)]))
    with count_statements(app) as many:
        page = ops_admin_client.get("/catalogue/price-changes/")
    assert page.text.count('data-change="new"') == 31
    assert len(many) == len(few), f"{len(few)} statements with few rows, {len(many)} with more"


def test_a_products_page_statements_do_not_grow_with_availabilities(app, world, ops_admin_client):
    _import(_sheet(_row()))
    with unscoped() as session:
        product_id = session.scalars(select(Product.id).where(Product.sku == "CFQ7TTC0LH18:0001")).one()
    path = f"/productview/show/{product_id}"
    ops_admin_client.get(path)
    with count_statements(app) as few:
        ops_admin_client.get(path)
    _import(_sheet(*[_row(TermDuration=t, BillingPlan=b) for t, b in (("P1M", "Monthly"), ("P1Y", "Annual"))]))
    with count_statements(app) as many:
        page = ops_admin_client.get(path)
    assert page.text.count("data-availability=") == 3
    assert len(many) == len(few)


def _upload(client, data: bytes | None, market: str = "NZ", name: str = "sheet.csv"):
    form = {"csrf_token": csrf_token(client, "/catalogue/price-changes/"), "market": market}
    if data is not None:
        form["sheet"] = (io.BytesIO(data), name)
    return client.post("/catalogue/price-changes/import", data=form, content_type="multipart/form-data")


def test_the_upload_imports_a_sheet_or_refuses_it_beside_the_field(world, ops_admin_client):
    before = _rows_everywhere()
    refused = _upload(ops_admin_client, _sheet(_row(), _row(SkuId="0002", UnitPrice="-3")))
    assert refused.status_code == 400
    assert 'data-error-for="sheet">line 3: UnitPrice &#39;-3&#39; is negative' in refused.text
    assert _rows_everywhere() == before
    missing = _upload(ops_admin_client, None)
    assert missing.status_code == 400 and 'data-error-for="sheet">Choose Microsoft' in missing.text
    market = _upload(ops_admin_client, _sheet(_row()), market="N1")
    assert market.status_code == 400 and 'data-error-for="market"' in market.text
    assert _rows_everywhere() == before

    done = _upload(ops_admin_client, _zip(_sheet(_row())), name="sheet.zip")
    assert done.status_code == 302 and done.location.endswith("/catalogue/price-changes/")
    assert "1 price(s) added" in ops_admin_client.get(done.location).text
    assert _price("CFQ7TTC0LH18:0001", "P1Y", "monthly", _this_month()).erp_price == Decimal("9.00")
    with unscoped() as session:
        event = session.scalars(select(Event).where(Event.action == "pricesheet.imported")).one()
        assert event.actor_id == world.users["ops_admin"].id


def test_the_upload_is_a_post_with_csrf(world, ops_admin_client):
    assert ops_admin_client.get("/catalogue/price-changes/import").status_code == 405
    before = _rows_everywhere()
    no_token = ops_admin_client.post(
        "/catalogue/price-changes/import",
        data={"market": "NZ", "sheet": (io.BytesIO(_sheet(_row())), "s.csv")},
        content_type="multipart/form-data",
    )
    assert no_token.status_code == 400 and _rows_everywhere() == before


@pytest.mark.parametrize("who", ["reseller_a_admin", "reseller_b_admin", "reseller_a_user", "customer_a_master_admin"])
def test_partners_and_customers_cannot_see_price_changes_or_import(world, login, who):
    _two_months()
    client = login(world.users[who].email)
    assert "Price changes" not in client.get("/", follow_redirects=True).text
    before = _rows_everywhere()
    assert client.get("/catalogue/price-changes/").status_code in (403, 404)
    response = _upload(client, _sheet(_row(UnitPrice="0.01")))
    assert response.status_code in (403, 404)
    assert _rows_everywhere() == before
    assert _price("CFQ7TTC0LH18:0001", "P1Y", "monthly", _this_month()).unit_cost == Decimal("7.65")


def test_the_maintenance_task_fetches_a_missing_month_and_then_nothing(app):
    """Months pass: the hourly task downloads this month's and next month's sheets when the catalogue lacks them, so
    something stays orderable; once both are there it downloads nothing."""
    import time_machine

    from app.extensions import db
    from security import scoping

    later = dt.datetime(2027, 3, 14, 23, 0, tzinfo=dt.UTC)  # 15 March in New Zealand
    with app.app_context(), scoping.bypass("test: maintenance"), time_machine.travel(later, tick=False):
        assert pricesheet.keep_current() > 0
        for month in (dt.date(2027, 3, 1), dt.date(2027, 4, 1)):
            count = db.session.scalar(select(func.count()).where(CataloguePrice.valid_from == month))
            assert count >= 30, month  # every row of the sandbox's sample sheet
        assert pricesheet.keep_current() == 0
        db.session.rollback()
