"""`flask portal ...`: deploy and data commands. Each crosses tenants under a named scope bypass."""

from __future__ import annotations

import os

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.extensions import db
from security import scoping

portal = AppGroup("portal", help="Partner Portal commands.")


@portal.command("sync-roles")
@click.option("--dry-run", is_flag=True, help="Print the changes without making them.")
@click.option("--verbose", "-v", is_flag=True, help="Print every permission added or removed.")
def sync_roles_command(dry_run: bool, verbose: bool) -> None:
    """Make the roles in the database match security/permissions.py."""
    from security.roles import sync_roles

    with scoping.bypass("cli:sync-roles"):
        changes = sync_roles(db.session, dry_run=dry_run)
    if dry_run or verbose:
        for line in changes.lines():
            click.echo(("would " if dry_run else "") + line)
    if changes.empty:
        click.echo("Roles are in sync.")
    else:
        added = sum(len(pairs) for pairs in changes.added.values())
        removed = sum(len(pairs) for pairs in changes.removed.values())
        summary = f"{len(changes.created_roles)} role(s) created, {added} permission(s) added, {removed} removed"
        click.echo(f"Dry run: nothing changed ({summary})." if dry_run else f"Roles synced: {summary}.")


@portal.command("seed-demo")
@click.option("--password", default=None, help="Password for every demo user (default: DEMO_PASSWORD or random).")
@click.option("--scale", type=click.IntRange(min=0), default=0, help="Also generate N more customers.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has accounts.")
def seed_demo_command(password: str | None, scale: int, if_empty: bool) -> None:
    """Create the demo data of DESIGN.md (idempotent)."""
    from app.models.accounts import Account
    from app.services.demo import seed_demo
    from app.services.scale import seed_scale

    password = password or current_app.config.get("DEMO_PASSWORD") or None
    if password is not None and len(password) < 12:
        raise click.BadParameter("use at least 12 characters", param_hint="--password")
    from security.roles import sync_roles

    with scoping.bypass("cli:seed-demo"):
        sync_roles(db.session)  # demo users need their roles; syncing is idempotent
        if if_empty and db.session.query(Account.id).first() is not None:
            click.echo(
                "The database already has data: demo seeding skipped. Demo logins, if seeded: "
                "ops@mycloudstore.co.nz, simon@demoreseller.co.nz, pat@otherreseller.example "
                "(reset their password with `flask portal seed-demo --password ...`)."
            )
            return
        report = seed_demo(password)
        if scale:
            from security.passwords import hash_password

            # Generated logins share the demo users' password (or, without one, a random one nobody knows).
            seed_scale(scale, echo=click.echo, password_hash=hash_password(password) if password else None)
    click.echo(f"Demo data: {len(report.created)} item(s) created." if report.created else "Demo data already present.")
    port = os.environ.get("PORT", "5000")
    click.echo(f"Demo logins (http://127.0.0.1:{port}/login/):")
    for email, where in report.logins:
        click.echo(f"  {email:32} {where}")
    if report.password:
        click.echo(f"  password: {report.password}")
    else:
        click.echo("  passwords unchanged (pass --password to reset them)")


@portal.command("snapshot-usage")
def snapshot_usage_command() -> None:
    """Record a usage point for every subscription whose numbers changed (idempotent; for a daily cron)."""
    from app.models.accounts import Account
    from app.services.events import record_event
    from app.services.usage import snapshot_usage

    with scoping.bypass("cli:snapshot-usage"):
        added = snapshot_usage()
        operator = db.session.query(Account.id).filter(Account.kind == "operator").order_by(Account.id).first()
        if added and operator:
            record_event("usage.snapshot", account_id=operator[0], summary=f"{added} usage point(s) recorded")
            db.session.commit()
    click.echo(f"Usage points recorded: {added}.")


@portal.command("purge-exports")
def purge_exports_command() -> None:
    """Delete the files of expired exports (for cron)."""
    from app.services.jobs import purge_expired

    click.echo(f"Expired export files deleted: {purge_expired()}.")


@portal.command("fail-abandoned-jobs")
def fail_abandoned_jobs_command() -> None:
    """Fail the background jobs whose worker is gone (silent for JOB_STALE_SECONDS), so they can be retried."""
    from app.services.jobs import fail_abandoned

    click.echo(f"Abandoned jobs failed: {fail_abandoned()}.")


@portal.command("recover-operations")
def recover_operations_command() -> None:
    """Settle the provider operations a crash left pending past OPERATION_TIMEOUT_SECONDS by asking Microsoft (orders
    are sent again with the same MS-RequestId), and stuck tenants."""
    from app.services.recovery import recover_all

    with scoping.bypass("cli:recover-operations"):
        click.echo(f"Interrupted operations settled: {recover_all()}.")


@portal.command("reconcile")
@click.option("--account", "account_id", type=int, default=None, help="Only this customer, or this reseller's.")
@click.option("--repair", is_flag=True, help="Make the portal match Microsoft (each repair is an event).")
@click.option(
    "--limit", type=click.IntRange(min=0, max=1000), default=200, help="Differences printed (0: counts only)."
)
def reconcile_command(account_id: int | None, repair: bool, limit: int) -> None:
    """Compare every customer's subscriptions, Microsoft 365 users and licences with Microsoft's; keep the drift report
    (the Reconciliation page) and, with --repair, make the portal match Microsoft."""
    from app.models.accounts import Account
    from app.services import reconcile

    with scoping.bypass("cli:reconcile"):
        account = None
        if account_id is not None:
            account = db.session.get(Account, account_id)
            if account is None:
                raise click.BadParameter(f"there is no account {account_id}", param_hint="--account")
        echo = (lambda line: click.echo(line, err=True)) if not os.environ.get("PORTAL_QUIET") else None
        report = reconcile.reconcile(scope_account=account, repair=repair, trigger="cli", echo=echo)
        for found in report.differences[:limit]:
            click.echo(
                f"{found.customer}: {reconcile.kind_label(found.kind)} — {found.subject}: "
                f"portal {found.portal}, Microsoft {found.microsoft}"
            )
        if limit and report.run.differences > limit:
            click.echo(f"… and {report.run.differences - limit} more (see the Reconciliation page).")
        for customer, problem in report.problems[:limit]:
            click.echo(f"{customer}: {problem}")
        run = report.run
        click.echo(
            f"Customers checked: {run.customers_checked}; differing: {run.customers_differing}; "
            f"differences: {run.differences}; repaired: {run.repaired}; unreadable: {run.customers_unreadable}; "
            f"skipped: {run.customers_skipped}."
        )
        if run.customers_unreadable:
            raise SystemExit(1)


@portal.command("recover-tenants")
def recover_tenants_command() -> None:
    """Settle tenants stuck in "provisioning" (TENANT_PROVISIONING_TIMEOUT_SECONDS) by asking Microsoft what exists."""
    from app.services.tenants import recover_stuck

    with scoping.bypass("cli:recover-tenants"):
        click.echo(f"Interrupted tenants settled: {recover_stuck()}.")


@portal.command("purge-events")
def purge_events_command() -> None:
    """Delete events older than EVENT_RETENTION_DAYS (for a daily cron); the purge is itself an event."""
    from app.services.event_log import PurgeRefused, purge_old_events

    days = current_app.config["EVENT_RETENTION_DAYS"]
    try:
        removed = purge_old_events(days)
    except PurgeRefused as refused:
        raise click.ClickException(str(refused)) from None
    click.echo(f"Events older than {days} days purged: {removed}.")


@portal.command("event-triggers")
def event_triggers_command() -> None:
    """(Re)create the event log's append-only triggers with EVENT_RETENTION_DAYS, as the tables' owner
    (MIGRATION_DATABASE_URL): after changing the retention."""
    from app import db_guard

    days = current_app.config["EVENT_RETENTION_DAYS"]
    engine = db_guard.owner_engine(current_app)
    with scoping.bypass("cli:event-triggers"), engine.begin() as connection:
        db_guard.install(connection, days)
    if engine is not db.engine:
        engine.dispose()
    click.echo(f"Event log triggers installed: events younger than {days} days cannot be deleted, none changed.")


@portal.command("reset-mfa")
@click.argument("email")
def reset_mfa_command(email: str) -> None:
    """Reset a login's two-factor authentication (a lost phone where no admin can reset it in the portal)."""
    from sqlalchemy import select

    from app.services.mfa import reset_from_cli
    from app.services.users import UserError
    from security.models import PortalUser

    with scoping.bypass("cli:reset-mfa"):
        user = db.session.scalar(select(PortalUser).where(PortalUser.email == email.strip().lower()))
        if user is None:
            raise click.ClickException(f"There is no login {email}.")
        try:
            reset_from_cli(user)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"Reset the two-factor authentication of {user.email}: they sign in with their password and set it up again."
    )


@portal.command("import-pricesheet")
@click.argument("file", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--download", is_flag=True, help="Download the sheet from Microsoft (the CSP provider) instead.")
@click.option("--month", default=None, help="With --download: the sheet of this month (YYYYMM), not the current one.")
@click.option("--market", default="NZ", show_default=True, help="Import this market's prices only.")
def import_pricesheet_command(file: str | None, download: bool, month: str | None, market: str) -> None:
    """Import Microsoft's licence-based price sheet (CSV or zip; Microsoft's columns): products, availabilities and
    their prices by month. All or nothing: a bad row refuses the sheet, with its line number."""
    from pathlib import Path

    from app.csp.base import ProviderError
    from app.services import pricesheet

    if bool(file) == download:
        raise click.UsageError("give the sheet's FILE, or --download (one of them)")
    if month is not None and not download:
        raise click.UsageError("--month goes with --download")
    with scoping.bypass("cli:import-pricesheet"):
        try:
            data = pricesheet.download(market, month) if download else Path(file).read_bytes()
            result = pricesheet.import_sheet(data, market)
        except pricesheet.PriceSheetRefused as refused:
            for line in refused.lines():
                click.echo(line, err=True)
            click.echo("The price sheet was refused: nothing was imported.", err=True)
            raise SystemExit(1) from None
        except (ProviderError, ValueError) as exc:
            raise click.ClickException(f"The price sheet could not be downloaded: {exc}") from None
    click.echo(result.summary() if result.changed else f"{result.summary()} Nothing changed.")


@portal.command("renew")
@click.option("--dry-run", is_flag=True, help="Print what would renew or expire, changing nothing.")
def renew_command(dry_run: bool) -> None:
    """Renew (by its scheduled instructions) or expire every subscription whose renew date has come, as Microsoft
    did (read back from it); for a daily cron. Idempotent."""
    from app.services.renewals import renew_due

    with scoping.bypass("cli:renew"):
        report = renew_due(dry_run=dry_run, echo=lambda line: click.echo(line, err=True))
    for line in report.lines:
        click.echo(line)
    click.echo(
        f"{'Dry run: ' if dry_run else ''}renewed {report.renewed}, expired {report.expired}, "
        f"waiting for Microsoft {report.waiting}, problems {report.problems}."
    )


@portal.group("billing")
def billing_group() -> None:
    """Invoices (issue 14): the monthly run, issuing, the accounting export, reconciliation with Microsoft."""


def _month_option(text: str):
    from app.services.billing import parse_month

    try:
        return parse_month(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@billing_group.command("run")
@click.option("--month", "month_text", required=True, help="The month to bill, YYYY-MM.")
def billing_run_command(month_text: str) -> None:
    """Draft the month's invoices: the operator's to each reseller, each reseller's to each customer. Idempotent:
    drafts are replaced, issued invoices left as they are."""
    from app.services import billing

    month = _month_option(month_text)
    with scoping.bypass("cli:billing-run"):
        try:
            report = billing.run(month, echo=lambda line: click.echo(line, err=True))
        except billing.BillingError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(report.summary())


@billing_group.command("issue")
@click.option("--month", "month_text", required=True, help="The month whose drafts to issue, YYYY-MM.")
@click.option("--issuer", "issuer_id", type=int, help="Only this issuer's drafts (an account id).")
def billing_issue_command(month_text: str, issuer_id: int | None) -> None:
    """Issue the month's drafts: numbered without gaps per issuer, dated today, then unchangeable."""
    from app.services import billing

    month = _month_option(month_text)
    refused: list[str] = []
    with scoping.bypass("cli:billing-issue"):
        issued = billing.issue_month(month, issuer_id=issuer_id, refused=refused)
    for reason in refused:
        click.echo(f"Not issued: {reason}", err=True)
    click.echo(f"Issued {issued} invoice(s) for {month:%B %Y}.")
    if refused:
        raise SystemExit(1)


@billing_group.command("export")
@click.option("--month", "month_text", required=True, help="The month whose issued invoices to export, YYYY-MM.")
@click.option("--issuer", "issuer_id", type=int, required=True, help="The issuer (an account id).")
@click.option("--format", "fmt", type=click.Choice(["xero"]), default="xero", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", help="Where to write the files.")
def billing_export_command(month_text: str, issuer_id: int, fmt: str, out_dir: str) -> None:
    """Write the issuer's issued invoices of the month as Xero's sales-invoice import CSV (at most 500 invoices a
    file; import them into Xero as "Tax exclusive"). Prints the files' paths."""
    from pathlib import Path

    from app.services import xero

    month = _month_option(month_text)
    with scoping.bypass("cli:billing-export"):
        try:
            files = xero.export_files(month, issuer_id)
        except xero.NotExportable:
            raise click.ClickException(
                f"Account {issuer_id} is not an operator or reseller that issues invoices."
            ) from None
        except xero.ExportError as exc:
            raise click.ClickException(str(exc)) from None
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for made in files:
            (folder / made.name).write_bytes(made.data)
        xero.record_export(month, issuer_id, files)
    for made in files:
        click.echo(str(folder / made.name))


@billing_group.command("reconcile")
@click.option("--month", "month_text", required=True, help="The month to reconcile, YYYY-MM.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    help="Microsoft's billed reconciliation file (JSON lines or CSV, .gz too); without it, fetched from the provider.",
)
def billing_reconcile_command(month_text: str, path: str | None) -> None:
    """Import Microsoft's billed reconciliation data for the month and match it with the portal's costs: counts and
    totals per class, then every difference. Exit code 0 with differences too (they are the answer)."""
    from app.csp.base import ProviderError
    from app.services import billing_reconcile

    month = _month_option(month_text)
    with scoping.bypass("cli:billing-reconcile"):
        try:
            fetch = billing_reconcile.fetch_from_provider
            count = billing_reconcile.import_file(month, path) if path else fetch(month)
            report = billing_reconcile.reconcile(month)
        except (billing_reconcile.ReconcileError, ProviderError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Imported {count} line(s) of Microsoft's billed reconciliation data.")
    for line in report.summary_lines():
        click.echo(line)
    for difference in report.differences:
        ms, portal = difference.microsoft, difference.portal
        subscription, charge_type, start = difference.key
        click.echo(
            f"{difference.words}: {subscription} {charge_type} from {start:%d/%m/%Y}: "
            f"Microsoft {f'{ms.quantity} x {ms.unit_price} = {ms.subtotal}' if ms else '-'}; "
            f"portal {f'{portal.quantity} x {portal.unit_price} = {portal.subtotal}' if portal else '-'}"
        )
    if report.difference_count > len(report.differences):
        click.echo(f"... and {report.difference_count - len(report.differences)} more (see the page's workbook).")


def init_app(app: Flask) -> None:
    app.cli.add_command(portal)
