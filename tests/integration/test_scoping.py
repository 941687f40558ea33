"""Tenant scoping (DESIGN.md rule 1): reseller B can neither see nor change reseller A's rows, through any view,
dropdown, search or query, and with no scope resolved nothing is visible at all."""

from __future__ import annotations

import concurrent.futures
import hashlib

import pytest
from flask_appbuilder import Model
from sqlalchemy import select, update

from app.extensions import appbuilder, db
from app.models.accounts import CUSTOMER, Account, MicrosoftTenant
from app.models.events import Event
from app.models.subscriptions import M365User, Subscription
from security import scoping
from security.models import PortalUser
from tests.conftest import csrf_token, unscoped
from views.base import ScopedModelView

# Every model view, and how to find one of reseller A's rows in it (None: the view shows no tenant data). The Event
# Log is no model view: tests/integration/test_event_log.py replays its routes.
A_ROW_OF_VIEW = {
    "AccountView": lambda w: w.accounts["customer_a"].id,
    "SubscriptionView": lambda w: w.rows["a"]["subscription"],
    "TenantView": lambda w: w.rows["a"]["tenant"],
    "M365UserView": lambda w: w.rows["a"]["m365_user"],
    "ProductView": None,
}
A_NAMES = ["Aardvark Farms", "Anchor Marine", "Alpha Partners Ltd", "aardvark.onmicrosoft.com", "master@aardvark"]


def _model_views():
    return [v for v in appbuilder.baseviews if isinstance(v, ScopedModelView)]


def _routes(app, view) -> set[str]:
    return {
        rule.endpoint.split(".", 1)[1]
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(view.endpoint + ".")
    }


def database_fingerprint() -> str:
    """A digest of every row of every table but the role tables: equal before and after means nothing changed."""
    digest = hashlib.sha256()
    with unscoped() as session:
        for table in Model.metadata.sorted_tables:
            if table.name in {"server_session"}:
                continue
            pk = list(table.primary_key.columns)
            for row in session.execute(select(table).order_by(*pk)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def test_every_model_view_is_covered_by_the_cross_tenant_test(app):
    names = {type(v).__name__ for v in _model_views()}
    assert names == set(A_ROW_OF_VIEW), "add each new model view to A_ROW_OF_VIEW"


@pytest.mark.parametrize("view_name", [name for name, row in A_ROW_OF_VIEW.items() if row])
def test_reseller_b_gets_404_for_every_route_on_reseller_a_rows(app, world, reseller_b_admin_client, view_name):
    client = reseller_b_admin_client
    view = next(v for v in _model_views() if type(v).__name__ == view_name)
    pk = A_ROW_OF_VIEW[view_name](world)
    routes = _routes(app, view)
    base = view.route_base
    token = csrf_token(client)
    before = database_fingerprint()

    listing = client.get(f"{base}/list/?psize_{view_name}=100")
    assert listing.status_code == 200
    assert f'/show/{pk}"' not in listing.text and f'rowid" value="{pk}"' not in listing.text
    for name in A_NAMES:
        assert name not in listing.text, f"{view_name} list shows {name} to reseller B"

    if "show" in routes:
        assert client.get(f"{base}/show/{pk}").status_code == 404
    if "edit" in routes:
        assert client.get(f"{base}/edit/{pk}").status_code == 404
        assert client.post(f"{base}/edit/{pk}", data={"csrf_token": token, "name": "Hijacked"}).status_code == 404
    if "delete" in routes:
        assert client.post(f"{base}/delete/{pk}", data={"csrf_token": token}).status_code == 404
    if "action_post" in routes:
        for action_name in view.actions:
            response = client.post(
                f"{base}/action_post", data={"csrf_token": token, "action": action_name, "rowid": [pk]}
            )
            assert response.status_code in (403, 404)
    assert database_fingerprint() == before


def test_reseller_a_sees_its_own_rows_in_every_view(app, world, reseller_a_admin_client):
    for view_name, row_of in A_ROW_OF_VIEW.items():
        if row_of is None:
            continue
        view = next(v for v in _model_views() if type(v).__name__ == view_name)
        response = reseller_a_admin_client.get(f"{view.route_base}/show/{row_of(world)}", follow_redirects=True)
        assert response.status_code == 200, view_name


def test_operator_sees_both_resellers(world, ops_admin_client):
    listing = ops_admin_client.get("/accountview/list/?psize_AccountView=100").text
    assert "Aardvark Farms" in listing and "Bluebird Bakery" in listing


def test_customer_sees_only_its_own_account(world, customer_a_master_admin, app):
    with (
        app.test_request_context(),
        scoping.use_scope(scoping.Scope(scoping.CUSTOMER_SCOPE, world.accounts["customer_a"].id)),
    ):
        names = {a.name for a in db.session.query(Account)}
        subs = {s.account_id for s in db.session.query(Subscription)}
    assert names == {"Aardvark Farms"}
    assert subs == {world.accounts["customer_a"].id}


def test_related_dropdowns_are_scoped(app, world):
    # FAB fills every related-field dropdown (forms and search) from the related interface's query.
    view = next(v for v in _model_views() if type(v).__name__ == "SubscriptionView")
    reseller_b = scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_b"].id)
    with app.test_request_context(), scoping.use_scope(reseller_b):
        offered = {a.name for a in view.datamodel.get_related_interface("account").query()[1]}
    assert offered == {"Bravo IT Ltd", "Bluebird Bakery"}


def test_search_by_name_never_finds_another_resellers_rows(world, reseller_b_admin_client):
    page = reseller_b_admin_client.get("/accountview/list/?_flt_2_name=Aardvark").text
    assert "Aardvark Farms" not in page


def _in_fresh_thread(fn):
    """Run ``fn`` where no request, no user and no bypass exist (a new thread has none of our contexts)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def test_no_scope_resolved_sees_nothing(app, world):
    def count_everything():
        with app.app_context():
            assert scoping.current_scope().kind == scoping.NONE
            return {
                model.__name__: db.session.query(model).count()
                for model in (Account, Subscription, M365User, MicrosoftTenant, Event, PortalUser)
            }

    assert set(_in_fresh_thread(count_everything).values()) == {0}


def test_no_scope_resolved_cannot_write(app, world):
    def write():
        with app.app_context():
            db.session.add(Account(kind=CUSTOMER, name="Ghost Ltd", parent_id=world.accounts["reseller_a"].id))
            try:
                db.session.flush()
            except scoping.ScopeViolation:
                db.session.rollback()
                return "refused"
            return "written"

    assert _in_fresh_thread(write) == "refused"


def test_anonymous_request_sees_nothing(app, world):
    with app.test_request_context():
        assert db.session.query(Account).count() == 0
        assert db.session.query(Subscription).count() == 0


def test_a_bypass_is_named_and_sees_everything(app, world):
    with pytest.raises(ValueError):
        scoping.bypass("")
    with app.test_request_context(), scoping.bypass("test"):
        assert db.session.query(Account).count() == 6


@pytest.fixture
def as_reseller_b(app, world):
    with (
        app.test_request_context(),
        scoping.use_scope(scoping.Scope(scoping.RESELLER_SCOPE, world.accounts["reseller_b"].id)),
    ):
        yield
        db.session.rollback()


def test_writes_to_another_resellers_rows_are_refused(app, world, as_reseller_b):
    before = database_fingerprint()
    a_sub_id = world.rows["a"]["subscription"]
    with scoping.bypass("load a row as if it leaked"):
        leaked = db.session.get(Subscription, a_sub_id)
    leaked.quantity = 999
    with pytest.raises(scoping.ScopeViolation):
        db.session.flush()
    db.session.rollback()

    db.session.add(Event(account_id=world.accounts["customer_a"].id, action="x", actor_label="x"))
    with pytest.raises(scoping.ScopeViolation):
        db.session.flush()
    db.session.rollback()

    db.session.add(Account(kind=CUSTOMER, name="Planted Ltd", parent_id=world.accounts["reseller_a"].id))
    with pytest.raises(scoping.ScopeViolation):
        db.session.flush()
    db.session.rollback()
    assert database_fingerprint() == before


def test_moving_a_row_to_another_tenant_is_refused(app, world, as_reseller_b):
    own = db.session.get(Subscription, world.rows["b"]["subscription"])
    own.account_id = world.accounts["customer_a"].id
    with pytest.raises(scoping.ScopeViolation):
        db.session.flush()


def test_bulk_update_touches_only_rows_in_scope(app, world, as_reseller_b):
    db.session.execute(update(Subscription).values(auto_renew=False))
    db.session.commit()
    with unscoped() as session:
        by_account = dict(session.execute(select(Subscription.account_id, Subscription.auto_renew)).all())
    assert by_account[world.accounts["customer_b"].id] is False
    assert by_account[world.accounts["customer_a"].id] is True


def test_reseller_b_may_create_its_own_customer(app, world, as_reseller_b):
    db.session.add(Account(kind=CUSTOMER, name="Brand New Ltd", parent_id=world.accounts["reseller_b"].id))
    db.session.flush()


def test_every_table_is_classified(app):
    kinds = {table.name: scoping.classify(table.name) for table in Model.metadata.sorted_tables}
    assert kinds["account"] == "account"
    assert kinds["subscription"] == kinds["ab_user"] == kinds["event"] == "tenant"
    assert kinds["product"] == "global"
