"""Fault tests of issue 12 against the portal as it runs in production: gunicorn with two sync workers on PostgreSQL,
an RQ worker on Redis, signed in over HTTP with ``requests``. A worker dies at a named crash point (the
``PORTAL_FAULT_POINT`` setting makes it exit like ``kill -9``, so no kill depends on timing) during an order, a tenant
creation, a licence assignment and an Add Sub Account; twenty licence changes race through both workers, with and
without a sandbox that fails half its calls and loses answers; the RQ worker is killed and the web server reloaded
in the middle of exports. After every fault: recovery, the portal equals the provider (the sandbox's tables), a
resend of the same form says what is true, nothing exists twice, nothing stays "running".

One gunicorn serves the whole module: a scenario that needs other settings rewrites its config file's ``raw_env`` and
reloads it with SIGHUP (gunicorn's graceful reload, itself one of the faults); the tests are in the order that needs
the fewest reloads. Timeouts are settings in seconds, short here; waiting is always polling a condition with a
deadline, never a sleep for timing."""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from sqlalchemy import func, select, update

from app import clock
from app.csp import get_provider
from app.extensions import db
from app.models.accounts import Account, MicrosoftTenant
from app.models.catalog import Product
from app.models.csp import SandboxCustomer, SandboxSubscription, SandboxUser
from app.models.jobs import BackgroundJob, FormSubmission
from app.models.operations import ProviderOperation
from app.models.subscriptions import LicenceAssignment, M365User, Subscription
from security import scoping
from security.models import PortalUser
from tests import clocked, ordering_steps
from tests.conftest import unscoped
from tests.factories import PASSWORD
from tests.mail import free_port

pytestmark = pytest.mark.postgres_faults

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/7"  # this module's own Redis database, flushed by the tests that use it
SECRET_KEY = "gunicorn-fault-tests-secret-key-0123456789abcdef"
HTTP_TIMEOUT = 30
# The settings a scenario may change (rewritten into gunicorn's raw_env and reloaded): empty is the default.
VARIABLE = ("PORTAL_FAULT_POINT", "REDIS_URL", "CSP_SANDBOX_FAIL_RATE", "CSP_SANDBOX_LOST_ANSWER_RATE")
OPERATION_TIMEOUT = 30  # in gunicorn: a resend within the test is "still being confirmed", never a second send
LEASE_SECONDS = 3
JOB_STALE_SECONDS = 4
SERVE = """
import sys
from gunicorn.app.wsgiapp import run
sys.exit(run())
"""


# -- processes -----------------------------------------------------------------------------------------------------
def _environment(database_url: str, instance: Path) -> dict[str, str]:
    """What every process of the portal gets here: the test database, short timeouts, no Redis, a sound sandbox."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in VARIABLE and not key.startswith(("CSP_", "PORTAL_", "JOB_", "MAIL_"))
    }
    env.update(
        PORTAL_ENV="testing",
        PORTAL_INSTANCE_PATH=str(instance),
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        PYTHONPATH=str(ROOT),
        EXPORT_DIR=str(instance / "exports"),
        EXPORT_JOB_THRESHOLD="0",  # every export is a background job
        JOB_HEARTBEAT_SECONDS="0.5",
        JOB_STALE_SECONDS=str(JOB_STALE_SECONDS),
        OPERATION_TIMEOUT_SECONDS=str(OPERATION_TIMEOUT),
        TENANT_PROVISIONING_TIMEOUT_SECONDS=str(OPERATION_TIMEOUT),
        LICENCE_LEASE_SECONDS=str(LEASE_SECONDS),
        CSP_SANDBOX_LATENCY_MS="20",  # a provider call takes a moment, as Microsoft's do: races get a window
        SESSION_CLEANUP_N_REQUESTS="0",
        RATELIMIT_ENABLED="0",
    )
    return env


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (gunicorn's workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry))
    return found


def _kill_tree(pid: int) -> None:
    """``kill -9`` a process and every process below it, as an out-of-memory killer or a container stop would."""
    tree, found = [pid], [pid]
    while found:
        found = [child for parent in found for child in _children(parent)]
        tree += found
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _until(condition, seconds: float, what: str, poll: float = 0.1):
    """Poll ``condition`` until it is true (and return its value), or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(poll)


class Gunicorn:
    """``gunicorn -w 2 run:app`` at the suite's clock, in a session of its own; ``configure`` reloads it (SIGHUP)."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.conf = directory / "gunicorn.conf.py"
        self.log_path = directory / "gunicorn.log"
        self.settings = dict.fromkeys(VARIABLE, "")
        self._write()
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                clocked.command("-c", SERVE, "-c", str(self.conf), "run:app"),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _until(lambda: len(self.workers()) == 2, 60, f"gunicorn's two workers\n{self.log()}")
        self._serving()

    def _write(self) -> None:
        raw_env = [f"{key}={value}" for key, value in self.settings.items()]
        self.conf.write_text(
            f"bind = {f'127.0.0.1:{self.port}'!r}\nworkers = 2\ntimeout = 60\ngraceful_timeout = 20\n"
            f"loglevel = 'info'\ncontrol_socket_disable = True\nraw_env = {raw_env!r}\n"
        )

    def log(self) -> str:
        return self.log_path.read_text()[-6000:]

    def workers(self) -> set[int]:
        assert self.process.poll() is None, f"gunicorn exited\n{self.log()}"
        return _children(self.process.pid)

    def _serving(self) -> None:
        def answers() -> bool:
            try:
                return requests.get(f"{self.base}/login/", timeout=HTTP_TIMEOUT).status_code == 200
            except requests.ConnectionError:
                return False

        _until(answers, 60, f"gunicorn answering\n{self.log()}")

    def configure(self, **settings: str) -> None:
        """The variable settings (the rest back to empty); a graceful reload if they changed."""
        wanted = {**dict.fromkeys(VARIABLE, ""), **settings}
        if wanted != self.settings:
            self.settings = wanted
            self._write()
            self.reload()

    def reload(self) -> None:
        """SIGHUP: new workers with the config file's settings; the old ones finish and exit (graceful)."""
        old = self.workers()
        os.kill(self.process.pid, signal.SIGHUP)
        _until(lambda: not (self.workers() & old) and len(self.workers()) == 2, 60, f"reload\n{self.log()}")
        self._serving()

    def worker_exits(self) -> int:
        """How many workers died so far (gunicorn logs each exit with its code)."""
        return self.log_path.read_text().count("exited with code 137")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def env(app, database_url, tmp_path_factory) -> dict[str, str]:
    return _environment(database_url, tmp_path_factory.mktemp("gunicorn-instance"))


@pytest.fixture(scope="module")
def gunicorn(env, tmp_path_factory):
    server = Gunicorn(tmp_path_factory.mktemp("gunicorn"), env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_error_hidden(gunicorn):
    """Whatever a test asserts, the server logged no traceback and no failure it answered around (a lost session
    save, say) while it ran."""
    start = len(gunicorn.log_path.read_text())
    yield
    logged = gunicorn.log_path.read_text()[start:]
    assert not any(words in logged for words in ("Traceback", "Failed while", "unavailable while")), logged[-6000:]


def recover(app, command: str) -> str:
    """``flask portal <command>`` (the recoverer), its output. Its timeouts are short: nothing else runs while it does,
    so whatever is still pending, provisioning or leased lost its process."""
    short = {"OPERATION_TIMEOUT_SECONDS": 0.1, "TENANT_PROVISIONING_TIMEOUT_SECONDS": 0.1, "LICENCE_LEASE_SECONDS": 1}
    saved = {key: app.config[key] for key in short}
    app.config.update(short)
    try:
        result = app.test_cli_runner().invoke(args=["portal", command])
    finally:
        app.config.update(saved)
    assert result.exit_code == 0, result.output
    return result.output


# -- a browser's worth of HTTP -------------------------------------------------------------------------------------
class _Forms(HTMLParser):
    """The fields of a page's forms, as a browser would send them, by the form's action."""

    def __init__(self):
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._form: dict[str, str] | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = self.forms.setdefault(a.get("action", ""), {})
        elif self._form is None or not a.get("name") and tag != "option":
            return
        elif tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form[a["name"]] = a.get("value") or "y"
            elif kind not in ("submit", "button"):
                self._form[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select:
            if "selected" in a or self._select not in self._form:
                self._form[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self._form[a["name"]] = ""

    def handle_data(self, data):
        if self._textarea and self._form is not None:
            self._form[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_on(page: str, action_ends: str) -> dict[str, str]:
    parser = _Forms()
    parser.feed(page)
    (fields,) = [f for action, f in parser.forms.items() if action.endswith(action_ends)]
    return dict(fields)


def flashes(page: str) -> list[str]:
    """The messages the page shows (flashed by the request before it)."""
    found = re.findall(r'<div class="alert alert-\w+">\s*<button[^>]*>&times;</button>(.*?)</div>', page, re.S)
    return [" ".join(html.unescape(m).split()) for m in found]


class Browser:
    """One signed-in person's session with the gunicorn."""

    def __init__(self, base: str, email: str):
        self.base, self.http = base, requests.Session()
        page = self.http.get(f"{base}/login/", timeout=HTTP_TIMEOUT)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        signed = self.http.post(
            f"{base}/login/",
            data={"csrf_token": token, "username": email, "password": PASSWORD},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        if signed.status_code != 302 or "/login" in signed.headers["Location"]:
            told = flashes(self.http.get(f"{base}/login/", timeout=HTTP_TIMEOUT).text)
            raise AssertionError(f"the sign-in of {email} failed: {signed.status_code} {told}")
        self.token = ""

    def get(self, path: str) -> requests.Response:
        page = self.http.get(f"{self.base}{path}", timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        if found := re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text):
            self.token = found.group(1)
        return page

    def post(self, path: str, data: dict | None = None) -> requests.Response:
        """The form sent and its answer followed, as a browser does: the page it lands on."""
        if not self.token:
            self.get("/")
        answer = self.http.post(
            f"{self.base}{path}", data={**(data or {}), "csrf_token": self.token}, timeout=HTTP_TIMEOUT
        )
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:1000])  # never a 4xx or a 500
        return answer


@contextmanager
def killed(server: Gunicorn):
    """The request in the block kills its worker: no answer at all, and gunicorn logs the exit."""
    before = server.worker_exits()
    with pytest.raises(requests.ConnectionError):
        yield
    _until(lambda: server.worker_exits() == before + 1, 30, f"the worker's exit in the log\n{server.log()}")


# -- the portal against the provider ---------------------------------------------------------------------------------
def _portal_and_sandbox() -> tuple[dict, dict]:
    """Everything the two sides hold, keyed by the provider's ids, in comparable form."""
    with unscoped() as session:
        tenants = session.execute(
            select(MicrosoftTenant.tenant_guid, MicrosoftTenant.domain_prefix, MicrosoftTenant.status).where(
                MicrosoftTenant.tenant_guid.is_not(None)
            )
        ).all()
        subs = session.execute(
            select(
                Subscription.provider_subscription_id,
                MicrosoftTenant.tenant_guid,
                Product.sku,
                Subscription.quantity,
                Subscription.auto_renew,
            )
            .join(Product, Product.id == Subscription.product_id)
            .join(MicrosoftTenant, MicrosoftTenant.account_id == Subscription.account_id, isouter=True)
        ).all()
        people = session.scalars(select(M365User.provider_user_id)).all()
        held = session.execute(
            select(M365User.provider_user_id, Product.sku)
            .join(LicenceAssignment, LicenceAssignment.m365_user_id == M365User.id)
            .join(Subscription, Subscription.id == LicenceAssignment.subscription_id)
            .join(Product, Product.id == Subscription.product_id)
        ).all()
        portal = {
            "tenants": {guid: (prefix, status == "active") for guid, prefix, status in tenants},
            "subscriptions": {sid: (tenant, sku, qty, renew) for sid, tenant, sku, qty, renew in subs},
            "users": set(people),
            "licences": set(held),
        }
        # Nothing twice: one row per provider id on the portal's side too.
        assert len(portal["tenants"]) == len(tenants) and len(portal["subscriptions"]) == len(subs)
        assert len(portal["users"]) == len(people) and len(portal["licences"]) == len(held)
        sandbox = {
            "tenants": {
                c.tenant_id: (c.domain_prefix, c.agreement_accepted_on is not None)
                for c in session.scalars(select(SandboxCustomer))
            },
            "subscriptions": {
                s.subscription_id: (s.tenant_id, s.offer_id, s.quantity, s.auto_renew)
                for s in session.scalars(select(SandboxSubscription))
            },
            "users": {u.user_id for u in session.scalars(select(SandboxUser))},
            "licences": {(u.user_id, sku) for u in session.scalars(select(SandboxUser)) for sku in u.sku_ids.split()},
        }
        return portal, sandbox


def assert_portal_equals_sandbox() -> None:
    portal, sandbox = _portal_and_sandbox()
    for part in portal:
        assert portal[part] == sandbox[part], f"{part}: the portal {portal[part]} != the sandbox {sandbox[part]}"
    with unscoped() as session:
        for sub in session.scalars(select(Subscription)):
            holders = session.scalar(select(func.count()).where(LicenceAssignment.subscription_id == sub.id))
            assert sub.assigned == holders <= sub.quantity, (sub.id, sub.assigned, holders, sub.quantity)


def _pending() -> list[str]:
    with unscoped() as session:
        return list(session.scalars(select(ProviderOperation.kind).where(ProviderOperation.state == "pending")))


def _subscriptions_of(customer_id: int, sku: str) -> tuple[int, int]:
    """(the portal's subscriptions of ``sku`` for the customer, the sandbox's)."""
    with unscoped() as session:
        tenant = session.get(Account, customer_id).tenant.tenant_guid
        portal = session.scalar(
            select(func.count(Subscription.id))
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.account_id == customer_id, Product.sku == sku)
        )
        sandbox = session.scalar(
            select(func.count(SandboxSubscription.id)).where(
                SandboxSubscription.tenant_id == tenant, SandboxSubscription.offer_id == sku
            )
        )
        return portal, sandbox


def _more_people(app, customer_id: int, count: int) -> list[tuple[int, str]]:
    """``count`` more Microsoft 365 users of the customer, made through the provider like any other: (id, upn)."""
    with app.app_context(), scoping.bypass("test: more Microsoft 365 users"):
        customer = db.session.get(Account, customer_id)
        tenant, provider = customer.tenant, get_provider()
        people = []
        for i in range(count):
            upn = f"crowd{i}@{tenant.primary_domain}"
            person = M365User(account=customer, display_name=f"Crowd {i:02d}", user_principal_name=upn)
            person.provider_user_id = provider.create_user(
                tenant.tenant_guid,
                first_name="Crowd",
                last_name=f"{i:02d}",
                user_principal_name=upn,
                password="Pa55word!Pa55word",
                usage_location="NZ",
                correlation_id=f"test-crowd-{i}",
            )
            db.session.add(person)
            people.append(person)
        db.session.commit()
        return [(p.id, p.user_principal_name) for p in people]


def _set_quantity(sub_id: int, quantity: int) -> None:
    """The subscription's quantity, here and at Microsoft alike (bought elsewhere, say)."""
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        sub.quantity = quantity
        session.execute(
            update(SandboxSubscription)
            .where(SandboxSubscription.subscription_id == sub.provider_subscription_id)
            .values(quantity=quantity)
        )
        session.commit()


def _holders(sub_id: int) -> tuple[set[int], set[int], int, int]:
    """(the portal's holders, the sandbox's holders — both as M365User ids —, assigned, quantity) of a subscription."""
    with unscoped() as session:
        sub = session.get(Subscription, sub_id)
        sku = session.get(Product, sub.product_id).sku
        portal = set(
            session.scalars(select(LicenceAssignment.m365_user_id).where(LicenceAssignment.subscription_id == sub_id))
        )
        ids = dict(
            session.execute(
                select(M365User.provider_user_id, M365User.id).where(M365User.account_id == sub.account_id)
            ).all()
        )
        sandbox = {
            ids[u.user_id]
            for u in session.scalars(select(SandboxUser).where(SandboxUser.tenant_id == sub.account.tenant.tenant_guid))
            if sku in u.sku_ids.split()
        }
        return portal, sandbox, sub.assigned, sub.quantity


# -- a worker killed in the middle of a change: orders, tenants ---------------------------------------------------
def test_an_order_whose_worker_is_killed_is_placed_once_and_resent_truthfully(app, gunicorn, world):
    gunicorn.configure(PORTAL_FAULT_POINT="after_create_order")
    customer, product = world.accounts["customer_a"].id, world.rows["products"]["exchange"]
    assert_portal_equals_sandbox()
    before = _subscriptions_of(customer, "TEST-EXO1")
    master = Browser(gunicorn.base, world.users["customer_a_master_admin"].email)
    choice = urllib.parse.urlencode({**ordering_steps.product_form(product), "quantity": "4"})
    page = master.get(f"/portal/{customer}/services/microsoft-csp/orders/review?{choice}").text  # Review order
    form = form_on(page, "/services/microsoft-csp/orders")  # Place order
    orders = f"/portal/{customer}/services/microsoft-csp/orders"

    with killed(gunicorn):
        master.post(orders, form)
    assert _subscriptions_of(customer, "TEST-EXO1") == (before[0], before[1] + 1)  # bought, not recorded
    again = master.post(orders, form)  # the same form, at once: the truth is "not known yet", never "placed once"
    assert flashes(again.text) == ["This order is still being confirmed with Microsoft: reload the page in a moment."]

    assert "settled: 1" in recover(app, "recover-operations")
    assert_portal_equals_sandbox()
    assert _subscriptions_of(customer, "TEST-EXO1") == (before[0] + 1, before[1] + 1)
    placed = master.post(orders, form)
    assert flashes(placed.text) == ["This order was already placed (4 × Exchange Online (Plan 1)): it was bought once."]
    assert _subscriptions_of(customer, "TEST-EXO1") == (before[0] + 1, before[1] + 1)
    with unscoped() as session:
        operation = session.scalars(
            select(ProviderOperation).where(ProviderOperation.submission_key == form["submission_key"])
        ).one()
        assert operation.state == "succeeded" and operation.kind == "order"


@pytest.mark.parametrize(
    ("point", "made_at_microsoft"), [("after_create_customer", True), ("before_create_customer", False)]
)
def test_a_tenant_whose_worker_is_killed_is_settled_and_made_once(app, gunicorn, world, point, made_at_microsoft):
    gunicorn.configure(PORTAL_FAULT_POINT=point)
    customer, prefix = world.accounts["customer_a2"].id, f"anchor{point[:5]}77"
    partner = Browser(gunicorn.base, world.users["reseller_a_admin"].email)
    page = partner.get(f"/accounts/{customer}/microsoft-tenant/new").text
    form = {
        **form_on(page, "/microsoft-tenant/new"),
        "domain_prefix": prefix,
        "company_name": "Anchor Marine",
        "contact_first_name": "Ana",
        "contact_last_name": "Marine",
        "contact_email": "ana@anchor.example",
        "phone": "+64 9 555 0100",
        "address_line1": "1 Quay St",
        "city": "Auckland",
        "postcode": "1010",
        "country": "NZ",
        "signer_first_name": "Ana",
        "signer_last_name": "Marine",
        "signer_email": "ana@anchor.example",
        "agreement": "y",
    }

    def at_microsoft() -> int:
        with unscoped() as session:
            return session.scalar(select(func.count()).where(SandboxCustomer.domain_prefix == prefix))

    def tenant() -> tuple[str, str | None]:
        with unscoped() as session:
            found = session.scalars(select(MicrosoftTenant).where(MicrosoftTenant.account_id == customer)).one()
            return found.status, found.tenant_guid

    with killed(gunicorn):
        partner.post(f"/accounts/{customer}/microsoft-tenant/new", form)
    assert tenant() == ("provisioning", None) and at_microsoft() == (1 if made_at_microsoft else 0)
    resent = partner.post(f"/accounts/{customer}/microsoft-tenant/new", form)  # the same form: its tenant, as it is
    assert 'data-test="tenant-provisioning"' in resent.text

    assert "settled: 1" in recover(app, "recover-tenants")
    status, guid = tenant()
    assert status == "failed" and (guid is not None) == made_at_microsoft  # adopted, or known never made
    assert_portal_equals_sandbox()
    shown = partner.get(f"/accounts/{customer}/products/microsoft-tenant").text
    assert ">Retry<" in shown and ("Change the domain name" in shown) != made_at_microsoft

    gunicorn.configure()  # the fault gone (the sessions outlive the reload): Retry makes, or finishes, it
    retried = partner.post(f"/accounts/{customer}/microsoft-tenant/retry")
    if made_at_microsoft:  # finished: the first admin's password was in the lost answer (its user is listed now)
        assert f"Created the Microsoft tenant {prefix}.onmicrosoft.com." in flashes(retried.text)
    else:  # made by Retry: its first admin's credentials, shown once
        assert f"Created the Microsoft tenant {prefix}.onmicrosoft.com" in retried.text
        assert 'data-test="admin-password"' in retried.text
    assert tenant()[0] == "active" and at_microsoft() == 1  # made once
    assert_portal_equals_sandbox()
    again = partner.post(f"/accounts/{customer}/microsoft-tenant/new", form)  # the first form, once more
    assert 'data-tenant-status="active"' in again.text and at_microsoft() == 1


# -- twenty licence changes at once, through both workers ------------------------------------------------------------
def _signed_in(base: str, email: str, count: int) -> list[Browser]:
    """``count`` sessions of one person (as many devices), signed in one after another: sign-ins of one login at the
    same moment race in the sign-in throttle (security/throttle.py), which is not what these tests are about."""
    return [Browser(base, email) for _ in range(count)]


def _at_once(browsers: list[Browser], path: str, forms: list[dict]) -> list[str]:
    """Each browser sends its form at the same moment; what each was told (one message each)."""
    barrier, told = threading.Barrier(len(browsers)), [None] * len(browsers)

    def send(i: int) -> None:
        barrier.wait()
        page = browsers[i].post(path, forms[i])
        told[i] = flashes(page.text) or [f"no message: {[r.status_code for r in page.history]} → {page.url}"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(browsers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(answer is not None and len(answer) == 1 for answer in told), told  # each answered, once
    return [answer[0] for answer in told]


def _after_the_round(app, told: list[str]) -> None:
    """The portal equals Microsoft: at once, or — when an answer said that it is not known yet — after a recovery
    pass (the recoverer asks Microsoft)."""
    if any("not known yet" in answer for answer in told):
        recover(app, "recover-operations")
    assert_portal_equals_sandbox()
    assert not _pending(), "an operation is still pending: work that never ends"


@pytest.mark.parametrize(
    "sandbox_settings",
    [{}, {"CSP_SANDBOX_FAIL_RATE": "0.5", "CSP_SANDBOX_LOST_ANSWER_RATE": "0.3"}],
    ids=["sound", "flaky"],
)
def test_twenty_licence_assigns_at_once_leave_the_portal_equal_to_microsoft(app, gunicorn, world, sandbox_settings):
    """Sound, or failing half of its calls (every kind, reads included) and losing the answers of a third of the changes
    it makes: after every round the portal equals Microsoft, nobody holds more licences than were bought, nobody
    lost a licence, and every answer was true: "assigned" is held, "Microsoft did not, as it confirms" is not, and
    nobody holds one after being told anything else than "assigned" or "not known yet"."""
    gunicorn.configure(**sandbox_settings)
    customer, sub_id = world.accounts["customer_a"].id, world.rows["a"]["subscription"]
    people = _more_people(app, customer, 22)
    browsers = _signed_in(gunicorn.base, world.users["customer_a_master_admin"].email, 20)
    assign = f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub_id}/assign"
    assigned_to = {p: f"Microsoft 365 Business Basic assigned to {upn}." for p, upn in people}

    def check(targets: list[int], told: list[str], before: set[int], allowed: tuple[str, ...]) -> set[int]:
        portal, microsoft, assigned, quantity = _holders(sub_id)
        winners = {p for p, answer in zip(targets, told, strict=True) if answer == assigned_to[p]}
        unknown = {p for p, answer in zip(targets, told, strict=True) if "not known yet" in answer}
        assert assigned <= quantity and len(microsoft) <= quantity, (assigned, len(microsoft), quantity)
        assert before <= microsoft, f"a licence was taken back: {before - microsoft}"
        assert winners <= portal & microsoft, told  # "assigned" is true
        assert microsoft - before <= winners | unknown, told  # nobody holds one after hearing otherwise
        for p, answer in zip(targets, told, strict=True):
            if "as Microsoft confirms" in answer and p not in winners | unknown:
                assert p not in microsoft, answer
            assert answer == assigned_to[p] or any(words in answer for words in allowed), told
        return winners

    for rounds in range(2 if sandbox_settings else 1):
        # 20 identical clicks: one licence for one person, here and at Microsoft.
        before = _holders(sub_id)[1]
        _set_quantity(sub_id, len(before) + 5)
        person = people[rounds][0]
        told = _at_once(browsers, assign, [{"m365_user_id": str(person)}] * 20)
        winners = check([person] * 20, told, before, ("already has", "under way", "Microsoft did not"))
        assert told.count(assigned_to[person]) == len(winners) <= 1
        if not sandbox_settings:
            assert winners == {person}, told
        _after_the_round(app, told)

        # 20 different people, one seat left: it is given once at most, never beyond the quantity.
        before = _holders(sub_id)[1]
        _set_quantity(sub_id, len(before) + 1)
        crowd = [p for p, _upn in people[2:]]
        told = _at_once(browsers, assign, [{"m365_user_id": str(p)} for p in crowd])
        allowed = ("are assigned", "already has", "under way", "Microsoft did not")
        winners = check(crowd, told, before, allowed)
        assert len(winners) <= 1, told
        if not sandbox_settings:
            assert len(winners) == 1, told
        _after_the_round(app, told)


# -- a worker killed in the middle of a change: licences, Add Sub Account ----------------------------------------
def test_a_licence_assignment_whose_worker_is_killed_is_recovered_from_microsoft(app, gunicorn, world):
    """Microsoft assigned the licence and the worker died before the portal recorded it (its lease still held): the
    recoverer asks Microsoft and records the truth; the same click again says the user already has it."""
    gunicorn.configure(PORTAL_FAULT_POINT="after_provider_call")
    customer, sub_id = world.accounts["customer_a"].id, world.rows["a"]["subscription"]
    ((person, upn),) = _more_people(app, customer, 1)
    _set_quantity(sub_id, 10)
    assert_portal_equals_sandbox()
    master = Browser(gunicorn.base, world.users["customer_a_master_admin"].email)
    subscription = f"/portal/{customer}/services/microsoft-csp/subscriptions/{sub_id}"
    master.get(subscription)

    with killed(gunicorn):
        master.post(f"{subscription}/assign", {"m365_user_id": str(person)})
    portal, sandbox, _assigned, _quantity = _holders(sub_id)
    assert person in sandbox and person not in portal  # what the kill left: Microsoft did it, the portal not yet

    def lease_lapsed() -> bool:
        with unscoped() as session:
            sub = session.get(Subscription, sub_id)
            return sub.licence_lease_until is None or sub.licence_lease_until < clock.utcnow()

    _until(lease_lapsed, LEASE_SECONDS + 10, "the killed request's licence lease to lapse")
    assert "settled: 1" in recover(app, "recover-operations")
    assert_portal_equals_sandbox()
    with unscoped() as session:
        (operation,) = session.scalars(select(ProviderOperation).where(ProviderOperation.kind == "licence_assign"))
        assert operation.state == "succeeded"  # settled by asking Microsoft, never left pending
    again = master.post(f"{subscription}/assign", {"m365_user_id": str(person)})
    assert flashes(again.text) == [f"{upn} already has Microsoft 365 Business Basic."]
    assert_portal_equals_sandbox()


def test_an_add_sub_account_whose_worker_is_killed_is_added_once_and_resent_truthfully(gunicorn, world):
    gunicorn.configure(PORTAL_FAULT_POINT="after_add_sub_account")
    reseller = world.accounts["reseller_a"].id
    partner = Browser(gunicorn.base, world.users["reseller_a_admin"].email)
    page = partner.get(f"/accounts/{reseller}/sub-accounts/new").text
    form = {**form_on(page, "/sub-accounts/new"), "name": "Kiwi Kites Ltd", "contact_email": "kim@kites.example"}

    def added() -> int:
        with unscoped() as session:
            return session.scalar(
                select(func.count()).where(Account.parent_id == reseller, Account.name == "Kiwi Kites Ltd")
            )

    with killed(gunicorn):
        partner.post(f"/accounts/{reseller}/sub-accounts/new", form)
    assert added() == 1  # committed with its key before the worker died
    with unscoped() as session:
        assert session.get(FormSubmission, form["submission_key"]) is not None
    resent = partner.post(f"/accounts/{reseller}/sub-accounts/new", form)
    assert flashes(resent.text) == [
        "This form was already sent (submitted twice): the sub-account Kiwi Kites Ltd was added once."
    ]
    assert "Kiwi Kites Ltd" in resent.text  # where: the list it landed on shows it too
    assert added() == 1
    assert_portal_equals_sandbox()  # nothing of it at Microsoft, nothing here that Microsoft lacks


# -- background jobs whose worker dies --------------------------------------------------------------------------------
@contextmanager
def export_held(database_url: str):
    """Holds every export of users at its first read of licences (as a slow database would): the job is "running",
    beating its heartbeat, until the block ends — long enough to kill its worker in the middle, deterministically."""
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE licence_assignment IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


def _job(job_id: str) -> BackgroundJob:
    with unscoped() as session:
        job = session.get(BackgroundJob, job_id)
        session.expunge(job)
        return job


def _start_export(partner: Browser, account_id: int) -> str:
    answer = partner.http.post(
        f"{partner.base}/accounts/{account_id}/reports/users.xlsx",
        data={"csrf_token": partner.token},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 302, answer.text[:500]
    return re.search(r"job=([0-9a-f-]+)", answer.headers["Location"]).group(1)


def _failed_within_a_minute(partner: Browser, job_id: str, since: float) -> None:
    """The job's page says failed (its worker is gone) within a minute, and Retry is offered."""

    def status() -> dict | None:
        answer = partner.http.get(f"{partner.base}/reports/jobs/{job_id}", timeout=HTTP_TIMEOUT).json()
        return answer if answer["status"] == "failed" else None

    failed = _until(status, 60, "the job of the dead worker to be failed", poll=0.25)
    assert time.monotonic() - since < 60
    assert "stopped" in failed["error"] and "Retry" in failed["error"]


def _done(partner: Browser, job_id: str) -> None:
    def status() -> bool:
        return (
            partner.http.get(f"{partner.base}/reports/jobs/{job_id}", timeout=HTTP_TIMEOUT).json()["status"] == "done"
        )

    _until(status, 60, "the retried export to finish", poll=0.25)


def _rq_worker(env: dict, *args: str) -> subprocess.Popen:
    """``python worker.py`` on this module's Redis database, in a session of its own, its output in a log file."""
    with (Path(env["PORTAL_INSTANCE_PATH"]) / "worker.log").open("a") as log:
        return subprocess.Popen(
            clocked.command("worker.py", *args),
            cwd=ROOT,
            env={**env, "REDIS_URL": REDIS_URL},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_an_rq_worker_killed_mid_export_leaves_a_failed_job_that_retry_finishes(gunicorn, env, world, database_url):
    queue = redis.Redis.from_url(REDIS_URL)
    queue.flushdb()
    gunicorn.configure(REDIS_URL=REDIS_URL)
    account = world.accounts["customer_a"].id
    partner = Browser(gunicorn.base, world.users["reseller_a_admin"].email)
    partner.get(f"/accounts/{account}/products/csp-report")
    worker = _rq_worker(env)
    try:
        with export_held(database_url):
            job_id = _start_export(partner, account)
            _until(lambda: _job(job_id).status == "running", 60, "the RQ worker to start the export")
            killed_at = time.monotonic()
            _kill_tree(worker.pid)  # the worker and its work horse (a session of its own), mid-export
            worker.wait(timeout=30)
        assert _job(job_id).status == "running"  # what the kill left behind
        _failed_within_a_minute(partner, job_id, killed_at)
        partner.get(f"/accounts/{account}/products/csp-report")
        assert partner.post(f"/reports/jobs/{job_id}/retry").status_code == 200
        assert _job(job_id).status == "queued"
        worker = _rq_worker(env, "--burst")
        assert worker.wait(timeout=120) == 0, (Path(env["PORTAL_INSTANCE_PATH"]) / "worker.log").read_text()[-3000:]
        _done(partner, job_id)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        queue.flushdb()


def test_a_thread_mode_export_cut_by_a_graceful_reload_is_failed_and_retry_finishes_it(gunicorn, world, database_url):
    gunicorn.configure()  # no Redis: exports run as threads of the web worker
    account = world.accounts["customer_a"].id
    partner = Browser(gunicorn.base, world.users["reseller_a_admin"].email)
    partner.get(f"/accounts/{account}/products/csp-report")
    with export_held(database_url):
        job_id = _start_export(partner, account)
        _until(lambda: _job(job_id).status == "running", 30, "the export thread to start")
        restarted_at = time.monotonic()
        gunicorn.reload()  # SIGHUP: the old workers finish their requests and exit, with the export's thread
    assert _job(job_id).status == "running"  # what the restart left behind
    _failed_within_a_minute(partner, job_id, restarted_at)  # (the session outlived the reload: it is in the database)
    partner.get(f"/accounts/{account}/products/csp-report")
    partner.post(f"/reports/jobs/{job_id}/retry")
    _done(partner, job_id)


def test_the_clock_of_the_processes_is_the_suites(gunicorn, world):
    """The gunicorn runs at the suite's clock (tests/clocked.py): what it records is dated as the tests expect."""
    partner = Browser(gunicorn.base, world.users["reseller_a_admin"].email)
    partner.get("/")
    with unscoped() as session:
        last = session.get(PortalUser, world.users["reseller_a_admin"].id).last_login
    assert last is not None and abs(last - clock.utcnow()) < dt.timedelta(minutes=5)
