"""PortalSecurityManager: FAB's security manager with our user model, sign-in hooks and nothing else."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import secrets

from flask import current_app, flash, g, has_request_context, redirect, request, session, url_for
from flask_appbuilder._compat import as_unicode
from flask_appbuilder.security.forms import LoginForm_db
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.utils import is_null_password
from flask_appbuilder.security.views import AuthDBView
from flask_appbuilder.utils.base import get_safe_redirect
from flask_appbuilder.views import expose
from flask_login import login_user, logout_user
from sqlalchemy import or_, select

from app import clock
from app.extensions import db, limiter
from app.models.accounts import OPERATOR, Account
from app.models.base import utcnow
from security import memberships, mfa, scoping, signals, throttle
from security.forms import CodeForm
from security.models import CUSTOMER_PORTAL, OPERATOR_PORTAL, PortalUser
from security.passwords import hash_password, password_matches
from security.permissions import CAPABILITIES, CUSTOMER_LOGIN
from security.sessions import mark_signed_in, renew_session_id

log = logging.getLogger(__name__)


def _authentication(method):
    """Sign-in looks users up across every tenant: run it under the named bypass (DESIGN.md rule 1)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with scoping.bypass("authentication"):
            return method(self, *args, **kwargs)

    return wrapper


def _refusal(user: PortalUser) -> str:
    """Why a correct password was refused — a disabled sign-in or account, or (a customer-portal login) no customer
    account left to work in — so its owner knows whom to ask. Said only to someone who knows the password: to anyone
    else the answer stays "Invalid login"."""
    if user.active and user.deleted_at is None and user.portal == CUSTOMER_PORTAL:
        live = memberships.live_memberships(user)
        if not live:
            with scoping.bypass("authentication: why refused"):
                names = sorted({m.account.name for m in user.memberships if m.deleted_at is None and m.active})
            if len(names) == 1:
                return f"{names[0]} is disabled, so its sign-ins are too. Ask your administrator."
            return memberships.NO_ACCESS
    if user.portal != CUSTOMER_PORTAL and user.account is not None and not user.account.is_active:
        return f"{user.account.name} is disabled, so its sign-ins are too. Ask your administrator."
    return "This sign-in is disabled. Ask your administrator to enable it."


def _may_sign_in(user: PortalUser) -> bool:
    """Active, and a customer-portal login has at least one customer account to work in."""
    if not user.is_active:
        return False
    return user.portal != CUSTOMER_PORTAL or bool(memberships.live_memberships(user))


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"


@dataclasses.dataclass(frozen=True)
class SignIn:
    """What a sign-in attempt came to: the user, or what to tell the person (None: FAB's "Invalid login")."""

    user: PortalUser | None
    message: str | None = None


def _limited_by_client(limit) -> None:
    """Flask-Limiter refused a sign-in from this client address (it answers 429 itself): an event as well. A plain
    function, not a method: the limiter is one object, and a new callable per app would register the limit again."""
    if request.endpoint != "PortalAuthDBView.login":
        return None  # the second factor's step has limits of its own, which record themselves
    sm = current_app.appbuilder.sm
    address = (request.form.get("username") or "").strip().lower()[:320]
    wait = max(int(limit.window.reset_time - clock.utcnow().replace(tzinfo=dt.UTC).timestamp()), 1)
    with scoping.bypass("authentication"):
        user = sm.login_for(address)
        signals.sign_in_limited.send(current_app._get_current_object(), user=user, username=address, retry_after=wait)
        sm.session.commit()
    return None


class PortalAuthDBView(AuthDBView):
    """FAB's login form (with a "Forgot your password?" link), plus a fresh session id at sign-in, the second factor's
    step (``/login/code/``: nobody with two-factor authentication is signed in before it passes) and a session that
    ends for good at logout."""

    login_template = "portal/login.html"

    @expose("/login/", methods=["GET", "POST"])
    def login(self):
        if g.user is not None and g.user.is_authenticated:
            return redirect(self._get_safe_next_url())
        form = LoginForm_db()
        if form.validate_on_submit():
            next_url = get_safe_redirect(request.args.get("next") or self.appbuilder.get_url_for_index)
            attempt = self.appbuilder.sm.sign_in(form.username.data, form.password.data)
            user = attempt.user
            if user is None:
                flash(attempt.message or as_unicode(self.invalid_login_message), "warning")
                return redirect(self.appbuilder.get_url_for_login_with(next_url))
            session.clear()
            if mfa.is_enrolled(user):
                # Not signed in yet: the second factor decides (the code prompt below).
                mfa.start_pending(user, next_url)
                renew_session_id()
                return redirect(url_for(f"{type(self).__name__}.second_factor"))
            self._sign_in(user)
            return redirect(next_url)
        return self.render_template(self.login_template, title=self.title, form=form, appbuilder=self.appbuilder)

    @staticmethod
    def _sign_in(user) -> None:
        with scoping.bypass("authentication"):
            login_user(user, remember=False)
        renew_session_id()  # after login_user: Flask-Session renews only a non-empty session
        mark_signed_in()

    def _second_factor_user(self):
        """Whose code is asked: a signed-in session's own user when it still needs to pass (enrolled elsewhere since
        it signed in), else the login whose password was just right."""
        if g.user is not None and g.user.is_authenticated:
            return g.user if mfa.missing_second_factor(g.user) == mfa.VERIFY else None
        return mfa.pending_user()

    def _code_page(self, form, status: int = 200):
        return self.render_template("portal/login_code.html", form=form, appbuilder=self.appbuilder), status

    @expose("/login/code/", methods=["GET"])
    def second_factor(self):
        """The second step of sign-in: a code from the authenticator app, or a recovery code."""
        if self._second_factor_user() is None:
            return self._start_again()
        return self._code_page(CodeForm())

    @expose("/login/code/", methods=["POST"])
    def check_second_factor(self):
        user = self._second_factor_user()
        if user is None:
            return self._start_again()
        form = CodeForm()
        if not form.validate_on_submit():
            return self._code_page(form, 400)
        with scoping.bypass("authentication: second factor"):
            check = mfa.verify(user, form.code.data)
            db.session.commit()  # failures and limits are events too
        if not check:
            form.code.errors = [check.message]
            return self._code_page(form, 429 if check.outcome == mfa.LIMITED else 400)
        if g.user is not None and g.user.is_authenticated:
            next_url = self.appbuilder.get_url_for_index
        else:
            next_url = get_safe_redirect(mfa.pending_next() or self.appbuilder.get_url_for_index)
            session.clear()
            self._sign_in(user)
            self.appbuilder.sm.update_user_auth_stat(user, True, second_factor_passed=True)
        mfa.mark_passed()
        renew_session_id()
        if check.method == "recovery":
            flash("You used a recovery code: it will not work again. Make new ones when you have run low.", "info")
        return redirect(next_url)

    def _start_again(self):
        if g.user is not None and g.user.is_authenticated:
            return redirect(self.appbuilder.get_url_for_index)
        session.clear()
        flash("Sign in again: the time for your code ran out.", "warning")
        return redirect(self.appbuilder.get_url_for_login)

    @expose("/logout/", methods=["GET"])
    def confirm_logout(self):
        """Signing out changes state, so it is a POST; a GET (an old link, a bookmark) asks first."""
        if not (g.user is not None and g.user.is_authenticated):
            return redirect(self.appbuilder.get_url_for_login)
        return self.render_template("portal/logout.html", appbuilder=self.appbuilder)

    @expose("/logout/", methods=["POST"])
    def logout(self):
        from security import impersonation

        if impersonation.impersonating():
            # Logout while launched leaves the customer's portal, as Return to partner portal does (the events of its
            # end on both sides): the partner user stays signed in as themselves.
            back = impersonation.back_url_for(session.get(impersonation.TARGET_KEY))
            actor = impersonation.stop("logged out of the customer portal")
            if actor is not None and actor.is_active:
                flash("You have left the customer portal and are back in the partner portal, still signed in.", "info")
                return redirect(back)
        user = self._get_authenticated_user()
        logout_user()
        session.clear()  # an emptied session is deleted from the store and its cookie dropped
        if user is not None:
            self.appbuilder.sm.on_user_logout(user)
        return redirect(self.appbuilder.get_url_for_login)


class PortalSecurityManager(SecurityManager):
    """Our user model and views; sign-in lookups run under the authentication bypass."""

    user_model = PortalUser
    authdbview = PortalAuthDBView

    def create_limiter(self, app):
        """One Flask-Limiter for the app: the one in ``app.extensions``, configured before FAB starts."""
        limiter.init_app(app)
        return limiter

    def register_views(self) -> None:
        """Only the sign-in view: users and roles are managed by our own screens and `flask portal sync-roles`."""
        self.auth_view = self.authdbview()
        self.appbuilder.add_view_no_menu(self.auth_view)
        if self.is_auth_limited:
            self.limiter.limit(self.auth_rate_limit, methods=["POST"], on_breach=_limited_by_client)(
                self.auth_view.blueprint
            )

    def login_for(self, address: str) -> PortalUser | None:
        """The login an address typed at sign-in names: its username (``flask fab create-admin``'s) or its email."""
        return self.session.scalar(
            select(PortalUser).where(or_(PortalUser.username == address, PortalUser.email == address)).limit(1)
        )

    get_user_by_id = _authentication(SecurityManager.get_user_by_id)
    count_users = _authentication(SecurityManager.count_users)
    get_first_user = _authentication(SecurityManager.get_first_user)
    noop_user_update = _authentication(SecurityManager.noop_user_update)
    update_user = _authentication(SecurityManager.update_user)
    auth_user_db = _authentication(SecurityManager.auth_user_db)
    reset_password = _authentication(SecurityManager.reset_password)

    @_authentication
    def sign_in(self, username: str, password: str) -> SignIn:
        """Check a sign-in: the address's throttle first (security/throttle.py), then the password. Every outcome —
        unknown address, wrong password, disabled, success — costs one lookup, one password hash and one event, so
        its timing tells nothing the words do not."""
        app = current_app._get_current_object()
        address = (username or "").strip().lower()[:320]
        user = self.login_for(address)
        # One throttle per login, whichever of its names is typed (a username and an email are not two budgets);
        # an address without a login has one of its own.
        key = f"login:{user.id}" if user is not None else address
        wait = throttle.attempt(key)
        if wait:
            signals.sign_in_limited.send(app, user=user, username=address, retry_after=wait)
            self.session.commit()
            return SignIn(None, f"Too many sign-in attempts for this address. Try again in {_in_words(wait)}.")
        stored = user.password if user is not None else current_app.config["AUTH_DB_FAKE_PASSWORD_HASH_CHECK"]
        matches = password_matches(stored, password) and not is_null_password(password)
        if user is None:
            signals.sign_in_failed.send(app, user=None, username=address, reason="no such login")
            self.session.commit()
            return SignIn(None)
        if not matches:
            self.update_user_auth_stat(user, False)
            return SignIn(None)
        if not _may_sign_in(user):
            self.update_user_auth_stat(user, False, reason="disabled")
            return SignIn(None, _refusal(user))
        throttle.clear(key)
        self.update_user_auth_stat(user, True)
        return SignIn(user)

    @_authentication
    def find_user(self, username=None, email=None):
        """FAB's lookup, lower-cased as PortalUser stores them (emails are unique case-insensitively)."""
        return SecurityManager.find_user(
            self,
            username=username.strip().lower() if username else None,
            email=email.strip().lower() if email else None,
        )

    @_authentication
    def load_user(self, pk):
        user = self.session.get(self.user_model, int(pk))
        if user is not None and user.is_active:
            return user
        return None

    def add_user(
        self,
        username,
        first_name,
        last_name,
        email,
        role=None,
        password="",
        hashed_password="",
        groups=None,
        commit=True,
        *,
        account=None,
        portal=OPERATOR_PORTAL,
        **flags,
    ):
        """FAB's add_user. Without an account (``flask fab create-admin``) the user is operator staff, added
        under a named bypass; with one (our services) the caller's scope checks the write."""
        if account is None:
            with scoping.bypass("create operator staff"):
                user = self.add_user(
                    username,
                    first_name,
                    last_name,
                    email,
                    role,
                    password,
                    hashed_password,
                    groups,
                    False,
                    account=self._operator_account(),
                    portal=OPERATOR_PORTAL,
                    **flags,
                )
                if user is not False:
                    signals.operator_staff_created.send(current_app._get_current_object(), user=user)
                    if commit:
                        self.session.commit()
                return user
        roles = role if isinstance(role, list) else [role] if role else []
        user = self.user_model(
            first_name=first_name,
            last_name=last_name,
            username=username,
            email=email,
            active=True,
            roles=roles,
            groups=groups or [],
            account=account,
            portal=portal,
            password=hashed_password or hash_password(password or secrets.token_urlsafe(32)),
            password_set_at=utcnow() if (password or hashed_password) else None,
            **flags,
        )
        self.session.add(user)
        try:
            self.session.flush()
            if commit:
                self.session.commit()
        except scoping.ScopeViolation:
            self.session.rollback()
            raise
        except Exception as exc:  # FAB's contract: False on failure, with the reason logged
            from app.failure import outage_of

            if outage_of(exc):  # not a refusal of this user: the database is unreachable (the request answers 503)
                raise
            log.error("Could not add user %s: %s", username, exc)
            self.session.rollback()
            return False
        return user

    def has_access(self, permission_name: str, view_name: str) -> bool:
        """FAB's check, answered from the signed-in user's permissions loaded once per request (not one query
        per menu item and button)."""
        user = g.get("user")
        if user is None or not user.is_authenticated:
            return super().has_access(permission_name, view_name)
        cached = g.get("_portal_permissions")
        if cached is None or cached[0] != user.id:
            cached = g._portal_permissions = (user.id, self._effective_permissions(user))
        return (permission_name, view_name) in cached[1]

    def user_may(self, user, permission_name: str, view_name: str, membership=None) -> bool:
        """``has_access`` asked of a user who is not this request's (a background job's requester, as they are now);
        a customer-portal login in the ``membership`` it worked in."""
        if not user.is_active:
            return False
        roles = self._roles_of(user, membership) if user.portal == CUSTOMER_PORTAL else self.get_user_roles(user)
        allowed = set()
        for role in roles:
            allowed |= self.get_role_permissions(role)
        return (permission_name, view_name) in allowed

    def get_user_roles(self, user) -> list:
        """FAB's roles of a user. A customer-portal login's are the role of the membership this session works in
        (security/memberships.py), never its other memberships': Master Admin at one customer and User at another
        gets exactly that at each. Before it has chosen one: only the account chooser."""
        if getattr(user, "is_authenticated", False) and getattr(user, "portal", None) == CUSTOMER_PORTAL:
            return self._roles_of(user, memberships.chosen_for(user))
        return super().get_user_roles(user)

    def _roles_of(self, user, membership) -> list:
        if membership is None or membership.user_id != user.id or not membership.is_live:
            name = CUSTOMER_LOGIN
        else:
            name = membership.role_name
        cache = g.setdefault("_portal_roles", {}) if has_request_context() else {}
        if name not in cache:
            cache[name] = self.find_role(name)
        return [cache[name]] if cache[name] is not None else []

    def _effective_permissions(self, user) -> frozenset:
        """The user's permissions; while impersonating, never more than the real user's role allows either: the
        customer's pages stay open, but a capability (orders, licences, ...) needs both roles."""
        if not user.is_active:
            return frozenset()
        allowed = set(self.get_user_permissions(user))
        actor = g.get("impersonator")
        if actor is not None:
            with scoping.bypass("impersonation permissions"):
                actor_allowed = set(self.get_user_permissions(actor)) if actor.is_active else set()
            allowed = {pair for pair in allowed if pair[1] not in CAPABILITIES or pair in actor_allowed}
        return frozenset(allowed)

    def _operator_account(self) -> Account:
        account = self.session.query(Account).filter(Account.kind == OPERATOR).order_by(Account.id).first()
        if account is None:
            account = Account(kind=OPERATOR, name=current_app.config["OPERATOR_NAME"])
            self.session.add(account)
            self.session.flush()
        return account

    @_authentication
    def update_user_auth_stat(self, user, success=True, reason="wrong password", *, second_factor_passed=False):
        """FAB's login statistics, with the time in UTC and an event for every sign-in and every refusal. A right
        password of a login with two-factor authentication is not a sign-in yet: it counts once the second factor
        passes."""
        if success and not second_factor_passed and mfa.is_enrolled(user):
            return
        user.login_count = (user.login_count or 0) + (1 if success else 0)
        user.fail_login_count = 0 if success else (user.fail_login_count or 0) + 1
        if success:
            user.last_login = utcnow()
        if success:
            signals.signed_in.send(current_app._get_current_object(), user=user)
        else:
            signals.sign_in_failed.send(
                current_app._get_current_object(), user=user, username=user.username, reason=reason
            )
        self.session.commit()

    @_authentication
    def on_user_logout(self, user) -> None:
        signals.signed_out.send(current_app._get_current_object(), user=user)
        self.session.commit()
