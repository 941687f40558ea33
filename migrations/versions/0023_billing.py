"""issue 14 (billing): the charge ledger (portal and sandbox), invoices, their lines, each issuer's billing profile,
Microsoft's billed reconciliation lines; issued invoices made unchangeable by triggers; the ledger backfilled from
today's subscriptions and seat batches

Revision ID: 0023_billing
Revises: 0022_renewals
Create Date: 2026-12-01 14:00:00.000000

"""

import datetime as dt

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0023_billing"
down_revision = "0022_renewals"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(12, 2)
PRICE4 = sa.Numeric(14, 4)
PRICE6 = sa.Numeric(16, 6)


def upgrade():
    op.create_table(
        "charge_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("availability_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=3), nullable=False),
        sa.Column("billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("term_started_on", sa.Date(), nullable=False),
        sa.Column("renew_on", sa.Date(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("unit_cost", MONEY, nullable=False),
        sa.Column("ms_unit_cost", PRICE4, nullable=False),
        sa.CheckConstraint(
            "kind IN ('new', 'renew', 'addQuantity', 'removeQuantity', 'cancel', 'convert', 'expire')",
            name="ck_charge_event_kind",
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscription.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["product_id"], ["product.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["availability_id"], ["availability.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_charge_event_subscription", "charge_event", ["subscription_id", "occurred_at", "id"])
    op.create_index("ix_charge_event_account", "charge_event", ["account_id", "occurred_at"])

    op.create_table(
        "sandbox_charge_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("term", sa.String(length=3), nullable=False),
        sa.Column("billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("term_started_on", sa.Date(), nullable=False),
        sa.Column("renew_on", sa.Date(), nullable=False),
        sa.Column("unit_price", PRICE4, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sandbox_charge_event_subscription_id", "sandbox_charge_event", ["subscription_id"])

    op.create_table(
        "billing_profile",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("invoice_prefix", sa.String(length=12), nullable=False),
        sa.Column("gst_number", sa.String(length=20), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.Column("xero_account_code", sa.String(length=10), nullable=False),
        sa.Column("xero_tax_type", sa.String(length=40), nullable=False),
        sa.CheckConstraint("payment_terms_days >= 0 AND payment_terms_days <= 365", name="ck_billing_profile_terms"),
        sa.CheckConstraint("next_number >= 1", name="ck_billing_profile_next"),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", name="uq_billing_profile_account"),
    )

    op.create_table(
        "invoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=True),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False),
        sa.Column("subtotal", MONEY, nullable=False),
        sa.Column("tax", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("issuer_gst_number", sa.String(length=20), nullable=True),
        sa.Column("corrects_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('draft', 'issued')", name="ck_invoice_status"),
        sa.CheckConstraint("kind IN ('invoice', 'credit_note')", name="ck_invoice_kind"),
        sa.CheckConstraint(
            "(status = 'draft' AND number IS NULL) OR (status = 'issued' AND number IS NOT NULL)",
            name="ck_invoice_number",
        ),
        sa.ForeignKeyConstraint(["issuer_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["buyer_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["corrects_id"], ["invoice.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer_id", "number", name="uq_invoice_issuer_number"),
    )
    op.create_index("ix_invoice_issuer_month", "invoice", ["issuer_id", "month", "buyer_id"])
    op.create_index("ix_invoice_buyer_month", "invoice", ["buyer_id", "month"])
    op.create_index("ix_invoice_corrects", "invoice", ["corrects_id"])
    # Reconciliation looks subscriptions up by Microsoft's id.
    op.create_index("ix_subscription_provider_id", "subscription", ["provider_subscription_id"])

    op.create_table(
        "invoice_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("charge_type", sa.String(length=20), nullable=False),
        sa.Column("term", sa.String(length=3), nullable=False),
        sa.Column("billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("charge_start", sa.Date(), nullable=False),
        sa.Column("charge_end", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("cycle_days", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("effective_unit_price", PRICE6, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("ms_unit_price", PRICE4, nullable=True),
        sa.Column("ms_effective_unit_price", PRICE6, nullable=True),
        sa.Column("ms_amount", MONEY, nullable=True),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["issuer_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["buyer_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["customer_id"], ["account.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscription.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_invoice_line_invoice", "invoice_line", ["invoice_id", "position"])
    op.create_index("ix_invoice_line_subscription", "invoice_line", ["subscription_id"])

    op.create_table(
        "microsoft_billed_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("invoice_number", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("customer_name", sa.String(length=160), nullable=True),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("sku_id", sa.String(length=16), nullable=False),
        sa.Column("sku_name", sa.String(length=200), nullable=True),
        sa.Column("charge_type", sa.String(length=20), nullable=False),
        sa.Column("charge_start", sa.Date(), nullable=False),
        sa.Column("charge_end", sa.Date(), nullable=False),
        sa.Column("term_and_billing_cycle", sa.String(length=60), nullable=True),
        sa.Column("unit_price", PRICE4, nullable=False),
        sa.Column("effective_unit_price", PRICE6, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("billable_quantity", sa.Numeric(14, 4), nullable=False),
        sa.Column("subtotal", MONEY, nullable=False),
        sa.Column("match", sa.String(length=20), nullable=True),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_microsoft_billed_line_month",
        "microsoft_billed_line",
        ["month", "subscription_id", "charge_type", "charge_start"],
    )

    _immutability_triggers()
    _backfill()


def _immutability_triggers():
    from app import db_guard  # the one copy of the DDL

    db_guard.install_invoice_guard(op.get_bind())


def _backfill():
    """Today's subscriptions as a ledger: each term's purchase (or renewal) with the seats it had, then each increase
    of the term; a cancelled or expired subscription ends with that."""
    from app.csp.sandbox_pricesheet import unit_price

    bind = op.get_bind()
    meta = sa.MetaData()
    sub = sa.Table("subscription", meta, autoload_with=bind)
    batch = sa.Table("seat_batch", meta, autoload_with=bind)
    ledger = sa.Table("charge_event", meta, autoload_with=bind)
    batches = {}
    for row in bind.execute(sa.select(batch.c.subscription_id, batch.c.kind, batch.c.quantity, batch.c.added_at)):
        batches.setdefault(row.subscription_id, []).append((row.kind, row.quantity, row.added_at))
    rows = []
    for s in bind.execute(sa.select(sub)):
        own = batches.get(s.id, [])
        increases = sorted(
            (b for b in own if b[0] == "increase" and b[2].date() >= s.term_started_on), key=lambda b: b[2]
        )
        first = "renew" if any(b[0] == "renewal" for b in own) else "new"
        running = max(0, s.quantity - sum(b[1] for b in increases))
        base = dict(
            account_id=s.account_id,
            subscription_id=s.id,
            product_id=s.product_id,
            availability_id=s.availability_id,
            term=s.term,
            billing_cycle=s.billing_cycle,
            term_started_on=s.term_started_on,
            renew_on=s.renew_on,
            unit_price=s.unit_price,
            unit_cost=s.unit_cost,
            ms_unit_cost=s.ms_unit_cost,
        )
        rows.append(
            dict(
                base,
                kind=first,
                quantity=running,
                delta=running,
                occurred_at=dt.datetime.combine(s.term_started_on, dt.time(0)),
            )
        )
        for _kind, seats, added in increases:
            running += seats
            rows.append(dict(base, kind="addQuantity", quantity=running, delta=seats, occurred_at=added))
        if s.status in ("cancelled", "expired"):
            when = s.cancelled_at or dt.datetime.combine(s.renew_on, dt.time(0))
            kind = "cancel" if s.status == "cancelled" else "expire"
            rows.append(dict(base, kind=kind, quantity=0, delta=-running if kind == "cancel" else 0, occurred_at=when))
        if len(rows) >= 5000:
            bind.execute(ledger.insert(), rows)
            rows = []
    if rows:
        bind.execute(ledger.insert(), rows)

    sandbox = sa.Table("sandbox_subscription", meta, autoload_with=bind)
    sandbox_batch = sa.Table("sandbox_seat_batch", meta, autoload_with=bind)
    sandbox_ledger = sa.Table("sandbox_charge_event", meta, autoload_with=bind)
    seats = {}
    for row in bind.execute(sa.select(sandbox_batch.c.subscription_id, sandbox_batch.c.added_at)):
        seats.setdefault(row.subscription_id, []).append(row.added_at)
    rows = []
    for s in bind.execute(sa.select(sandbox)):
        start = s.term_started_on or s.purchased_on
        term = s.term or "P1Y"
        end = s.term_end or _add_months(start, {"P1M": 1, "P1Y": 12, "P3Y": 36}[term])
        price = unit_price(s.offer_id, term, s.billing_cycle, start)
        kind = "new" if s.purchased_on >= start else "renew"
        rows.append(
            dict(
                subscription_id=s.subscription_id,
                tenant_id=s.tenant_id,
                kind=kind,
                quantity=s.quantity,
                delta=s.quantity,
                offer_id=s.offer_id,
                term=term,
                billing_cycle=s.billing_cycle,
                term_started_on=start,
                renew_on=end,
                unit_price=price,
                occurred_at=dt.datetime.combine(start, dt.time(0)),
            )
        )
        if s.status in ("deleted", "expired"):
            rows.append(
                dict(
                    rows[-1],
                    kind="cancel" if s.status == "deleted" else "expire",
                    quantity=0,
                    delta=-s.quantity if s.status == "deleted" else 0,
                    occurred_at=dt.datetime.combine(end, dt.time(0)),
                )
            )
    if rows:
        bind.execute(sandbox_ledger.insert(), rows)


def _add_months(day, months):
    import calendar

    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def downgrade():
    from app import db_guard

    db_guard.remove_invoice_guard(op.get_bind())
    op.drop_index("ix_microsoft_billed_line_month", table_name="microsoft_billed_line")
    op.drop_table("microsoft_billed_line")
    op.drop_index("ix_invoice_line_subscription", table_name="invoice_line")
    op.drop_index("ix_invoice_line_invoice", table_name="invoice_line")
    op.drop_table("invoice_line")
    op.drop_index("ix_subscription_provider_id", table_name="subscription")
    op.drop_index("ix_invoice_corrects", table_name="invoice")
    op.drop_index("ix_invoice_buyer_month", table_name="invoice")
    op.drop_index("ix_invoice_issuer_month", table_name="invoice")
    op.drop_table("invoice")
    op.drop_table("billing_profile")
    op.drop_index("ix_sandbox_charge_event_subscription_id", table_name="sandbox_charge_event")
    op.drop_table("sandbox_charge_event")
    op.drop_index("ix_charge_event_account", table_name="charge_event")
    op.drop_index("ix_charge_event_subscription", table_name="charge_event")
    op.drop_table("charge_event")
