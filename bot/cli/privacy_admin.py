"""Erasure, retention and the audit log in the terminal: ``teller forget``, ``teller retention run``,
``teller audit``.

Actions are recorded in the audit log as ``cli:<login name>`` (see :mod:`bot.cli.operations`).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.app import JsonOpt, app, emit_json, err, out
from bot.cli.operations import local_actor
from bot.errors import InputError
from bot.settings import Settings, get_settings
from bot.storage import AuditAction, AuditEntry, Store

log = logging.getLogger(__name__)

retention_app = typer.Typer(
    help="Retention: remove messages older than TELLER_RETENTION_DAYS (`teller serve` does it hourly).",
    no_args_is_help=True,
)
app.add_typer(retention_app, name="retention")

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")]
ChannelOpt = Annotated[str, typer.Option("--channel", help="web, telegram, slack or terminal.")]
UserOpt = Annotated[str, typer.Option("--user", help="The customer's user id on that channel.")]


def _interactive() -> bool:
    """Whether someone can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def stored_customer(store: Store, channel: str, user: str) -> str:
    """The user id Teller stores for what an operator typed (``channel`` already checked by
    :func:`bot.privacy.erasure.customer`): on the web, a verified customer named by the bank's
    customer id is stored as its keyed digest (``c_…``, :func:`bot.web.sessions.stored_user_id`);
    a stored id (``w_…``/``c_…``) and every other channel's id are kept as typed. ``teller forget``
    and ``teller audit`` resolve an id the same way, as ``DELETE /api/customers/web/{id}`` does."""
    if channel != "web":
        return user
    from bot.web.sessions import stored_user_id

    return stored_user_id(store, user)


def _counts_table(counts: dict[str, int], title: str | None = None) -> Table:
    table = Table("kind", "rows", title=title)
    for kind, n in counts.items():
        table.add_row(kind.replace("_", " "), str(n) if n else "[dim]0[/dim]")
    return table


# ---------------------------------------------------------------------------------------- forget


@app.command()
def forget(
    channel: ChannelOpt,
    user: UserOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Erase without asking.")] = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase one customer: their messages, conversations, feedback, review items, corrections and
    handoffs, in one transaction, recorded in the audit log under a pseudonym, and their words in
    positioning briefs (the database's and TELLER_HOME/briefs/), replaced by "\\[erased]"; prints
    the receipt (--dry-run counts it all and changes nothing).
    A web customer the bank's backend vouched for is named by the bank's customer id.

    Asks first on a terminal unless --yes; without a terminal, --yes is required (it cannot be
    undone). A customer Teller never heard of gets a receipt of zeros.
    """
    from bot.assistant import open_store
    from bot.privacy.erasure import Eraser, customer

    channel, user = customer(channel, user)
    actor = str(local_actor())
    settings = get_settings()
    store = open_store(settings)
    try:
        user = stored_customer(store, channel, user)  # a verified web customer: the bank's id
        eraser = Eraser(store, settings.briefs_dir)
        if not dry_run and not yes:
            if not _interactive():
                raise InputError("erasing cannot be undone: pass --yes to erase without a terminal")
            preview = eraser.erase(channel, user, actor, dry_run=True)
            err.print(_counts_table(preview.counts, f"To erase: {channel} customer {user}"))
            if not typer.confirm(
                f"Erase {channel} customer {user} ({preview.total} rows)? This cannot be undone.",
                default=False,
                err=True,
            ):
                err.print("Nothing erased.")
                raise typer.Exit(1)
        receipt = eraser.erase(channel, user, actor, dry_run=dry_run)
    finally:
        store.close()
    told = _tell_open_threads(settings, receipt.open_threads) if not dry_run else None
    if as_json:
        emit_json(receipt.to_dict())
        return
    verb = "Would erase" if dry_run else "Erased"
    out.print(_counts_table(receipt.counts, f"{verb} {channel} customer {user}"))
    out.print(f"Pseudonym in the audit log: {receipt.subject}", highlight=False)
    if receipt.audit_id is not None:
        out.print(f"Audit entry #{receipt.audit_id} by {receipt.actor} at {receipt.at}.", highlight=False)
    if not receipt.total:
        out.print("Nothing was stored about this customer.")
    if receipt.kb_entries:
        out.print("Knowledge-base entries to review: " + ", ".join(receipt.kb_entries), highlight=False)
    for caveat in receipt.caveats:
        out.print(f"[dim]- {escape(caveat)}[/dim]", highlight=False)
    if told:
        out.print(told, highlight=False)


def _tell_open_threads(settings: Settings, threads: tuple[tuple[str, str], ...]) -> str | None:
    """Tell each ops-channel thread of the erased customer's open handoffs at once, as a running
    server does (:data:`bot.ops_desk.ERASED_NOW_NOTE`), when Slack is configured; before, an operator
    learned it only when a reply bounced. Returns what to print (None: nothing to tell). A Slack
    failure is reported, not raised: the erasure is done, and a reply there is still refused."""
    if not threads:
        return None
    if settings.slack_bot_token is None or not settings.ops_channel:
        return f"{len(threads)} open handoff thread(s) not told: Slack is not configured here."
    from bot.channels.slack.board import SlackOpsBoard
    from bot.channels.slack.transport import web_client
    from bot.ops_desk import ERASED_NOW_NOTE
    from bot.storage import HandoffThread

    board = SlackOpsBoard(
        web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url), settings.ops_channel
    )
    failed = 0
    for ops_channel, thread_ts in threads:
        try:
            board.warn_in_thread(HandoffThread(ops_channel, thread_ts), ERASED_NOW_NOTE)
        except Exception as exc:  # Slack down or refusing: said, not raised
            failed += 1
            log.warning("erased_thread_not_told", extra={"fields": {"error": type(exc).__name__}})
    if failed:
        return f"{failed} of {len(threads)} open handoff thread(s) could not be told (Slack refused)."
    return f"Told {len(threads)} open handoff thread(s) in the ops channel."


# ---------------------------------------------------------------------------------------- access


@app.command("access")
def access_request(channel: ChannelOpt, user: UserOpt) -> None:
    """A customer's right of access: everything Teller stores about them (their messages and the
    replies, feedback, handoffs, outcomes), as one JSON document on stdout, recorded in the audit
    log under their pseudonym. Names the customer as `teller forget` does (a verified web customer
    by the bank's customer id). A customer Teller never heard of gets an empty document."""
    from bot.assistant import open_store
    from bot.privacy.access import access_request as build
    from bot.privacy.erasure import customer

    channel, user = customer(channel, user)
    store = open_store(get_settings())
    try:
        document = build(store, channel, stored_customer(store, channel, user), str(local_actor()))
    finally:
        store.close()
    emit_json(document)


# ---------------------------------------------------------------------------------------- retention


@retention_app.command("run")
def retention_run(
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=36500,
            help="Keep this many days, at most 36,500 (default TELLER_RETENTION_DAYS).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove messages older than the retention period, with their feedback, flags, review
    filings, deliveries, closed handoffs and emptied conversations, and their quotes in positioning
    briefs (replaced by "\\[erased]"); and texts that waited over a day in the outbox. With
    retention off (no --days, TELLER_RETENTION_DAYS unset) only the outbox is swept. Recorded in
    the audit log."""
    from bot.assistant import open_store
    from bot.privacy.retention import LOCK, Retention

    settings = get_settings()
    days = days if days is not None else settings.retention_days
    store = open_store(settings)
    try:
        lease = None
        if not dry_run:
            lease = store.database.try_lock(LOCK)
            if lease is None:
                raise InputError(
                    "a retention run is in progress (here or on another replica); try again shortly"
                )
        try:
            report = Retention(store, briefs=settings.briefs_dir).run(
                days, str(local_actor()), dry_run=dry_run
            )
        finally:
            if lease is not None:
                lease.release()
    finally:
        store.close()
    if as_json:
        emit_json(report.to_dict())
        return
    if report.cutoff is None:
        title = "Retention is off (TELLER_RETENTION_DAYS unset): outbox swept only"
    else:
        title = f"{'Would remove' if dry_run else 'Removed'}: stored before {report.cutoff} ({days} days)"
    out.print(title, highlight=False)
    out.print(_counts_table(report.counts))
    if report.audit_id is not None:
        out.print(f"Audit entry #{report.audit_id}.")


# ---------------------------------------------------------------------------------------- audit


def parse_since(value: str) -> str:
    """An ISO date or time (``2026-11-30``, ``2026-11-30T08:00``, ``…Z``, ``…+01:00``; no zone: UTC)
    in the store's format. Raises :class:`InputError`."""
    try:
        when = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise InputError(f"--since {value!r}: not an ISO date or time (e.g. 2026-11-30T08:00Z)") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": str(entry.action),
        "subject": entry.subject,
        "details": entry.details,
    }


def _summary(details: dict[str, Any]) -> str:
    if "counts" not in details and "cutoff" not in details:  # kb.change, correction, retrain, activation
        parts = [f"{k}={_short(v)}" for k, v in details.items() if v not in (None, [], {}, "")]
        return ", ".join(parts)[:300]
    counts = details.get("counts")
    parts = [f"{k}={v}" for k, v in counts.items() if v] if isinstance(counts, dict) else []
    if details.get("cutoff"):
        parts.insert(0, f"before {details['cutoff'][:19]}")
    if details.get("error"):
        parts.append(f"error: {details['error']}")
    return ", ".join(parts) or "nothing removed"


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        if set(value) == {"id", "by"}:
            return f"{value['id']}->{value['by']}"
        if set(value) == {"intent", "from", "to"}:
            return f"{value['intent']}: {value['from']}->{value['to']}"
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    return str(value)


@app.command()
def audit(
    action: Annotated[
        str | None,
        typer.Option("--action", help=f"Only this action: {', '.join(a.value for a in AuditAction)}."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this actor (cli:ana, api:operator, …).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries at or after this ISO time.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=100_000, help="At most this many, newest first.")
    ] = 100,
    channel: Annotated[
        str | None, typer.Option("--channel", help="With --user: only entries about them.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="With --channel: only entries about them.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per entry per line.")] = False,
) -> None:
    """The audit log, newest first: erasures, retention runs, knowledge-base changes, corrections,
    retrains and model activations, by whom, when, with their receipts.

    Customers are named by a keyed pseudonym only; --channel C --user U finds the entries about one
    customer (to check an erasure happened) without the log ever holding the id. A web customer
    is named as `teller forget` names them: by the bank's customer id of a verified customer (or
    the stored w_/c_ id)."""
    from bot.assistant import open_store
    from bot.privacy.erasure import customer, pseudonym

    if action is not None and action not in {a.value for a in AuditAction}:
        raise InputError(f"unknown action {action!r}: use one of {', '.join(a.value for a in AuditAction)}")
    if (channel is None) != (user is None):
        raise InputError("--channel and --user go together")
    start = parse_since(since) if since is not None else None
    store = open_store(get_settings())
    try:
        subject: set[str] | None = None
        if channel and user:
            channel, user = customer(channel, user)
            # The id as stored (what forget and the API erase), and as typed: an entry recorded for
            # an id erased exactly as given (Eraser called directly) is found too.
            subject = {pseudonym(store, channel, u) for u in (stored_customer(store, channel, user), user)}
        entries = store.audit.entries(action=action, actor=actor, since=start, limit=limit, subject=subject)
    finally:
        store.close()
    if as_json:
        for entry in entries:
            emit_json(entry_record(entry))
        return
    if not entries:
        out.print("No audit entries" + (" match." if action or actor or since or subject else " yet."))
        return
    table = Table("#", "at (UTC)", "actor", "action", title=f"{len(entries)} audit entries")
    # Folded, not cut: a pseudonym is looked for whole, and at 80 columns a pseudonym kept on one
    # line left every other column a few letters wide.
    table.add_column("subject", overflow="fold")
    table.add_column("details", overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.id),
            entry.at[:19].replace("T", " "),
            escape(entry.actor),
            str(entry.action),
            escape(entry.subject or ""),
            # Escaped: a list of ids is written "[a, b]", which rich read as a style tag and dropped
            # (a trial found `kb.change` rows reading "added=, removed=").
            escape(_summary(entry.details)),
        )
    out.print(table)
