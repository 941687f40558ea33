"""The demo data of DESIGN.md's contract (`flask portal seed-demo`): idempotent, named, realistic."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from app import clock
from app.extensions import db
from app.formatting import format_money
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, MicrosoftTenant, PlaceholderUser
from app.models.base import utcnow
from app.models.catalog import TERM_MONTHS, Availability, Product
from app.models.csp import SandboxDomain
from app.models.subscriptions import LicenceAssignment, M365User, SeatBatch, Subscription, UsagePoint
from app.services import billing_ledger, pricing, subscriptions
from app.services.accounts import add_default_master_admin, create_account
from app.services.events import record_event
from app.services.users import add_member, create_user, membership_of
from security.models import CUSTOMER_PORTAL, PortalUser
from security.passwords import hash_password

# name, product id:sku, billing cycle, unit cost, unit price (NZD per licence per month, excl. GST): the 1-year
# billed-monthly prices of the sandbox's price sheet (app/data/pricesheet-NZ-sample.csv), which the demo imports.
CATALOGUE = [
    ("Office 365 Business Premium", "CFQ7TTC0LCHC:0002", "monthly", "14.70", "17.30"),
    ("Exchange Online (Plan 1)", "CFQ7TTC0LH16:0001", "monthly", "4.68", "5.50"),
    ("Exchange Online (Plan 2)", "CFQ7TTC0LH1G:0001", "monthly", "11.05", "13.00"),
    ("Microsoft 365 Business Basic", "CFQ7TTC0LH18:0001", "monthly", "7.65", "9.00"),
    ("Microsoft 365 Business Standard", "CFQ7TTC0LDPB:0001", "monthly", "17.68", "20.80"),
    ("Microsoft 365 Apps for business", "CFQ7TTC0LH1P:0001", "annual", "14.96", "17.60"),
    ("Microsoft 365 E3", "CFQ7TTC0LFLX:0001", "annual", "51.00", "60.00"),
    ("Microsoft Teams Essentials", "CFQ7TTC0RQQ7:0001", "monthly", "6.80", "8.00"),
]
TAKEN_DOMAINS = ("enet123", "contosonz", "rivalcorp", "contoso", "microsoft")
FIRST_NAMES = [
    "Aroha",
    "Ben",
    "Charlotte",
    "Daniel",
    "Emma",
    "Finn",
    "Grace",
    "Hemi",
    "Isla",
    "Jack",
    "Kiri",
    "Liam",
    "Mia",
    "Noah",
    "Olivia",
    "Priya",
    "Quinn",
    "Ruby",
    "Sam",
    "Tama",
    "Uma",
    "Wiremu",
    "Xavier",
    "Zoe",
]
LAST_NAMES = [
    "Smith",
    "Wilson",
    "Brown",
    "Taylor",
    "Ngata",
    "Williams",
    "Jones",
    "Walker",
    "Patel",
    "Thompson",
    "Anderson",
    "Clarke",
    "Parata",
    "Martin",
    "Scott",
    "Campbell",
    "Young",
    "Edwards",
    "King",
    "Wright",
]


@dataclass
class SeedReport:
    password: str | None = None
    created: list[str] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


def _product(sku: str) -> Product:
    return db.session.query(Product).filter_by(sku=sku).one()


def _sku(name: str) -> str:
    return next(sku for product_name, sku, *_ in CATALOGUE if product_name == name)


def _ensure_catalogue(report: SeedReport, today: dt.date) -> None:
    """The SKUs of CATALOGUE with every term and billing frequency, priced for this month and next month from the
    sandbox's price sheets (app/csp/sandbox_pricesheet.py: the 1-year billed-monthly prices are CATALOGUE's).
    Imported as an operator would import Microsoft's (app/services/pricesheet.py); idempotent."""
    from app.csp import sandbox_pricesheet
    from app.services import pricesheet

    this_month = today.replace(day=1)
    for month in (this_month, pricesheet.next_month_start(this_month)):
        result = pricesheet.import_sheet(sandbox_pricesheet.sheet("NZ", month, today), "NZ", commit=False)
        if result.products_added:
            report.created.append(f"{result.products_added} product(s) of the sandbox's price sheet")
        if result.prices_added or result.prices_changed:
            report.created.append(f"prices for {month:%m/%Y}")


def _availability(product: Product) -> Availability:
    """The demo's subscriptions buy each product's 1-year availability."""
    return db.session.query(Availability).filter_by(product_id=product.id, term="P1Y").order_by(Availability.id).first()


def _ensure_domains() -> None:
    for prefix in TAKEN_DOMAINS:
        if db.session.query(SandboxDomain.id).filter_by(prefix=prefix).first() is None:
            db.session.add(SandboxDomain(prefix=prefix))


def _account(kind: str, name: str, parent: Account | None, report: SeedReport, **details) -> Account:
    query = db.session.query(Account).filter(Account.kind == kind, Account.name == name)
    account = query.first()
    if account is None:
        account = create_account(kind, name, parent, **details)
        report.created.append(f"{kind} {name}")
    return account


def _user(account: Account, email: str, first: str, last: str, hashed: str, report: SeedReport, **flags) -> PortalUser:
    """A demo login; a customer-portal one also gets its membership in ``account`` (one login, many customers)."""
    user = db.session.query(PortalUser).filter(PortalUser.email == email).first()
    if user is None:
        user = create_user(account, email, first, last, hashed_password=hashed, **flags)
        report.created.append(f"user {email}")
    else:
        if user.portal == CUSTOMER_PORTAL and membership_of(account, user.id) is None:
            add_member(account, email, first, last, **flags)
            report.created.append(f"access for {email} to {account.name}")
        if report.password:
            user.password = hashed
            user.password_set_at = utcnow()
    if user.portal == CUSTOMER_PORTAL:
        role = membership_of(account, user.id).role_name
    else:
        role = user.roles[0].name if user.roles else "no role"
    report.logins.append((email, f"{account.name} ({role})"))
    return user


def _tenant(customer: Account, prefix: str) -> MicrosoftTenant:
    tenant = db.session.query(MicrosoftTenant).filter_by(account_id=customer.id).first()
    if tenant is None:
        tenant = MicrosoftTenant(
            account=customer,
            domain_prefix=prefix,
            status="active",
            link_type="created",
            tenant_guid=f"00000000-0000-4000-8000-{customer.id:012d}",
            provisioned_on=utcnow(),
        )
        db.session.add(tenant)
        record_event(
            "tenant.created",
            account_id=customer.id,
            target=tenant,
            summary=f"Microsoft tenant {prefix}.onmicrosoft.com (demo data)",
        )
    return tenant


def _m365_users(customer: Account, domain: str, count: int) -> list[M365User]:
    existing = {u.user_principal_name: u for u in db.session.query(M365User).filter_by(account_id=customer.id)}
    users = []
    for i in range(count):
        first, last = FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[(i * 7) % len(LAST_NAMES)]
        upn = f"{first}.{last}{'' if i < len(FIRST_NAMES) else i}@{domain}".lower()
        user = existing.get(upn)
        if user is None:
            user = M365User(
                account=customer,
                display_name=f"{first} {last}",
                user_principal_name=upn,
                first_name=first,
                last_name=last,
                usage_location=(customer.country or "NZ")[:2].upper(),  # as the sandbox is told (below)
            )
            db.session.add(user)
        users.append(user)
    db.session.flush()
    return users


def _subscription(
    customer: Account,
    product_name: str,
    quantity: int,
    renew_on: dt.date,
    holders: list[M365User],
    started: dt.date,
    offer: tuple[str, str] | None = None,
) -> Subscription:
    """``offer``: (term, billing frequency) — by default the product's 1-year availability."""
    product = _product(_sku(product_name))
    sub = db.session.query(Subscription).filter_by(account_id=customer.id, product_id=product.id).first()
    if sub is None:
        availability = _offer(product, *offer) if offer else _availability(product)
        price = pricing.catalogue_price(availability.id)
        bought = dt.datetime.combine(started, dt.time(9))
        sub = subscriptions.new_subscription(
            customer,
            availability,
            quantity,
            unit_price=pricing.cents(price.erp_price),
            unit_cost=pricing.cents(price.unit_cost),
            ms_unit_cost=pricing.cents(price.unit_cost),
            provider_subscription_id=None,
            term_started_on=started,
            renew_on=renew_on,
            added_at=bought,
            created_on=bought,
        )
        for holder in holders[:quantity]:
            db.session.add(LicenceAssignment(account=customer, subscription=sub, m365_user=holder))
        sub.assigned = min(len(holders), quantity)
        db.session.add(
            UsagePoint(
                account=customer,
                subscription=sub,
                recorded_at=sub.created_on,
                quantity=sub.quantity,
                assigned=sub.assigned,
                unit_price=sub.unit_price,
            )
        )
        record_event(
            "subscription.created",
            account_id=customer.id,
            target=sub,
            summary=f"{product.name}: {sub.assigned}/{sub.quantity} at {format_money(sub.unit_price)} (demo data)",
        )
        billing_ledger.rebuild(db.session, sub)  # bought on ``started``, not today: its charges are that term's
    return sub


def _year_of_history(sub: Subscription, start_quantity: int, today: dt.date) -> None:
    """Monthly change points over the last year, growing to the subscription's numbers today."""
    if db.session.query(UsagePoint).filter_by(subscription_id=sub.id).count() > 1:
        return
    db.session.query(UsagePoint).filter_by(subscription_id=sub.id).delete()
    sub.created_on = dt.datetime.combine(today - dt.timedelta(days=365), dt.time(9))  # its term: renewed since
    steps = 12
    for month in range(steps + 1):
        quantity = start_quantity + round((sub.quantity - start_quantity) * month / steps)
        assigned = min(quantity, max(0, sub.assigned - (steps - month) // 3))
        when = dt.datetime.combine(today - dt.timedelta(days=30 * (steps - month)), dt.time(9))
        db.session.add(
            UsagePoint(
                account_id=sub.account_id,
                subscription_id=sub.id,
                recorded_at=when,
                quantity=quantity,
                assigned=assigned,
                unit_price=sub.unit_price,
            )
        )


# -- issue 13 item 10: terms and billing frequencies, a window still open, a change at renewal ----------------------

# A demo price for an availability the catalogue lacks, from the SKU's 1-year price per month: a monthly term about
# 20 % above, paid up front 5 % below (the price sheet, when imported, has Microsoft's own: these are only a fallback).
_DEMO_PRICE_FACTORS = {
    ("P1M", "monthly"): Decimal("1.2"),
    ("P1Y", "monthly"): Decimal("1"),
    ("P1Y", "annual"): Decimal("12") / Decimal("1.05"),
    ("P3Y", "annual"): Decimal("12") / Decimal("1.05"),
    ("P3Y", "triennial"): Decimal("36") / Decimal("1.05"),
}


def _offer(product: Product, term: str, frequency: str) -> Availability:
    """The product's availability ``term`` billed ``frequency`` with a price this month (ensured: idempotent)."""
    from app.services import catalogue

    offer = catalogue.ensure_availability(product, term, frequency)
    if pricing.catalogue_price(offer.id) is None:
        base = _availability(product)
        price = pricing.catalogue_price(base.id)
        factor = _DEMO_PRICE_FACTORS[(term, frequency)] / base.period_months
        catalogue.set_price(
            offer,
            (price.unit_cost * factor).quantize(Decimal("0.0001")),
            (price.erp_price * factor).quantize(Decimal("0.0001")),
        )
    return offer


def _increase_in_window(sub: Subscription, *, seats: int, hours_ago: int) -> None:
    """``seats`` of ``sub`` were an increase ``hours_ago`` hours ago (still inside its 168-hour window); the rest
    its purchase."""
    purchase = db.session.query(SeatBatch).filter_by(subscription_id=sub.id, kind="purchase").one()
    purchase.quantity = sub.quantity - seats
    purchase.refundable = 0 if purchase.refundable_until <= clock.utcnow() else purchase.quantity
    added = clock.utcnow().replace(microsecond=0) - dt.timedelta(hours=hours_ago)
    db.session.add(
        SeatBatch(
            account_id=sub.account_id,
            subscription_id=sub.id,
            kind="increase",
            quantity=seats,
            refundable=seats,
            added_at=added,
            refundable_until=subscriptions.window_end(added),
            unit_price=sub.unit_price,
        )
    )
    db.session.flush()
    billing_ledger.rebuild(db.session, sub)


def _schedule_at_renewal(sub: Subscription, offer: tuple[str, str], quantity: int) -> None:
    """The change Microsoft will make at ``sub``'s renewal (its scheduledNextTermInstructions)."""
    sub.next_availability_id = _offer(sub.product, *offer).id
    sub.next_quantity = quantity
    sub.next_scheduled_at = clock.utcnow().replace(microsecond=0) - dt.timedelta(days=3)
    db.session.flush()


def _mirror_batches_and_schedule(provider, sub: Subscription) -> None:
    """The sandbox's seat batches and next-term instructions of a demo subscription, as the portal's demo has them."""
    batches = db.session.query(SeatBatch).filter_by(subscription_id=sub.id).order_by(SeatBatch.added_at).all()
    scheduled = (None, None, None, None)
    if sub.has_scheduled_change:
        offer = db.session.get(Availability, sub.next_availability_id or sub.availability_id)
        scheduled = (offer.product.sku, offer.term, offer.billing_frequency, sub.next_quantity or sub.quantity)
    provider.adopt_demo_state(
        sub.provider_subscription_id,
        batches=[(b.quantity, b.added_at, b.refundable_until) for b in batches],
        next_term=scheduled,
    )


def mirror_in_sandbox(customer: Account) -> None:
    """Demo data only: tell the sandbox provider what a demo customer already has — its tenant, subscriptions,
    Microsoft 365 users and licences — so that changes to them go through the provider like any other. Idempotent;
    does nothing with a real Partner Center. Call it with nothing uncommitted (the sandbox commits on its own)."""
    from app.csp import get_provider
    from app.csp.base import new_correlation_id

    provider = get_provider()
    tenant = customer.tenant
    if provider.name != "sandbox" or tenant is None or tenant.status != "active":
        return
    # Nothing is flushed until the end: the sandbox writes on its own connection, and SQLite has one writer.
    with db.session.no_autoflush:
        tenant.tenant_guid = provider.adopt_customer(tenant.domain_prefix, customer.name)
        cid = new_correlation_id()
        for sub in db.session.query(Subscription).filter_by(account_id=customer.id, provider_subscription_id=None):
            made = provider.create_order(
                tenant.tenant_guid, sub.product.sku, sub.quantity, sub.billing_cycle, correlation_id=cid
            )
            sub.provider_subscription_id = made.subscription_id
            # The demo's subscriptions were bought before today: the sandbox's term ends when the portal's does,
            # and the demo's auto-renew is the sandbox's too (reconciliation finds nothing to report on the demo).
            provider.backdate(made.subscription_id, renew_on=sub.renew_on, auto_renew=sub.auto_renew, term=sub.term)
            _mirror_batches_and_schedule(provider, sub)
        for person in db.session.query(M365User).filter_by(account_id=customer.id, provider_user_id=None):
            first, _, last = person.display_name.partition(" ")
            person.provider_user_id = provider.create_user(
                tenant.tenant_guid,
                first_name=first,
                last_name=last or first,
                user_principal_name=person.user_principal_name,
                password=secrets.token_urlsafe(16),
                usage_location=customer.country or "NZ",
                correlation_id=cid,
            )
            if person.status != "active":  # a disabled demo user is disabled at "Microsoft" too
                provider.set_user_enabled(tenant.tenant_guid, person.provider_user_id, False, correlation_id=cid)
            held = db.session.query(LicenceAssignment).filter_by(m365_user_id=person.id)
            skus = [assignment.subscription.product.sku for assignment in held]
            if skus:
                provider.assign_licences(
                    tenant.tenant_guid, person.provider_user_id, add_sku_ids=skus, remove_sku_ids=[], correlation_id=cid
                )
    db.session.commit()


# The demo's price lists (issue 13): the operator charges every reseller Microsoft's cost + 8 %; Demo Reseller Ltd
# sells at its buy price + 15 %, Enet Ltd at + 10 %. Seeded after the subscriptions: rules price new orders and
# renewals, never a subscription's locked price.
DEMO_BUY_RULE = ("cost", "8")
DEMO_MARKUP = ("buy", "15")
DEMO_ENET_MARKUP = ("buy", "10")


def _ensure_billing_profiles(issuers) -> None:
    """Issue 14: each issuer's invoice prefix and GST number (payment terms: the 20th-day default)."""
    from app.services import billing

    for account, prefix, gst_number in issuers:
        settings = billing.profile(account.id)
        if settings.next_number == 1:
            settings.invoice_prefix, settings.gst_number = prefix, gst_number
    db.session.flush()


def _ensure_price_lists(operator: Account, reseller: Account, enet: Account, report: SeedReport) -> None:
    from app.services import price_lists

    for level, owner, (basis, percent) in (
        ("buy", operator, DEMO_BUY_RULE),
        ("sell", reseller, DEMO_MARKUP),
        ("sell", enet, DEMO_ENET_MARKUP),
    ):
        if price_lists.default_rule(level, owner) is None:
            price_lists.create_rule(level, owner, basis=basis, percent=percent)
            report.created.append(f"price rule {level} {owner.name}: {basis} + {percent} %")


def seed_demo(password: str | None = None, today: dt.date | None = None) -> SeedReport:
    """Create whatever of the demo data is missing; never duplicates. Run under a scope bypass."""
    today = today or clock.today()
    report = SeedReport(password=password)
    new_password = password or secrets.token_urlsafe(12)
    hashed = hash_password(new_password)

    _ensure_domains()
    db.session.flush()

    operator = _account(
        OPERATOR,
        "Mycloudstore",
        None,
        report,
        contact_email="ops@mycloudstore.co.nz",
        phone="+64 9 555 0100",
        city="Auckland",
    )
    _user(operator, "ops@mycloudstore.co.nz", "Ops", "Admin", hashed, report)
    _ensure_catalogue(report, today)  # after the operator: the import is an event in its log

    demo = _account(
        RESELLER,
        "Demo Reseller Ltd",
        operator,
        report,
        contact_first_name="Simon",
        contact_last_name="Tabrum",
        contact_email="simon@demoreseller.co.nz",
        phone="+64 9 555 0142",
        address_line1="12 Queen Street",
        city="Auckland",
        postcode="1010",
        it_support_email="itsupport@demoreseller.co.nz",
    )
    _user(demo, "simon@demoreseller.co.nz", "Simon", "Tabrum", hashed, report, csp_admin=True)
    _user(demo, "jane@demoreseller.co.nz", "Jane", "Doe", hashed, report)

    enet = _account(
        CUSTOMER,
        "Enet Ltd",
        demo,
        report,
        contact_first_name="Erin",
        contact_last_name="Nettleton",
        contact_email="erin@enet.example",
        phone="+64 4 555 0199",
        address_line1="5 Willis Street",
        city="Wellington",
        postcode="6011",
    )
    _tenant(enet, "enet123")
    if db.session.query(PlaceholderUser.id).filter_by(account_id=enet.id).first() is None:
        add_default_master_admin(enet)
    enet_users = _m365_users(enet, "enet123.onmicrosoft.com", 20)
    premium = _subscription(
        enet,
        "Office 365 Business Premium",
        1,
        today + dt.timedelta(days=12),
        enet_users[:1],
        today - dt.timedelta(days=353),
    )
    if premium.provider_subscription_id is None:  # new this run: issue 13's change scheduled at renewal
        _schedule_at_renewal(premium, ("P1Y", "annual"), quantity=2)
    _subscription(
        enet,
        "Exchange Online (Plan 1)",
        19,
        today + dt.timedelta(days=130),
        enet_users[1:20],
        today - dt.timedelta(days=235),
    )

    contoso = _account(
        CUSTOMER,
        "Contoso NZ",
        demo,
        report,
        contact_first_name="Carla",
        contact_last_name="Owens",
        contact_email="carla@contosonz.example",
        phone="+64 3 555 0123",
        address_line1="80 Cashel Street",
        city="Christchurch",
        postcode="8011",
    )
    _tenant(contoso, "contosonz")
    _user(contoso, "admin@contosonz.example", "Carla", "Owens", hashed, report, master_admin=True, cp3_enabled=True)
    # The guide's IT-support master admin: one login, Master Admin of both of Demo Reseller's customers.
    for customer in (enet, contoso):
        _user(
            customer,
            "itsupport@demoreseller.co.nz",
            "IT",
            "Support",
            hashed,
            report,
            master_admin=True,
            cp3_enabled=True,
        )
    contoso_users = _m365_users(contoso, "contosonz.onmicrosoft.com", 14)
    # Issue 13 item 10: a 1-year term billed monthly with an increase still inside its window, a 1-year term
    # billed annually (paid up front) and a 1-month term.
    for name, quantity, start, holders, renew, offer in (
        ("Microsoft 365 Business Standard", 12, 6, contoso_users[:10], 45, ("P1Y", "monthly")),
        ("Exchange Online (Plan 1)", 6, 2, contoso_users[10:14], 75, ("P1Y", "annual")),
        ("Microsoft Teams Essentials", 5, 5, contoso_users[:3], 20, ("P1M", "monthly")),
    ):
        renew_on = today + dt.timedelta(days=renew)
        started = subscriptions.add_months(renew_on, -TERM_MONTHS[offer[0]])
        sub = _subscription(contoso, name, quantity, renew_on, holders, started, offer)
        if sub.provider_subscription_id is None and name == "Microsoft 365 Business Standard":
            _increase_in_window(sub, seats=2, hours_ago=48)
        _year_of_history(sub, start, today)

    other = _account(
        RESELLER,
        "Other Reseller Ltd",
        operator,
        report,
        contact_first_name="Pat",
        contact_last_name="Rivera",
        contact_email="pat@otherreseller.example",
        phone="+64 7 555 0177",
        city="Hamilton",
        it_support_email="support@otherreseller.example",
    )
    _user(other, "pat@otherreseller.example", "Pat", "Rivera", hashed, report, csp_admin=True)
    rival = _account(
        CUSTOMER,
        "Rival Corp",
        other,
        report,
        contact_first_name="Rhys",
        contact_last_name="Vale",
        contact_email="rhys@rivalcorp.example",
        phone="+64 7 555 0188",
        city="Tauranga",
    )
    _tenant(rival, "rivalcorp")
    _user(rival, "admin@rivalcorp.example", "Rhys", "Vale", hashed, report, master_admin=True, cp3_enabled=True)
    rival_users = _m365_users(rival, "rivalcorp.onmicrosoft.com", 8)
    _subscription(
        rival,
        "Microsoft 365 Business Basic",
        8,
        today + dt.timedelta(days=20),
        rival_users,
        today - dt.timedelta(days=345),
    )
    _subscription(
        rival,
        "Exchange Online (Plan 1)",
        5,
        today + dt.timedelta(days=160),
        rival_users[:4],
        today - dt.timedelta(days=205),
    )

    _ensure_price_lists(operator, demo, enet, report)
    _ensure_billing_profiles(((operator, "MCS-", "111-222-333"), (demo, "DRL-", "123-456-789"), (other, "ORL-", None)))
    db.session.commit()
    for customer in (enet, contoso, rival):
        mirror_in_sandbox(customer)
    created_users = any(item.startswith("user ") for item in report.created)
    report.password = new_password if (password or created_users) else None
    return report
