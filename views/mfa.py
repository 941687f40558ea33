"""My two-factor authentication (the name menu's "Two-factor authentication"): set it up with a QR code drawn here,
see the recovery codes once, make new ones, turn it off where it is not required. Not while launched into a
customer's portal: the customer's sign-in stays theirs."""

from __future__ import annotations

import segno
from flask import abort, flash, g, redirect, session, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from markupsafe import Markup

from app.services import mfa as mfa_service
from app.services.users import UserError
from security import mfa
from security import permissions as P
from security.forms import CodeForm
from security.sessions import renew_session_id
from views.base import PortalView, form_error, own_account, signed_in_first

ENROLLING_KEY = "mfa_enrolling"  # the secret being set up, encrypted, until its first code confirms it
NEW_CODES_KEY = "mfa_new_recovery_codes"  # shown once, on the next page


class MfaView(PortalView):
    route_base = "/profile/two-factor"
    class_permission_name = P.PROFILE
    method_permission_name = {
        "index": P.READ,
        "enrol": P.WRITE,
        "recovery_codes": P.READ,
        "regenerate": P.WRITE,
        "turn_off": P.WRITE,
    }
    default_view = "index"

    @staticmethod
    def _not_while_launched():
        if g.get("impersonator") is not None:
            abort(403, description="While launched into a customer's portal, its user's sign-in stays theirs.")

    def _render(self, template: str, status: int = 200, **context):
        return self.render_template(template, customer=own_account(), section="", **context), status

    def _enrolment_secret(self) -> str:
        """The secret on offer: the same one until it is confirmed, so reloading the page keeps the QR code."""
        secret = mfa.decrypt_secret(session.get(ENROLLING_KEY) or "")
        if secret is None:
            secret = mfa.new_secret()
            session[ENROLLING_KEY] = mfa.encrypt_secret(secret)
        return secret

    def _page(self, form=None, regenerate_form=None, turn_off_form=None, status: int = 200):
        user = g.user
        context = {"credential": user.mfa, "required": mfa.is_required_for(user)}
        if user.mfa is None:
            secret = self._enrolment_secret()
            qr = segno.make(mfa.provisioning_uri(user, secret), error="m").svg_inline(
                scale=4, dark="#000", light="#fff", title="QR code for your authenticator app"
            )
            context.update(
                form=form or CodeForm(),
                qr_svg=Markup(qr),  # noqa: S704 - segno's own SVG: path data and our fixed title, no user text
                secret_groups=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            )
        else:
            context.update(
                codes_left=mfa.recovery_codes_left(user.mfa),
                code_count=mfa.RECOVERY_CODE_COUNT,
                regenerate_form=regenerate_form or CodeForm(prefix="regenerate"),
                turn_off_form=turn_off_form or CodeForm(prefix="turn_off"),
            )
        return self._render("portal/mfa.html", status, **context)

    @expose("/")
    @signed_in_first
    @has_access
    def index(self):
        self._not_while_launched()
        return self._page()

    @expose("/", methods=["POST"])
    @has_access
    def enrol(self):
        self._not_while_launched()
        form = CodeForm()
        secret = mfa.decrypt_secret(session.get(ENROLLING_KEY) or "")
        if g.user.mfa is not None or secret is None:
            return redirect(url_for(".index"))
        if not form.validate_on_submit():
            return self._page(form=form, status=400)
        try:
            codes = mfa_service.enrol(g.user, secret, form.code.data)
        except UserError as exc:
            form_error(form, exc)
            return self._page(form=form, status=400)
        session.pop(ENROLLING_KEY, None)
        mfa.mark_passed()  # the code just given is this session's second factor
        renew_session_id()
        return self._show_codes(codes, "Two-factor authentication is on.")

    def _show_codes(self, codes: list[str], message: str):
        session[NEW_CODES_KEY] = codes
        flash(message, "success")
        return redirect(url_for(".recovery_codes"))

    @expose("/recovery-codes")
    @signed_in_first
    @has_access
    def recovery_codes(self):
        """The new recovery codes, once: they leave the session as they are shown."""
        self._not_while_launched()
        codes = session.pop(NEW_CODES_KEY, None)
        if not codes:
            return redirect(url_for(".index"))
        return self._render("portal/mfa_recovery_codes.html", codes=codes)

    def _with_code(self, prefix: str, change, done):
        """A change confirmed by the user's current code: ``done(result)`` when it is made, else the page again with
        the reason beside the form's code."""
        self._not_while_launched()
        form = CodeForm(prefix=prefix)
        if form.validate_on_submit():
            try:
                return done(change(g.user, form.code.data))
            except UserError as exc:
                form_error(form, exc)
        return self._page(**{f"{prefix}_form": form}, status=400)

    @expose("/recovery-codes", methods=["POST"])
    @has_access
    def regenerate(self):
        return self._with_code(
            "regenerate",
            mfa_service.regenerate_recovery_codes,
            lambda codes: self._show_codes(codes, "New recovery codes: the old ones no longer work."),
        )

    @expose("/off", methods=["POST"])
    @has_access
    def turn_off(self):
        return self._with_code("turn_off", mfa_service.turn_off, lambda _: self._turned_off())

    @staticmethod
    def _turned_off():
        flash("Two-factor authentication is off: signing in asks for your password only.", "success")
        return redirect(url_for(".index"))
