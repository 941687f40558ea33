"""An account's details screen: the Details, Sub-Accounts and Products & Services tabs, and Add Sub Account."""

from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import faults
from app.extensions import db
from app.models.accounts import CUSTOMER, OPERATOR, RESELLER, Account, MicrosoftTenant
from app.models.subscriptions import Subscription
from app.services import submissions
from app.services.accounts import create_sub_account, sibling_name_problem, sub_account_named, update_details
from app.services.users import login_email_problem
from security import permissions as P
from views.base import PortalView, get_or_404, page_arg, signed_in_first
from views.partner.forms import AccountDetailsForm, SubAccountForm

SUB_ACCOUNTS_PER_PAGE = 25


def account_in_scope(account_id) -> Account:
    """A reseller or customer the signed-in user may see (the operator's own account is no tab screen)."""
    account = get_or_404(Account, account_id)
    if account.kind == OPERATOR:
        abort(404)
    return account


def _added_once(reseller: Account, name: str | None) -> str:
    """What a resend of an Add Sub Account form that was added hears — naming the customer the first send made."""
    made = sub_account_named(reseller, name)
    where = f" {made}" if made else ""
    return f"This form was already sent (submitted twice): the sub-account{where} was added once."


class AccountScreenView(PortalView):
    """/accounts/<id>/...: the screen the search box and Accounts ▸ List all lead to."""

    route_base = "/accounts"
    class_permission_name = P.ACCOUNTS
    method_permission_name = {
        "overview": P.READ,
        "details": P.READ,
        "save_details": P.WRITE,
        "sub_accounts": P.READ,
        "new_sub_account": P.WRITE,
        "add_sub_account": P.WRITE,
        "microsoft_tenant": P.READ,
    }

    def _render(self, template: str, account: Account, tab: str, **context):
        return self.render_template(f"portal/account/{template}", account=account, tab=tab, **context)

    @expose("/<int:account_id>/")
    @signed_in_first
    @has_access
    def overview(self, account_id):
        return redirect(url_for(".details", account_id=account_in_scope(account_id).id))

    @expose("/<int:account_id>/details")
    @signed_in_first
    @has_access
    def details(self, account_id):
        account = account_in_scope(account_id)
        return self._render("details.html", account, "details", form=self._details_form(account, obj=account))

    @staticmethod
    def _details_form(account: Account, **kwargs) -> AccountDetailsForm:
        form = AccountDetailsForm(**kwargs)
        if account.kind != RESELLER:
            del form.it_support_email  # only resellers have an IT support address
        return form

    @expose("/<int:account_id>/details", methods=["POST"])
    @has_access
    def save_details(self, account_id):
        account = account_in_scope(account_id)
        form = self._details_form(account)
        valid = form.validate_on_submit()
        if valid and "name" in request.form:
            clash = sibling_name_problem(account.parent, form.name.data, except_id=account.id)
            if clash:
                form.name.errors = [*form.name.errors, clash]
                valid = False
        if not valid:
            return self._render("details.html", account, "details", form=form), 400
        # Only the fields the request carried: a field left out keeps its value (a form always sends them all).
        sent = {name: value for name, value in form.company_values().items() if name in request.form}
        update_details(account, sent)
        db.session.commit()
        flash(f"Saved the details of {account.name}.", "success")
        return redirect(url_for(".details", account_id=account.id))

    @expose("/<int:account_id>/sub-accounts")
    @signed_in_first
    @has_access
    def sub_accounts(self, account_id):
        reseller = account_in_scope(account_id)
        if reseller.kind != RESELLER:
            abort(404)
        page = page_arg()
        query = select(Account).where(Account.parent_id == reseller.id, Account.kind == CUSTOMER)
        total = db.session.scalar(select(func.count()).select_from(query.subquery()))
        customers = db.session.scalars(
            query.order_by(func.lower(Account.name), Account.id)
            .offset((page - 1) * SUB_ACCOUNTS_PER_PAGE)
            .limit(SUB_ACCOUNTS_PER_PAGE)
        ).all()
        ids = [c.id for c in customers]
        domains = (
            dict(
                db.session.execute(
                    select(MicrosoftTenant.account_id, MicrosoftTenant.domain_prefix).where(
                        MicrosoftTenant.account_id.in_(ids)
                    )
                ).all()
            )
            if ids
            else {}
        )
        licences = (
            {
                row[0]: (row[1], row[2])
                for row in db.session.execute(
                    select(Subscription.account_id, func.sum(Subscription.assigned), func.sum(Subscription.quantity))
                    .where(Subscription.account_id.in_(ids), Subscription.status == "active")
                    .group_by(Subscription.account_id)
                )
            }
            if ids
            else {}
        )
        return self._render(
            "sub_accounts.html",
            reseller,
            "sub_accounts",
            customers=customers,
            domains=domains,
            licences=licences,
            total=total,
            page=page,
            per_page=SUB_ACCOUNTS_PER_PAGE,
        )

    def _sub_account_form(self, reseller: Account) -> SubAccountForm:
        form = SubAccountForm()
        if request.method == "GET":
            form.master_admin_email.data = reseller.it_support_email
            form.master_admin_name.data = "IT Support" if reseller.it_support_email else ""
        return form

    @expose("/<int:account_id>/sub-accounts/new")
    @signed_in_first
    @has_access
    def new_sub_account(self, account_id):
        reseller = account_in_scope(account_id)
        if reseller.kind != RESELLER:
            abort(404)
        return self._render("sub_account_new.html", reseller, "sub_accounts", form=self._sub_account_form(reseller))

    @expose("/<int:account_id>/sub-accounts/new", methods=["POST"])
    @has_access
    def add_sub_account(self, account_id):
        reseller = account_in_scope(account_id)
        if reseller.kind != RESELLER:
            abort(404)
        form = self._sub_account_form(reseller)
        if not form.validate_on_submit():
            return self._render("sub_account_new.html", reseller, "sub_accounts", form=form), 400
        # The form's key is claimed in the same transaction as the customer it guards: a crash between them leaves
        # neither (never "already sent" with nothing added). A resend of a form that was added hears "already sent",
        # not "that name is taken"; twins sent at once clash at commit, and the loser hears the same.
        try:
            key = submissions.hold(form.submission_key.data, reseller.id, "sub-account")
        except submissions.AlreadySubmitted as exc:
            flash(str(exc) or _added_once(reseller, form.name.data), "info")
            return redirect(url_for(".sub_accounts", account_id=reseller.id))
        with db.session.no_autoflush:  # the held key is written with the customer, at the commit below
            if clash := sibling_name_problem(reseller, form.name.data):
                form.name.errors = [*form.name.errors, clash]
            address = (form.master_admin_email.data or "").strip().lower()
            if address and address != current_app.config["DEFAULT_MASTER_ADMIN_EMAIL"].lower():
                # Heard now, not at Activate (CP3). The reseller's own logins and its other customers' waiting master
                # admins are fine: activation gives that person access to one more customer (the guide's IT support).
                problem = login_email_problem(address, company=form.name.data, reseller_id=reseller.id)
                if problem:
                    form.master_admin_email.errors = [*form.master_admin_email.errors, problem]
        if form.name.errors or form.master_admin_email.errors:
            db.session.rollback()
            if submissions.was_claimed(key):  # its twin, sent at the same moment, added it (hence "name taken")
                flash(_added_once(reseller, form.name.data), "info")
                return redirect(url_for(".sub_accounts", account_id=reseller.id))
            return self._render("sub_account_new.html", reseller, "sub_accounts", form=form), 400
        try:
            customer = create_sub_account(
                reseller, form.company_values(), form.master_admin_name.data, form.master_admin_email.data
            )
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if not submissions.was_claimed(key):
                raise
            flash(_added_once(reseller, form.name.data), "info")  # its twin, sent at the same moment, added it
            return redirect(url_for(".sub_accounts", account_id=reseller.id))
        faults.point(faults.AFTER_ADD_SUB_ACCOUNT)  # fault tests: committed, and the page never answers
        flash(f"Added sub-account {customer.name}. Its master admin is {customer_master_label(customer)}.", "success")
        if form.setup_tenant.data:
            return redirect(url_for("TenantSetupView.new_tenant", account_id=customer.id))
        return redirect(url_for(".sub_accounts", account_id=reseller.id))

    @expose("/<int:account_id>/products/microsoft-tenant")
    @signed_in_first
    @has_access
    def microsoft_tenant(self, account_id):
        account = account_in_scope(account_id)
        if account.kind != CUSTOMER:
            abort(404)
        from app.services.tenants import invitation_url, is_stuck, recover

        tenant = account.tenant
        if tenant is not None and is_stuck(tenant):
            tenant = recover(tenant)  # interrupted: Microsoft is asked what exists
        from app.services.handover import pending

        return self._render(
            "microsoft_tenant.html",
            account,
            "products",
            tenant=tenant,
            invitation_url=invitation_url(),
            handovers=pending(account) if tenant is not None else [],
        )


def customer_master_label(customer: Account) -> str:
    from app.models.accounts import PlaceholderUser

    placeholder = db.session.scalars(select(PlaceholderUser).where(PlaceholderUser.account_id == customer.id)).first()
    return placeholder.email if placeholder else "not set"


def is_partner_portal_user() -> bool:
    user = g.get("user")
    return bool(user and user.is_authenticated and user.portal in ("operator", "partner"))
