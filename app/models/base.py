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


class IssuedBetween:
    """A row between an issuer and a buyer account (an invoice, its lines): security/scoping.py shows it to both
    sides — a reseller sees what it issued and what it was billed, a customer what it was billed — and lets only
    the issuer's side change it."""

    @declared_attr
    def issuer_id(cls) -> Mapped[int]:
        return mapped_column(Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False)

    @declared_attr
    def buyer_id(cls) -> Mapped[int]:
        return mapped_column(Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False)


class OperatorOnly:
    """A row only the operator's staff (the ALL scope) may read: security/scoping.py hides it from every other."""
