"""Make the database's roles match security/permissions.py (run by `flask portal sync-roles`, a deploy step)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask_appbuilder.security.sqla.models import Permission, PermissionView, Role, ViewMenu

from security.permissions import ROLES, permission_pairs


@dataclass
class RoleChanges:
    added: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    removed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    created_roles: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.created_roles or any(self.added.values()) or any(self.removed.values()))

    def lines(self) -> list[str]:
        out = [f"create role {name}" for name in self.created_roles]
        for role, pairs in self.added.items():
            out += [f"{role}: + {perm} on {view}" for perm, view in sorted(pairs)]
        for role, pairs in self.removed.items():
            out += [f"{role}: - {perm} on {view}" for perm, view in sorted(pairs)]
        return out


def _permission_view(session, cache: dict, perm_name: str, view_name: str) -> PermissionView:
    key = (perm_name, view_name)
    if key in cache:
        return cache[key]
    perm = session.query(Permission).filter_by(name=perm_name).one_or_none() or Permission(name=perm_name)
    view = session.query(ViewMenu).filter_by(name=view_name).one_or_none() or ViewMenu(name=view_name)
    session.add_all([perm, view])
    session.flush()
    pv = session.query(PermissionView).filter_by(permission_id=perm.id, view_menu_id=view.id).one_or_none()
    if pv is None:
        pv = PermissionView(permission=perm, view_menu=view)
        session.add(pv)
        session.flush()
    cache[key] = pv
    return pv


def sync_roles(session, dry_run: bool = False) -> RoleChanges:
    """Add what each declared role lacks and remove what it should not have. ``dry_run`` changes nothing."""
    changes = RoleChanges()
    cache: dict = {}
    for role_name in ROLES:
        wanted = permission_pairs(role_name)
        role = session.query(Role).filter_by(name=role_name).one_or_none()
        if role is None:
            changes.created_roles.append(role_name)
            current: dict[tuple[str, str], PermissionView] = {}
            if not dry_run:
                role = Role(name=role_name)
                session.add(role)
        else:
            current = {(pv.permission.name, pv.view_menu.name): pv for pv in role.permissions}
        changes.added[role_name] = sorted(wanted - current.keys())
        changes.removed[role_name] = sorted(current.keys() - wanted)
        if dry_run:
            continue
        for pair in changes.added[role_name]:
            role.permissions.append(_permission_view(session, cache, *pair))
        for pair in changes.removed[role_name]:
            role.permissions.remove(current[pair])
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return changes
