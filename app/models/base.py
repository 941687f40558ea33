"""What every model shares: UTC time, money columns and the tenant-ownership marker."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, Numeric
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from app.clock import utcnow  # noqa: F401 - the models' default time, from the one clock

# NZD amounts: exact cents, never float (DESIGN.md rule 8).
Money = Numeric(12, 2, asdecimal=True)


class TenantOwned:
    """A row that belongs to one account; security/scoping.py decides visibility from ``account_id``.

    ``__account_index__ = False`` where a composite index already starts with ``account_id``."""

    __account_index__ = True

    @declared_attr
    def account_id(cls) -> Mapped[int]:
        return mapped_column(
            Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False, index=cls.__account_index__
        )

    @declared_attr
    def account(cls) -> Mapped["Account"]:  # noqa: F821
        return relationship("Account", foreign_keys=[cls.account_id])
