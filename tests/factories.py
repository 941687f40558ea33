"""Small factories with explicit arguments, and the test world: two resellers, their customers, named users."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, MicrosoftTenant
from app.models.catalog import Availability, Product
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services import catalogue, pricing, subscriptions
from app.services.accounts import add_default_master_admin, create_account
from app.services.demo import mirror_in_sandbox
from app.services.users import create_user
from security.passwords import hash_password

PASSWORD = "correct horse battery staple"


@functools.lru_cache(maxsize=1)
def password_hash() -> str:
    """Hashed once per test session: scrypt is slow on purpose."""
    return hash_password(PASSWORD)


@dataclass(frozen=True)
class Named:
    """What a test needs of a user or row: ids and names, never a session-bound object."""

    id: int
    email: str = ""
    name: str = ""
    account_id: int = 0
    # A customer-portal login's membership in ``account_id`` (what Launch (CP3) and the Users tab act on).
    membership_id: int = 0


@dataclass
class World:
    accounts: dict[str, Named] = field(default_factory=dict)
    users: dict[str, Named] = field(default_factory=dict)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)


def product(
    name: str, sku: str, price: str = "10.00", cost: str = "8.50", cycle: str = "monthly", term: str = "P1Y"
) -> Product:
    """A SKU with one availability (``term``, billed ``cycle``) priced ``price`` (Microsoft's retail: what customers
    pay without a price list) and ``cost`` (Microsoft's cost: what resellers pay without one), per licence per
    billing period, from the 1st of this month."""
    item = catalogue.ensure_product(name, sku)
    catalogue.set_price(catalogue.ensure_availability(item, term, cycle), Decimal(cost), Decimal(price))
    return item


def availability(item: Product) -> Availability:
    """A product's first availability (the one ``product`` made)."""
    return db.session.scalars(
        select(Availability).where(Availability.product_id == item.id).order_by(Availability.id)
    ).first()


def user(account: Account, email: str, first: str = "Test", last: str = "User", **flags):
    return create_user(account, email, first, last, hashed_password=password_hash(), **flags)


def tenant(customer: Account, prefix: str) -> MicrosoftTenant:
    item = MicrosoftTenant(account=customer, domain_prefix=prefix, status="active")
    db.session.add(item)
    db.session.flush()
    return item


def m365_user(customer: Account, upn: str, name: str = "Person") -> M365User:
    item = M365User(account=customer, display_name=name, user_principal_name=upn)
    db.session.add(item)
    db.session.flush()
    return item


def subscription(customer: Account, item: Product, quantity: int, holders=(), renew_in_days: int = 90) -> Subscription:
    """Bought 30 days ago (its purchase window long closed) at the product's retail price, its reseller paying cost."""
    today = clock.today()
    offer = availability(item)
    price = pricing.catalogue_price(offer.id)
    started = today - dt.timedelta(days=30)
    sub = subscriptions.new_subscription(
        customer,
        offer,
        quantity,
        unit_price=pricing.cents(price.erp_price),
        unit_cost=pricing.cents(price.unit_cost),
        ms_unit_cost=pricing.cents(price.unit_cost),
        provider_subscription_id=None,
        term_started_on=started,
        renew_on=today + dt.timedelta(days=renew_in_days),
        added_at=dt.datetime.combine(started, dt.time()),
    )
    sub.assigned = len(holders)
    for holder in holders:
        db.session.add(LicenceAssignment(account=customer, subscription=sub, m365_user=holder))
    db.session.add(
        UsagePoint(
            account=customer, subscription=sub, quantity=quantity, assigned=len(holders), unit_price=sub.unit_price
        )
    )
    db.session.flush()
    return sub


def _named_user(u) -> Named:
    """A customer-portal login's ``account_id`` here is the customer it works in (its first membership)."""
    if u.portal == "customer" and u.memberships:
        first = u.memberships[0]
        return Named(
            id=u.id, email=u.email, name=u.get_full_name(), account_id=first.account_id, membership_id=first.id
        )
    return Named(id=u.id, email=u.email, name=u.get_full_name(), account_id=u.account_id)


def build_world() -> World:
    """Reseller A (Alpha Partners) with customers A1 and A2; reseller B (Bravo IT) with customer B1."""
    w = World()
    operator = create_account(OPERATOR, "Mycloudstore")
    reseller_a = create_account(RESELLER, "Alpha Partners Ltd", operator, it_support_email="it@alpha.example")
    reseller_b = create_account(RESELLER, "Bravo IT Ltd", operator)
    customer_a = create_account(CUSTOMER, "Aardvark Farms", reseller_a, contact_email="ops@aardvark.example")
    customer_a2 = create_account(CUSTOMER, "Anchor Marine", reseller_a)
    customer_b = create_account(CUSTOMER, "Bluebird Bakery", reseller_b, contact_email="hi@bluebird.example")

    basic = product("Microsoft 365 Business Basic", "TEST-BASIC", "9.00", "7.65")
    exchange = product("Exchange Online (Plan 1)", "TEST-EXO1", "5.50", "4.68")

    for key, acc in [
        ("operator", operator),
        ("reseller_a", reseller_a),
        ("reseller_b", reseller_b),
        ("customer_a", customer_a),
        ("customer_a2", customer_a2),
        ("customer_b", customer_b),
    ]:
        w.accounts[key] = Named(id=acc.id, name=acc.name)

    w.users["ops_admin"] = _named_user(user(operator, "ops@operator.example", "Olive", "Ops"))
    w.users["reseller_a_admin"] = _named_user(user(reseller_a, "admin@alpha.example", "Ari", "Admin", csp_admin=True))
    w.users["reseller_a_user"] = _named_user(user(reseller_a, "user@alpha.example", "Una", "User"))
    w.users["reseller_b_admin"] = _named_user(user(reseller_b, "admin@bravo.example", "Bea", "Boss", csp_admin=True))
    w.users["customer_a_master_admin"] = _named_user(
        user(customer_a, "master@aardvark.example", "Mara", "Master", master_admin=True, cp3_enabled=True)
    )
    w.users["customer_b_master_admin"] = _named_user(
        user(customer_b, "master@bluebird.example", "Bo", "Baker", master_admin=True, cp3_enabled=True)
    )

    rows: dict[str, dict[str, int]] = {}
    for key, customer, prefix, people in [("a", customer_a, "aardvark", 3), ("b", customer_b, "bluebird", 2)]:
        t = tenant(customer, prefix)
        holders = [
            m365_user(customer, f"p{i}@{prefix}.onmicrosoft.com", f"{prefix.title()} Person {i}") for i in range(people)
        ]
        s1 = subscription(customer, basic, people + 1, holders, renew_in_days=10)
        s2 = subscription(customer, exchange, people, holders[:1], renew_in_days=200)
        placeholder = add_default_master_admin(customer)
        rows[key] = {
            "tenant": t.id,
            "m365_user": holders[0].id,
            "subscription": s1.id,
            "subscription2": s2.id,
            "placeholder": placeholder.id,
            "assignment": db.session.query(LicenceAssignment.id).filter_by(subscription_id=s1.id).first()[0],
        }
    rows["products"] = {"basic": basic.id, "exchange": exchange.id}
    w.rows = rows
    db.session.commit()
    for customer in (customer_a, customer_b):
        mirror_in_sandbox(customer)  # the sandbox provider knows their tenants, subscriptions and users
    return w
