"""Usage history as change points: `flask portal snapshot-usage` adds a point for every subscription whose numbers
differ from its latest point (or that has none). Idempotent: a second run adds nothing."""

from __future__ import annotations

from sqlalchemy import func, insert, select

from app.extensions import db
from app.models.base import utcnow
from app.models.subscriptions import Subscription, UsagePoint

BATCH = 5000


def snapshot_usage() -> int:
    """Record the changed subscriptions' numbers; how many points were added. Run under a scope bypass."""
    latest = (
        select(UsagePoint.subscription_id, UsagePoint.quantity, UsagePoint.assigned, UsagePoint.unit_price)
        .where(UsagePoint.id.in_(select(func.max(UsagePoint.id)).group_by(UsagePoint.subscription_id)))
        .subquery()
    )
    changed = (
        select(
            Subscription.id,
            Subscription.account_id,
            Subscription.quantity,
            Subscription.assigned,
            Subscription.unit_price,
        )
        .outerjoin(latest, latest.c.subscription_id == Subscription.id)
        .where(
            (latest.c.subscription_id.is_(None))
            | (latest.c.quantity != Subscription.quantity)
            | (latest.c.assigned != Subscription.assigned)
            | (latest.c.unit_price != Subscription.unit_price)
        )
        .order_by(Subscription.id)
    )
    now, added, batch = utcnow(), 0, []
    for sub_id, account_id, quantity, assigned, price in db.session.execute(changed).all():
        batch.append(
            {
                "subscription_id": sub_id,
                "account_id": account_id,
                "recorded_at": now,
                "quantity": quantity,
                "assigned": assigned,
                "unit_price": price,
            }
        )
        if len(batch) >= BATCH:
            db.session.execute(insert(UsagePoint.__table__), batch)
            added, batch = added + len(batch), []
    if batch:
        db.session.execute(insert(UsagePoint.__table__), batch)
        added += len(batch)
    db.session.commit()
    return added
