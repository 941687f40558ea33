"""Migration 0009 (memberships) from the schema as it was, with data in it: every customer-portal login becomes a
login owned by its reseller with one membership carrying its flags and status; ids, events and MFA stay valid; and
the downgrade puts the flags back."""

from __future__ import annotations

import datetime as dt

import flask_migrate
from sqlalchemy import text

from app.extensions import db
from security import scoping
from tests.conftest import make_app
from tests.integration.test_migrations import SCHEMA, _drift, _fresh_database_url

NOW = dt.datetime(2026, 11, 30, 22, 0, 0)


def _rows(sql: str, **params) -> list[tuple]:
    return [tuple(row) for row in db.session.execute(text(sql), params).all()]


def _seed_old_schema() -> dict:
    """Accounts, roles and logins as 0008 stored them (flags on ab_user, one role per login)."""
    run = db.session.execute
    run(
        text(
            "INSERT INTO account (id, kind, parent_id, name, status, country, created_on) VALUES "
            "(1, 'operator', NULL, 'Op', 'active', 'NZ', :now), "
            "(2, 'reseller', 1, 'Alpha', 'active', 'NZ', :now), "
            "(3, 'customer', 2, 'Aardvark', 'active', 'NZ', :now), "
            "(4, 'customer', 2, 'Anchor', 'active', 'NZ', :now)"
        ),
        {"now": NOW},
    )
    roles = {"Partner CSP Admin": 1, "Customer Master Admin": 2, "Customer Admin": 3, "Customer User": 4}
    for name, role_id in roles.items():
        run(text("INSERT INTO ab_role (id, name) VALUES (:id, :name)"), {"id": role_id, "name": name})
    logins = [
        # id, account, portal, email, csp, admin, master, cp3, active, deleted_at, role
        (10, 2, "partner", "admin@alpha.example", True, False, False, False, True, None, 1),
        (11, 3, "customer", "master@aardvark.example", False, True, True, True, True, None, 2),
        (12, 3, "customer", "off@aardvark.example", False, False, False, True, False, None, 4),
        (13, 4, "customer", "gone@anchor.example#deleted-13", False, True, False, False, False, NOW, 3),
        (14, 2, "customer", "own@alpha.example", False, True, True, True, True, None, 2),
    ]
    for uid, account, portal, email, csp, admin, master, cp3, active, deleted, role in logins:
        run(
            text(
                "INSERT INTO ab_user (id, first_name, last_name, username, password, active, email, account_id, "
                "portal, is_csp_admin, is_admin, is_master_admin, cp3_enabled, deleted_at, created_on, changed_on, "
                "login_count, fail_login_count, last_login) VALUES (:id, 'F', 'L', :email, 'x', :active, :email, "
                ":account, :portal, :csp, :admin, :master, :cp3, :deleted, :now, :now, 0, 0, :now)"
            ),
            dict(
                id=uid,
                email=email,
                active=active,
                account=account,
                portal=portal,
                csp=csp,
                admin=admin,
                master=master,
                cp3=cp3,
                deleted=deleted,
                now=NOW,
            ),
        )
        run(
            text("INSERT INTO ab_user_role (id, user_id, role_id) VALUES (:id, :uid, :role)"),
            {"id": uid, "uid": uid, "role": role},
        )
    run(
        text(
            "INSERT INTO mfa_credential (id, account_id, user_id, secret, enrolled_at) VALUES (1, 3, 11, 'token', :now)"
        ),
        {"now": NOW},
    )
    run(text("INSERT INTO mfa_recovery_code (id, account_id, credential_id, code_hash) VALUES (1, 3, 1, 'h')"))
    run(
        text(
            "INSERT INTO event (id, occurred_at, actor_id, actor_label, action, summary, account_id) "
            "VALUES (1, :now, 11, 'master@aardvark.example', 'auth.login', 'signed in', 3)"
        ),
        {"now": NOW},
    )
    db.session.commit()
    return roles


def test_upgrade_turns_each_customer_login_into_one_membership_and_downgrade_restores(app, tmp_path, database_url):
    fresh = make_app(tmp_path, _fresh_database_url(database_url, tmp_path))
    with fresh.app_context(), scoping.bypass(SCHEMA):
        flask_migrate.upgrade(revision="0008_session_security")
        _seed_old_schema()
        db.session.remove()
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert _drift(connection) == []

        memberships = _rows(
            "SELECT user_id, account_id, is_admin, is_master_admin, cp3_enabled, active, deleted_at IS NOT NULL "
            "FROM membership ORDER BY user_id"
        )
        truthy = [tuple(bool(v) if isinstance(v, int) and i > 1 else v for i, v in enumerate(m)) for m in memberships]
        assert truthy == [
            (11, 3, True, True, True, True, False),
            (12, 3, False, False, True, False, False),  # disabled by its customer: the membership is
            (13, 4, True, False, False, False, True),  # deleted: stays deleted
            (14, 2, True, True, True, True, False),  # a reseller's own customer portal
        ]
        logins = _rows("SELECT id, account_id, active, email FROM ab_user ORDER BY id")
        assert [(i, a, bool(act)) for i, a, act, _ in logins] == [
            (10, 2, True),
            (11, 2, True),  # owned by the reseller now
            (12, 2, True),  # the login itself is not disabled: its membership is
            (13, 2, False),  # a deleted login stays deleted (and its address freed)
            (14, 2, True),
        ]
        # Ids stay: events and MFA still name the same logins; MFA follows its login's owner.
        assert _rows("SELECT actor_id, account_id FROM event") == [(11, 3)]
        assert _rows("SELECT user_id, account_id FROM mfa_credential") == [(11, 2)]
        assert _rows("SELECT account_id FROM mfa_recovery_code") == [(2,)]
        # Customer logins have no roles of their own any more; staff keep theirs.
        assert _rows("SELECT user_id, role_id FROM ab_user_role ORDER BY user_id") == [(10, 1)]
        columns = {c["name"] for c in __import__("sqlalchemy").inspect(db.engine).get_columns("ab_user")}
        assert not {"is_admin", "is_master_admin", "cp3_enabled"} & columns

        db.session.rollback()  # no read of ours holds a lock the downgrade's ALTER TABLE waits for (PostgreSQL)
        flask_migrate.downgrade(revision="0008_session_security")
        restored = _rows(
            "SELECT id, account_id, is_admin, is_master_admin, cp3_enabled, active FROM ab_user ORDER BY id"
        )
        assert [(i, a, bool(ad), bool(ma), bool(cp), bool(act)) for i, a, ad, ma, cp, act in restored] == [
            (10, 2, False, False, False, True),
            (11, 3, True, True, True, True),
            (12, 3, False, False, True, False),
            (13, 4, True, False, False, False),
            (14, 2, True, True, True, True),
        ]
        roles = dict(_rows("SELECT user_id, role_id FROM ab_user_role"))
        assert roles == {10: 1, 11: 2, 12: 4, 13: 3, 14: 2}
        assert _rows("SELECT account_id FROM mfa_credential") == [(3,)]
        db.session.remove()
        db.engine.dispose()
