"""PortalUser: FAB's login (``ab_user``) extended with the account, portal and the flags of the guide's tables."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder.security.sqla.models import User
from sqlalchemy import CheckConstraint, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.models.base import TenantOwned

OPERATOR_PORTAL, PARTNER_PORTAL, CUSTOMER_PORTAL = "operator", "partner", "customer"
PORTALS = (OPERATOR_PORTAL, PARTNER_PORTAL, CUSTOMER_PORTAL)
DELETED_MARK = "#deleted-"  # appended after the domain when a login is deleted: no valid address ends so


def address_of(email: str) -> str:
    """A login's address as people know it (a deleted login's stored address carries the mark, freeing it)."""
    return email.split(DELETED_MARK, 1)[0]


class PortalUser(TenantOwned, User):
    """A person who signs in. Emails are stored lower-case, so FAB's unique ``email`` is case-insensitive."""

    __tablename__ = "ab_user"
    __table_args__ = (
        CheckConstraint("portal IN ('operator', 'partner', 'customer')", name="ck_ab_user_portal"),
        {"extend_existing": True},
    )

    portal: Mapped[str] = mapped_column(String(16), nullable=False, default=CUSTOMER_PORTAL)
    mobile: Mapped[str | None] = mapped_column(String(32))
    is_csp_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
    is_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
    is_master_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
    cp3_enabled: Mapped[bool] = mapped_column(nullable=False, default=False)
    password_set_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Sessions signed in before this moment end at their next request (disabled, deleted, MFA reset…): re-enabling
    # the login does not bring old cookies back.
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The open "set your password" link: its single-use nonce, when it was sent, and why sending failed.
    activation_nonce: Mapped[str | None] = mapped_column(String(32))
    activation_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    activation_error: Mapped[str | None] = mapped_column(String(300))
    # Two-factor authentication (app/models/mfa.py), loaded with the login: the per-request check costs no query.
    mfa = relationship(
        "MfaCredential", back_populates="user", uselist=False, lazy="joined", cascade="all, delete-orphan"
    )

    @validates("email", "username")
    def _lower(self, key: str, value: str) -> str:
        return value.strip().lower() if value else value

    @property
    def is_active(self) -> bool:
        """Active, not deleted, and its account not disabled: anything else cannot sign in."""
        account = self.account
        return bool(self.active) and self.deleted_at is None and account is not None and account.is_active

    @property
    def name(self) -> str:
        return self.get_full_name()

    @property
    def status_label(self) -> str:
        return "Active" if self.active and self.deleted_at is None else "Disabled"
