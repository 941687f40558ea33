"""Customer-portal dashboard widgets: the catalogue, each user's layout, and each widget's live data (in scope)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from app import clock
from app.extensions import db
from app.models.catalog import PERIOD_MONTHS, Product
from app.models.dashboards import DashboardWidget
from app.models.events import Event
from app.models.subscriptions import M365User, Subscription, UsagePoint
from app.services import csp_report
from app.services.events import customer_portal_events, record_event
from security.models import Membership, PortalUser


@dataclasses.dataclass(frozen=True)
class WidgetKind:
    key: str
    title: str
    description: str


CATALOGUE = {
    w.key: w
    for w in (
        WidgetKind("licences", "Licences", "Licences used and bought, per product."),
        WidgetKind("renewals", "Renewals", "Subscriptions renewing in the next 30 days."),
        WidgetKind("spend", "Monthly spend", "What the subscriptions cost a month, excluding GST."),
        WidgetKind("users", "Users", "Microsoft 365 users, and the latest portal sign-ins."),
        WidgetKind("usage_chart", "Usage chart", "Licences over the last 12 months."),
        WidgetKind("activity", "Recent activity", "The latest events of your account."),
    )
}


class WidgetError(ValueError):
    """A layout change refused (unknown widget, not on this dashboard)."""


# -- layout ------------------------------------------------------------------------------------------------------


def layout(user: PortalUser) -> list[DashboardWidget]:
    return list(
        db.session.scalars(
            select(DashboardWidget)
            .where(DashboardWidget.user_id == user.id)
            .order_by(DashboardWidget.position, DashboardWidget.id)
        )
    )


def _account_id(user: PortalUser) -> int:
    """The account whose dashboard this is: a customer-portal login's is per account it works in (the chosen one)."""
    from security.memberships import chosen_for

    membership = chosen_for(user)
    return membership.account_id if membership is not None else user.account_id


def add_widget(user: PortalUser, key: str) -> DashboardWidget:
    if key not in CATALOGUE:
        raise WidgetError(f"There is no widget {key!r}.")
    if db.session.scalar(
        select(DashboardWidget.id).where(DashboardWidget.user_id == user.id, DashboardWidget.widget == key)
    ):
        raise WidgetError(f"{CATALOGUE[key].title} is already on your dashboard.")
    position = (
        db.session.scalar(select(func.max(DashboardWidget.position)).where(DashboardWidget.user_id == user.id)) or 0
    ) + 1
    widget = DashboardWidget(account_id=_account_id(user), user_id=user.id, widget=key, position=position)
    db.session.add(widget)
    db.session.flush()
    record_event(
        "dashboard.widget_added",
        account_id=widget.account_id,
        target=widget,
        summary=f"{CATALOGUE[key].title} added to {user.email}'s dashboard",
    )
    return widget


def remove_widget(user: PortalUser, widget: DashboardWidget) -> None:
    if widget.user_id != user.id:
        raise WidgetError("That widget is not on your dashboard.")
    record_event(
        "dashboard.widget_removed",
        account_id=widget.account_id,
        target=widget,
        summary=f"{CATALOGUE[widget.widget].title} removed from {user.email}'s dashboard",
    )
    db.session.delete(widget)


def reorder(user: PortalUser, widget_ids: list[int]) -> None:
    """Put the user's widgets in this order; the list must name each of them exactly once."""
    widgets = {w.id: w for w in layout(user)}
    if sorted(widget_ids) != sorted(widgets):
        raise WidgetError("The new order must list every widget of the dashboard once.")
    for position, widget_id in enumerate(widget_ids, start=1):
        widgets[widget_id].position = position
    record_event(
        "dashboard.reordered",
        account_id=_account_id(user),
        target=user,
        summary=f"{user.email}'s dashboard: " + ", ".join(CATALOGUE[widgets[i].widget].title for i in widget_ids),
    )


# -- data ----------------------------------------------------------------------------------------------------------


def licences(customer_id: int) -> list[dict]:
    rows = db.session.execute(
        select(Product.name, func.sum(Subscription.assigned), func.sum(Subscription.quantity))
        .join(Subscription.product)
        .where(Subscription.account_id == customer_id, Subscription.status == "active")
        .group_by(Product.name)
        .order_by(Product.name)
    ).all()
    return [{"product": name, "used": int(used), "total": int(total)} for name, used, total in rows]


def renewals(customer_id: int, days: int = 30, today: dt.date | None = None) -> list[Subscription]:
    today = today or clock.today()
    return list(
        db.session.scalars(
            select(Subscription)
            .join(Subscription.product)
            .where(
                Subscription.account_id == customer_id,
                Subscription.status == "active",
                Subscription.renew_on >= today,
                Subscription.renew_on <= today + dt.timedelta(days=days),
            )
            .order_by(Subscription.renew_on)
        )
    )


def monthly_spend(customer_id: int) -> Decimal:
    """Each active subscription's monthly total (price per billing period ÷ its months, to the cent), added up."""
    return csp_report.monthly_spend(Subscription.account_id == customer_id, Subscription.status == "active")


def users_summary(customer_id: int) -> dict:
    m365 = db.session.scalar(select(func.count(M365User.id)).where(M365User.account_id == customer_id))
    active = db.session.scalar(
        select(func.count(M365User.id)).where(M365User.account_id == customer_id, M365User.status == "active")
    )
    # Its portal users are its memberships' logins; "last sign-in" is when each last worked in this account.
    sign_ins = db.session.execute(
        select(PortalUser.first_name, PortalUser.last_name, Membership.last_used_at)
        .join(Membership, Membership.user_id == PortalUser.id)
        .where(
            Membership.account_id == customer_id,
            Membership.deleted_at.is_(None),
            Membership.last_used_at.is_not(None),
        )
        .order_by(Membership.last_used_at.desc())
        .limit(5)
    ).all()
    return {
        "m365_users": m365,
        "active": active,
        "sign_ins": [{"name": f"{first} {last}", "when": when} for first, last, when in sign_ins],
    }


def month_ends(months: int = 12, today: dt.date | None = None) -> list[dt.date]:
    """The last day of each of the last ``months`` months, this month (so far) last."""
    today = today or clock.today()
    ends, year, month = [], today.year, today.month
    for _ in range(months):
        first_of_next = dt.date(year + (month == 12), month % 12 + 1, 1)
        ends.append(min(first_of_next - dt.timedelta(days=1), today))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return list(reversed(ends))


def _end_of_day_utc(day: dt.date) -> dt.datetime:
    """The stored (UTC) moment the portal's ``day`` ends: a month end is a New Zealand one."""
    return clock.start_of_day_utc(day + dt.timedelta(days=1))


def usage_series(customer_ids, months: int = 12, today: dt.date | None = None) -> dict:
    """Licences used and bought per product, and the monthly spend, at each month end, rebuilt from the change
    points (the latest point at or before each month end counts). ``customer_ids``: a list or a SELECT of ids;
    None: every customer in scope."""
    ends = month_ends(months, today)
    query = (
        select(
            UsagePoint.subscription_id,
            UsagePoint.recorded_at,
            UsagePoint.quantity,
            UsagePoint.assigned,
            UsagePoint.unit_price,
            Subscription.billing_cycle,
            Product.name,
        )
        .join(UsagePoint.subscription)
        .join(Subscription.product)
        .where(UsagePoint.recorded_at < _end_of_day_utc(ends[-1]))
        .order_by(UsagePoint.recorded_at, UsagePoint.id)
    )
    if customer_ids is not None:
        query = query.where(UsagePoint.account_id.in_(customer_ids))
    products: dict[str, dict[str, list]] = {}
    spend = [Decimal("0")] * len(ends)
    current: dict[int, tuple] = {}
    points = iter(db.session.execute(query).all())
    pending = next(points, None)
    for index, end in enumerate(ends):
        limit = _end_of_day_utc(end)
        while pending is not None and pending.recorded_at < limit:
            current[pending.subscription_id] = (
                pending.name,
                pending.quantity,
                pending.assigned,
                pending.unit_price,
                PERIOD_MONTHS[pending.billing_cycle],
            )
            pending = next(points, None)
        for name, quantity, assigned, price, months in current.values():
            series = products.setdefault(name, {"used": [0] * len(ends), "bought": [0] * len(ends)})
            series["used"][index] += assigned
            series["bought"][index] += quantity
            # A point's price is per billing period (the subscription's): its monthly total, rounded as the
            # landing page rounds it.
            spend[index] += csp_report.monthly_total(price, quantity, months)
    return {"months": [e.strftime("%b %Y") for e in ends], "products": products, "spend": spend}


#: The dashboard's own layout changes (add_widget, remove_widget, reorder above): in the Event Log, not in Recent
#: activity, where moving a widget would push out what happened to the account.
DASHBOARD_LAYOUT_ACTIONS = ("dashboard.widget_added", "dashboard.widget_removed", "dashboard.reordered")


def recent_activity(customer_id: int, limit: int = 8) -> list[Event]:
    """The account's latest events, less the dashboard's own layout changes."""
    return list(
        db.session.scalars(
            select(Event)
            .where(customer_portal_events(customer_id), Event.action.not_in(DASHBOARD_LAYOUT_ACTIONS))
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(limit)
        )
    )
