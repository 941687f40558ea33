"""The search box at the top of the partner portal: accounts in scope by name, onmicrosoft domain or contact email."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, or_, select

from app.extensions import db
from app.models.accounts import OPERATOR, Account, MicrosoftTenant

SUGGESTIONS = 10


@dataclass(frozen=True)
class Match:
    id: int
    name: str
    kind: str
    domain: str | None

    def as_json(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "domain": self.domain}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_accounts(query: str, limit: int = SUGGESTIONS) -> list[Match]:
    """Resellers and customers in scope matching ``query``; names starting with it come first."""
    text = " ".join(query.split()).lower()[:100]
    if not text:
        return []
    pattern = _like(text)
    domain = func.lower(MicrosoftTenant.domain_prefix + ".onmicrosoft.com")
    starts = case((func.lower(Account.name).like(_like(text)[1:], escape="\\"), 0), else_=1)
    rows = db.session.execute(
        select(Account.id, Account.name, Account.kind, MicrosoftTenant.domain_prefix)
        .outerjoin(MicrosoftTenant, MicrosoftTenant.account_id == Account.id)
        .where(
            Account.kind != OPERATOR,
            or_(
                func.lower(Account.name).like(pattern, escape="\\"),
                func.lower(Account.contact_email).like(pattern, escape="\\"),
                domain.like(pattern, escape="\\"),
            ),
        )
        .order_by(starts, func.lower(Account.name), Account.id)
        .limit(limit)
    ).all()
    return [
        Match(r.id, r.name, r.kind, f"{r.domain_prefix}.onmicrosoft.com" if r.domain_prefix else None) for r in rows
    ]
