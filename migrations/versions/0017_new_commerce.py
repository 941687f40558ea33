"""new commerce: availabilities, catalogue prices by month, price lists, seat batches, scheduled changes, carts

Today's products and subscriptions move onto availabilities without losing a row:
- each product becomes a SKU (its title also the product's) with one 1-year availability billed as its old billing
  cycle said, priced as before (the old "per licence per month" price times the billing period's months), valid from
  the 1st of this month: the old unit cost is taken as Microsoft's cost and the old unit price as its retail price;
- each subscription gets the term its dates show (about a month: P1M; more than two years: P3Y; otherwise P1Y) and
  the availability of that term and its billing cycle (made when missing, priced like the product's); its prices become
  per billing period (monthly: unchanged; annual: twelve times the monthly price, the same money); Microsoft's cost is
  its old unit cost; its purchase becomes one seat batch whose 168-hour window starts at the term's start;
- the sandbox's subscriptions get their 1-year term and a seat batch each.

Revision ID: 0017_new_commerce
Revises: 0016_reconciliation
Create Date: 2026-12-01 11:00:00.000000

"""
import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from app import clock

# revision identifiers, used by Alembic.
revision = '0017_new_commerce'
down_revision = '0016_reconciliation'
branch_labels = None
depends_on = None

_MONTHS = {'monthly': 1, 'annual': 12, 'triennial': 36}
SheetMoney = sa.Numeric(precision=14, scale=4)
Money = sa.Numeric(precision=12, scale=2)


def _term(started, renews) -> str:
    days = (renews - started).days
    if days <= 31:
        return 'P1M'
    if days > 730:
        return 'P3Y'
    return 'P1Y'


def upgrade():
    op.create_table(
        'availability',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('product_id', sa.Integer(), nullable=False),
        sa.Column('term', sa.String(length=3), nullable=False),
        sa.Column('billing_frequency', sa.String(length=16), nullable=False),
        sa.Column('ms_availability_id', sa.String(length=64), nullable=True),
        sa.Column('retired_on', sa.DateTime(), nullable=True),
        sa.CheckConstraint("term IN ('P1M', 'P1Y', 'P3Y')", name='ck_availability_term'),
        sa.CheckConstraint(
            "billing_frequency IN ('monthly', 'annual', 'triennial')", name='ck_availability_billing_frequency'
        ),
        sa.ForeignKeyConstraint(['product_id'], ['product.id'], ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('product_id', 'term', 'billing_frequency', name='uq_availability'),
    )
    op.create_table(
        'catalogue_price',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('availability_id', sa.Integer(), nullable=False),
        sa.Column('valid_from', sa.Date(), nullable=False),
        sa.Column('valid_until', sa.Date(), nullable=True),
        sa.Column('unit_cost', SheetMoney, nullable=False),
        sa.Column('erp_price', SheetMoney, nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('market', sa.String(length=2), nullable=False),
        sa.Column('imported_on', sa.DateTime(), nullable=False),
        sa.CheckConstraint('unit_cost >= 0 AND erp_price >= 0', name='ck_catalogue_price_money'),
        sa.ForeignKeyConstraint(['availability_id'], ['availability.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('availability_id', 'valid_from', name='uq_catalogue_price_month'),
    )
    op.create_index('ix_catalogue_price_valid_from', 'catalogue_price', ['valid_from'])
    op.create_table(
        'sandbox_seat_batch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.String(length=36), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('added_at', sa.DateTime(), nullable=False),
        sa.Column('allowed_until', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_sandbox_seat_batch_subscription_id'), 'sandbox_seat_batch', ['subscription_id'])
    op.create_table(
        'sandbox_cart',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('cart_id', sa.String(length=36), nullable=False),
        sa.Column('tenant_id', sa.String(length=36), nullable=False),
        sa.Column('request_id', sa.String(length=36), nullable=True),
        sa.Column('checkout_request_id', sa.String(length=36), nullable=True),
        sa.Column('line_items', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('cart_id'),
        sa.UniqueConstraint('request_id'),
        sa.UniqueConstraint('checkout_request_id'),
    )
    op.create_index(op.f('ix_sandbox_cart_tenant_id'), 'sandbox_cart', ['tenant_id'])

    with op.batch_alter_table('product') as batch_op:
        batch_op.add_column(sa.Column('product_title', sa.String(length=160), nullable=True))
    with op.batch_alter_table('subscription') as batch_op:
        batch_op.add_column(sa.Column('availability_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('term', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('ms_unit_cost', Money, nullable=True))
        batch_op.add_column(sa.Column('next_availability_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('next_quantity', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('next_scheduled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('sandbox_subscription') as batch_op:
        batch_op.add_column(sa.Column('term', sa.String(length=3), server_default='P1Y', nullable=False))
        batch_op.add_column(sa.Column('term_started_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('term_end', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('next_offer_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('next_term', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('next_billing_cycle', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('next_quantity', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cart_id', sa.String(length=36), nullable=True))
        batch_op.create_index('ix_sandbox_subscription_cart_id', ['cart_id'], unique=False)
    op.create_table(
        'seat_batch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('refundable', sa.Integer(), nullable=False),
        sa.Column('added_at', sa.DateTime(), nullable=False),
        sa.Column('refundable_until', sa.DateTime(), nullable=False),
        sa.Column('unit_price', Money, nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('purchase', 'increase', 'renewal')", name='ck_seat_batch_kind'),
        sa.CheckConstraint(
            'quantity >= 1 AND refundable >= 0 AND refundable <= quantity', name='ck_seat_batch_seats'
        ),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_seat_batch_subscription', 'seat_batch', ['subscription_id', 'added_at'])
    op.create_index('ix_seat_batch_account', 'seat_batch', ['account_id', 'refundable_until'])
    op.create_table(
        'price_rule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('level', sa.String(length=4), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=True),
        sa.Column('product_id', sa.Integer(), nullable=True),
        sa.Column('ms_product_id', sa.String(length=32), nullable=True),
        sa.Column('basis', sa.String(length=8), nullable=False),
        sa.Column('percent', sa.Numeric(precision=7, scale=2), nullable=False),
        sa.Column('below_cost_intended', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('updated_on', sa.DateTime(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.CheckConstraint("level IN ('buy', 'sell')", name='ck_price_rule_level'),
        sa.CheckConstraint("basis IN ('cost', 'retail', 'buy')", name='ck_price_rule_basis'),
        sa.CheckConstraint('percent > -100 AND percent < 1000', name='ck_price_rule_percent'),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['product_id'], ['product.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_price_rule_lookup', 'price_rule', ['account_id', 'level'])
    op.create_index('ix_price_rule_subscription', 'price_rule', ['subscription_id'])

    _move_data()

    with op.batch_alter_table('product') as batch_op:
        batch_op.alter_column('product_title', existing_type=sa.String(length=160), nullable=False)
        batch_op.drop_constraint('ck_product_billing_cycle', type_='check')
        batch_op.drop_constraint('ck_product_money', type_='check')
        batch_op.drop_column('billing_cycle')
        batch_op.drop_column('unit_cost')
        batch_op.drop_column('unit_price')
    with op.batch_alter_table('subscription') as batch_op:
        batch_op.alter_column('availability_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('term', existing_type=sa.String(length=3), nullable=False)
        batch_op.alter_column('ms_unit_cost', existing_type=Money, nullable=False)
        batch_op.drop_constraint('ck_subscription_money', type_='check')
        batch_op.drop_constraint('ck_subscription_billing_cycle', type_='check')
        batch_op.create_check_constraint(
            'ck_subscription_money', 'unit_price >= 0 AND unit_cost >= 0 AND ms_unit_cost >= 0'
        )
        batch_op.create_check_constraint(
            'ck_subscription_billing_cycle', "billing_cycle IN ('monthly', 'annual', 'triennial')"
        )
        batch_op.create_check_constraint('ck_subscription_term', "term IN ('P1M', 'P1Y', 'P3Y')")
        batch_op.create_check_constraint(
            'ck_subscription_next_quantity', 'next_quantity IS NULL OR next_quantity >= 1'
        )
        batch_op.create_foreign_key(
            'fk_subscription_availability', 'availability', ['availability_id'], ['id'], ondelete='RESTRICT'
        )
        batch_op.create_foreign_key(
            'fk_subscription_next_availability', 'availability', ['next_availability_id'], ['id'], ondelete='SET NULL'
        )
        batch_op.create_index('ix_subscription_availability_id', ['availability_id'], unique=False)


def _move_data():
    bind = op.get_bind()
    now = clock.utcnow()  # the portal's one clock (app/clock.py)
    first_of_month = clock.today().replace(day=1)
    product = sa.table(
        'product',
        sa.column('id', sa.Integer),
        sa.column('name', sa.String),
        sa.column('billing_cycle', sa.String),
        sa.column('unit_cost', Money),
        sa.column('unit_price', Money),
        sa.column('product_title', sa.String),
    )
    availability = sa.table(
        'availability',
        sa.column('id', sa.Integer),
        sa.column('product_id', sa.Integer),
        sa.column('term', sa.String),
        sa.column('billing_frequency', sa.String),
    )
    price = sa.table(
        'catalogue_price',
        sa.column('availability_id', sa.Integer),
        sa.column('valid_from', sa.Date),
        sa.column('unit_cost', SheetMoney),
        sa.column('erp_price', SheetMoney),
        sa.column('currency', sa.String),
        sa.column('market', sa.String),
        sa.column('imported_on', sa.DateTime),
    )
    subscription = sa.table(
        'subscription',
        sa.column('id', sa.Integer),
        sa.column('account_id', sa.Integer),
        sa.column('product_id', sa.Integer),
        sa.column('quantity', sa.Integer),
        sa.column('billing_cycle', sa.String),
        sa.column('term_started_on', sa.Date),
        sa.column('renew_on', sa.Date),
        sa.column('unit_price', Money),
        sa.column('unit_cost', Money),
        sa.column('ms_unit_cost', Money),
        sa.column('availability_id', sa.Integer),
        sa.column('term', sa.String),
    )
    usage = sa.table(
        'usage_point', sa.column('subscription_id', sa.Integer), sa.column('unit_price', Money)
    )
    batch = sa.table(
        'seat_batch',
        sa.column('subscription_id', sa.Integer),
        sa.column('account_id', sa.Integer),
        sa.column('kind', sa.String),
        sa.column('quantity', sa.Integer),
        sa.column('refundable', sa.Integer),
        sa.column('added_at', sa.DateTime),
        sa.column('refundable_until', sa.DateTime),
        sa.column('unit_price', Money),
    )

    products = {row.id: row for row in bind.execute(sa.select(product))}
    made: dict[tuple, int] = {}

    def availability_of(product_id: int, term: str, cycle: str) -> int:
        key = (product_id, term, cycle)
        if key not in made:
            row = products[product_id]
            made[key] = bind.execute(
                availability.insert()
                .values(product_id=product_id, term=term, billing_frequency=cycle)
                .returning(availability.c.id)
            ).scalar_one()
            months = _MONTHS[cycle]
            bind.execute(
                price.insert().values(
                    availability_id=made[key],
                    valid_from=first_of_month,
                    unit_cost=Decimal(row.unit_cost) * months,
                    erp_price=Decimal(row.unit_price) * months,
                    currency='NZD',
                    market='NZ',
                    imported_on=now,
                )
            )
        return made[key]

    for row in products.values():
        bind.execute(product.update().where(product.c.id == row.id).values(product_title=row.name))
        availability_of(row.id, 'P1Y', row.billing_cycle)

    # Subscriptions in pages of ids (a large portal), each page one statement per distinct change.
    last = 0
    while True:
        rows = bind.execute(
            sa.select(subscription).where(subscription.c.id > last).order_by(subscription.c.id).limit(2000)
        ).all()
        if not rows:
            break
        batches = []
        for row in rows:
            last = row.id
            term = _term(row.term_started_on, row.renew_on)
            months = _MONTHS[row.billing_cycle]
            bind.execute(
                subscription.update()
                .where(subscription.c.id == row.id)
                .values(
                    availability_id=availability_of(row.product_id, term, row.billing_cycle),
                    term=term,
                    unit_price=Decimal(row.unit_price) * months,
                    unit_cost=Decimal(row.unit_cost) * months,
                    ms_unit_cost=Decimal(row.unit_cost) * months,
                )
            )
            if months != 1:
                bind.execute(
                    usage.update()
                    .where(usage.c.subscription_id == row.id)
                    .values(unit_price=usage.c.unit_price * months)
                )
            if row.quantity >= 1:
                added = clock.start_of_day_utc(row.term_started_on)
                until = added + dt.timedelta(hours=168)
                batches.append(
                    {
                        'subscription_id': row.id,
                        'account_id': row.account_id,
                        'kind': 'purchase',
                        'quantity': row.quantity,
                        'refundable': row.quantity if until > now else 0,
                        'added_at': added,
                        'refundable_until': until,
                        'unit_price': Decimal(row.unit_price) * months,
                    }
                )
        if batches:
            bind.execute(batch.insert(), batches)

    sandbox = sa.table(
        'sandbox_subscription',
        sa.column('id', sa.Integer),
        sa.column('subscription_id', sa.String),
        sa.column('quantity', sa.Integer),
        sa.column('purchased_on', sa.Date),
        sa.column('term_started_on', sa.Date),
        sa.column('term_end', sa.Date),
    )
    sandbox_batch = sa.table(
        'sandbox_seat_batch',
        sa.column('subscription_id', sa.String),
        sa.column('quantity', sa.Integer),
        sa.column('added_at', sa.DateTime),
        sa.column('allowed_until', sa.DateTime),
    )
    bind.execute(
        sandbox.update().values(term_started_on=sandbox.c.purchased_on)
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(sandbox).where(sandbox.c.id > last).order_by(sandbox.c.id).limit(2000)
        ).all()
        if not rows:
            break
        batches = []
        for row in rows:
            last = row.id
            bind.execute(
                sandbox.update()
                .where(sandbox.c.id == row.id)
                .values(term_end=row.purchased_on + dt.timedelta(days=365))
            )
            if row.quantity >= 1:
                added = clock.start_of_day_utc(row.purchased_on)
                batches.append(
                    {
                        'subscription_id': row.subscription_id,
                        'quantity': row.quantity,
                        'added_at': added,
                        'allowed_until': added + dt.timedelta(hours=168),
                    }
                )
        if batches:
            bind.execute(sandbox_batch.insert(), batches)


def downgrade():
    bind = op.get_bind()
    product = sa.table(
        'product',
        sa.column('id', sa.Integer),
        sa.column('billing_cycle', sa.String),
        sa.column('unit_cost', Money),
        sa.column('unit_price', Money),
    )
    with op.batch_alter_table('product') as batch_op:
        batch_op.add_column(sa.Column('billing_cycle', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('unit_cost', Money, nullable=True))
        batch_op.add_column(sa.Column('unit_price', Money, nullable=True))
    # Each product's old price: its 1-year availability's latest price, per month again.
    for row in bind.execute(
        sa.text(
            "SELECT a.product_id, a.billing_frequency, p.unit_cost, p.erp_price FROM availability a "
            "JOIN catalogue_price p ON p.availability_id = a.id WHERE a.term = 'P1Y' "
            "ORDER BY a.product_id, CASE a.billing_frequency WHEN 'monthly' THEN 0 ELSE 1 END, p.valid_from DESC"
        )
    ).all()[::-1]:
        months = _MONTHS[row.billing_frequency]
        cycle = row.billing_frequency if row.billing_frequency in ('monthly', 'annual') else 'annual'
        bind.execute(
            product.update()
            .where(product.c.id == row.product_id)
            .values(
                billing_cycle=cycle,
                unit_cost=(Decimal(str(row.unit_cost)) / months).quantize(Decimal('0.01')),
                unit_price=(Decimal(str(row.erp_price)) / months).quantize(Decimal('0.01')),
            )
        )
    bind.execute(
        sa.text(
            "UPDATE product SET billing_cycle = 'monthly', unit_cost = 0, unit_price = 0 WHERE billing_cycle IS NULL"
        )
    )
    # Subscription prices per month again; triennial ones become annual (the old schema had no third cycle).
    bind.execute(
        sa.text(
            "UPDATE usage_point SET unit_price = unit_price / 12 WHERE subscription_id IN "
            "(SELECT id FROM subscription WHERE billing_cycle = 'annual')"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE subscription SET unit_price = unit_price / 12, unit_cost = unit_cost / 12 "
            "WHERE billing_cycle = 'annual'"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE subscription SET unit_price = unit_price / 36, unit_cost = unit_cost / 36, "
            "billing_cycle = 'annual' WHERE billing_cycle = 'triennial'"
        )
    )
    with op.batch_alter_table('product') as batch_op:
        batch_op.alter_column('billing_cycle', existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column('unit_cost', existing_type=Money, nullable=False)
        batch_op.alter_column('unit_price', existing_type=Money, nullable=False)
        batch_op.create_check_constraint('ck_product_billing_cycle', "billing_cycle IN ('monthly', 'annual')")
        batch_op.create_check_constraint('ck_product_money', 'unit_cost >= 0 AND unit_price >= 0')
        batch_op.drop_column('product_title')
    op.drop_index('ix_price_rule_subscription', table_name='price_rule')
    op.drop_index('ix_price_rule_lookup', table_name='price_rule')
    op.drop_table('price_rule')
    op.drop_index('ix_seat_batch_account', table_name='seat_batch')
    op.drop_index('ix_seat_batch_subscription', table_name='seat_batch')
    op.drop_table('seat_batch')
    with op.batch_alter_table('subscription') as batch_op:
        batch_op.drop_index('ix_subscription_availability_id')
        batch_op.drop_constraint('fk_subscription_next_availability', type_='foreignkey')
        batch_op.drop_constraint('fk_subscription_availability', type_='foreignkey')
        batch_op.drop_constraint('ck_subscription_next_quantity', type_='check')
        batch_op.drop_constraint('ck_subscription_term', type_='check')
        batch_op.drop_constraint('ck_subscription_billing_cycle', type_='check')
        batch_op.drop_constraint('ck_subscription_money', type_='check')
        batch_op.create_check_constraint('ck_subscription_money', 'unit_price >= 0 AND unit_cost >= 0')
        batch_op.create_check_constraint('ck_subscription_billing_cycle', "billing_cycle IN ('monthly', 'annual')")
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('next_scheduled_at')
        batch_op.drop_column('next_quantity')
        batch_op.drop_column('next_availability_id')
        batch_op.drop_column('ms_unit_cost')
        batch_op.drop_column('term')
        batch_op.drop_column('availability_id')
    with op.batch_alter_table('sandbox_subscription') as batch_op:
        batch_op.drop_index('ix_sandbox_subscription_cart_id')
        batch_op.drop_column('cart_id')
        batch_op.drop_column('next_quantity')
        batch_op.drop_column('next_billing_cycle')
        batch_op.drop_column('next_term')
        batch_op.drop_column('next_offer_id')
        batch_op.drop_column('term_end')
        batch_op.drop_column('term_started_on')
        batch_op.drop_column('term')
    op.drop_index(op.f('ix_sandbox_cart_tenant_id'), table_name='sandbox_cart')
    op.drop_table('sandbox_cart')
    op.drop_index(op.f('ix_sandbox_seat_batch_subscription_id'), table_name='sandbox_seat_batch')
    op.drop_table('sandbox_seat_batch')
    op.drop_index('ix_catalogue_price_valid_from', table_name='catalogue_price')
    op.drop_table('catalogue_price')
    op.drop_table('availability')
