"""The account tree (operator ← reseller ← customer), Microsoft tenants and the default master admin placeholder."""

from __future__ import annotations

import datetime as dt
import re

from flask_appbuilder import Model
from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TenantOwned, utcnow

OPERATOR, RESELLER, CUSTOMER = "operator", "reseller", "customer"
ACCOUNT_KINDS = (OPERATOR, RESELLER, CUSTOMER)
ACTIVE, DISABLED = "active", "disabled"


class Account(Model):
    """One organisation. Scoping treats an account as owned by itself and by its parent reseller."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint("kind IN ('operator', 'reseller', 'customer')", name="ck_account_kind"),
        CheckConstraint(
            "(kind = 'operator' AND parent_id IS NULL) OR (kind <> 'operator' AND parent_id IS NOT NULL)",
            name="ck_account_parent",
        ),
        CheckConstraint("status IN ('active', 'disabled')", name="ck_account_status"),
        Index("ix_account_parent_kind_created", "parent_id", "kind", "created_on"),
        Index("ix_account_kind_created", "kind", "created_on"),
        Index("ix_account_name", "name"),  # Accounts ▸ List all is sorted by name
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(160), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=ACTIVE, server_default=ACTIVE)
    contact_first_name: Mapped[str | None] = mapped_column(String(40))
    contact_last_name: Mapped[str | None] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    address_line1: Mapped[str | None] = mapped_column(String(120))
    address_line2: Mapped[str | None] = mapped_column(String(120))
    city: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    postcode: Mapped[str | None] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2), nullable=False, default="NZ", server_default="NZ")
    it_support_email: Mapped[str | None] = mapped_column(String(320))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # Its users' sessions signed in before this moment end (the account was disabled): re-enabling it revives none.
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    parent: Mapped[Account | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list["Account"]] = relationship(back_populates="parent", lazy="raise_on_sql")
    tenant: Mapped[MicrosoftTenant | None] = relationship(
        uselist=False, viewonly=True, primaryjoin="Account.id == MicrosoftTenant.account_id"
    )

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or f"account-{self.id}"

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    def __repr__(self) -> str:
        return self.name


TENANT_STATUSES = ("pending", "provisioning", "active", "failed", "invited")


class MicrosoftTenant(TenantOwned, Model):
    """A customer's Microsoft 365 tenant: ``<domain_prefix>.onmicrosoft.com``."""

    __account_index__ = False
    __tablename__ = "microsoft_tenant"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'provisioning', 'active', 'failed', 'invited')", name="ck_microsoft_tenant_status"
        ),
        CheckConstraint("link_type IN ('created', 'linked')", name="ck_microsoft_tenant_link_type"),
        Index("uq_microsoft_tenant_account", "account_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_prefix: Mapped[str] = mapped_column(String(27), nullable=False, unique=True)
    tenant_guid: Mapped[str | None] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    link_type: Mapped[str] = mapped_column(String(16), nullable=False, default="created")
    agreement_signer_name: Mapped[str | None] = mapped_column(String(120))
    agreement_signer_email: Mapped[str | None] = mapped_column(String(320))
    agreement_date: Mapped[dt.date | None] = mapped_column(Date)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # What the user typed for the new tenant (JSON), kept so that Retry after a failure needs nothing retyped.
    provisioning_request: Mapped[str | None] = mapped_column(Text)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    provisioned_on: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When it last went into "provisioning": past TENANT_PROVISIONING_TIMEOUT_SECONDS, the recoverer asks Microsoft.
    provisioning_since: Mapped[dt.datetime | None] = mapped_column(DateTime)

    # Not a column: the first admin's credentials, in memory for the request that created the tenant alone (issue 15,
    # app/services/handover.py FreshCredentials).
    fresh_credentials = None

    @property
    def primary_domain(self) -> str:
        return f"{self.domain_prefix}.onmicrosoft.com"

    def __repr__(self) -> str:
        return self.primary_domain


class PlaceholderUser(TenantOwned, Model):
    """The guide's default master admin on a new customer. Not a login: FAB's ``ab_user.email`` is unique and
    this address repeats on every customer, so it stays here until edited to a real address and activated."""

    __tablename__ = "placeholder_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(64), nullable=False, default="Master")
    last_name: Mapped[str] = mapped_column(String(64), nullable=False, default="Admin")
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    mobile: Mapped[str | None] = mapped_column(String(32))
    is_admin: Mapped[bool] = mapped_column(nullable=False, default=True)
    is_master_admin: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class CredentialHandover(TenantOwned, Model):
    """A new tenant's first global admin, handed to the customer's master admin through a one-time link (issue 15).

    The temporary password is never stored in clear: ``secret`` is a Fernet token under a key derived from both
    ``SECRET_KEY`` and the link's token, and only the token's SHA-256 is kept — the database alone cannot read it,
    and neither can the mail (which holds the link, not the password). Opening the link shows it once and clears
    ``secret``; so does expiry."""

    __tablename__ = "credential_handover"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("microsoft_tenant.id", ondelete="SET NULL"))
    user_name: Mapped[str] = mapped_column(String(320), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    secret: Mapped[str | None] = mapped_column(Text)
    recipient_email: Mapped[str] = mapped_column(String(320), nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("ab_user.id", ondelete="SET NULL"))
    created_on: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    opened_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
