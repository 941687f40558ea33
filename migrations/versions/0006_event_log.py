"""event log: append-only (triggers), request ids, actors kept

Revision ID: 0006_event_log
Revises: 0005_form_submissions
Create Date: 2026-11-30 22:30:00.000000

"""
from alembic import op
import sqlalchemy as sa
from flask import current_app, has_app_context

from app import db_guard


# revision identifiers, used by Alembic.
revision = '0006_event_log'
down_revision = '0005_form_submissions'
branch_labels = None
depends_on = None

# Names SQLite's unnamed foreign keys get for the batch (PostgreSQL named them <table>_<column>_fkey itself).
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
ACTOR_KEYS = ("actor_id", "on_behalf_of_id")


def _retention_days() -> int:
    if has_app_context():
        return current_app.config.get("EVENT_RETENTION_DAYS") or db_guard.DEFAULT_RETENTION_DAYS
    return db_guard.DEFAULT_RETENTION_DAYS


def _actor_keys(batch_op, ondelete, first_names) -> None:
    """An event's actor keys: SET NULL would be an UPDATE of the event the trigger refuses, so plain keys."""
    for column in ACTOR_KEYS:
        batch_op.drop_constraint(first_names(column), type_="foreignkey")
        batch_op.create_foreign_key(f"event_{column}_fkey", "ab_user", [column], ["id"], ondelete=ondelete)


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table('event', schema=None, naming_convention=NAMING) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_event_time', ['occurred_at', 'id'], unique=False)
        batch_op.create_index('ix_event_on_behalf_of_id', ['on_behalf_of_id'], unique=False)
        batch_op.create_index('ix_event_actor_label', ['actor_label'], unique=False)
        _actor_keys(
            batch_op,
            None,
            lambda column: f"fk_event_{column}_ab_user" if sqlite else f"event_{column}_fkey",
        )
    # After the batch: on SQLite it rebuilt the table, and a rebuilt table has no triggers.
    db_guard.install(op.get_bind(), _retention_days())


def downgrade():
    db_guard.remove(op.get_bind())
    with op.batch_alter_table('event', schema=None, naming_convention=NAMING) as batch_op:
        _actor_keys(batch_op, 'SET NULL', lambda column: f"event_{column}_fkey")
        batch_op.drop_index('ix_event_actor_label')
        batch_op.drop_index('ix_event_on_behalf_of_id')
        batch_op.drop_index('ix_event_time')
        batch_op.drop_column('request_id')
