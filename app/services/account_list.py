"""Accounts ▸ List all: its filters and the licences and monthly spend of the customers on one page.

Fast at 100,000 customers: the list pages first (FAB's query, sorted on ``ix_account_name``), then ``page_figures``
adds up the shown customers' subscriptions in one aggregate statement (``ix_subscription_account_renew_on``), however
many rows the page shows. Every filter is an indexed column (``parent_id``) or an EXISTS on an indexed one
(``microsoft_tenant.account_id``, ``subscription (account_id, renew_on)``), never a join that multiplies rows.
Scoping is the session's (security/scoping.py): a reseller's list and figures hold only its own customers.

**Licences** of a customer: its active subscriptions' licences bought (``quantity``) and assigned, added up.
**Monthly spend**: what the customer pays a month, excluding GST — over its active subscriptions, each one's
``quantity`` × its locked sell price (``unit_price``, per licence per billing period) ÷ the period's months (1 monthly,
12 annual, 36 triennial), rounded half up to the cent per subscription; the customer's spend adds those rounded
totals (app/services/csp_report.py, the rule of the CSP Report and the landing page). Summed in integer cents in SQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import ColumnElement, false, func, select

from app.extensions import db
from app.models.accounts import CUSTOMER, RESELLER, Account, MicrosoftTenant
from app.models.subscriptions import Subscription
from app.services import csp_report

#: "Renews within" choices, in days (the landing page's windows and a week either side).
RENEWAL_WINDOWS = (7, 14, 30, 60, 90)


@dataclasses.dataclass(frozen=True)
class AccountFilters:
    """What the list's filter form asked for (None: any)."""

    reseller_id: int | None = None
    has_tenant: bool | None = None
    renews_within: int | None = None

    @property
    def customers_only(self) -> bool:
        """A tenant or a renewal is a customer's: with either filter, resellers leave the operator's list."""
        return self.has_tenant is not None or self.renews_within is not None

    def criteria(self, today: dt.date) -> list[ColumnElement]:
        """WHERE clauses on ``Account`` (module docstring: each one an index answers)."""
        found: list[ColumnElement] = []
        if self.reseller_id is not None:
            found += [Account.parent_id == self.reseller_id, Account.kind == CUSTOMER]
        if self.customers_only:
            found.append(Account.kind == CUSTOMER)
        if self.has_tenant is not None:
            tenant = select(MicrosoftTenant.id).where(MicrosoftTenant.account_id == Account.id).exists()
            found.append(tenant if self.has_tenant else ~tenant)
        if self.renews_within is not None:
            found.append(
                select(Subscription.id)
                .where(
                    Subscription.account_id == Account.id,
                    Subscription.renew_on >= today,
                    Subscription.renew_on <= today + dt.timedelta(days=self.renews_within),
                    Subscription.status == "active",
                )
                .exists()
            )
        return found

    @property
    def is_empty(self) -> bool:
        return self == AccountFilters()


#: Criteria that select nothing: the list of a filter form that does not make sense.
NOTHING: list[ColumnElement] = [false()]


def reseller_choices() -> list[tuple[int, str]]:
    """The resellers in scope, by name (operator staff choose among them; a partner's scope holds only its own)."""
    return [
        (row.id, row.name)
        for row in db.session.execute(
            select(Account.id, Account.name)
            .where(Account.kind == RESELLER)
            .order_by(func.lower(Account.name), Account.id)
        )
    ]


@dataclasses.dataclass(frozen=True)
class Figures:
    """One customer's licences (assigned of bought) and monthly spend (module docstring)."""

    assigned: int = 0
    licences: int = 0
    monthly_spend: Decimal = Decimal("0.00")

    @property
    def licences_label(self) -> str:
        """ "3/4": assigned of bought, as the guide's CSP Report shows them."""
        return f"{self.assigned}/{self.licences}"


def page_figures(account_ids: list[int]) -> dict[int, Figures]:
    """The figures of the listed customers, in one statement (an account without active subscriptions is absent)."""
    if not account_ids:
        return {}
    rows = db.session.execute(
        select(
            Subscription.account_id,
            func.coalesce(func.sum(Subscription.assigned), 0),
            func.coalesce(func.sum(Subscription.quantity), 0),
            csp_report.monthly_sum(Subscription.unit_price),
        )
        .where(Subscription.account_id.in_(account_ids), Subscription.status == "active")
        .group_by(Subscription.account_id)
    )
    return {
        account_id: Figures(int(assigned), int(quantity), csp_report.from_cents(cents))
        for account_id, assigned, quantity, cents in rows
    }
