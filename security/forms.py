"""The one form of the second factor: a code from the authenticator app, or a recovery code."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class CodeForm(FlaskForm):
    code = StringField(
        "Code",
        validators=[
            DataRequired(message="Enter the 6-digit code from your authenticator app."),
            Length(max=32, message="A code is 6 digits, or a recovery code of 10 letters and digits."),
        ],
        render_kw={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"},
        description="The 6-digit code your authenticator app shows now, or one of your recovery codes.",
    )
