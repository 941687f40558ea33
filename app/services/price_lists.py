"""The two price lists, kept: the operator's for each reseller (level ``buy``) and each reseller's for its customers
(level ``sell``) — creating, changing and deleting their rules, the tables the price pages draw, and applying a new
sell price now to monthly-term subscriptions. app/services/pricing.py applies the rules.

- buy: owned by a reseller (its own rules) or the operator's account (the default of every reseller); basis
  Microsoft's ``cost`` or its ``retail`` price; narrowed to a product (``ms_product_id``, every SKU of it) or a SKU
  (``product_id``).
- sell: owned by the reseller (its default markup for every customer) or one customer; basis the reseller's ``buy``
  price or Microsoft's ``retail`` price; narrowed to a subscription of that customer, a product or a SKU.
- At most one rule per owner, level and reach (refused here, and by the unique index of migration 0019 when two
  requests race). A sell rule that would put any current price under the reseller's buy price is refused, naming
  the product and both prices, unless ``below_cost_intended``.
- A changed rule prices new orders at once (quotes read the lists live) and existing subscriptions at their next
  renewal: their prices are locked for the term, and nothing here rewrites them — except
  ``apply_now_to_monthly_terms``, the CSP Admin's choice to re-price monthly-term (P1M) subscriptions today.
  (Terms and billing frequencies: https://learn.microsoft.com/partner-center/new-commerce-license-based; that annual
  and 3-year prices are locked for the term and monthly terms take the price in force at renewal is stated by
  partner publications, ../shared/reference/microsoft-commerce.md.)

Every change records an event: who (the signed-in user), which list, the old rule → the new. The functions that
change rules flush; the pages run them through ``save``, which commits (or rolls back what was refused).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload

from app import clock
from app.extensions import db
from app.formatting import format_money
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account
from app.models.catalog import PRICE_BASES, Availability, PriceRule, Product, rule_reach
from app.models.subscriptions import Subscription
from app.services import pricing
from app.services.customer_services import commit
from app.services.events import record_event
from security import permissions as P
from security.capabilities import may, require

RESOURCE = {"buy": P.RESELLER_PRICES, "sell": P.CUSTOMER_PRICES}
BASIS_LABELS = {"cost": "Microsoft's cost", "retail": "Microsoft's retail price", "buy": "Buy price"}
MONTHLY_TERM = "P1M"
_MS_PRODUCT_ID = re.compile(r"[A-Za-z0-9-]{1,32}")  # Microsoft's ProductId (CFQ7TTC0LH18)
_TERM_ORDER = {"P1M": 0, "P1Y": 1, "P3Y": 2}
_FREQUENCY_ORDER = {"monthly": 0, "annual": 1, "triennial": 2}
T = TypeVar("T")


class PriceRuleError(ValueError):
    """A rule the lists cannot take, in words; ``field`` names the form field the message belongs beside."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# -- input -----------------------------------------------------------------------------------------------------------


def parse_percent(text: str | Decimal | None) -> Decimal:
    """A percentage as the CHECK of price_rule takes it: above −100, below 1000, at most two decimals."""
    raw = "" if isinstance(text, Decimal) else str(text or "").strip().replace("−", "-")
    if raw and not raw.isascii():  # Decimal reads digits of every script ("١٢" is 12): the form takes 0-9 only
        raise PriceRuleError("Enter a percentage such as 15 or -10.", "percent")
    try:
        value = text if isinstance(text, Decimal) else Decimal(raw)
    except InvalidOperation:
        raise PriceRuleError("Enter a percentage such as 15 or -10.", "percent") from None
    if not value.is_finite():
        raise PriceRuleError("Enter a percentage such as 15 or -10.", "percent")
    if not Decimal("-100") < value < Decimal("1000"):
        raise PriceRuleError("Use a percentage above -100 and below 1000.", "percent")
    if value != value.quantize(Decimal("0.01")):
        raise PriceRuleError("Use at most 2 decimal places.", "percent")
    return value.quantize(Decimal("0.01"))


def product_title(ms_product_id: str) -> str | None:
    """The title of a Microsoft product (any of its SKUs' ``product_title``), or None when the catalogue has none."""
    if not _MS_PRODUCT_ID.fullmatch(ms_product_id or ""):
        return None  # (nor a LIKE pattern: "%" would match every product)
    return db.session.scalar(
        select(Product.product_title).where(Product.sku.like(f"{ms_product_id}:%")).order_by(Product.id).limit(1)
    ) or db.session.scalar(select(Product.product_title).where(Product.sku == ms_product_id).limit(1))


def catalogue_products() -> list[tuple[str, str]]:
    """(ms_product_id, title) of every product on sale, for the forms' choices (one statement)."""
    rows = db.session.execute(
        select(Product.sku, Product.product_title).where(Product.retired_on.is_(None)).order_by(Product.product_title)
    ).all()
    seen: dict[str, str] = {}
    for sku, title in rows:
        seen.setdefault(sku.partition(":")[0], title)
    return list(seen.items())


def catalogue_skus() -> list[Product]:
    return list(
        db.session.scalars(
            select(Product).where(Product.retired_on.is_(None)).order_by(Product.product_title, Product.name)
        )
    )


def sku(product_id: int) -> Product | None:
    """The catalogue's SKU ``product_id`` (retired or not), or None."""
    return db.session.get(Product, product_id)


# -- the pages' choosers ---------------------------------------------------------------------------------------------


def resellers_page(page: int, per_page: int) -> tuple[list[Account], int]:
    """A page of the resellers, by name, and how many there are (two statements)."""
    query = select(Account).where(Account.kind == RESELLER)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    resellers = db.session.scalars(
        query.order_by(func.lower(Account.name), Account.id).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(resellers), total


def reseller_choices(limit: int) -> list[tuple[int, str]]:
    """(id, name) of the first ``limit`` resellers by name, for the reseller chooser."""
    return db.session.execute(
        select(Account.id, Account.name)
        .where(Account.kind == RESELLER)
        .order_by(func.lower(Account.name), Account.id)
        .limit(limit)
    ).all()


def customer_choices(reseller: Account, limit: int) -> list[tuple[int, str]]:
    """(id, name) of the first ``limit`` of the reseller's customers by name, for the customer chooser."""
    return db.session.execute(
        select(Account.id, Account.name)
        .where(Account.parent_id == reseller.id, Account.kind == CUSTOMER)
        .order_by(func.lower(Account.name), Account.id)
        .limit(limit)
    ).all()


# -- describing rules ------------------------------------------------------------------------------------------------


def list_name(level: str, owner: Account, reseller: Account | None = None) -> str:
    """Which price list a rule belongs to, in words."""
    if level == "buy":
        return "the default buy prices of every reseller" if owner.kind == OPERATOR else f"{owner.name}'s buy prices"
    if owner.kind == CUSTOMER:
        seller = reseller.name if reseller is not None else "the reseller"
        return f"{seller}'s prices for {owner.name}"
    return f"{owner.name}'s prices for every customer"


def describe_rule(rule: PriceRule | None) -> str:
    if rule is None:
        return "none"
    return rule.describe() + (" (below cost intended)" if rule.below_cost_intended else "")


@dataclasses.dataclass(frozen=True)
class RuleRow:
    rule: PriceRule
    owner_name: str
    applies_to: str


def _applies_to(rule: PriceRule, titles: dict[str, str], subscriptions: dict[int, str]) -> str:
    if rule.subscription_id is not None:
        return f"Subscription: {subscriptions.get(rule.subscription_id, '#' + str(rule.subscription_id))}"
    if rule.product_id is not None:
        return f"SKU: {rule.product.name}" if rule.product else "SKU"
    if rule.ms_product_id is not None:
        return f"Product: {titles.get(rule.ms_product_id, rule.ms_product_id)} (every SKU)"
    return "Every product (default)"


def describe_rules(rules: list[PriceRule]) -> list[RuleRow]:
    """Rows for a page's table of rules: owner, what each applies to — in a fixed number of statements."""
    owner_ids = {r.account_id for r in rules}
    owners = dict(db.session.execute(select(Account.id, Account.name).where(Account.id.in_(owner_ids))).all())
    ms_ids = sorted({r.ms_product_id for r in rules if r.ms_product_id})
    titles: dict[str, str] = {}
    if ms_ids:
        for sku, title in db.session.execute(
            select(Product.sku, Product.product_title).where(or_(*(Product.sku.like(f"{m}:%") for m in ms_ids)))
        ):
            titles.setdefault(sku.partition(":")[0], title)
    sub_ids = [r.subscription_id for r in rules if r.subscription_id]
    subscriptions = {}
    if sub_ids:
        for sub_id, name, term, cycle in db.session.execute(
            select(Subscription.id, Product.name, Subscription.term, Subscription.billing_cycle)
            .join(Product, Subscription.product_id == Product.id)
            .where(Subscription.id.in_(sub_ids))
        ):
            subscriptions[sub_id] = f"{name} ({term}, {cycle}, #{sub_id})"
    return [RuleRow(r, owners.get(r.account_id, ""), _applies_to(r, titles, subscriptions)) for r in rules]


def _ordered(query):
    kind = case(
        (PriceRule.subscription_id.is_not(None), 0),
        (PriceRule.product_id.is_not(None), 1),
        (PriceRule.ms_product_id.is_not(None), 2),
        else_=3,
    )
    return query.options(joinedload(PriceRule.product)).order_by(PriceRule.account_id, kind.desc(), PriceRule.id)


def rules_of(level: str, owner_ids: list[int]) -> list[PriceRule]:
    """The rules of these owners at ``level``, defaults first (in the caller's scope)."""
    if not owner_ids:
        return []
    query = select(PriceRule).where(PriceRule.level == level, PriceRule.account_id.in_(owner_ids))
    return list(db.session.scalars(_ordered(query)).unique())


def default_rule(level: str, owner: Account) -> PriceRule | None:
    return db.session.scalars(
        select(PriceRule).where(
            PriceRule.level == level,
            PriceRule.account_id == owner.id,
            PriceRule.reach == rule_reach(None, None, None),
        )
    ).first()


def customers_with_rules(reseller: Account, limit: int = 100) -> list[tuple[int, str, int]]:
    """(id, name, number of rules) of the reseller's customers that have prices of their own."""
    return [
        tuple(row)
        for row in db.session.execute(
            select(Account.id, Account.name, func.count(PriceRule.id))
            .join(PriceRule, PriceRule.account_id == Account.id)
            .where(Account.parent_id == reseller.id, Account.kind == CUSTOMER, PriceRule.level == "sell")
            .group_by(Account.id, Account.name)
            .order_by(func.lower(Account.name), Account.id)
            .limit(limit)
        )
    ]


# -- changing rules --------------------------------------------------------------------------------------------------


def save(change: Callable[[], T]) -> T:
    """Run ``change`` (rules created, changed or deleted, prices applied now) and commit what it did; anything it
    raises (a ``PriceRuleError``, a refusal, an outage) rolls it back and goes to the caller."""
    return commit(change)


def in_sell_list_of(rule: PriceRule, reseller: Account) -> bool:
    """Whether ``rule`` is in ``reseller``'s price list for its customers (its own default or one customer's)."""
    owner = db.session.get(Account, rule.account_id)
    return rule.level == "sell" and (owner.id == reseller.id or owner.parent_id == reseller.id)


def _reseller_of(level: str, owner: Account) -> Account | None:
    if level == "sell":
        return owner if owner.kind == RESELLER else owner.parent
    return owner if owner.kind == RESELLER else None


def _event_account_id(level: str, owner: Account) -> int:
    """Buy rules are the operator's list (its log: a reseller's Partner Users never read its costs); sell rules
    the reseller's."""
    if level == "buy":
        return pricing._operator_id() or owner.id
    return _reseller_of(level, owner).id


def _check_owner(level: str, owner: Account, subscription: Subscription | None) -> None:
    if level not in RESOURCE:
        raise PriceRuleError("Choose the buy or the sell price list.")
    if level == "buy" and owner.kind not in (OPERATOR, RESELLER):
        raise PriceRuleError("Buy prices belong to a reseller or to every reseller.")
    if level == "sell" and owner.kind not in (RESELLER, CUSTOMER):
        raise PriceRuleError("Sell prices belong to a reseller or to one of its customers.")
    if subscription is not None and (level != "sell" or subscription.account_id != owner.id):
        raise PriceRuleError("That subscription is not this customer's.", "applies_to")


def _check_basis(level: str, basis: str) -> None:
    if basis not in PRICE_BASES.get(level, ()):
        choices = " or ".join(BASIS_LABELS[b] for b in PRICE_BASES.get(level, ()))
        raise PriceRuleError(f"Choose {choices}.", "basis")


def _reach_availabilities(rule: PriceRule, subscription: Subscription | None) -> list[Availability]:
    """The availabilities on sale a rule prices (a subscription: the one it buys)."""
    if subscription is not None:
        return [subscription.availability]
    query = (
        select(Availability)
        .join(Availability.product)
        .options(contains_eager(Availability.product))
        .where(Availability.retired_on.is_(None), Product.retired_on.is_(None))
    )
    if rule.product_id is not None:
        query = query.where(Product.id == rule.product_id)
    elif rule.ms_product_id is not None:
        query = query.where(or_(Product.sku.like(f"{rule.ms_product_id}:%"), Product.sku == rule.ms_product_id))
    return list(db.session.scalars(query.order_by(Product.product_title, Product.name, Availability.id)))


def _check_buy_floor(rule: PriceRule) -> None:
    """Refuse a buy rule that would charge a reseller less than Microsoft charges the operator (retail − 30 % on a
    product whose cost is retail − 20 %), unless it is intended: the operator would pay for each licence sold."""
    availabilities = _reach_availabilities(rule, None)
    from app.services.pricesheet import prices_in_force

    prices = prices_in_force([a.id for a in availabilities], clock.today()) if availabilities else {}
    for availability in availabilities:
        price = prices.get(availability.id)
        if price is None:
            continue
        cost = pricing.cents(price.unit_cost)
        buy = pricing.cents(
            {"cost": price.unit_cost, "retail": price.erp_price}[rule.basis] * (100 + Decimal(rule.percent)) / 100
        )
        if buy < cost:
            raise PriceRuleError(
                f"{availability.product.name} ({availability.label}) would be sold to resellers at "
                f"{format_money(buy)}, under Microsoft's cost of {format_money(cost)}. Tick “Below cost intended” if "
                "that is meant.",
                "below_cost_intended",
            )


def _check_floor(rule: PriceRule, owner: Account, subscription: Subscription | None) -> None:
    """Refuse a sell rule that would put a current price under the reseller's buy price, or a buy rule one under
    Microsoft's cost (unless intended)."""
    if rule.below_cost_intended:
        return
    if rule.level == "buy":
        _check_buy_floor(rule)
        return
    reseller = _reseller_of("sell", owner)
    book = pricing.PriceBook(reseller.id, [])
    availabilities = _reach_availabilities(rule, subscription)
    book.load_prices([a.id for a in availabilities])
    for availability in availabilities:
        if book.price_of(availability.id) is None:
            continue
        q = book.quote(None, availability, sell_rule=rule)
        if q.floored:
            raise PriceRuleError(
                f"{availability.product.name} ({availability.label}) would sell at {format_money(q.rule_sell)}, "
                f"under {reseller.name}'s buy price of {format_money(q.buy)}. Tick “Below cost intended” if that "
                "is meant.",
                "below_cost_intended",
            )


def _duplicate(level: str, owner: Account, reach: str, except_id: int | None = None) -> PriceRule | None:
    query = select(PriceRule).where(
        PriceRule.level == level, PriceRule.account_id == owner.id, PriceRule.reach == reach
    )
    if except_id is not None:
        query = query.where(PriceRule.id != except_id)
    return db.session.scalars(query).first()


def create_rule(
    level: str,
    owner: Account,
    *,
    basis: str,
    percent: str | Decimal,
    product: Product | None = None,
    ms_product_id: str | None = None,
    subscription: Subscription | None = None,
    below_cost_intended: bool = False,
) -> PriceRule:
    """A new rule in ``owner``'s list at ``level`` (flushed, with its event; the caller commits)."""
    require(RESOURCE.get(level, P.CUSTOMER_PRICES), P.WRITE)
    _check_owner(level, owner, subscription)
    _check_basis(level, basis)
    value = parse_percent(percent)
    if sum(x is not None for x in (product, ms_product_id, subscription)) > 1:
        raise PriceRuleError("A rule applies to one subscription, one product or one SKU.", "applies_to")
    if ms_product_id is not None and product_title(ms_product_id) is None:
        raise PriceRuleError("That product is not in the catalogue.", "applies_to")
    if level == "buy" and owner.kind == OPERATOR and subscription is not None:
        raise PriceRuleError("Buy prices do not apply to one subscription.", "applies_to")
    if subscription is not None and owner.kind != CUSTOMER:
        raise PriceRuleError("A subscription's price belongs to its customer.", "applies_to")
    reach = rule_reach(subscription.id if subscription else None, product.id if product else None, ms_product_id)
    if _duplicate(level, owner, reach) is not None:
        raise PriceRuleError("There is already a rule for this: change that one instead.", "applies_to")
    rule = PriceRule(
        account_id=owner.id,
        level=level,
        subscription_id=subscription.id if subscription else None,
        product_id=product.id if product else None,
        ms_product_id=ms_product_id,
        basis=basis,
        percent=value,
        below_cost_intended=bool(below_cost_intended),
        reach=reach,
    )
    rule.product = product
    _check_floor(rule, owner, subscription)
    db.session.add(rule)
    _flush_once()
    applies = describe_rules([rule])[0].applies_to
    record_event(
        "price_rule.created",
        account_id=_event_account_id(level, owner),
        target=rule,
        summary=f"{list_name(level, owner, _reseller_of(level, owner))}, {applies}: none → {describe_rule(rule)}",
    )
    return rule


def change_rule(rule: PriceRule, *, basis: str, percent: str | Decimal, below_cost_intended: bool = False) -> PriceRule:
    """The same rule with a new basis and percentage (what it applies to never changes: delete and add instead)."""
    require(RESOURCE.get(rule.level, P.CUSTOMER_PRICES), P.WRITE)
    owner = db.session.get(Account, rule.account_id)
    subscription = db.session.get(Subscription, rule.subscription_id) if rule.subscription_id else None
    _check_basis(rule.level, basis)
    value = parse_percent(percent)
    before = describe_rule(rule)
    # Checked on a copy: the session's rule stays as it was until the new one is accepted.
    candidate = PriceRule(
        account_id=rule.account_id,
        level=rule.level,
        subscription_id=rule.subscription_id,
        product_id=rule.product_id,
        ms_product_id=rule.ms_product_id,
        basis=basis,
        percent=value,
        below_cost_intended=bool(below_cost_intended),
    )
    _check_floor(candidate, owner, subscription)
    rule.basis, rule.percent, rule.below_cost_intended = basis, value, candidate.below_cost_intended
    after = describe_rule(rule)
    if after == before:
        return rule
    _flush_once()
    applies = describe_rules([rule])[0].applies_to
    record_event(
        "price_rule.changed",
        account_id=_event_account_id(rule.level, owner),
        target=rule,
        summary=f"{list_name(rule.level, owner, _reseller_of(rule.level, owner))}, {applies}: {before} → {after}",
    )
    return rule


def delete_rule(rule: PriceRule) -> None:
    require(RESOURCE.get(rule.level, P.CUSTOMER_PRICES), P.WRITE)
    owner = db.session.get(Account, rule.account_id)
    applies = describe_rules([rule])[0].applies_to
    record_event(
        "price_rule.deleted",
        account_id=_event_account_id(rule.level, owner),
        target=rule,
        summary=f"{list_name(rule.level, owner, _reseller_of(rule.level, owner))}, {applies}: "
        f"{describe_rule(rule)} → none (the next rule applies)",
    )
    db.session.delete(rule)
    db.session.flush()


def _flush_once() -> None:
    """Flush; a rule another request added meanwhile (the unique index) is refused in words."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise PriceRuleError("There is already a rule for this: change that one instead.", "applies_to") from None


# -- applying a sell price now ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Repriced:
    subscription_id: int
    customer_id: int
    name: str
    old: Decimal
    new: Decimal


def apply_now_to_monthly_terms(reseller: Account, customer: Account | None = None) -> list[Repriced]:
    """Re-price the monthly-term (P1M) subscriptions of ``customer`` (or of every customer of ``reseller``) at
    today's sell price, as if they renewed now: an event and a usage point for each whose price changes. Only the
    customer's price moves; the reseller's buy price stays as bought until renewal (the operator's list is locked
    for the term, as Microsoft's is). Annual and 3-year terms keep theirs to the end of the term."""
    require(P.CUSTOMER_PRICES, P.WRITE)
    from app.services.licensing import record_usage

    query = (
        select(Subscription)
        .join(Account, Subscription.account_id == Account.id)
        .options(joinedload(Subscription.availability).joinedload(Availability.product))
        .where(Subscription.term == MONTHLY_TERM, Subscription.status == "active")
        .order_by(Subscription.id)
    )
    if customer is not None:
        query = query.where(Subscription.account_id == customer.id)
    else:
        query = query.where(Account.parent_id == reseller.id, Account.kind == CUSTOMER)
    subs = list(db.session.scalars(query).unique())
    book = pricing.PriceBook(reseller.id, [customer.id] if customer is not None else None)
    book.load_prices([s.availability_id for s in subs])
    changed: list[Repriced] = []
    for sub in subs:
        if book.price_of(sub.availability_id) is None:
            continue
        q = book.quote(sub.account_id, sub.availability, sub.id)
        old = Decimal(sub.unit_price)
        if q.sell == old:
            continue
        sub.unit_price = q.sell
        record_usage(sub)
        per_month = f"{format_money(q.per_month(old))} → {format_money(q.per_month(q.sell))} per licence per month"
        record_event(
            "subscription.repriced",
            account_id=sub.account_id,
            target=sub,
            summary=f"{sub.availability.product.name} (monthly term): {per_month}, applied now",
        )
        changed.append(Repriced(sub.id, sub.account_id, sub.availability.product.name, old, q.sell))
    whose = customer.name if customer is not None else "every customer"
    record_event(
        "price_rule.applied_now",
        account_id=reseller.id,
        target=customer,
        summary=f"{reseller.name}'s prices applied now to {whose}'s monthly-term subscriptions: "
        f"{len(changed)} of {len(subs)} changed",
    )
    db.session.flush()
    return changed


# -- the pages' tables -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PriceRow:
    availability: Availability
    quote: pricing.Quote | None  # None: no catalogue price this month


def _availabilities_page(page: int, per_page: int, ms_product_id: str | None = None) -> tuple[list[Availability], int]:
    query = (
        select(Availability)
        .join(Availability.product)
        .where(Availability.retired_on.is_(None), Product.retired_on.is_(None))
    )
    if ms_product_id:
        query = query.where(Product.sku.like(f"{ms_product_id}:%"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    term = case(_TERM_ORDER, value=Availability.term)
    frequency = case(_FREQUENCY_ORDER, value=Availability.billing_frequency)
    rows = db.session.scalars(
        query.options(contains_eager(Availability.product))
        .order_by(Product.product_title, Product.name, Product.id, term, frequency)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(rows), total


def price_table(
    reseller: Account, customer: Account | None = None, *, page: int = 1, per_page: int = 50, on=None
) -> tuple[list[PriceRow], int]:
    """A page of every availability on sale with what it costs each party: the reseller's buy price and, for
    ``customer`` (or a customer with no prices of its own), the sell price. Statements do not grow with rows."""
    availabilities, total = _availabilities_page(page, per_page)
    book = pricing.PriceBook(reseller.id, [customer.id] if customer is not None else [], on)
    book.load_prices([a.id for a in availabilities])
    rows = [
        PriceRow(a, book.quote(customer.id if customer else None, a) if book.price_of(a.id) else None)
        for a in availabilities
    ]
    return rows, total


@dataclasses.dataclass(frozen=True)
class SubscriptionPriceRow:
    subscription: Subscription
    at_renewal: pricing.Quote | None  # what the next term would be charged at today's lists


def subscription_prices(reseller: Account, customer: Account, limit: int = 200) -> list[SubscriptionPriceRow]:
    """The customer's live subscriptions: the price locked for the term and the price their next term would take."""
    subs = list(
        db.session.scalars(
            select(Subscription)
            .options(joinedload(Subscription.availability).joinedload(Availability.product))
            .where(Subscription.account_id == customer.id, Subscription.status.in_(("active", "suspended")))
            .order_by(Subscription.id)
            .limit(limit)
        ).unique()
    )
    book = pricing.PriceBook(reseller.id, [customer.id])
    book.load_prices([s.availability_id for s in subs])
    return [
        SubscriptionPriceRow(
            s, book.quote(customer.id, s.availability, s.id) if book.price_of(s.availability_id) else None
        )
        for s in subs
    ]


# -- the Event Log ---------------------------------------------------------------------------------------------------


def event_log_criterion():
    """What the Event Log may show the caller of the price lists' events: those naming rules ("buy + 15 %": a markup
    on the buy price gives the buy price away) only to those who may see costs — never a Partner User's log."""
    from app.models.events import Event

    if may(P.COSTS, P.READ):
        return None
    return Event.action.not_like("price_rule.%")
