"""Import users: Microsoft 365 users from a CSV in the format of the Microsoft 365 admin centre's bulk add (a header
row; "User Name", "First Name", "Last Name", "Display Name", "Usage Location" — or "Country or Region" — and any other
columns, which are ignored). Every line is checked first and what is refused is said line by line; then each valid
line is created through ``licensing.add_m365_user`` (a durable provider operation each): a line Microsoft refuses is
reported with its reason and the others go on. The temporary passwords are returned to be shown once, kept nowhere.

Also the rules a Microsoft 365 user's fields follow, shared with the Add user and Edit forms: the user name, the
names' lengths, and the usage locations (two-letter ISO 3166 countries, from Babel's territory names)."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import re
import time
import unicodedata

from babel import Locale
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models.accounts import Account
from app.models.subscriptions import M365User
from app.services import customer_services, licensing
from app.services.events import record_event

MAX_LINES = 500  # users in one file
#: How long one import may go on adding users (``M365_IMPORT_SECONDS``): a web worker is ended after 30 s, and the
#: passwords of the users it added would be lost with its answer. The lines left are reported "not added yet":
#: importing the same file again adds them (the users added are then refused as existing).
IMPORT_SECONDS = 20.0
NOT_YET = "Not added yet: the import stopped to answer in time. Import the same file again to add it."
MAX_BYTES = 1024 * 1024  # 1 MB
NAME_MAX = 64  # first and last name, as Microsoft Entra ID allows
DISPLAY_NAME_MAX = 256
USER_NAME_MAX = 64  # the part before the @
USER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
USER_NAME_RULE = "Use letters, digits and . _ - only."

# Babel's territories that are not ISO 3166-1 countries (regions, pseudo-locales, reserved codes).
_NOT_COUNTRIES = frozenset({"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "XK", "ZZ"})


class FileRefused(ValueError):
    """The file as a whole cannot be imported (too large, too many lines, not CSV): said beside the file field."""


# -- the fields' rules ------------------------------------------------------------------------------------------------
@functools.cache
def usage_locations() -> dict[str, str]:
    """Two-letter country code → English name, by name."""
    names = Locale.parse("en").territories
    codes = [code for code in names if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES]
    return dict(sorted(((code, names[code]) for code in codes), key=lambda item: item[1]))


def usage_location_choices() -> list[tuple[str, str]]:
    """The usage location select's options: (code, "New Zealand (NZ)")."""
    return [(code, f"{name} ({code})") for code, name in usage_locations().items()]


@functools.cache
def _codes_by_name() -> dict[str, str]:
    return {name.casefold(): code for code, name in usage_locations().items()}


def usage_location_of(text: str) -> str | None:
    """The two-letter code ``text`` names (the code itself, or the country's English name), or None."""
    text = " ".join(text.split())
    if len(text) == 2 and text.upper() in usage_locations():
        return text.upper()
    return _codes_by_name().get(text.casefold())


def has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def text_problem(label: str, value: str, limit: int) -> str | None:
    """What is wrong with a name: too long, or control characters."""
    if len(value) > limit:
        return f"{label} is longer than {limit} characters."
    if has_control_characters(value):
        return f"{label} holds characters that cannot be part of a name."
    return None


def user_name_problem(name: str) -> str | None:
    """What is wrong with the part of a user name before the @ (a sentence that does not name the field)."""
    if len(name) > USER_NAME_MAX:
        return f"Use at most {USER_NAME_MAX} characters before the @."
    if not USER_NAME.match(name):
        return USER_NAME_RULE
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return "It cannot start or end with a full stop, or have two in a row."
    return None


def existing_user_names(customer: Account) -> set[str]:
    """The customer's Microsoft 365 users' user names (lower case)."""
    return {
        upn.lower()
        for upn in db.session.scalars(select(M365User.user_principal_name).where(M365User.account_id == customer.id))
    }


# -- one line of the file ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Line:
    """One user of the file: its line number (the header is line 1), what it says, and what became of it."""

    number: int
    user_name: str
    first_name: str = ""
    last_name: str = ""
    display_name: str = ""
    usage_location: str = ""
    upn: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)  # refused before Microsoft was asked
    refusal: str = ""  # refused by Microsoft (its reason), or not known
    postponed: bool = False  # valid, but not tried: the import ran out of time (NOT_YET)
    password: str | None = dataclasses.field(default=None, repr=False)  # created: shown once, kept nowhere

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def created(self) -> bool:
        return self.password is not None


@dataclasses.dataclass
class Result:
    lines: list[Line]

    @property
    def created(self) -> int:
        return sum(line.created for line in self.lines)

    @property
    def postponed(self) -> int:
        return sum(line.postponed for line in self.lines)

    @property
    def refused(self) -> int:
        return len(self.lines) - self.created - self.postponed


_COLUMNS = {
    "user name": "user_name",
    "username": "user_name",
    "user principal name": "user_name",
    "first name": "first_name",
    "last name": "last_name",
    "display name": "display_name",
    "usage location": "usage_location",
    "country or region": "country",
}


def _column(header: str) -> str | None:
    return _COLUMNS.get(" ".join(header.replace("\ufeff", "").split()).casefold())


def _text(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise FileRefused("The file is larger than 1 MB: import at most 500 users at a time.")
    if not data.strip():
        raise FileRefused("The file is empty.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefused(
            'This is not a CSV file of UTF-8 text: save the list from Excel as "CSV UTF-8 (Comma delimited)".'
        ) from None
    if "\x00" in text:
        raise FileRefused('This is not a CSV file: save the list from Excel as "CSV UTF-8 (Comma delimited)".')
    return text


def _rows(text: str):
    """(line number, cells) of each record: comma-separated, or semicolons when the header has no comma."""
    first = text.split("\n", 1)[0]
    delimiter = ";" if "," not in first and ";" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FileRefused(f"The file could not be read as CSV at line {reader.line_num}: {exc}.") from None


def read(data: bytes, customer: Account) -> list[Line]:
    """Every user of the file, each checked (``Line.problems``); FileRefused when the file as a whole is not one to
    import. Blank lines are skipped."""
    rows = _rows(_text(data))
    _number, header = next(rows, (1, []))
    columns = {}
    for index, name in enumerate(header):
        column = _column(name)
        if column and column not in columns:
            columns[column] = index
    if "user_name" not in columns:
        raise FileRefused(
            "The first line must name the columns, User Name among them (as in the Microsoft 365 admin centre's "
            "bulk-add template: User Name, First Name, Last Name, Display Name, Usage Location)."
        )
    lines: list[Line] = []
    for number, cells in rows:
        if not any(cell.strip() for cell in cells):
            continue
        if len(lines) == MAX_LINES:
            raise FileRefused(f"The file has more than {MAX_LINES} users: import at most {MAX_LINES} at a time.")
        values = {column: cells[index].strip() if index < len(cells) else "" for column, index in columns.items()}
        lines.append(_line(number, values))
    if not lines:
        raise FileRefused("The file has no users under its column names.")
    _check(lines, customer)
    return lines


def _line(number: int, values: dict[str, str]) -> Line:
    location = values.get("usage_location") or values.get("country") or ""
    return Line(
        number=number,
        user_name=values.get("user_name", ""),
        first_name=values.get("first_name", ""),
        last_name=values.get("last_name", ""),
        display_name=values.get("display_name", ""),
        usage_location=location,
    )


def _check(lines: list[Line], customer: Account) -> None:
    """Each line's problems, in words: its fields, then whether its user is twice in the file or exists already."""
    domain = customer.tenant.primary_domain.lower() if customer.tenant else ""
    taken, seen = existing_user_names(customer), {}
    for line in lines:
        problems = line.problems
        name = line.user_name
        if not name:
            problems.append("User Name is missing.")
        else:
            local, at, given = name.partition("@")
            if at and given.lower() != domain:
                problems.append(f"{given} is not this tenant's domain: use {local}@{domain}, or {local} alone.")
            elif problem := user_name_problem(local):
                problems.append(f"User Name {name}: {problem}")
            else:
                line.upn = f"{local.lower()}@{domain}"
        for label, field in (("First Name", "first_name"), ("Last Name", "last_name")):
            value = getattr(line, field)
            if not value:
                problems.append(f"{label} is missing.")
            elif problem := text_problem(label, value, NAME_MAX):
                problems.append(problem)
        line.display_name = line.display_name or f"{line.first_name} {line.last_name}".strip()
        if line.display_name and (problem := text_problem("Display Name", line.display_name, DISPLAY_NAME_MAX)):
            problems.append(problem)
        given_location = line.usage_location
        line.usage_location = usage_location_of(given_location) if given_location else (customer.country or "NZ")
        if line.usage_location is None:
            line.usage_location = given_location
            problems.append(f"{given_location} is not a usage location: use the country's two letters, for example NZ.")
        if line.upn:
            if line.upn in seen:
                problems.append(f"{line.upn} is also on line {seen[line.upn]}.")
            elif line.upn in taken:
                problems.append(f"{line.upn} already exists.")
            seen.setdefault(line.upn, line.number)


def create(customer: Account, lines: list[Line], file_name: str) -> Result:
    """Create each valid line's user at Microsoft, then here (one durable operation each, committed one by one); a
    line Microsoft refuses keeps its reason and the rest go on; once ``M365_IMPORT_SECONDS`` have passed the lines left
    are postponed (NOT_YET). An event says what the import did."""
    seconds = float(current_app.config.get("M365_IMPORT_SECONDS", IMPORT_SECONDS))
    started, tried = time.monotonic(), 0
    for line in lines:
        if not line.valid:
            continue
        if tried and time.monotonic() - started > seconds:
            line.postponed, line.refusal = True, NOT_YET
            continue
        tried += 1
        password = licensing.temporary_password()
        try:
            customer_services.commit(
                functools.partial(
                    licensing.add_m365_user,
                    customer,
                    line.first_name,
                    line.last_name,
                    line.upn.partition("@")[0],
                    password,
                    display_name=line.display_name,
                    usage_location=line.usage_location,
                )
            )
        except licensing.LicenceError as exc:
            line.refusal = str(exc)
            continue
        line.password = password
    result = Result(lines)
    customer_services.commit(
        lambda: record_event(
            "m365_user.imported",
            account_id=customer.id,
            target=customer,
            summary=f"Import users from {file_name[:100]}: {result.created} created, {result.refused} refused"
            + (f", {result.postponed} not tried yet" if result.postponed else "")
            + f" of {len(lines)} lines",
        )
    )
    return result
