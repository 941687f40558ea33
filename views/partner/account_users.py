"""The Users tab: CUSTOMER PORTAL USERS and PARTNER PORTAL USERS, as in the guide, and their changes."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import func, select

from app.extensions import db
from app.models.accounts import CUSTOMER, RESELLER, Account, PlaceholderUser
from app.services import mfa as mfa_service
from app.services import users as user_service
from app.services.activation import send_access_granted, send_activation
from app.services.users import Added, UserChanges, UserError
from security import permissions as P
from security.memberships import can_edit_login
from security.mfa import can_reset_mfa
from security.models import PARTNER_PORTAL, Membership, PortalUser
from views.base import (
    MASTER_ADMIN_NEEDS_ORDERS,
    PortalView,
    confirmation,
    form_error,
    get_or_404,
    may_grant_master_admin,
    signed_in_first,
)
from views.partner.accounts_screen import account_in_scope
from views.partner.forms import CustomerUserForm, NewPartnerUserForm, PartnerUserForm, PasswordForm, PlaceholderForm


def _users_of(account: Account, portal: str) -> list[PortalUser]:
    """Staff logins of ``account`` (customer portal users are memberships: ``user_service.members_of``)."""
    return list(
        db.session.scalars(
            select(PortalUser)
            .where(PortalUser.account_id == account.id, PortalUser.portal == portal, PortalUser.deleted_at.is_(None))
            .order_by(func.lower(PortalUser.first_name), func.lower(PortalUser.last_name), PortalUser.id)
        )
    )


def _user_of(account: Account, user_id, portal: str) -> PortalUser:
    user = get_or_404(PortalUser, user_id)
    if user.account_id != account.id or user.portal != portal or user.deleted_at is not None:
        abort(404)
    return user


def member_of(account: Account, user_id) -> Membership:
    """Login ``user_id``'s membership in ``account`` (through the scope), else 404."""
    membership = user_service.membership_of(account, user_id)
    if membership is None:
        abort(404)
    return membership


def login_form_rules(form, membership: Membership | None) -> bool:
    """May the signed-in user change the login's own fields (name, email, mobile) from this account's Users tab? If
    not, they are shown read-only. Returns the answer (security/memberships.py decides)."""
    if membership is None:
        return True
    allowed = bool(
        can_edit_login(actor=g.user, login=membership.user, theirs_alone=user_service.login_is_theirs_alone(membership))
    )
    if not allowed:
        for field in (form.first_name, form.last_name, form.email, form.mobile):
            field.render_kw = {**(field.render_kw or {}), "readonly": True}
    return allowed


def member_form(membership: Membership):
    """The Users tab's form for one membership: the person's name and email, this account's flags."""
    login = membership.user
    return CustomerUserForm(
        first_name=login.first_name,
        last_name=login.last_name,
        email=login.email,
        mobile=login.mobile,
        admin=membership.is_admin,
        master_admin=membership.is_master_admin,
    )


def save_member(form, membership: Membership):
    """Save the Users tab's edit of one membership (and of the login's fields where allowed)."""
    login_too = login_form_rules(form, membership)
    return save_form(
        form,
        lambda: user_service.update_member(
            membership,
            UserChanges(
                form.first_name.data,
                form.last_name.data,
                form.email.data,
                form.mobile.data,
                admin=form.admin.data,
                master_admin=form.master_admin.data,
            ),
            login_too=login_too,
        ),
    )


def mail_added(added: Added, account: Account) -> Added:
    """Add New's mail, queued in the new user's own transaction: a new login gets its activation link; a person who
    had one hears of their new access. The mail outbox sends it after the commit (and retries)."""
    if added.new_login:
        send_activation(added.login, account=account)
    else:
        send_access_granted(added.membership)
    return added


def tell_added(added: Added, account: Account) -> None:
    """After Add New: what was done, and that the mail is on its way (queued; a final failure shows on the tab)."""
    email = added.login.email
    if not added.new_login:
        flash(f"{email} now has access to {account.name}; an email telling them is on its way.", "success")
    else:
        flash(f"Added {email}; an email asking them to activate their account is on its way.", "success")


def apply_user_change(user, change, done: str, back: str, refused: str | None = None, ask=None):
    """Run a one-click change (disable, enable, delete) of a login or a membership — never on one's own sign-in —
    and go ``back`` saying what happened (or why not). ``ask``: the confirmation step of a change that cannot be
    taken back (``ask()`` returns the confirmation page, or None once the POST carries the answer)."""
    if getattr(user, "user_id", None) == g.user.id or (isinstance(user, PortalUser) and user.id == g.user.id):
        refused = "You cannot change your own sign-in this way."
    if refused:
        flash(refused, "danger")
    elif ask is not None and (page := ask()) is not None:
        return page
    else:
        address = user.email  # before the change: a deleted login's stored address carries a mark
        try:
            change(user)
            db.session.commit()
        except UserError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
        else:
            flash(done.format(email=address), "success")
    return redirect(back)


def mfa_resettable(users) -> set[int]:
    """Ids of the listed logins with two-factor authentication that the signed-in user may reset."""
    return {u.id for u in users if u.mfa is not None and can_reset_mfa(actor=g.user, target=u)}


def ask_on_users_tab(question: str, consequence: str, button: str, account: Account):
    """The confirmation step on the partner side (views/base.py confirmation); Cancel goes back to the Users tab."""
    back = url_for("AccountUsersView.users", account_id=account.id)
    return lambda: confirmation(question, consequence, button, cancel_url=back)


def reset_mfa_of(user: PortalUser, back: str):
    """Reset ``user``'s two-factor authentication (a lost phone), if the signed-in user may; back to the list. Asked
    first: the old authenticator cannot be brought back."""
    decision = can_reset_mfa(actor=g.user, target=user)
    if not decision:
        abort(403, description=decision.reason)
    asked = user.mfa is not None and confirmation(  # without one, the reset below says there is nothing to reset
        f"Reset the two-factor authentication of {user.email}?",
        "Their authenticator app and recovery codes stop working at once and their sessions end; they sign in "
        "with their password and set up two-factor authentication again.",
        "Reset two-factor",
        cancel_url=back,
    )
    if asked:
        return asked
    try:
        mfa_service.reset(g.user, user)
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "warning")
    else:
        flash(
            f"Reset the two-factor authentication of {user.email}: they sign in with a password, then set it up again.",
            "success",
        )
    return redirect(back)


def save_form(form, change):
    """Run ``change()`` for a valid form and commit. A refusal (UserError) is rolled back and shown beside its
    field. Returns (saved, what ``change`` returned)."""
    if not form.validate_on_submit():
        return False, None
    try:
        result = change()
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        form_error(form, exc)
        return False, None
    return True, result


class AccountUsersView(PortalView):
    """The Users tab and customer portal users: Add New, Edit, Disable/Enable, Delete, Resend activation."""

    route_base = "/accounts"
    class_permission_name = P.PORTAL_USERS
    method_permission_name = {
        "users": P.READ,
        "new_customer_user": P.WRITE,
        "add_customer_user": P.WRITE,
        "edit_customer_user": P.WRITE,
        "save_customer_user": P.WRITE,
        "disable_user": P.WRITE,
        "enable_user": P.WRITE,
        "delete_user": P.DELETE,
        "resend_activation": P.WRITE,
        "activate_user": P.WRITE,
        "activate_placeholder": P.WRITE,
        "edit_placeholder": P.WRITE,
        "save_placeholder": P.WRITE,
        "delete_placeholder": P.DELETE,
        "reset_mfa": P.WRITE,
    }

    def _page(self, template: str, account: Account, **context):
        return self.render_template(f"portal/account/{template}", account=account, tab="users", **context)

    def _back(self, account: Account):
        return redirect(url_for("AccountUsersView.users", account_id=account.id))

    @expose("/<int:account_id>/users")
    @signed_in_first
    @has_access
    def users(self, account_id):
        account = account_in_scope(account_id)
        customer_users = user_service.members_of(account) if account.kind in (CUSTOMER, RESELLER) else []
        placeholders = (
            list(
                db.session.scalars(
                    select(PlaceholderUser).where(PlaceholderUser.account_id == account.id).order_by(PlaceholderUser.id)
                )
            )
            if account.kind == CUSTOMER
            else []
        )
        partner_users = _users_of(account, PARTNER_PORTAL) if account.kind == RESELLER else []
        return self._page(
            "users.html",
            account,
            customer_users=customer_users,
            placeholders=placeholders,
            partner_users=partner_users,
            mfa_resettable=mfa_resettable([*(m.user for m in customer_users), *partner_users]),
        )

    # -- customer portal users ------------------------------------------------------------------------------
    def _customer(self, account_id, *, placeholders: bool = False) -> Account:
        """An account in scope with customer portal users: a customer, or a reseller (its own customer portal).
        Master admin placeholders belong to customers only."""
        account = account_in_scope(account_id)
        if account.kind != CUSTOMER and (placeholders or account.kind != RESELLER):
            abort(404)
        return account

    @expose("/<int:account_id>/users/customer/new")
    @signed_in_first
    @has_access
    def new_customer_user(self, account_id):
        account = self._customer(account_id)
        return self._page("user_form.html", account, form=CustomerUserForm(), title="Add customer portal user")

    @expose("/<int:account_id>/users/customer/new", methods=["POST"])
    @has_access
    def add_customer_user(self, account_id):
        account = self._customer(account_id)
        form = CustomerUserForm()
        if form.master_admin.data and not may_grant_master_admin():
            form.master_admin.errors = [MASTER_ADMIN_NEEDS_ORDERS]
            return self._page("user_form.html", account, form=form, title="Add customer portal user"), 403
        saved, added = save_form(
            form,
            lambda: mail_added(
                user_service.add_member(
                    account,
                    form.email.data,
                    form.first_name.data,
                    form.last_name.data,
                    mobile=form.mobile.data,
                    admin=form.admin.data,
                    master_admin=form.master_admin.data,
                    cp3_enabled=True,
                ),
                account,
            ),
        )
        if saved:
            tell_added(added, account)
            return self._back(account)
        return self._page("user_form.html", account, form=form, title="Add customer portal user"), 400

    @expose("/<int:account_id>/users/customer/<int:user_id>/edit")
    @signed_in_first
    @has_access
    def edit_customer_user(self, account_id, user_id):
        account = self._customer(account_id)
        membership = member_of(account, user_id)
        form = member_form(membership)
        locked = not login_form_rules(form, membership)
        return self._page(
            "user_form.html", account, form=form, title=f"Edit {membership.email}", user=membership, login_locked=locked
        )

    @expose("/<int:account_id>/users/customer/<int:user_id>/edit", methods=["POST"])
    @has_access
    def save_customer_user(self, account_id, user_id):
        account = self._customer(account_id)
        membership = member_of(account, user_id)
        form = CustomerUserForm()
        title = "Edit customer portal user"
        if form.master_admin.data and not membership.is_master_admin and not may_grant_master_admin():
            form.master_admin.errors = [MASTER_ADMIN_NEEDS_ORDERS]
            return self._page("user_form.html", account, form=form, title=title, user=membership), 403
        saved, _ = save_member(form, membership)
        if saved:
            flash(f"Saved {membership.email}.", "success")
            return self._back(account)
        return self._page("user_form.html", account, form=form, title=title, user=membership), 400

    def _change(self, account_id, user_id, change, done: str, ask=None):
        account = self._customer(account_id)
        membership = member_of(account, user_id)
        return apply_user_change(
            membership,
            change,
            done,
            url_for("AccountUsersView.users", account_id=account.id),
            ask=ask(membership, account) if ask else None,
        )

    @expose("/<int:account_id>/users/customer/<int:user_id>/disable", methods=["POST"])
    @has_access
    def disable_user(self, account_id, user_id):
        return self._change(
            account_id,
            user_id,
            lambda m: user_service.set_member_enabled(m, False),
            "{email} is disabled here: they can no longer work in this account.",
            ask=lambda m, account: ask_on_users_tab(
                f"Disable {m.email} in {account.name}?",
                f"They can no longer work in {account.name}, and their sessions there end, until they are enabled "
                "again. Any other accounts of theirs are not affected.",
                "Disable",
                account,
            ),
        )

    @expose("/<int:account_id>/users/customer/<int:user_id>/enable", methods=["POST"])
    @has_access
    def enable_user(self, account_id, user_id):
        return self._change(
            account_id, user_id, lambda m: user_service.set_member_enabled(m, True), "{email} is enabled."
        )

    @expose("/<int:account_id>/users/customer/<int:user_id>/delete", methods=["POST"])
    @has_access
    def delete_user(self, account_id, user_id):
        return self._change(
            account_id,
            user_id,
            user_service.remove_member,
            "{email} is deleted from this account; their history stays.",
            ask=lambda m, account: ask_on_users_tab(
                f"Delete {m.email} from {account.name}?",
                f"They lose access to {account.name} for good: to give it back, add them anew. Any other accounts "
                "of theirs stay, and so does their history.",
                "Delete user",
                account,
            ),
        )

    @expose("/<int:account_id>/users/customer/<int:user_id>/resend", methods=["POST"])
    @has_access
    def resend_activation(self, account_id, user_id):
        account = self._customer(account_id)
        membership = member_of(account, user_id)
        user = membership.user
        if not membership.cp3_enabled:
            flash(f"{user.email} is not enabled for the customer portal yet.", "warning")
        elif user.password_set_at is not None and user.activation_nonce is None:
            flash(f"{user.email} has already set a password: they sign in with it.", "info")
        else:
            send_activation(user, account=account)
            db.session.commit()
            flash(f"A new activation email to {user.email} is on its way; earlier links no longer work.", "success")
        return self._back(account)

    @expose("/<int:account_id>/users/customer/<int:user_id>/reset-two-factor", methods=["POST"])
    @has_access
    def reset_mfa(self, account_id, user_id):
        account = self._customer(account_id)
        return reset_mfa_of(member_of(account, user_id).user, url_for(".users", account_id=account.id))

    @expose("/<int:account_id>/users/customer/<int:user_id>/activate", methods=["POST"])
    @has_access
    def activate_user(self, account_id, user_id):
        """Activate (CP3): enable the customer portal for this user here; a login without a password yet gets the
        activation link, one that has a password hears of its access."""
        account = self._customer(account_id)
        membership = member_of(account, user_id)
        user = membership.user
        if membership.cp3_enabled:
            flash(f"{user.email} can already use the customer portal.", "info")
            return self._back(account)
        user_service.enable_customer_portal(membership)
        if user.password_set_at is not None:
            send_access_granted(membership)
        else:
            send_activation(user, account=account)
        db.session.commit()
        flash(f"{user.email} is enabled for the customer portal; the email is on its way.", "success")
        return self._back(account)

    @expose("/<int:account_id>/users/placeholder/<int:placeholder_id>/activate", methods=["POST"])
    @has_access
    def activate_placeholder(self, account_id, placeholder_id):
        """Activate (CP3) on the master admin placeholder: it becomes a real login, once it has a real address."""
        account = self._customer(account_id, placeholders=True)
        placeholder = self._placeholder(account, placeholder_id)
        if placeholder.is_master_admin and not may_grant_master_admin():
            flash(MASTER_ADMIN_NEEDS_ORDERS + " Ask a Partner CSP Admin to activate it.", "warning")
            return self._back(account)
        if placeholder.email == current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"].lower():
            flash("Change this user's email to a real address first.", "warning")
            return redirect(
                url_for("AccountUsersView.edit_placeholder", account_id=account.id, placeholder_id=placeholder.id)
            )
        try:
            added = mail_added(user_service.activate_placeholder(placeholder), account)
            db.session.commit()
        except UserError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return self._back(account)
        if not added.new_login:
            told = "an email telling them is on its way"
            flash(f"{added.login.email} is now a Master Admin of {account.name} too; {told}.", "success")
        else:
            flash(f"{added.login.email} is now a customer portal user; the activation email is on its way.", "success")
        return self._back(account)

    # -- the default master admin placeholder ----------------------------------------------------------------
    def _placeholder(self, account: Account, placeholder_id) -> PlaceholderUser:
        placeholder = get_or_404(PlaceholderUser, placeholder_id)
        if placeholder.account_id != account.id:
            abort(404)
        return placeholder

    @expose("/<int:account_id>/users/placeholder/<int:placeholder_id>/edit")
    @signed_in_first
    @has_access
    def edit_placeholder(self, account_id, placeholder_id):
        account = self._customer(account_id, placeholders=True)
        placeholder = self._placeholder(account, placeholder_id)
        return self._page(
            "user_form.html",
            account,
            form=PlaceholderForm(obj=placeholder),
            title="Edit the master admin",
            placeholder=placeholder,
        )

    @expose("/<int:account_id>/users/placeholder/<int:placeholder_id>/edit", methods=["POST"])
    @has_access
    def save_placeholder(self, account_id, placeholder_id):
        account = self._customer(account_id, placeholders=True)
        placeholder = self._placeholder(account, placeholder_id)
        form = PlaceholderForm()
        saved, _ = save_form(
            form,
            lambda: user_service.update_placeholder(
                placeholder, form.first_name.data, form.last_name.data, form.email.data, form.mobile.data
            ),
        )
        if saved:
            flash(
                f"Saved the master admin {placeholder.email}. Activate (CP3) to send their activation email.", "success"
            )
            return self._back(account)
        return self._page(
            "user_form.html", account, form=form, title="Edit the master admin", placeholder=placeholder
        ), 400

    @expose("/<int:account_id>/users/placeholder/<int:placeholder_id>/delete", methods=["POST"])
    @has_access
    def delete_placeholder(self, account_id, placeholder_id):
        account = self._customer(account_id, placeholders=True)
        placeholder = self._placeholder(account, placeholder_id)
        asked = ask_on_users_tab(
            f"Delete the master admin {placeholder.email} of {account.name}?",
            f"{placeholder.name} has never been activated: the placeholder is removed for good. A master admin can "
            "be added again with Add New.",
            "Delete",
            account,
        )()
        if asked:
            return asked
        user_service.delete_placeholder(placeholder)
        db.session.commit()
        flash("Removed the master admin placeholder.", "success")
        return self._back(account)


class PartnerUsersView(PortalView):
    """PARTNER PORTAL USERS of a reseller: Add New (the adder sets the password), Edit, Password."""

    route_base = "/accounts"
    class_permission_name = P.PARTNER_USERS
    method_permission_name = {
        "new_partner_user": P.WRITE,
        "add_partner_user": P.WRITE,
        "edit_partner_user": P.WRITE,
        "save_partner_user": P.WRITE,
        "password": P.WRITE,
        "save_password": P.WRITE,
        "disable_partner_user": P.WRITE,
        "enable_partner_user": P.WRITE,
        "reset_partner_mfa": P.WRITE,
    }

    def _reseller(self, account_id) -> Account:
        account = account_in_scope(account_id)
        if account.kind != RESELLER:
            abort(404)
        return account

    def _page(self, account: Account, form, title: str, **context):
        return self.render_template(
            "portal/account/user_form.html", account=account, tab="users", form=form, title=title, **context
        )

    def _back(self, account: Account):
        return redirect(url_for("AccountUsersView.users", account_id=account.id))

    @expose("/<int:account_id>/users/partner/new")
    @signed_in_first
    @has_access
    def new_partner_user(self, account_id):
        account = self._reseller(account_id)
        return self._page(account, NewPartnerUserForm(), "Add partner portal user")

    @expose("/<int:account_id>/users/partner/new", methods=["POST"])
    @has_access
    def add_partner_user(self, account_id):
        account = self._reseller(account_id)
        form = NewPartnerUserForm()
        saved, user = save_form(
            form,
            lambda: user_service.create_user(
                account,
                form.email.data,
                form.first_name.data,
                form.last_name.data,
                password=form.password.data,
                csp_admin=form.csp_admin.data,
            ),
        )
        if saved:
            flash(f"Added partner portal user {user.email}.", "success")
            return self._back(account)
        return self._page(account, form, "Add partner portal user"), 400

    @expose("/<int:account_id>/users/partner/<int:user_id>/edit")
    @signed_in_first
    @has_access
    def edit_partner_user(self, account_id, user_id):
        account = self._reseller(account_id)
        user = _user_of(account, user_id, PARTNER_PORTAL)
        form = PartnerUserForm(obj=user, csp_admin=user.is_csp_admin)
        return self._page(account, form, f"Edit {user.email}", user=user)

    @expose("/<int:account_id>/users/partner/<int:user_id>/edit", methods=["POST"])
    @has_access
    def save_partner_user(self, account_id, user_id):
        account = self._reseller(account_id)
        user = _user_of(account, user_id, PARTNER_PORTAL)
        form = PartnerUserForm()
        saved, _ = save_form(
            form,
            lambda: user_service.update_user(
                user,
                UserChanges(form.first_name.data, form.last_name.data, form.email.data, csp_admin=form.csp_admin.data),
            ),
        )
        if saved:
            flash(f"Saved {user.email}.", "success")
            return self._back(account)
        return self._page(account, form, "Edit partner portal user", user=user), 400

    @expose("/<int:account_id>/users/partner/<int:user_id>/password")
    @signed_in_first
    @has_access
    def password(self, account_id, user_id):
        account = self._reseller(account_id)
        user = _user_of(account, user_id, PARTNER_PORTAL)
        return self._page(account, PasswordForm(), f"New password for {user.email}", user=user)

    @expose("/<int:account_id>/users/partner/<int:user_id>/password", methods=["POST"])
    @has_access
    def save_password(self, account_id, user_id):
        account = self._reseller(account_id)
        user = _user_of(account, user_id, PARTNER_PORTAL)
        form = PasswordForm()
        form.account_email = user.email
        if form.validate_on_submit():
            user_service.set_password(user, form.password.data)
            db.session.commit()
            flash(f"Set a new password for {user.email}.", "success")
            return self._back(account)
        return self._page(account, form, f"New password for {user.email}", user=user), 400

    @expose("/<int:account_id>/users/partner/<int:user_id>/disable", methods=["POST"])
    @has_access
    def disable_partner_user(self, account_id, user_id):
        account = self._reseller(account_id)
        user = _user_of(account, user_id, PARTNER_PORTAL)
        return apply_user_change(
            user,
            lambda u: user_service.set_enabled(u, False),
            "{email} is disabled and can no longer sign in.",
            url_for("AccountUsersView.users", account_id=account.id),
            ask=ask_on_users_tab(
                f"Disable {user.email}?",
                f"They can no longer sign in to {account.name}'s partner portal, and their sessions end, until they "
                "are enabled again.",
                "Disable",
                account,
            ),
        )

    @expose("/<int:account_id>/users/partner/<int:user_id>/enable", methods=["POST"])
    @has_access
    def enable_partner_user(self, account_id, user_id):
        account = self._reseller(account_id)
        return apply_user_change(
            _user_of(account, user_id, PARTNER_PORTAL),
            lambda u: user_service.set_enabled(u, True),
            "{email} is enabled.",
            url_for("AccountUsersView.users", account_id=account.id),
        )

    @expose("/<int:account_id>/users/partner/<int:user_id>/reset-two-factor", methods=["POST"])
    @has_access
    def reset_partner_mfa(self, account_id, user_id):
        account = self._reseller(account_id)
        return reset_mfa_of(
            _user_of(account, user_id, PARTNER_PORTAL), url_for("AccountUsersView.users", account_id=account.id)
        )
