"""The emailed "set your password" link (customer activation, a new partner user's welcome). Public: the link
itself is the credential. Expired or used links say so and offer a new one."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.utils.limit import Limit
from flask_limiter.util import get_remote_address
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms.validators import DataRequired, Email, Length

from app.extensions import appbuilder, db
from app.services.activation import (
    EXPIRED,
    INVALID,
    USED,
    VALID,
    LinkAlreadyUsed,
    check_link,
    complete_activation,
    request_reset,
    send_activation,
)
from security import scoping
from security.passwords import hash_password
from views.partner.forms import PasswordForm


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired(message="Enter the email address you sign in with."),
            Email(message="Enter a valid email address."),
            Length(max=320),
        ],
    )


def _forgot_page(form, status: int = 200):
    page = render_template(
        "portal/forgot.html", form=form, appbuilder=appbuilder, base_template=appbuilder.base_template
    )
    return page, status


class ActivationView(BaseView):
    route_base = "/activate"
    default_view = "activate"
    # Sending mail on request is worth limiting per client address.
    limits = [Limit("20 per hour", key_func=get_remote_address, methods=["POST"])]

    def _page(self, state: str, token: str, form=None, user=None, status: int = 200):
        page = render_template(
            "portal/activate.html",
            state=state,
            token=token,
            form=form,
            user=user,
            appbuilder=appbuilder,
            base_template=appbuilder.base_template,
        )
        return page, status

    @expose("/forgot", methods=["GET"])
    def forgot(self):
        """Forgot your password? An email with a link to set a new one (the activation link's mechanism)."""
        return _forgot_page(ForgotPasswordForm())

    @expose("/forgot", methods=["POST"])
    def send_reset(self):
        form = ForgotPasswordForm()
        if not form.validate_on_submit():
            return _forgot_page(form, 400)
        # The same work whatever the address (no look-up here): one request row in the mail outbox, committed before
        # the answer, so it survives a restart; the outbox looks the address up and mails a link only to a login.
        # Neither the answer's words nor its timing tell who uses the portal.
        with scoping.bypass("password reset"):
            request_reset(form.email.data.strip().lower())
            db.session.commit()
        # The same words whether or not the address has a login: the page must not tell who uses the portal.
        flash(
            f"If {form.email.data.strip().lower()} has a login, an email with a link to set a new password is on its "
            "way. The link works once.",
            "info",
        )
        return redirect(appbuilder.get_url_for_login)

    @expose("/<token>", methods=["GET"])
    def activate(self, token):
        with scoping.bypass("activation link"):
            link = check_link(token)
            form = PasswordForm() if link.state == VALID else None
            return self._page(link.state, token, form, link.user, 200 if link.state == VALID else 410)

    @expose("/<token>", methods=["POST"])
    def set_password(self, token):
        with scoping.bypass("activation link"):
            link = check_link(token)
            if link.state != VALID:
                return self._page(link.state, token, None, link.user, 410)
            form = PasswordForm()
            form.account_email = link.user.email
            if not form.validate_on_submit():
                return self._page(VALID, token, form, link.user, 400)
            try:
                complete_activation(link.user, hash_password(form.password.data))
            except LinkAlreadyUsed:
                return self._page(USED, token, None, link.user, 410)
            flash("Your password is set. Sign in with your email address and the new password.", "success")
            return redirect(appbuilder.get_url_for_login)

    @expose("/<token>/resend", methods=["POST"])
    def resend(self, token):
        with scoping.bypass("activation link"):
            link = check_link(token)
            if link.state == INVALID or link.user is None:
                abort(404)
            if link.state in (EXPIRED, USED) and link.user.password_set_at is None and link.user.is_active:
                send_activation(link.user)
            db.session.commit()
        # The same words whatever happened: the page must not tell a visitor about the account.
        flash("If that account still needs a password, a new link is on its way to its email address.", "info")
        return redirect(appbuilder.get_url_for_login)
