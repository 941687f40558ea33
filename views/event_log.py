"""What the three Event Logs share (the partner portal's, an account's tab, the customer portal's): the filter form
(a GET form that works without JavaScript), the page, and the POST export of what the filters select."""

from __future__ import annotations

import datetime as dt
from io import BytesIO

from flask import abort, request, send_file, url_for
from wtforms import DateField, Form, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError

from app.extensions import appbuilder
from app.services import event_log
from app.services.event_log import EventFilters
from app.services.events import TARGET_NAMES, action_choices
from security import permissions as P
from views.base import page_arg
from views.partner.reports import XLSX

FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2100, 12, 31)
FILTER_FIELDS = ("since", "until", "person", "action", "target", "target_ref")


def _a_portal_day(form, field) -> None:
    if field.data is not None and not FIRST_DAY <= field.data <= LAST_DAY:
        raise ValidationError(f"Choose a date between {FIRST_DAY:%d/%m/%Y} and {LAST_DAY:%d/%m/%Y}.")


class EventFilterForm(Form):
    """The Event Log's filters (no CSRF: reading only; the export posts them again with its token)."""

    since = DateField("From", validators=[Optional(), _a_portal_day], format="%Y-%m-%d")
    until = DateField("To", validators=[Optional(), _a_portal_day], format="%Y-%m-%d")
    person = StringField(
        "Person", validators=[Optional(), Length(max=320, message="Person must be at most 320 characters.")]
    )
    action = SelectField("Action", choices=[], default="")
    target = SelectField(
        "Target",
        choices=[SelectChoice("", "Any target")]
        + [SelectChoice(kind, name) for kind, name in sorted(TARGET_NAMES.items(), key=lambda c: c[1])],
        default="",
    )
    target_ref = StringField(
        "Target no.", validators=[Optional(), Length(max=64, message="Target no. must be at most 64 characters.")]
    )

    def __init__(self, formdata, *, customer_portal: bool):
        super().__init__(formdata)
        self.action.choices = [SelectChoice("", "Any action")] + [
            SelectChoice(action, name) for action, name in action_choices(customer_portal=customer_portal)
        ]

    def validate_until(self, field) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")

    def filters(self) -> EventFilters:
        return EventFilters(
            since=self.since.data,
            until=self.until.data,
            person=(self.person.data or "").strip(),
            action=self.action.data or "",
            target_type=self.target.data or "",
            target_ref=(self.target_ref.data or "").strip(),
        )


def read_filters(formdata, *, customer_portal: bool = False) -> tuple[EventFilterForm, EventFilters | None]:
    """The form, and its filters when they are valid (None: the page shows the form's messages, status 400)."""
    form = EventFilterForm(formdata, customer_portal=customer_portal)
    if not form.validate():
        return form, None
    return form, form.filters()


def filter_args() -> dict[str, str]:
    """The request's non-empty filter values, for the pager's links and the export form."""
    return {name: request.args[name] for name in FILTER_FIELDS if request.args.get(name)}


def page_context(
    shown,
    *,
    endpoints: tuple[str, str],
    endpoint_args: dict,
    resource: str,
    customer_portal: bool = False,
    with_account: bool = False,
) -> tuple[dict, int]:
    """What portal/_event_log.html draws — the request's filters, their page, the list's and the export's addresses
    (``endpoints``: list, export) — and the status to answer with (400 for filters that do not make sense)."""
    form, filters = read_filters(request.args, customer_portal=customer_portal)
    if filters is None:
        result = event_log.EventPage([], 1, event_log.PER_PAGE, 0, 0)
    else:
        result = event_log.page_of_events(shown, filters, page_arg(), with_account=with_account)
    list_endpoint, export_endpoint = endpoints
    context = {
        "form": form,
        "result": result,
        "filter_args": filter_args(),
        "with_account": with_account,
        "list_url": url_for(list_endpoint, **endpoint_args),
        "export_url": url_for(export_endpoint, **endpoint_args),
        "list_endpoint": list_endpoint,
        "endpoint_args": endpoint_args,
        "may_export": appbuilder.sm.has_access(f"can_{P.EXPORT}", resource),
    }
    return context, 200 if filters is not None else 400


def export_response(shown, *, log_of, record_on: int, customer_portal: bool = False):
    """The POSTed filters' events as .xlsx, the export recorded; bad filters answer 400."""
    form, filters = read_filters(request.form, customer_portal=customer_portal)
    if filters is None:
        abort(400, description="; ".join(f"{form[name].label.text}: {' '.join(e)}" for name, e in form.errors.items()))
    buffer = BytesIO()
    _, name = event_log.export_events(buffer, shown=shown, filters=filters, log_of=log_of, record_on=record_on)
    buffer.seek(0)
    return send_file(buffer, as_attachment=True, download_name=name, mimetype=XLSX)
