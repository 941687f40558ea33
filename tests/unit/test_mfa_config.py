"""MFA_REQUIRED: on by default in production only, and switchable either way."""

from __future__ import annotations

import pytest

import config
from tests.unit.test_config import PRODUCTION


@pytest.mark.parametrize(
    ("environ", "required"),
    [
        ({}, False),
        ({"PORTAL_ENV": "testing"}, False),
        ({"MFA_REQUIRED": "1"}, True),
        (PRODUCTION, True),
        ({**PRODUCTION, "MFA_REQUIRED": "off"}, False),
    ],
)
def test_mfa_is_required_by_default_in_production_only(tmp_path, environ, required):
    values = config.load({**environ, "PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert values["MFA_REQUIRED"] is required


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MFA_REQUIRED": "sometimes"}, "MFA_REQUIRED must be true or false"),
    ],
)
def test_wrong_mfa_settings_name_the_setting(tmp_path, change, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load({**change, "PORTAL_INSTANCE_PATH": str(tmp_path)})
