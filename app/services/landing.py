"""The partner portal's landing page: usage stats, recently created tenants, licences nearing renewal.

Every query runs through the request's scope (security/scoping.py), so each figure covers what the user may see.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import contains_eager

from app import clock
from app.extensions import db
from app.models.accounts import CUSTOMER, Account, MicrosoftTenant
from app.models.catalog import Product
from app.models.subscriptions import M365User, Subscription
from app.services import csp_report

RENEWAL_WINDOWS = (30, 60, 90)
RENEWALS_SHOWN = 50


@dataclass
class UsageStats:
    customers: int
    users: int
    licences_used: int
    licences_total: int
    monthly_spend: Decimal


def usage_stats() -> UsageStats:
    session = db.session
    customers = session.scalar(select(func.count(Account.id)).where(Account.kind == CUSTOMER))
    users = session.scalar(select(func.count(M365User.id)))
    used, total, cents = session.execute(
        select(
            func.coalesce(func.sum(Subscription.assigned), 0),
            func.coalesce(func.sum(Subscription.quantity), 0),
            csp_report.monthly_sum(Subscription.unit_price),
        ).where(Subscription.status == "active")
    ).one()
    # The monthly spend: each subscription's monthly total (price per billing period ÷ its months), added up.
    return UsageStats(customers, users, int(used), int(total), csp_report.from_cents(cents))


def recently_created_tenants(limit: int = 10) -> list[Account]:
    """The newest customer accounts (the guide's tenants), with their Microsoft tenant."""
    return list(
        db.session.scalars(
            select(Account)
            .outerjoin(MicrosoftTenant, MicrosoftTenant.account_id == Account.id)
            .options(contains_eager(Account.tenant))
            .where(Account.kind == CUSTOMER)
            .order_by(Account.created_on.desc(), Account.id.desc())
            .limit(limit)
        )
    )


@dataclass
class Renewals:
    days: int
    rows: list[Subscription]
    total: int


def subscriptions_nearing_renewal(days: int = 30, today: dt.date | None = None) -> Renewals:
    """Active subscriptions renewing in the next ``days`` days, soonest first (the first 50, and how many)."""
    days = days if days in RENEWAL_WINDOWS else RENEWAL_WINDOWS[0]
    today = today or clock.today()
    window = (
        Subscription.status == "active",
        Subscription.renew_on >= today,
        Subscription.renew_on <= today + dt.timedelta(days=days),
    )
    total = db.session.scalar(select(func.count(Subscription.id)).where(*window))
    rows = db.session.scalars(
        select(Subscription)
        .join(Subscription.account)
        .join(Subscription.product)
        .options(contains_eager(Subscription.account), contains_eager(Subscription.product))
        .where(*window)
        .order_by(Subscription.renew_on, Account.name, Product.name)
        .limit(RENEWALS_SHOWN)
    ).all()
    return Renewals(days, list(rows), total)
