"""The partner portal's forms. Every field is validated on the server; errors show beside the field."""

from __future__ import annotations

import datetime as dt
import re

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, Regexp, StopValidation, ValidationError

from app import clock
from app.csp.rules import (
    company_name_problem,
    contact_email_problem,
    normalise_prefix,
    person_name_problem,
    prefix_problem,
)
from app.services.accounts import ACCOUNT_DETAIL_FIELDS
from app.services.submissions import new_key
from security.passwords import password_problem

_PHONE = Regexp(r"^[0-9+()\-. ]{5,32}$", message="Use digits, spaces and + ( ) - . only (5 to 32 characters).")
_COUNTRY = Regexp(r"^[A-Za-z]{2}$", message="Use the two-letter country code, for example NZ.")


def _required(label: str, max_length: int):
    return [
        DataRequired(message=f"{label} is required."),
        Length(max=max_length, message=f"{label} must be at most {max_length} characters."),
    ]


def _optional(label: str, max_length: int):
    return [Optional(), Length(max=max_length, message=f"{label} must be at most {max_length} characters.")]


def _email(label: str, required: bool = True):
    first = DataRequired(message=f"{label} is required.") if required else Optional()
    return [
        first,
        Length(max=320, message=f"{label} must be at most 320 characters."),
        Email(message="Enter a valid email address, like name@example.com.", check_deliverability=False),
    ]


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class _Form(FlaskForm):
    class Meta:
        def bind_field(self, form, unbound_field, options):
            # Surrounding spaces are never meant: strip every text field.
            filters = options.get("filters", ())
            if unbound_field.field_class in (StringField, EmailField):
                options["filters"] = (*filters, _strip)
            return unbound_field.bind(form=form, **options)


class PasswordRules:
    """The password policy as a WTForms validator (the account's email is not allowed inside it)."""

    def __init__(self, email_field: str | None = "email"):
        self.email_field = email_field

    def __call__(self, form, field):
        email = getattr(form, self.email_field).data if self.email_field and hasattr(form, self.email_field) else ""
        problem = password_problem(field.data or "", email=email or getattr(form, "account_email", ""))
        if problem:
            raise ValidationError(problem)


class CompanyFields(_Form):
    name = StringField("Company name", validators=_required("Company name", 160))
    contact_first_name = StringField("Contact first name", validators=_optional("Contact first name", 40))
    contact_last_name = StringField("Contact last name", validators=_optional("Contact last name", 40))
    contact_email = EmailField("Contact email", validators=_email("Contact email", required=False))
    phone = StringField("Phone", validators=[Optional(), _PHONE])
    address_line1 = StringField("Address", validators=_optional("Address", 120))
    address_line2 = StringField("Address (line 2)", validators=_optional("Address (line 2)", 120))
    city = StringField("City", validators=_optional("City", 64))
    region = StringField("Region", validators=_optional("Region", 64))
    postcode = StringField("Postcode", validators=_optional("Postcode", 16))
    country = StringField("Country", default="NZ", validators=[DataRequired(message="Country is required."), _COUNTRY])

    def validate_name(self, field):
        if not re.search(r"[A-Za-z0-9]", field.data or ""):
            raise ValidationError("Company name needs at least one letter or digit.")

    def company_values(self) -> dict:
        """The account columns this form edits (ACCOUNT_DETAIL_FIELDS that it has), country upper-cased."""
        values = {name: getattr(self, name).data for name in ACCOUNT_DETAIL_FIELDS if name in self}
        values["country"] = (values.get("country") or "NZ").upper()
        return values


class AccountDetailsForm(CompanyFields):
    it_support_email = EmailField(
        "IT support email",
        validators=_email("IT support email", required=False),
        description="Suggested as the master admin of new sub-accounts.",
    )


class SubAccountForm(CompanyFields):
    master_admin_name = StringField(
        "Master admin name", validators=_optional("Master admin name", 64), description="Usually your IT support team."
    )
    master_admin_email = EmailField(
        "Master admin email",
        validators=_email("Master admin email", required=False),
        description="Leave empty for the default master admin placeholder; edit it later on the Users tab.",
    )
    setup_tenant = BooleanField(
        "Next, create its Microsoft tenant", description="Or later, from Products & Services ▸ Microsoft tenant."
    )
    submission_key = HiddenField(default=new_key)  # one customer per form, however often it is sent


class ResellerForm(CompanyFields):
    it_support_email = EmailField("IT support email", validators=_email("IT support email", required=False))
    first_name = StringField("First partner user: first name", validators=_required("First name", 64))
    last_name = StringField("Last name", validators=_required("Last name", 64))
    email = EmailField(
        "Email", validators=_email("Email"), description="Gets a welcome email with a link to set a password."
    )


class CustomerUserForm(_Form):
    first_name = StringField("First name", validators=_required("First name", 64))
    last_name = StringField("Last name", validators=_required("Last name", 64))
    email = EmailField("Email", validators=_email("Email"))
    mobile = StringField("Mobile", validators=[Optional(), _PHONE])
    admin = BooleanField("Admin")
    master_admin = BooleanField("Master Admin")


class PlaceholderForm(_Form):
    first_name = StringField("First name", validators=_required("First name", 64))
    last_name = StringField("Last name", validators=_required("Last name", 64))
    email = EmailField("Email", validators=_email("Email"))
    mobile = StringField("Mobile", validators=[Optional(), _PHONE])


class PartnerUserForm(_Form):
    first_name = StringField("First name", validators=_required("First name", 64))
    last_name = StringField("Last name", validators=_required("Last name", 64))
    email = EmailField("Email", validators=_email("Email"))
    csp_admin = BooleanField("CSP Admin", description="Partner users of the reseller, tenants, orders and prices.")


class NewPartnerUserForm(PartnerUserForm):
    password = PasswordField(
        "Password",
        validators=[DataRequired(message="Password is required."), PasswordRules()],
        description="At least 12 characters; not a common password.",
    )
    confirm = PasswordField("Repeat password", validators=[EqualTo("password", message="The passwords differ.")])


def _new_password() -> PasswordField:
    return PasswordField(
        "New password",
        validators=[DataRequired(message="Password is required."), PasswordRules(email_field=None)],
        description="At least 12 characters; not a common password.",
    )


def _repeat_password() -> PasswordField:
    return PasswordField("Repeat password", validators=[EqualTo("password", message="The passwords differ.")])


class PasswordForm(_Form):
    password = _new_password()
    confirm = _repeat_password()


class ChangePasswordForm(_Form):
    """My own password: the current one first (the view checks it), then the new one twice."""

    current = PasswordField("Current password", validators=[DataRequired(message="Enter your current password.")])
    password = _new_password()
    confirm = _repeat_password()


class _Rule:
    """A rule of app/csp/rules.py as a WTForms validator: the function returns the refusal in words, or None.
    Every such rule refuses an empty value, so the field is marked required."""

    field_flags = {"required": True}

    def __init__(self, check, *args):
        self.check, self.args = check, args

    def __call__(self, form, field):
        problem = self.check(field.data or "", *self.args)
        if problem:
            raise ValidationError(problem)


AGREEMENT_FIRST_DAY = dt.date(2019, 1, 1)


class NewTenantForm(_Form):
    """The new Microsoft tenant: its domain, the company and contact as Microsoft checks them, the agreement."""

    domain_prefix = StringField(
        "Primary Domain Name",
        validators=[_Rule(lambda v: prefix_problem(normalise_prefix(v)))],
        filters=[normalise_prefix],
    )
    company_name = StringField("Company name", validators=[_Rule(company_name_problem), Length(max=160)])
    contact_first_name = StringField("Contact first name", validators=[_Rule(person_name_problem, "first name")])
    contact_last_name = StringField("Contact last name", validators=[_Rule(person_name_problem, "last name")])
    contact_email = EmailField(
        "Contact email",
        validators=_email("Contact email"),
        description="The customer's person for Microsoft (not the portal's master admin).",
    )
    phone = StringField("Phone", validators=[DataRequired(message="Phone is required."), _PHONE])
    address_line1 = StringField("Address", validators=_required("Address", 120))
    address_line2 = StringField("Address (line 2)", validators=_optional("Address (line 2)", 120))
    city = StringField("City", validators=_required("City", 64))
    region = StringField("Region", validators=_optional("Region", 64))
    postcode = StringField("Postcode", validators=_required("Postcode", 16))
    country = StringField("Country", default="NZ", validators=[DataRequired(message="Country is required."), _COUNTRY])
    signer_first_name = StringField(
        "Signatory first name", validators=[_Rule(person_name_problem, "first name", "signatory")]
    )
    signer_last_name = StringField(
        "Signatory last name", validators=[_Rule(person_name_problem, "last name", "signatory")]
    )
    signer_email = EmailField("Signatory email", validators=_email("Signatory email"))
    accepted_on = DateField("Date accepted", validators=[DataRequired(message="Enter the date the customer accepted.")])
    agreement = BooleanField(
        "The customer has accepted the Microsoft Customer Agreement (https://aka.ms/customeragreement)",
        validators=[DataRequired(message="The customer must accept the Microsoft Customer Agreement first.")],
    )
    idempotency_key = HiddenField(validators=[DataRequired(), Length(min=16, max=64)])

    reseller_domains: set[str] = set()

    def validate_contact_email(self, field):
        problem = contact_email_problem(field.data or "", self.reseller_domains)
        if problem:
            raise ValidationError(problem)

    def validate_signer_email(self, field):
        """The customer's signatory, checked as the contact is: not Microsoft, not the reseller itself."""
        problem = contact_email_problem(field.data or "", self.reseller_domains)
        if problem:
            raise ValidationError(problem.replace("contact email", "signatory's email"))

    def validate_accepted_on(self, field):
        if field.data and field.data > clock.today():
            raise ValidationError("The agreement cannot be accepted in the future.")
        if field.data and field.data < AGREEMENT_FIRST_DAY:
            raise ValidationError("The Microsoft Customer Agreement dates from 2019: check the date.")

    def validate_agreement(self, field):
        """A checkbox sends "y"; "0", "off", "no" or spaces are not an acceptance."""
        raw = (field.raw_data or [""])[0].strip().lower()
        if raw not in ("y", "yes", "on", "true", "1"):
            raise StopValidation("The customer must accept the Microsoft Customer Agreement first.")


class LinkTenantForm(_Form):
    domain_prefix = StringField(
        "Existing primary domain",
        validators=[_Rule(lambda v: prefix_problem(normalise_prefix(v)))],
        filters=[normalise_prefix],
        description="The customer's existing <name>.onmicrosoft.com domain.",
    )
