"""Migration 0017 (new commerce) from the schema as it was, with data in it: every product becomes a SKU with a
priced 1-year availability, every subscription keeps its row and its money (now per billing period), gets the term its
dates show and one seat batch; the sandbox's subscriptions get their term; and the downgrade puts the prices back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import flask_migrate
import time_machine
from sqlalchemy import text

from app.extensions import db
from security import scoping
from tests.conftest import make_app
from tests.integration.test_migrations import SCHEMA, _drift, _fresh_database_url

# 10:00 on 3 December in New Zealand (21:00 UTC the day before).
NOW = dt.datetime(2026, 12, 2, 21, 0, 0, tzinfo=dt.UTC)
BEFORE = NOW.replace(tzinfo=None)


def _rows(sql: str, **params) -> list[tuple]:
    """Raw rows; numbers SQLite hands back as floats are read as the decimals they print as."""
    return [
        tuple(Decimal(str(v)) if isinstance(v, float) else v for v in row)
        for row in db.session.execute(text(sql), params).all()
    ]


def _seed_old_schema() -> None:
    run = db.session.execute
    run(
        text(
            "INSERT INTO account (id, kind, parent_id, name, status, country, created_on) VALUES "
            "(1, 'operator', NULL, 'Op', 'active', 'NZ', :now), (2, 'reseller', 1, 'Alpha', 'active', 'NZ', :now), "
            "(3, 'customer', 2, 'Aardvark', 'active', 'NZ', :now)"
        ),
        {"now": BEFORE},
    )
    run(
        text(
            "INSERT INTO product (id, name, sku, billing_cycle, unit_cost, unit_price, created_on) VALUES "
            "(1, 'Basic', 'CFQ7TTC0LH18:0001', 'monthly', 7.65, 9.00, :now), "
            "(2, 'E3', 'CFQ7TTC0LFLX:0001', 'annual', 51.00, 60.00, :now)"
        ),
        {"now": BEFORE},
    )
    subs = [
        # id, product, quantity, cycle, started, renews, price, cost
        (1, 1, 5, "monthly", dt.date(2026, 3, 1), dt.date(2027, 3, 1), "9.00", "7.65"),  # a year: P1Y monthly
        (2, 1, 2, "monthly", dt.date(2026, 11, 30), dt.date(2026, 12, 30), "9.00", "7.65"),  # a month, in window
        (3, 2, 3, "annual", dt.date(2026, 6, 1), dt.date(2027, 6, 1), "60.00", "51.00"),  # P1Y annual
        (4, 2, 1, "annual", dt.date(2025, 1, 1), dt.date(2028, 1, 1), "55.00", "50.00"),  # three years
        (5, 1, 0, "monthly", dt.date(2026, 1, 1), dt.date(2027, 1, 1), "9.00", "7.65"),  # no seats: no batch
    ]
    for sid, pid, quantity, cycle, started, renews, price, cost in subs:
        run(
            text(
                "INSERT INTO subscription (id, account_id, product_id, quantity, assigned, renew_on, term_started_on, "
                "billing_cycle, unit_price, unit_cost, auto_renew, status, created_on) VALUES (:id, 3, :pid, :q, 0, "
                ":renews, :started, :cycle, :price, :cost, true, 'active', :now)"
            ),
            dict(id=sid, pid=pid, q=quantity, renews=renews, started=started, cycle=cycle, price=price, cost=cost)
            | {"now": BEFORE},
        )
        run(
            text(
                "INSERT INTO usage_point (account_id, subscription_id, recorded_at, quantity, assigned, unit_price) "
                "VALUES (3, :id, :now, :q, 0, :price)"
            ),
            {"id": sid, "now": BEFORE, "q": quantity, "price": price},
        )
    run(
        text(
            "INSERT INTO sandbox_subscription (id, subscription_id, tenant_id, offer_id, quantity, auto_renew, "
            "billing_cycle, status, purchased_on) VALUES (1, 'sub-1', 'tenant-1', 'CFQ7TTC0LH18:0001', 5, true, "
            "'monthly', 'active', :day)"
        ),
        {"day": dt.date(2026, 3, 1)},
    )
    db.session.commit()


def test_upgrade_moves_products_and_subscriptions_onto_availabilities_and_downgrade_restores(
    app, tmp_path, database_url
):
    fresh = make_app(tmp_path, _fresh_database_url(database_url, tmp_path))
    with fresh.app_context(), scoping.bypass(SCHEMA), time_machine.travel(NOW, tick=False):
        flask_migrate.upgrade(revision="0016_reconciliation")
        _seed_old_schema()
        db.session.remove()
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert _drift(connection) == []

        assert _rows("SELECT id, name, product_title FROM product ORDER BY id") == [
            (1, "Basic", "Basic"),
            (2, "E3", "E3"),
        ]
        offers = {
            (pid, term, cycle): aid
            for aid, pid, term, cycle in _rows(
                "SELECT id, product_id, term, billing_frequency FROM availability ORDER BY id"
            )
        }
        assert set(offers) == {
            (1, "P1Y", "monthly"),
            (2, "P1Y", "annual"),
            (1, "P1M", "monthly"),
            (2, "P3Y", "annual"),
        }
        prices = {
            aid: (Decimal(cost), Decimal(erp), str(start))
            for aid, cost, erp, start in _rows(
                "SELECT availability_id, unit_cost, erp_price, valid_from FROM catalogue_price"
            )
        }
        # 3 December in New Zealand: prices from the 1st of December; annual ones for twelve months.
        assert prices[offers[(1, "P1Y", "monthly")]] == (Decimal("7.65"), Decimal("9.00"), "2026-12-01")
        assert prices[offers[(2, "P1Y", "annual")]] == (Decimal("612.00"), Decimal("720.00"), "2026-12-01")

        subs = _rows(
            "SELECT id, availability_id, term, billing_cycle, unit_price, unit_cost, ms_unit_cost FROM subscription "
            "ORDER BY id"
        )
        assert [(s[0], s[1], s[2], s[3], Decimal(s[4]), Decimal(s[5]), Decimal(s[6])) for s in subs] == [
            (1, offers[(1, "P1Y", "monthly")], "P1Y", "monthly", Decimal("9.00"), Decimal("7.65"), Decimal("7.65")),
            (2, offers[(1, "P1M", "monthly")], "P1M", "monthly", Decimal("9.00"), Decimal("7.65"), Decimal("7.65")),
            (3, offers[(2, "P1Y", "annual")], "P1Y", "annual", Decimal("720.00"), Decimal("612.00"), Decimal("612.00")),
            (4, offers[(2, "P3Y", "annual")], "P3Y", "annual", Decimal("660.00"), Decimal("600.00"), Decimal("600.00")),
            (5, offers[(1, "P1Y", "monthly")], "P1Y", "monthly", Decimal("9.00"), Decimal("7.65"), Decimal("7.65")),
        ]
        usage = {sid: Decimal(price) for sid, price in _rows("SELECT subscription_id, unit_price FROM usage_point")}
        assert usage == {
            1: Decimal("9.00"),
            2: Decimal("9.00"),
            3: Decimal("720.00"),
            4: Decimal("660.00"),
            5: Decimal("9.00"),
        }
        batches = _rows(
            "SELECT subscription_id, kind, quantity, refundable, added_at, refundable_until FROM seat_batch "
            "ORDER BY subscription_id"
        )
        assert [b[:4] for b in batches] == [(1, "purchase", 5, 0), (2, "purchase", 2, 2), (3, "purchase", 3, 0)] + [
            (4, "purchase", 1, 0)
        ]
        # Subscription 2 began on 30 November in New Zealand (29 November 11:00 UTC); its window ends 168 h later.
        added, until = batches[1][4], batches[1][5]
        added = added if isinstance(added, dt.datetime) else dt.datetime.fromisoformat(added)
        until = until if isinstance(until, dt.datetime) else dt.datetime.fromisoformat(until)
        assert (added, until - added) == (dt.datetime(2026, 11, 29, 11, 0), dt.timedelta(hours=168))
        sandbox = _rows("SELECT term, term_started_on, term_end FROM sandbox_subscription")
        assert [(t, str(s), str(e)) for t, s, e in sandbox] == [("P1Y", "2026-03-01", "2027-03-01")]
        assert _rows("SELECT subscription_id, quantity FROM sandbox_seat_batch") == [("sub-1", 5)]

        db.session.rollback()
        flask_migrate.downgrade(revision="0016_reconciliation")
        restored = _rows("SELECT id, billing_cycle, unit_cost, unit_price FROM product ORDER BY id")
        assert [(i, c, Decimal(uc), Decimal(up)) for i, c, uc, up in restored] == [
            (1, "monthly", Decimal("7.65"), Decimal("9.00")),
            (2, "annual", Decimal("51.00"), Decimal("60.00")),
        ]
        back = _rows("SELECT id, unit_price, unit_cost FROM subscription ORDER BY id")
        assert [(i, Decimal(p), Decimal(c)) for i, p, c in back] == [
            (1, Decimal("9.00"), Decimal("7.65")),
            (2, Decimal("9.00"), Decimal("7.65")),
            (3, Decimal("60.00"), Decimal("51.00")),
            (4, Decimal("55.00"), Decimal("50.00")),
            (5, Decimal("9.00"), Decimal("7.65")),
        ]
        assert Decimal(_rows("SELECT unit_price FROM usage_point WHERE subscription_id = 3")[0][0]) == Decimal("60.00")
        db.session.remove()
        db.engine.dispose()
