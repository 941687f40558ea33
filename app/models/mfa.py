"""Two-factor authentication: a login's TOTP credential (its secret encrypted at rest) and its one-time recovery
codes (stored hashed). security/mfa.py checks codes; app/services/mfa.py enrols, resets and turns it off."""

from __future__ import annotations

import datetime as dt

from flask_appbuilder import Model
from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import TenantOwned, utcnow


class MfaCredential(TenantOwned, Model):
    """One login's authenticator app: at most one per login, on the login's own account."""

    __tablename__ = "mfa_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
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


class MfaRecoveryCode(TenantOwned, Model):
    """A one-time recovery code, as an HMAC of the code; used once, then kept with the time it was used."""

    __tablename__ = "mfa_recovery_code"
    __table_args__ = (UniqueConstraint("credential_id", "code_hash", name="uq_mfa_recovery_code_hash"),)
    __account_index__ = False  # looked up by credential; the account column serves the scope only

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("mfa_credential.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    credential = relationship(MfaCredential, back_populates="recovery_codes")
