"""`flask fab create-admin` still makes an operator admin who signs in and sees every account."""

from flask_appbuilder.cli import fab
from sqlalchemy import select

from security.models import PortalUser
from tests.conftest import unscoped


def test_create_admin_makes_operator_staff(app, world, login):
    # `flask fab ...` is FAB's entry-point command group; invoke it as the `flask` script does.
    result = app.test_cli_runner().invoke(
        fab,
        args=[
            "create-admin",
            "--username",
            "boss@operator.example",
            "--firstname",
            "Boss",
            "--lastname",
            "Ops",
            "--email",
            "boss@operator.example",
            "--password",
            "a long enough password",
        ],
    )
    assert result.exit_code == 0 and "created" in result.output, result.output
    with unscoped() as session:
        boss = session.scalars(select(PortalUser).where(PortalUser.email == "boss@operator.example")).one()
        assert boss.portal == "operator" and boss.account_id == world.accounts["operator"].id
        assert [r.name for r in boss.roles] == ["Operator Admin"]
    listing = login("boss@operator.example", "a long enough password").get("/accountview/list/").text
    assert "Aardvark Farms" in listing and "Bluebird Bakery" in listing
