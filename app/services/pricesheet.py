"""Microsoft's licence-based price sheet (new commerce, ``PricesheetView='updatedlicensebased'``): read it, refuse it
whole when a row is wrong, and import it into the catalogue (products = SKUs, availabilities = term × billing plan,
prices by month of validity).

The columns are Microsoft's, as its page documents them for new commerce
(https://learn.microsoft.com/partner-center/developer/get-a-price-sheet, "Response example for new commerce"):
``ProductTitle, ProductId, SkuId, SkuTitle, Publisher, SkuDescription, UnitOfMeasure, TermDuration, BillingPlan,
Market, Currency, UnitPrice, PricingTierRangeMin, PricingTierRangeMax, EffectiveStartDate, EffectiveEndDate, Tags,
ERP Price`` — and the ``Segment`` column of today's sheets (Commercial, Education, Charity, Government), which that
example predates: a sheet without it is read as Commercial. Dates come as ``2/1/2019 12:00:00 AM`` (the page's
example) or ISO 8601. The stream is a CSV file or a zip of it (the page: "File stream is either a .csv file or a zip
compressed version of the .csv"), often with a UTF-8 byte order mark.

What is imported: the asked market's Commercial, licence-based rows (``Tags`` naming ``License``, or no tags), the
first pricing tier of each. ``UnitPrice`` is Microsoft's price to the operator and ``ERP Price`` its estimated
retail price, both per licence per billing period. A price is kept per availability and month: ``valid_from`` the
1st of ``EffectiveStartDate``'s month, ``valid_until`` ``EffectiveEndDate``'s date (none when it has no end, or
ends in year 9999). Prices carry up to four decimals (more are rounded half up to four).

All or nothing: every row is checked first; one bad row refuses the sheet (each error with its line number) and
nothing is written. Importing the same sheet again changes nothing (and records no event).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import zipfile
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from app import clock
from app.extensions import db
from app.models.accounts import OPERATOR, Account
from app.models.catalog import Availability, CataloguePrice, Product, valid_combination
from app.services.events import record_event

# Microsoft's names (see the module docstring). The informative ones (Publisher, SkuDescription, UnitOfMeasure,
# PricingTierRangeMax) are not needed to import a price.
REQUIRED_COLUMNS = (
    "ProductTitle",
    "ProductId",
    "SkuId",
    "SkuTitle",
    "TermDuration",
    "BillingPlan",
    "Market",
    "Currency",
    "UnitPrice",
    "EffectiveStartDate",
    "EffectiveEndDate",
    "ERP Price",
)
TERMS = ("P1M", "P1Y", "P3Y")  # Microsoft's TermDuration
BILLING_PLANS = {"monthly": "monthly", "annual": "annual", "triennial": "triennial"}  # BillingPlan → billing frequency
COMMERCIAL = "commercial"
MAX_PRICE = Decimal("9999999999.9999")  # Numeric(14, 4)
FOUR_PLACES = Decimal("0.0001")
MAX_ERRORS_KEPT = 200
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024  # a zip's CSV as it says it unzips; more is no sheet (a zip bomb)
_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S")


class PriceSheetRefused(ValueError):
    """The sheet was not imported; ``errors`` lists ``(line, reason)``, line 1 being the header."""

    def __init__(self, errors: list[tuple[int, str]], total: int | None = None):
        self.errors = errors
        self.total = total if total is not None else len(errors)
        super().__init__(f"the price sheet was refused: {self.total} error(s)")

    def lines(self) -> list[str]:
        shown = [f"line {line}: {reason}" for line, reason in self.errors]
        if self.total > len(self.errors):
            shown.append(f"… and {self.total - len(self.errors)} more")
        return shown


@dataclasses.dataclass(frozen=True)
class SheetRow:
    """One importable row, checked."""

    line: int
    sku: str  # ProductId:SkuId
    product_title: str
    sku_title: str
    term: str
    billing_frequency: str
    market: str
    currency: str
    unit_cost: Decimal
    erp_price: Decimal
    valid_from: dt.date
    valid_until: dt.date | None


@dataclasses.dataclass
class ImportResult:
    market: str
    rows: int = 0  # importable rows read
    products_added: int = 0
    products_renamed: int = 0
    availabilities_added: int = 0
    prices_added: int = 0
    prices_changed: int = 0
    prices_unchanged: int = 0
    skipped_segment: int = 0  # other segments (Education, Charity, Government…)
    skipped_market: int = 0
    skipped_other: int = 0  # not licence-based, or a further pricing tier
    months: list[dt.date] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.products_added
            or self.products_renamed
            or self.availabilities_added
            or self.prices_added
            or self.prices_changed
        )

    def summary(self) -> str:
        months = ", ".join(f"{m:%m/%Y}" for m in self.months) or "no month"
        text = (
            f"{self.market} price sheet for {months}: {self.rows} row(s); {self.products_added} product(s) and "
            f"{self.availabilities_added} availability(ies) added, {self.products_renamed} renamed; "
            f"{self.prices_added} price(s) added, {self.prices_changed} changed, {self.prices_unchanged} unchanged"
        )
        skipped = []
        if self.skipped_segment:
            skipped.append(f"{self.skipped_segment} of other segments")
        if self.skipped_market:
            skipped.append(f"{self.skipped_market} of other markets")
        if self.skipped_other:
            skipped.append(f"{self.skipped_other} not licence-based or further tiers")
        return text + (f"; skipped {', '.join(skipped)}" if skipped else "") + "."


# -- reading ------------------------------------------------------------------------------------------------------


def sheet_text(data: bytes) -> str:
    """The CSV text of a sheet as downloaded or uploaded: unzipped when it is a zip, without a byte order mark."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [i for i in archive.infolist() if not i.is_dir()]
                csvs = [i for i in members if i.filename.lower().endswith(".csv")] or members
                if len(csvs) != 1:
                    raise PriceSheetRefused([(1, f"the zip holds {len(csvs)} CSV files, not one")])
                if csvs[0].file_size > MAX_UNZIPPED_BYTES:  # zipfile reads no more than this size
                    raise PriceSheetRefused([(1, f"the zip's CSV file is too large ({csvs[0].file_size} bytes)")])
                data = archive.read(csvs[0])
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise PriceSheetRefused([(1, f"not a readable zip file ({exc})")]) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceSheetRefused([(1, "not UTF-8 text: is it Microsoft's CSV price sheet?")]) from exc


def _header_name(name: str | None) -> str:
    return (name or "").strip().strip('"“”').strip()


def _price(raw: str, column: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"{column} {raw!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{column} {raw!r} is not a number")
    if value < 0:
        raise ValueError(f"{column} {raw!r} is negative")
    value = value.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP) if value < MAX_PRICE * 10 else value
    if value > MAX_PRICE:
        raise ValueError(f"{column} {raw!r} is too large")
    return value


def _date(raw: str, column: str) -> dt.date | None:
    raw = raw.strip()
    if not raw:
        return None
    text = raw.removesuffix("Z")
    if "." in text and "T" in text:  # 2026-12-01T00:00:00.0000000
        text = text.split(".", 1)[0]
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{column} {raw!r} is not a date")


def _licence_based(tags: str) -> bool:
    words = {part.strip().lower() for part in tags.replace(";", ",").split(",") if part.strip()}
    return not words or "license" in words or "licence" in words


def _first_tier(raw: str) -> bool:
    try:
        return not raw.strip() or Decimal(raw.strip()) <= 1
    except InvalidOperation:
        return True  # not a tier we understand: the row's own checks decide


def read_sheet(data: bytes, market: str = "NZ") -> tuple[list[SheetRow], ImportResult]:
    """Every importable row of ``market`` (checked), and the counts of what was skipped. PriceSheetRefused when a row
    (or the header) is wrong."""
    market = market.strip().upper()
    result = ImportResult(market=market)
    reader = csv.reader(io.StringIO(sheet_text(data), newline=""))
    try:
        header = [_header_name(name) for name in next(reader)]
    except StopIteration:
        raise PriceSheetRefused([(1, "the sheet is empty")]) from None
    except csv.Error as exc:
        raise PriceSheetRefused([(1, f"not a CSV file ({exc})")]) from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise PriceSheetRefused([(1, f"missing column(s): {', '.join(missing)}")])
    index = {name: header.index(name) for name in header if name}
    rows: list[SheetRow] = []
    errors: list[tuple[int, str]] = []
    total_errors = 0
    seen: dict[tuple, int] = {}

    def fail(line: int, reason: str) -> None:
        nonlocal total_errors
        total_errors += 1
        if len(errors) < MAX_ERRORS_KEPT:
            errors.append((line, reason))

    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            fail(reader.line_num, f"not readable as CSV ({exc})")
            break
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue  # a blank line
        if len(values) < len(header):
            fail(line, f"{len(values)} column(s) where the header has {len(header)}")
            continue

        def cell(name: str, values=values) -> str:
            return values[index[name]].strip() if name in index else ""

        if cell("Market").upper() != market:
            result.skipped_market += 1
            continue
        if "Segment" in index and cell("Segment") and cell("Segment").lower() != COMMERCIAL:
            result.skipped_segment += 1
            continue
        if not _licence_based(cell("Tags")) or not _first_tier(cell("PricingTierRangeMin")):
            result.skipped_other += 1
            continue
        empty = [name for name in REQUIRED_COLUMNS if name != "EffectiveEndDate" and not cell(name)]
        if empty:
            fail(line, f"empty {', '.join(empty)}")
            continue
        term, plan = cell("TermDuration"), cell("BillingPlan")
        frequency = BILLING_PLANS.get(plan.lower())
        problems = []
        if term not in TERMS:
            problems.append(f"unknown TermDuration {term!r} (P1M, P1Y or P3Y)")
        if frequency is None:
            problems.append(f"unknown BillingPlan {plan!r} (Monthly, Annual or Triennial)")
        elif term in TERMS and not valid_combination(term, frequency):
            problems.append(f"a {term} term cannot be billed {plan}")
        try:
            unit_cost = _price(cell("UnitPrice"), "UnitPrice")
        except ValueError as exc:
            problems.append(str(exc))
        try:
            erp_price = _price(cell("ERP Price"), "ERP Price")
        except ValueError as exc:
            problems.append(str(exc))
        try:
            start = _date(cell("EffectiveStartDate"), "EffectiveStartDate")
            end = _date(cell("EffectiveEndDate"), "EffectiveEndDate")
            if end is not None and end.year >= 9999:
                end = None
            if end is not None and end < start:
                problems.append("EffectiveEndDate is before EffectiveStartDate")
        except ValueError as exc:
            problems.append(str(exc))
        sku = f"{cell('ProductId')}:{cell('SkuId')}"
        if len(sku) > 64 or len(cell("SkuTitle")) > 160 or len(cell("ProductTitle")) > 160:
            problems.append("ProductId, SkuId or a title is longer than the catalogue keeps")
        if len(cell("Currency")) != 3:
            problems.append(f"Currency {cell('Currency')!r} is not a three-letter code")
        if problems:
            fail(line, "; ".join(problems))
            continue
        key = (sku, term, frequency, start.replace(day=1))
        if key in seen:
            fail(line, f"{sku} {term} {plan} for {start:%m/%Y} again (first at line {seen[key]})")
            continue
        seen[key] = line
        rows.append(
            SheetRow(
                line=line,
                sku=sku,
                product_title=cell("ProductTitle"),
                sku_title=cell("SkuTitle"),
                term=term,
                billing_frequency=frequency,
                market=market,
                currency=cell("Currency").upper(),
                unit_cost=unit_cost,
                erp_price=erp_price,
                valid_from=start.replace(day=1),
                valid_until=end,
            )
        )
    if total_errors:
        raise PriceSheetRefused(errors, total_errors)
    result.rows = len(rows)
    result.months = sorted({row.valid_from for row in rows})
    return rows, result


# -- importing ----------------------------------------------------------------------------------------------------


def import_sheet(data: bytes, market: str = "NZ", *, commit: bool = True) -> ImportResult:
    """Read the sheet and bring the catalogue in line with it, in one transaction (committed unless ``commit`` is
    False: the caller's transaction then holds it). PriceSheetRefused, with nothing written, when a row is wrong.
    Run under a scope bypass or by operator staff (the catalogue is the operator's)."""
    rows, read = read_sheet(data, market)
    for attempt in (1, 2):
        result = dataclasses.replace(read)
        try:
            _apply(rows, result)
            if result.changed:
                operator_id = db.session.scalar(
                    select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id).limit(1)
                )
                if operator_id is not None:
                    record_event("pricesheet.imported", account_id=operator_id, summary=result.summary())
            if commit:
                db.session.commit()
            else:
                db.session.flush()
            return result
        except IntegrityError:
            # Another import added the same SKU or month at the same moment: once more, on what it wrote.
            if not commit or attempt == 2:
                raise
            db.session.rollback()
        except Exception:
            if commit:
                db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _apply(rows: list[SheetRow], result: ImportResult) -> None:
    """Upsert products, availabilities and prices; writes only what differs (so a second import changes nothing)."""
    if not rows:
        return
    products = {p.sku: p for p in db.session.scalars(select(Product).where(Product.sku.in_({r.sku for r in rows})))}
    availabilities = {
        (a.product_id, a.term, a.billing_frequency): a
        for a in db.session.scalars(
            select(Availability).where(Availability.product_id.in_([p.id for p in products.values()] or [-1]))
        )
    }
    prices = {
        (p.availability_id, p.valid_from): p
        for p in db.session.scalars(
            select(CataloguePrice).where(
                CataloguePrice.valid_from.in_(result.months),
                CataloguePrice.availability_id.in_([a.id for a in availabilities.values()] or [-1]),
            )
        )
    }
    for row in rows:
        product = products.get(row.sku)
        if product is None:
            product = Product(name=row.sku_title, sku=row.sku, product_title=row.product_title)
            db.session.add(product)
            db.session.flush()
            products[row.sku] = product
            result.products_added += 1
        elif (product.name, product.product_title) != (row.sku_title, row.product_title):
            product.name, product.product_title = row.sku_title, row.product_title
            result.products_renamed += 1
        key = (product.id, row.term, row.billing_frequency)
        availability = availabilities.get(key)
        if availability is None:
            availability = Availability(product_id=product.id, term=row.term, billing_frequency=row.billing_frequency)
            db.session.add(availability)
            db.session.flush()
            availabilities[key] = availability
            result.availabilities_added += 1
        price = prices.get((availability.id, row.valid_from))
        wanted = (row.unit_cost, row.erp_price, row.valid_until, row.currency, row.market)
        if price is None:
            price = CataloguePrice(availability_id=availability.id, valid_from=row.valid_from)
            db.session.add(price)
            prices[(availability.id, row.valid_from)] = price
            result.prices_added += 1
        elif (Decimal(price.unit_cost), Decimal(price.erp_price), price.valid_until, price.currency, price.market) == (
            wanted
        ):
            result.prices_unchanged += 1
            continue
        else:
            result.prices_changed += 1
        price.unit_cost, price.erp_price, price.valid_until, price.currency, price.market = wanted
    db.session.flush()


# -- next month's changes ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PriceChange:
    availability: Availability
    kind: str  # "changed", "new", "withdrawn"
    old: CataloguePrice | None
    new: CataloguePrice | None

    @staticmethod
    def _percent(old: Decimal, new: Decimal) -> Decimal | None:
        if not old:
            return None
        return ((Decimal(new) - Decimal(old)) * 100 / Decimal(old)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def cost_percent(self) -> Decimal | None:
        return self._percent(self.old.unit_cost, self.new.unit_cost) if self.old and self.new else None

    @property
    def erp_percent(self) -> Decimal | None:
        return self._percent(self.old.erp_price, self.new.erp_price) if self.old and self.new else None


@dataclasses.dataclass(frozen=True)
class UpcomingChanges:
    this_month: dt.date
    next_month: dt.date
    published: bool  # next month's prices have been imported
    changes: list[PriceChange]


def next_month_start(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _in_force(prices: list[CataloguePrice], on: dt.date) -> dict[int, CataloguePrice]:
    """Per availability, the price in force on ``on`` (as app/services/pricing.catalogue_price chooses it)."""
    chosen: dict[int, CataloguePrice] = {}
    for price in prices:
        if price.valid_from <= on and (price.valid_until is None or price.valid_until >= on):
            held = chosen.get(price.availability_id)
            if held is None or price.valid_from > held.valid_from:
                chosen[price.availability_id] = price
    return chosen


def upcoming_changes(today: dt.date) -> UpcomingChanges:
    """Next month's prices that differ from today's: changed (old → new), new availabilities, withdrawn ones.
    Two queries whatever the size of the catalogue."""
    first_next = next_month_start(today)
    prices = list(
        db.session.scalars(
            select(CataloguePrice)
            .options(joinedload(CataloguePrice.availability).joinedload(Availability.product))
            .where(
                CataloguePrice.valid_from <= first_next,
                or_(CataloguePrice.valid_until.is_(None), CataloguePrice.valid_until >= today),
            )
        ).unique()
    )
    published = any(price.valid_from == first_next for price in prices)
    now, then = _in_force(prices, today), _in_force(prices, first_next)
    changes: list[PriceChange] = []
    if published:
        for availability_id in now.keys() | then.keys():
            old, new = now.get(availability_id), then.get(availability_id)
            if old is not None and new is not None:
                if (Decimal(old.unit_cost), Decimal(old.erp_price)) == (Decimal(new.unit_cost), Decimal(new.erp_price)):
                    continue
                kind = "changed"
            else:
                kind = "new" if old is None else "withdrawn"
            changes.append(PriceChange((old or new).availability, kind, old, new))
    order = {"P1M": 0, "P1Y": 1, "P3Y": 2, "monthly": 0, "annual": 1, "triennial": 2}
    changes.sort(
        key=lambda c: (
            c.availability.product.product_title,
            c.availability.product.name,
            order[c.availability.term],
            order[c.availability.billing_frequency],
        )
    )
    return UpcomingChanges(today.replace(day=1), first_next, published, changes)


def prices_in_force(availability_ids: list[int], on: dt.date) -> dict[int, CataloguePrice]:
    """The price in force on ``on`` of each availability (one query)."""
    if not availability_ids:
        return {}
    prices = db.session.scalars(
        select(CataloguePrice).where(
            CataloguePrice.availability_id.in_(availability_ids),
            CataloguePrice.valid_from <= on,
            or_(CataloguePrice.valid_until.is_(None), CataloguePrice.valid_until >= on),
        )
    ).all()
    return _in_force(list(prices), on)


def check_month(month: str | None) -> str | None:
    """``YYYYMM`` or None; ValueError otherwise."""
    if month is None:
        return None
    month = month.strip()
    if len(month) != 6 or not month.isdigit() or not 1 <= int(month[4:]) <= 12:
        raise ValueError(f"month {month!r} is not YYYYMM")
    return month


def download(market: str = "NZ", month: str | None = None) -> bytes:
    """Microsoft's sheet for ``market`` (and ``month``, YYYYMM) from the configured CSP provider. ProviderError."""
    from app.csp import get_provider
    from app.csp.base import new_correlation_id

    return get_provider().get_price_sheet(
        market.strip().upper(), month=check_month(month), correlation_id=new_correlation_id()
    )


def keep_current(today: dt.date | None = None, market: str = "NZ") -> int:
    """The maintenance task: when the catalogue has no price starting this month or next month yet, download the
    missing month's sheet from the provider and import it (Microsoft publishes next month's prices ahead, and prices
    change on the 1st). Rows imported or changed; 0 when both months are there. Without it, prices that end with their
    month (EffectiveEndDate) would leave nothing to order once the last imported month is over."""
    from sqlalchemy import exists

    today = today or clock.today()
    this_month = today.replace(day=1)
    done = 0
    for month in (this_month, next_month_start(today)):
        if db.session.scalar(select(exists().where(CataloguePrice.valid_from == month))):
            continue
        result = import_sheet(download(market, f"{month:%Y%m}"), market)
        done += result.prices_added + result.prices_changed
    return done
