"""`seed-demo --scale N`: N more customers over many resellers, in realistic proportions, by bulk insert.

About 10 Microsoft 365 users and 3 subscriptions a customer, licence assignments, a master admin login each
(all sharing one precomputed password hash) and a few usage change points per subscription. Idempotent: the
customers are numbered, and a second run only adds the ones still missing.

The bulk insert bypasses the ORM, so the charge ledger (app/services/billing_ledger.py) is written here too, in the
same batches: each subscription's ``new`` event at its term's start (and the sandbox's, Microsoft's side), and for
one subscription in ``ADD_EVERY`` whose term started before the previous month's ``ADD_DAY``, part of its seats
added that day (an ``addQuantity``), so that the previous month's billing run has prorated lines.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Callable, Iterable

from flask import current_app
from flask_appbuilder.security.sqla.models import Role, assoc_user_role
from sqlalchemy import func, insert, select, text

from app import clock
from app.csp.sandbox import sandbox_id
from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, MicrosoftTenant
from app.models.billing import ChargeEvent
from app.models.catalog import Availability, CataloguePrice, Product
from app.models.csp import SandboxChargeEvent, SandboxCustomer, SandboxDomain, SandboxSubscription, SandboxUser
from app.models.events import Event
from app.models.subscriptions import LicenceAssignment, M365User, Subscription, UsagePoint
from app.services import pricing
from app.services.demo import FIRST_NAMES, LAST_NAMES
from security.models import Membership, PortalUser
from security.passwords import hash_password
from security.permissions import PARTNER_CSP_ADMIN

CUSTOMERS_PER_RESELLER = 200
BATCH = 1000
CUSTOMER_PREFIX = "Scale Customer "
RESELLER_PREFIX = "Scale Reseller "
ADD_EVERY = 20  # one subscription in 20 had seats added ...
ADD_DAY = 15  # ... on the 15th of the previous month


class _Ids:
    """Explicit primary keys for bulk inserts: the next free id of each table."""

    def __init__(self, *models):
        self.next = {m.__table__.name: (db.session.scalar(select(func.max(m.id))) or 0) + 1 for m in models}

    def take(self, model) -> int:
        name = model.__table__.name
        value = self.next[name]
        self.next[name] = value + 1
        return value


def _insert(model_or_table, rows: list[dict]) -> None:
    if rows:
        table = getattr(model_or_table, "__table__", model_or_table)
        db.session.execute(insert(table), rows)


def _reset_sequences(tables: Iterable[str]) -> None:
    """PostgreSQL: move each table's id sequence past the ids we chose."""
    if db.engine.dialect.name != "postgresql":
        return
    for table in tables:
        db.session.execute(text(f"SELECT setval('{table}_id_seq', (SELECT COALESCE(MAX(id), 1) FROM {table}))"))


def seed_scale(
    n: int, echo: Callable[[str], None] = print, seed: int = 20261124, password_hash: str | None = None
) -> int:
    """Ensure customers 1..n exist; returns how many were added. Run under a scope bypass."""
    existing = db.session.scalar(
        select(func.count(Account.id)).where(Account.kind == CUSTOMER, Account.name.like(f"{CUSTOMER_PREFIX}%"))
    )
    if existing >= n:
        echo(f"Scale data: {existing} customers already present.")
        return 0
    operator_id = db.session.scalar(select(Account.id).where(Account.kind == OPERATOR).order_by(Account.id))
    today = clock.today()
    # Each SKU's 1-year availabilities at this month's prices: the customer pays Microsoft's retail price, the reseller
    # its cost (the generated resellers have no price lists).
    month = today.replace(day=1)
    products = [
        (
            row.product_id,
            row.id,
            pricing.cents(row.erp_price),
            pricing.cents(row.unit_cost),
            row.billing_frequency,
            row.sku,
        )
        for row in db.session.execute(
            select(
                Availability.product_id,
                Availability.id,
                CataloguePrice.erp_price,
                CataloguePrice.unit_cost,
                Availability.billing_frequency,
                Product.sku,
            )
            .join(Product, Product.id == Availability.product_id)
            .join(CataloguePrice, CataloguePrice.availability_id == Availability.id)
            .where(Availability.term == "P1Y", CataloguePrice.valid_from == month)
            .order_by(Availability.id)
        )
    ]
    # With the sandbox provider, "Microsoft" holds the same customers, subscriptions, users and licences (so that
    # reconciliation has both sides at scale); with Partner Center the generated customers are the portal's alone.
    sandbox = current_app.config.get("CSP_PROVIDER", "sandbox") == "sandbox"
    roles = {r.name: r.id for r in db.session.query(Role)}
    # One hash for every generated login (hashing a million passwords would take a day): the demo password's.
    shared_hash = password_hash or hash_password(secrets.token_urlsafe(24))
    rng = random.Random(seed + existing)
    ids = _Ids(Account, PortalUser, Membership, MicrosoftTenant, M365User, Subscription, LicenceAssignment, UsagePoint)
    role_link_id = (db.session.scalar(select(func.max(assoc_user_role.c.id))) or 0) + 1
    now = clock.utcnow()
    today = clock.today()

    resellers_needed = -(-n // CUSTOMERS_PER_RESELLER)
    reseller_ids = list(
        db.session.scalars(
            select(Account.id)
            .where(Account.kind == RESELLER, Account.name.like(f"{RESELLER_PREFIX}%"))
            .order_by(Account.id)
        )
    )
    reseller_rows, user_rows, link_rows = [], [], []
    for number in range(len(reseller_ids) + 1, resellers_needed + 1):
        rid = ids.take(Account)
        reseller_ids.append(rid)
        reseller_rows.append(
            dict(
                id=rid,
                kind=RESELLER,
                parent_id=operator_id,
                name=f"{RESELLER_PREFIX}{number:04d}",
                status="active",
                country="NZ",
                created_on=now - dt.timedelta(days=1500),
                contact_email=f"partner{number:04d}@scale-reseller.example",
            )
        )
        uid = ids.take(PortalUser)
        user_rows.append(
            _login_row(
                uid,
                rid,
                f"partner{number:04d}@scale-reseller.example",
                "Partner",
                f"{number:04d}",
                "partner",
                shared_hash,
                now,
                is_csp_admin=True,
            )
        )
        link_rows.append(dict(id=role_link_id, user_id=uid, role_id=roles[PARTNER_CSP_ADMIN]))
        role_link_id += 1
    _insert(Account, reseller_rows)
    _insert(PortalUser, user_rows)
    _insert(assoc_user_role, link_rows)

    added = 0
    for start in range(existing + 1, n + 1, BATCH):
        batch = _customer_batch(
            range(start, min(start + BATCH, n + 1)),
            reseller_ids,
            products,
            roles,
            shared_hash,
            ids,
            rng,
            now,
            today,
            role_link_id,
            sandbox,
        )
        role_link_id += len(batch["links"])
        _insert(Account, batch["accounts"])
        _insert(MicrosoftTenant, batch["tenants"])
        _insert(PortalUser, batch["logins"])
        _insert(Membership, batch["memberships"])
        _insert(assoc_user_role, batch["links"])
        _insert(M365User, batch["m365"])
        _insert(Subscription, batch["subscriptions"])
        _insert(LicenceAssignment, batch["assignments"])
        _insert(UsagePoint, batch["usage"])
        _insert(ChargeEvent, batch["charges"])
        if sandbox:
            _insert(SandboxDomain, batch["sandbox_domains"])
            _insert(SandboxCustomer, batch["sandbox_customers"])
            _insert(SandboxSubscription, batch["sandbox_subscriptions"])
            _insert(SandboxUser, batch["sandbox_users"])
            _insert(SandboxChargeEvent, batch["sandbox_charges"])
        db.session.commit()
        added += len(batch["accounts"])
        echo(f"Scale data: {existing + added}/{n} customers")
    _reset_sequences(
        [
            "account",
            "ab_user",
            "membership",
            "ab_user_role",
            "microsoft_tenant",
            "m365_user",
            "subscription",
            "licence_assignment",
            "usage_point",
        ]
    )
    db.session.add(
        Event(
            account_id=operator_id,
            action="demo.scale_seeded",
            actor_label="cli:seed-demo",
            summary=f"Generated {added} scale customers ({n} in all)",
        )
    )
    db.session.commit()
    # Fresh planner statistics for what was just written (PostgreSQL): without them the first filtered lists are
    # planned for empty tables (2-4 s instead of 0.1-0.3 s at 100k customers) until autovacuum gets there.
    if db.engine.dialect.name == "postgresql":
        tables = "account, microsoft_tenant, subscription, m365_user, licence_assignment, ab_user, membership"
        reviewed = {"portal_unscoped_reason": "statistics of the tables the scale seeder filled"}
        db.session.execute(text(f"ANALYZE {tables}").execution_options(**reviewed))
        db.session.commit()
    return added


def _login_row(uid, account_id, email, first, last, portal, password_hash, now, **flags) -> dict:
    row = dict(
        id=uid,
        account_id=account_id,
        username=email,
        email=email,
        first_name=first,
        last_name=last,
        portal=portal,
        password=password_hash,
        active=True,
        created_on=now,
        changed_on=now,
        password_set_at=now,
        is_csp_admin=False,
        login_count=0,
        fail_login_count=0,
    )
    row.update(flags)
    return row


def _customer_batch(
    numbers, reseller_ids, products, roles, shared_hash, ids, rng, now, today, role_link_id, sandbox=False
) -> dict:
    kinds = ("accounts", "tenants", "logins", "memberships", "m365", "subscriptions", "assignments", "usage", "charges")
    at_microsoft = ("sandbox_domains", "sandbox_customers", "sandbox_subscriptions", "sandbox_users", "sandbox_charges")
    out = {k: [] for k in (*kinds, *at_microsoft, "links")}
    added_on = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=ADD_DAY)
    for number in numbers:
        cid = ids.take(Account)
        prefix = f"scale{number:06d}"
        created = now - dt.timedelta(days=rng.randint(1, 1100), minutes=rng.randint(0, 1440))
        out["accounts"].append(
            dict(
                id=cid,
                kind=CUSTOMER,
                parent_id=reseller_ids[(number - 1) % len(reseller_ids)],
                name=f"{CUSTOMER_PREFIX}{number:06d}",
                status="active",
                country="NZ",
                created_on=created,
                contact_email=f"contact@{prefix}.example",
            )
        )
        tenant_guid = sandbox_id("tenant", prefix) if sandbox else None
        out["tenants"].append(
            dict(
                id=ids.take(MicrosoftTenant),
                account_id=cid,
                domain_prefix=prefix,
                status="active",
                link_type="created",
                created_on=created,
                provisioned_on=created,
                tenant_guid=tenant_guid,
            )
        )
        if sandbox:
            out["sandbox_domains"].append(dict(prefix=prefix))
            out["sandbox_customers"].append(
                dict(
                    tenant_id=tenant_guid,
                    domain_prefix=prefix,
                    company_name=f"{CUSTOMER_PREFIX}{number:06d}",
                    agreement_accepted_on=created.date(),
                    created_on=created,
                )
            )
        skus_of: dict[int, list[str]] = {}
        uid = ids.take(PortalUser)
        reseller_id = reseller_ids[(number - 1) % len(reseller_ids)]
        # A customer-portal login belongs to the reseller; its Master Admin role comes from its membership here.
        out["logins"].append(
            _login_row(uid, reseller_id, f"admin@{prefix}.example", "Master", "Admin", "customer", shared_hash, created)
        )
        out["memberships"].append(
            dict(
                id=ids.take(Membership),
                account_id=cid,
                user_id=uid,
                is_admin=True,
                is_master_admin=True,
                cp3_enabled=True,
                active=True,
                created_on=created,
            )
        )
        people = []
        for i in range(rng.randint(5, 15)):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            mid = ids.take(M365User)
            people.append(mid)
            upn = f"{first}.{last}{i}@{prefix}.onmicrosoft.com".lower()
            out["m365"].append(
                dict(
                    id=mid,
                    account_id=cid,
                    display_name=f"{first} {last}",
                    user_principal_name=upn,
                    status="active" if rng.random() > 0.05 else "disabled",
                    created_on=created,
                    provider_user_id=sandbox_id("user", upn) if sandbox else None,
                )
            )
            skus_of[mid] = []
        for number_of_sub, (product_id, availability_id, price, cost, cycle, sku) in enumerate(
            rng.sample(products, k=min(len(products), rng.randint(2, 4)))
        ):
            sid = ids.take(Subscription)
            quantity = rng.randint(1, len(people) + 3)
            assigned = min(quantity, rng.randint(0, len(people)))
            started = today - dt.timedelta(days=rng.randint(1, 364))
            auto_renew = rng.random() > 0.2
            provider_sub_id = sandbox_id("subscription", f"{tenant_guid}:{sku}:{number_of_sub}") if sandbox else None
            if sandbox:
                out["sandbox_subscriptions"].append(
                    dict(
                        subscription_id=provider_sub_id,
                        tenant_id=tenant_guid,
                        offer_id=sku,
                        quantity=quantity,
                        auto_renew=auto_renew,
                        billing_cycle=cycle,
                        status="active",
                        purchased_on=started,
                        term="P1Y",
                        term_started_on=started,
                        term_end=started + dt.timedelta(days=365),
                    )
                )
            out["subscriptions"].append(
                dict(
                    id=sid,
                    account_id=cid,
                    product_id=product_id,
                    availability_id=availability_id,
                    term="P1Y",
                    quantity=quantity,
                    assigned=assigned,
                    renew_on=started + dt.timedelta(days=365),
                    term_started_on=started,
                    billing_cycle=cycle,
                    unit_price=price,
                    unit_cost=cost,
                    ms_unit_cost=cost,
                    auto_renew=auto_renew,
                    status="active",
                    created_on=created,
                    provider_subscription_id=provider_sub_id,
                )
            )
            _ledger(out, out["subscriptions"][-1], added_on, sku, tenant_guid if sandbox else None)
            for holder in rng.sample(people, k=assigned):
                skus_of[holder].append(sku)
                out["assignments"].append(
                    dict(
                        id=ids.take(LicenceAssignment),
                        account_id=cid,
                        subscription_id=sid,
                        m365_user_id=holder,
                        assigned_on=created,
                    )
                )
            points = rng.randint(1, 4)
            for p in range(points):
                q = max(1, quantity - (points - 1 - p))
                out["usage"].append(
                    dict(
                        id=ids.take(UsagePoint),
                        account_id=cid,
                        subscription_id=sid,
                        recorded_at=min(now, created + dt.timedelta(days=30 * p)),
                        quantity=q,
                        assigned=min(q, assigned),
                        unit_price=price,
                    )
                )
        if sandbox:
            for person in out["m365"][-len(people) :]:
                out["sandbox_users"].append(
                    dict(
                        user_id=person["provider_user_id"],
                        tenant_id=tenant_guid,
                        user_principal_name=person["user_principal_name"],
                        display_name=person["display_name"],
                        sku_ids=" ".join(skus_of[person["id"]]),
                        enabled=person["status"] == "active",
                    )
                )
    return out


def _ledger(out: dict, sub: dict, added_on: dt.date, sku: str, tenant_guid: str | None) -> None:
    """The charge ledger rows of a generated subscription (and of its sandbox twin when ``tenant_guid``): bought at
    its term's start, and for one in ``ADD_EVERY`` (two seats or more, bought before ``added_on``) a third of its
    seats added on ``added_on`` at 10:00 UTC."""
    quantity, started = sub["quantity"], sub["term_started_on"]
    added = max(1, quantity // 3) if sub["id"] % ADD_EVERY == 0 and quantity >= 2 and started < added_on else 0
    moments = [("new", quantity - added, quantity - added, dt.datetime.combine(started, dt.time(0)))]
    if added:
        moments.append(("addQuantity", added, quantity, dt.datetime.combine(added_on, dt.time(10))))
    same = {k: sub[k] for k in ("account_id", "product_id", "availability_id", "term", "billing_cycle", "renew_on")}
    for kind, delta, seats, at in moments:
        out["charges"].append(
            dict(
                same,
                subscription_id=sub["id"],
                occurred_at=at,
                kind=kind,
                quantity=seats,
                delta=delta,
                term_started_on=started,
                unit_price=sub["unit_price"],
                unit_cost=sub["unit_cost"],
                ms_unit_cost=sub["ms_unit_cost"],
            )
        )
        if tenant_guid:
            out["sandbox_charges"].append(
                dict(
                    subscription_id=sub["provider_subscription_id"],
                    tenant_id=tenant_guid,
                    occurred_at=at,
                    kind=kind,
                    quantity=seats,
                    delta=delta,
                    offer_id=sku,
                    term=sub["term"],
                    billing_cycle=sub["billing_cycle"],
                    term_started_on=started,
                    renew_on=sub["renew_on"],
                    # What the generated history says Microsoft charged: the cost the portal recorded (the sandbox's
                    # sheet of the month the term started may differ: its E3 is 5 % dearer in even months).
                    unit_price=sub["ms_unit_cost"],
                )
            )
