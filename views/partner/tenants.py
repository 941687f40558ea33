"""A customer's Microsoft tenant: the new-tenant form with the live domain check, Retry, linking an existing one."""

from __future__ import annotations

import uuid

from flask import abort, flash, g, jsonify, redirect, request, url_for
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, has_access_api, limit
from flask_login import current_user

from app import clock
from app.csp.base import AgreementAcceptance, CompanyProfile, new_correlation_id
from app.csp.rules import DOMAIN_RULES
from app.extensions import db
from app.models.accounts import CUSTOMER, RESELLER, Account
from app.services import tenants as tenant_service
from app.services.accounts import ACCOUNT_DETAIL_FIELDS
from app.services.tenants import TenantError, TenantRequest
from security import permissions as P
from views.base import PortalView, form_error, signed_in_first
from views.partner.accounts_screen import account_in_scope
from views.partner.forms import LinkTenantForm, NewTenantForm


def customer_in_scope(account_id) -> Account:
    account = account_in_scope(account_id)
    own_reseller_portal = account.kind == RESELLER and g.user.portal == "customer"  # the reseller as a customer
    if account.kind != CUSTOMER and not own_reseller_portal:
        abort(404)
    g.customer = account  # the customer portal's layout shows it
    return account


def in_customer_portal() -> bool:
    """The same form serves both portals: customer users (and launched partners) see it in the customer portal."""
    return g.user.portal == "customer"


def _layout_context(customer: Account) -> dict:
    """The page frame: the customer portal's for customer users (and launched partners), else the account screen."""
    if in_customer_portal():
        return {"layout": "portal/customer/tenant_layout.html", "customer": customer, "section": "microsoft_csp"}
    return {"layout": "portal/account/_layout.html"}


def _email_domain(address: str | None) -> str | None:
    return address.strip().lower().rpartition("@")[2] if address and "@" in address else None


def reseller_domains(customer: Account) -> set[str]:
    """Email domains that are the reseller's own, not the customer's (the contact for Microsoft is the customer's)."""
    reseller = customer.parent
    candidates = [reseller.contact_email, reseller.it_support_email] if reseller else []
    if g.user.portal == "partner":
        candidates.append(g.user.email)
    return {d for d in map(_email_domain, candidates) if d}


def _tenant_request(form: NewTenantForm) -> TenantRequest:
    profile = CompanyProfile(
        domain_prefix=form.domain_prefix.data,
        company_name=form.company_name.data,
        contact_first_name=form.contact_first_name.data,
        contact_last_name=form.contact_last_name.data,
        contact_email=form.contact_email.data.lower(),
        phone=form.phone.data,
        address_line1=form.address_line1.data,
        address_line2=form.address_line2.data or "",
        city=form.city.data,
        region=form.region.data or "",
        postcode=form.postcode.data,
        country=form.country.data.upper(),
    )
    acceptance = AgreementAcceptance(
        signer_first_name=form.signer_first_name.data,
        signer_last_name=form.signer_last_name.data,
        signer_email=form.signer_email.data.lower(),
        accepted_on=form.accepted_on.data,
        signer_phone=form.phone.data,
    )
    return TenantRequest(profile, acceptance)


# The company as Microsoft records it: the tenant form's fields — the account's details (app/services/accounts.py),
# named as CompanyProfile's: the account's name is the company name, and its IT support address is not Microsoft's.
COMPANY_FIELDS = (
    "company_name",
    *(name for name in ACCOUNT_DETAIL_FIELDS if name not in ("name", "it_support_email")),
)


def _prefilled(customer: Account, request_data: TenantRequest | None = None) -> NewTenantForm:
    """The form as first shown: the customer's details, today's date, a new idempotency key."""
    if request_data is not None:
        profile, acceptance = request_data.profile, request_data.acceptance
        data = {
            **{k: getattr(profile, k) for k in ("domain_prefix", *COMPANY_FIELDS)},
            "signer_first_name": acceptance.signer_first_name,
            "signer_last_name": acceptance.signer_last_name,
            "signer_email": acceptance.signer_email,
            "accepted_on": acceptance.accepted_on,
        }
    else:
        data = {
            **{k: getattr(customer, k) for k in COMPANY_FIELDS[1:]},
            "company_name": customer.name,
            # The customer's contact usually signs; whoever does is typed over these
            "signer_first_name": customer.contact_first_name,
            "signer_last_name": customer.contact_last_name,
            "signer_email": customer.contact_email,
            "accepted_on": clock.today(),
        }
    form = NewTenantForm(formdata=None, data=data)
    form.idempotency_key.data = uuid.uuid4().hex
    return form


def _company_complete(customer: Account, form: NewTenantForm) -> bool:
    """Whether the company's details (taken by Add Sub Account or the Details tab) already pass Microsoft's checks:
    then the form shows them as a summary to confirm, not as fields to fill in again. A form that comes back with an
    error in one of them shows the fields."""
    if any(form[name].errors for name in COMPANY_FIELDS):
        return False
    probe = NewTenantForm(formdata=None, data={name: form[name].data for name in COMPANY_FIELDS})
    probe.reseller_domains = reseller_domains(customer)
    probe.validate()
    return not any(probe[name].errors for name in COMPANY_FIELDS)


class TenantSetupView(PortalView):
    """Create (or link) a customer's Microsoft tenant — Partner CSP Admins and operator staff."""

    route_base = "/accounts"
    class_permission_name = P.TENANT_SETUP
    method_permission_name = {
        "new_tenant": P.WRITE,
        "create_tenant": P.WRITE,
        "retry_tenant": P.WRITE,
        "discard_tenant": P.WRITE,
        "new_link": P.WRITE,
        "create_link": P.WRITE,
        "mark_accepted": P.WRITE,
    }

    def _form_page(self, customer: Account, form, status: int = 200):
        page = self.render_template(
            "portal/account/tenant_new.html",
            account=customer,
            tab="products",
            form=form,
            company_fields=COMPANY_FIELDS,
            company_complete=_company_complete(customer, form),
            rules=DOMAIN_RULES,
            check_url=url_for("DomainCheckView.check", account_id=customer.id),
            **_layout_context(customer),
        )
        return page, status

    def _created(self, customer: Account, tenant):
        """The tenant is active: its first admin's credentials on this answer alone (never flashed: a flash is kept in
        the session), the page not cached; else the tenant's page."""
        credentials = tenant.fresh_credentials
        if credentials is None:
            flash(f"Created the Microsoft tenant {tenant.primary_domain}.", "success")
            return self._tenant_page(customer)
        page = self.render_template(
            "portal/account/tenant_created.html",
            account=customer,
            tab="products",
            tenant=tenant,
            credentials=credentials,
            back_url=(
                url_for("CustomerServicesView.microsoft_csp", customer_id=customer.id)
                if in_customer_portal()
                else url_for("AccountScreenView.microsoft_tenant", account_id=customer.id)
            ),
            **_layout_context(customer),
        )
        return page, 200, {"Cache-Control": "no-store"}

    def _tenant_page(self, customer: Account):
        if in_customer_portal():
            return redirect(url_for("CustomerServicesView.microsoft_csp", customer_id=customer.id))
        return redirect(url_for("AccountScreenView.microsoft_tenant", account_id=customer.id))

    def _without_tenant(self, account_id) -> Account:
        customer = customer_in_scope(account_id)
        if customer.tenant is not None:
            flash(f"{customer.name} already has the Microsoft tenant {customer.tenant.primary_domain}.", "info")
            abort(self._tenant_page(customer))
        return customer

    @expose("/<int:account_id>/microsoft-tenant/new")
    @signed_in_first
    @has_access
    def new_tenant(self, account_id):
        customer = self._without_tenant(account_id)
        return self._form_page(customer, _prefilled(customer))

    @expose("/<int:account_id>/microsoft-tenant/new", methods=["POST"])
    @has_access
    def create_tenant(self, account_id):
        customer = customer_in_scope(account_id)
        form = NewTenantForm()
        form.reseller_domains = reseller_domains(customer)
        if not form.validate_on_submit():
            return self._form_page(customer, form, 400)
        try:
            tenant = tenant_service.create_tenant(customer, _tenant_request(form), form.idempotency_key.data)
        except TenantError as exc:
            form_error(form, exc)
            return self._form_page(customer, form, 409 if exc.field else 400)
        if tenant.status == "active":
            return self._created(customer, tenant)
        if tenant.status == "failed":
            flash(f"The Microsoft tenant {tenant.primary_domain} is not created yet: {tenant.last_error}", "danger")
        return self._tenant_page(customer)

    @expose("/<int:account_id>/microsoft-tenant/retry", methods=["POST"])
    @has_access
    def retry_tenant(self, account_id):
        customer = customer_in_scope(account_id)
        if customer.tenant is None:
            abort(404)
        try:
            tenant = tenant_service.retry(customer.tenant)
        except TenantError as exc:
            flash(str(exc), "warning")
        else:
            if tenant.status == "active":
                return self._created(customer, tenant)
            else:
                flash(f"Still not created: {tenant.last_error}", "danger")
        return self._tenant_page(customer)

    @expose("/<int:account_id>/microsoft-tenant/discard", methods=["POST"])
    @has_access
    def discard_tenant(self, account_id):
        customer = customer_in_scope(account_id)
        if customer.tenant is None:
            abort(404)
        try:
            typed = tenant_service.discard_failed(customer.tenant)
        except TenantError as exc:
            flash(str(exc), "warning")
            return self._tenant_page(customer)
        flash("Choose another domain name; everything else you typed is still here.", "info")
        return self._form_page(customer, _prefilled(customer, typed))

    @expose("/<int:account_id>/microsoft-tenant/link")
    @signed_in_first
    @has_access
    def new_link(self, account_id):
        customer = self._without_tenant(account_id)
        return self.render_template(
            "portal/account/tenant_link.html",
            account=customer,
            tab="products",
            form=LinkTenantForm(),
            **_layout_context(customer),
        )

    @expose("/<int:account_id>/microsoft-tenant/link", methods=["POST"])
    @has_access
    def create_link(self, account_id):
        customer = customer_in_scope(account_id)
        form = LinkTenantForm()
        if form.validate_on_submit():
            try:
                tenant = tenant_service.link_existing(customer, form.domain_prefix.data)
            except TenantError as exc:
                form_error(form, exc)
            else:
                flash(f"Linked {tenant.primary_domain}: send the customer the invitation link below.", "success")
                return self._tenant_page(customer)
        page = self.render_template(
            "portal/account/tenant_link.html", account=customer, tab="products", form=form, **_layout_context(customer)
        )
        return page, 400

    @expose("/<int:account_id>/microsoft-tenant/accepted", methods=["POST"])
    @has_access
    def mark_accepted(self, account_id):
        customer = customer_in_scope(account_id)
        if customer.tenant is None:
            abort(404)
        try:
            tenant_service.mark_accepted(customer.tenant)
        except TenantError as exc:
            flash(str(exc), "warning")
        else:
            flash(f"{customer.tenant.primary_domain} is now managed by you.", "success")
        return self._tenant_page(customer)


def _per_user() -> str:
    """The rate-limit key: the signed-in user (Flask-Limiter checks before FAB has set ``g.user``)."""
    return f"user:{current_user.id}" if current_user.is_authenticated else f"address:{request.remote_addr}"


class DomainCheckView(PortalView):
    """The live availability check behind the Primary Domain Name field (JSON, rate-limited per user)."""

    route_base = "/accounts"
    class_permission_name = P.TENANT_SETUP
    method_permission_name = {"check": P.WRITE}

    @expose("/<int:account_id>/microsoft-tenant/check")
    @has_access_api
    @limit(lambda: current_check_limit(), key_func=_per_user)
    def check(self, account_id):
        customer_in_scope(account_id)
        verdict = tenant_service.check_domain(
            request.args.get("prefix", ""), request.headers.get("X-Correlation-Id") or new_correlation_id()
        )
        db.session.rollback()  # a check changes nothing
        return jsonify(verdict.as_json())


def current_check_limit() -> str:
    from flask import current_app

    return current_app.config["DOMAIN_CHECK_RATE_LIMIT"]
