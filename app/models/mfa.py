"""Two-factor authentication: a login's TOTP credential (its secret encrypted at rest) and its one-time recovery
codes (stored hashed). security/mfa.py checks codes; app/services/mfa.py enrols, resets and turns it off."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import utcnow


class MfaCredential(Model):
    """One login's authenticator app: at most one per login. The person's, not a tenant's: it is reached only through
    its login (which security/scoping.py scopes), so a login working in any of its customer accounts keeps one second
    factor. ``account_id`` records the login's owning account when it was enrolled."""

    __tablename__ = "mfa_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, unique=True)
    # A Fernet token of the base32 secret (key derived from SECRET_KEY), never the secret itself.
    secret: Mapped[str] = mapped_column(String(255), nullable=False)
    enrolled_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # The TOTP time step of the last accepted code: that step and any earlier one are refused (no replay).
    last_step: Mapped[int | None] = mapped_column(Integer)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    user = relationship("PortalUser", back_populates="mfa")
    recovery_codes: Mapped[list[MfaRecoveryCode]] = relationship(
        back_populates="credential", cascade="all, delete-orphan", passive_deletes=True, order_by="MfaRecoveryCode.id"
    )


class MfaRecoveryCode(Model):
    """A one-time recovery code, as an HMAC of the code; used once, then kept with the time it was used. Reached
    through its credential only."""

    __tablename__ = "mfa_recovery_code"
    __table_args__ = (UniqueConstraint("credential_id", "code_hash", name="uq_mfa_recovery_code_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("account.id", ondelete="RESTRICT"), nullable=False)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("mfa_credential.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    credential = relationship(MfaCredential, back_populates="recovery_codes")
