"""PortalUser: FAB's login (``ab_user``), a person who signs in; Membership: what a customer-portal login may do in
one customer account (the flags of the guide's Users tab, and so its role there).

Who owns a login: operator and partner staff belong to their own account (one each). A customer-portal login belongs
to its reseller (``account_id`` is the reseller's: its CSP Admins and operator staff manage the person's password,
two-factor authentication and name) and works in customer accounts through its memberships — all of them in that one
reseller's tree (its customers and its own customer portal), so a login is never shared across resellers.
"""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import User
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.models.base import TenantOwned, utcnow

OPERATOR_PORTAL, PARTNER_PORTAL, CUSTOMER_PORTAL = "operator", "partner", "customer"
PORTALS = (OPERATOR_PORTAL, PARTNER_PORTAL, CUSTOMER_PORTAL)
DELETED_MARK = "#deleted-"  # appended after the domain when a login is deleted: no valid address ends so


def address_of(email: str) -> str:
    """A login's address as people know it (a deleted login's stored address carries the mark, freeing it)."""
    return email.split(DELETED_MARK, 1)[0]


class PortalUser(User):
    """A person who signs in. Emails are stored lower-case, so FAB's unique ``email`` is case-insensitive.

    Not ``TenantOwned``: security/scoping.py gives logins a rule of their own — a login is seen where its owning account
    is in scope, and in a customer's scope where it has a membership there (and one's own login, always)."""

    __tablename__ = "ab_user"
    __table_args__ = (
        CheckConstraint("portal IN ('operator', 'partner', 'customer')", name="ck_ab_user_portal"),
        {"extend_existing": True},
    )

    account_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    account = relationship("Account", foreign_keys=[account_id])
    portal: Mapped[str] = mapped_column(String(16), nullable=False, default=CUSTOMER_PORTAL)
    mobile: Mapped[str | None] = mapped_column(String(32))
    is_csp_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
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

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user", order_by="Membership.id")

    @property
    def is_active(self) -> bool:
        """Active, not deleted, and (staff) its account not disabled: anything else cannot sign in. A customer-portal
        login's access is its memberships' (security/memberships.py): its reseller being disabled is not its own."""
        if not self.active or self.deleted_at is not None:
            return False
        if self.portal == CUSTOMER_PORTAL:
            return True
        account = self.account
        return account is not None and account.is_active

    @property
    def name(self) -> str:
        return self.get_full_name()

    @property
    def may_use_customer_portal(self) -> bool:
        """A customer-portal login with an enabled, CP3-activated membership (in the accounts the scope shows)."""
        return any(m.cp3_enabled and m.active and m.deleted_at is None for m in self.memberships)

    @property
    def status_label(self) -> str:
        return "Active" if self.active and self.deleted_at is None else "Disabled"


class Membership(TenantOwned, Model):
    """A customer-portal login's place in one customer account (or in its reseller's own customer portal): the flags
    of the guide's Users tab — Admin, Master Admin, CP3 enabled, its status — and so its role there. Disabled or
    deleted, it gives no access; sessions working in it end at their next request."""

    __tablename__ = "membership"
    __account_index__ = False  # the unique (account_id, user_id) index starts with it
    __table_args__ = (
        UniqueConstraint("account_id", "user_id", name="uq_membership_account_user"),
        Index("ix_membership_user", "user_id", "last_used_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="RESTRICT"), nullable=False)
    is_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
    is_master_admin: Mapped[bool] = mapped_column(nullable=False, default=False)
    cp3_enabled: Mapped[bool] = mapped_column(nullable=False, default=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When its login last chose it (the account switcher lists the last used first).
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Sessions that chose this membership before this moment end there (disabled, deleted, demoted).
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    user: Mapped[PortalUser] = relationship(back_populates="memberships", lazy="joined", innerjoin=True)

    @property
    def role_name(self) -> str:
        from security.permissions import role_for

        return role_for(CUSTOMER_PORTAL, admin=self.is_admin, master_admin=self.is_master_admin)

    @property
    def is_live(self) -> bool:
        """Gives access now: enabled, not deleted, its account enabled, its login able to sign in."""
        account = self.account
        return (
            bool(self.active)
            and self.deleted_at is None
            and account is not None
            and account.is_active
            and self.user.is_active
        )

    @property
    def status_label(self) -> str:
        return "Active" if self.active and self.deleted_at is None else "Disabled"

    # The person, as the Users tab shows them beside the membership's flags.
    @property
    def email(self) -> str:
        return self.user.email

    @property
    def first_name(self) -> str:
        return self.user.first_name

    @property
    def last_name(self) -> str:
        return self.user.last_name

    @property
    def mobile(self) -> str | None:
        return self.user.mobile

    def get_full_name(self) -> str:
        return self.user.get_full_name()

    @property
    def name(self) -> str:
        return self.user.get_full_name()

    @property
    def last_login(self):
        return self.user.last_login

    @property
    def password_set_at(self):
        return self.user.password_set_at

    @property
    def activation_error(self):
        return self.user.activation_error

    @property
    def mfa(self):
        return self.user.mfa

    def __repr__(self) -> str:
        return f"{self.user.email} @ {self.account_id}"
