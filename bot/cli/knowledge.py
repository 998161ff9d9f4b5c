"""``teller kb``: manage and search the FAQ knowledge base.

``add`` and ``sync`` go through :class:`bot.knowledge.KnowledgeAdmin`, which checks every new entry
against the existing entries and the intents and resolves overlaps (``--on-overlap``). Questions to
the operator (``ask`` mode, confirming removals) go to stderr, so ``--json`` output stays one
document on stdout.

Every change (``add``, ``sync``, ``remove``, ``supersede``, ``restore``; not a dry run) is recorded
in the audit log as one ``kb.change`` entry by ``cli:<login name>`` with the entry ids it touched
(``teller audit --action kb.change``).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import click
import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.app import EncodingOpt, JsonOpt, emit_json, err, kb_app, out, working
from bot.errors import InputError
from bot.settings import Settings, get_settings

if TYPE_CHECKING:
    from bot.knowledge import Choice, ImportOutcome, KnowledgeAdmin, OnOverlap, Overlap
    from bot.policy import AnswerPolicy
    from retrieval.entry import KBEntry
    from retrieval.knowledge_base import KnowledgeBase

FileArg = Annotated[
    Path,
    typer.Argument(help="CSV (id,question,answer[,intent,tags]), JSONL, or Markdown.", show_default=False),
]
OnOverlapOpt = Annotated[
    str,
    typer.Option(
        "--on-overlap",
        help="newer: a new entry supersedes an existing one on the same topic and takes over its intent; "
        "keep: keep both; ask: ask for each overlap (needs a terminal).",
    ),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]

log = logging.getLogger(__name__)


def _masked(value: Any) -> Any:
    """``value`` with every id of an entry written from a customer's words (``op_<their words>``,
    :meth:`bot.review.ReviewService.wrong_answer`) masked: the append-only audit log would keep
    those words past an erasure. Lists, tuples and dicts are masked throughout."""
    from bot.storage.review import OPERATOR_ENTRY

    if isinstance(value, str):
        return "op_… (an operator's entry)" if value.startswith(OPERATOR_ENTRY) else value
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def _audit(settings: Settings, details: dict[str, Any], subject: str | None = None) -> None:
    """Record a knowledge-base change (made already) in the audit log as ``kb.change`` by
    ``cli:<login>``; if the database cannot take it, log it and go on (the change stands)."""
    from bot.assistant import open_store
    from bot.cli.operations import local_actor
    from bot.storage import AuditAction, StoreError

    actor = str(local_actor())
    details, subject = _masked(details), _masked(subject)
    try:
        store = open_store(settings)
    except StoreError as exc:
        log.error("audit_failed", extra={"fields": {"actor": actor, "details": details, "error": str(exc)}})
        return
    try:
        store.audit.record_after(actor, AuditAction.KB_CHANGE, subject, details)
    finally:
        store.close()


def _interactive() -> bool:
    """Whether someone can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _admin(settings: Settings, kb: KnowledgeBase) -> KnowledgeAdmin:
    """The admin service with the active model's policy, or without one (no intent checks) if no
    model can be loaded."""
    from bot.assistant import build_policy
    from bot.knowledge import KnowledgeAdmin
    from nlu import NLUError

    try:
        # The model's thresholds come along (no calibration now): :func:`refit_after_change` needs them after.
        with working("Loading the intent model…"):
            policy = build_policy(settings, kb=kb, calibrate_if_missing=False)
    except NLUError as exc:
        return KnowledgeAdmin(kb, no_policy_reason=str(exc))
    return KnowledgeAdmin(kb, policy)


def refit_after_change(settings: Settings, kb: KnowledgeBase, policy: AnswerPolicy | None = None) -> None:
    """After a change: re-fit the answer policy's knowledge-base thresholds now (seconds), so the
    next `teller ask` and every running server (which would re-fit on its own) use them at once.
    A replicated knowledge base publishes the change to the other replicas first."""
    from bot.assistant import build_policy, follow_kb, kb_fit_report, replicate_kb
    from bot.calibration import missed_targets
    from nlu import NLUError

    synced = replicate_kb(kb)
    if synced is not None and synced.published:
        err.print(f"Published {synced.published} change(s) to the other replicas (log at {synced.seq}).")
    try:
        policy = policy or build_policy(settings, kb=kb, calibrate_if_missing=False)
        if policy.thresholds is None:
            return  # never calibrated: `teller calibrate` fits everything at once
        with working(f"Re-fitting the answer policy for {len(kb)} entries…"):
            changed = follow_kb(policy)
    except NLUError:
        return  # no model yet: `teller train` calibrates against the knowledge base as it is then
    if changed is None:
        return  # not looked at
    if len(kb) == 0:
        # Its bars are whatever the search found best over nothing: not worth reading.
        err.print(
            "The knowledge base is empty: no entry can answer, so every message the classifier does "
            "not answer is handed off. The answer policy is re-fitted when entries are added."
        )
        return
    if changed:
        t = policy.thresholds
        offered = f"; from {t.suggest:.2f} the best few are offered to choose from" if t.suggest <= 1 else ""
        err.print(
            f"Answer policy re-fitted for {len(kb)} entries: a general entry answers from {t.faq:.2f}, "
            f"any entry from a search confidence of {t.faq_fallback:.2f}{offered}.",
            highlight=False,
        )
    # Whether or not the thresholds moved: the fit for the knowledge base as it is now.
    report = kb_fit_report(kb)
    if (
        report is not None
        and report.get("kb_revision") == policy.kb.revision
        and report.get("targets_met") is False
    ):
        missed = missed_targets(report.get("fitted", {}), report.get("targets", {}))
        figures = escape(str(kb.directory / "calibration.json"))
        labels = policy.classifier.labels
        unanswered = [intent for intent in labels if policy.kb.for_intent(intent) is None]
        if unanswered:
            why = (
                f"{len(unanswered)} of the model's {len(labels)} intents have no answer entry, so its "
                "held-out test messages on those topics are handed off: keep the starter's entries "
                "for them or add entries that answer them (`kb add` reports which intent an entry "
                "answers)"
            )
        else:
            why = (
                "the fit keeps out-of-scope questions out of the knowledge base first, so more "
                "messages are handed off: look for entries that overlap each other or the intents "
                "(`kb add` and `kb sync --dry-run` report them)"
            )
        err.print(
            "[yellow]Warning:[/yellow] the answer policy's fit misses its targets ("
            + escape("; ".join(missed) or "see calibration.json")
            + f"). {escape(why[:1].upper() + why[1:])}; the figures are in {figures}.",
            highlight=False,
        )


def _ask(entry: KBEntry, overlap: Overlap, options: tuple[Choice, ...]) -> Choice:
    keys = {"supersede": "s", "answer": "a", "keep": "k"}
    label = {
        "supersede": f"supersede `{overlap.existing_id}` (kept aside; `teller kb restore` brings it back)",
        "answer": f"make `{entry.id}` the answer of intent `{overlap.intent}`"
        + (f" (`{overlap.existing_id}` stays, as a general entry)" if overlap.existing_id else ""),
        "keep": "keep both",
    }
    err.print(f"\n{escape(overlap.describe())}\n  {escape(overlap.detail)}", highlight=False)
    for option in options:
        err.print(f"  ({keys[option]}) {label[option]}", highlight=False, markup=False)
    answer = click.prompt(
        "Choose", type=click.Choice([keys[o] for o in options]), default=keys[options[0]], err=True
    )
    return next(o for o in options if keys[o] == answer)


def _check_ask(on_overlap: str, dry_run: bool) -> None:
    from bot.knowledge import ON_OVERLAP

    if on_overlap not in ON_OVERLAP:
        raise InputError(f"--on-overlap must be newer, keep or ask, not {on_overlap!r}")
    if on_overlap == "ask" and not dry_run and not _interactive():
        raise InputError("--on-overlap ask needs a terminal; use newer or keep in scripts")


def _print_outcome(outcome: ImportOutcome, preview_only: bool = False) -> None:
    kept_out = "kept out (superseded earlier; `teller kb restore ID` brings one back)"
    lines = [("+ add", outcome.added), ("~ update", outcome.updated), ("- remove", outcome.removed)]
    # On add, an entry replaced because it has the id of one already there is named too (it may be
    # a starter entry the bank's file happens to share an id with).
    starter = set(outcome.starter_replaced)
    replaced = [
        (
            "~ update (an entry with that id was there: replaced)",
            [i for i in outcome.updated if i not in starter],
        ),
        (
            "~ update (a starter entry had that id: replaced by yours, the starter's text is not kept; "
            "another id keeps both)",
            outcome.starter_replaced,
        ),
    ]
    for title, ids in [*(lines if outcome.mode == "sync" else replaced), (kept_out, outcome.kept_superseded)]:
        if ids:
            out.print(f"{title} ({len(ids)}): {', '.join(ids)}", highlight=False, soft_wrap=True)
    if outcome.sources:  # an entry that becomes the starter's (or the bank's), its text changed or not
        named = [change.to_dict() for change in outcome.sources]  # starter, bank: as `kb list` says
        moves = ", ".join(f"{c['id']} {c['from']} -> {c['to']}" for c in named)
        out.print(f"~ source ({len(outcome.sources)}): {moves}", highlight=False, soft_wrap=True)
    if outcome.mode == "sync":
        out.print(f"= {len(outcome.unchanged)} unchanged", highlight=False)
    for resolution in outcome.resolutions:
        overlap = resolution.overlap
        out.print(
            f"{escape(overlap.describe())}\n    {escape(overlap.detail)}\n    -> {escape(resolution.note)}",
            highlight=False,
            soft_wrap=True,
        )
    for note in outcome.notes:
        out.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    if outcome.lost_intents:
        lost = outcome.lost_intents
        out.print(
            f"warning: {'would leave' if not outcome.applied else 'left'} "
            f"{len(lost)} intent(s) without an answer entry: {', '.join(lost)}. "
            "The policy cannot answer those intents (such messages get a knowledge-base search or a "
            "handoff); give an entry `intent: NAME` to answer one.",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.mode == "add":
        out.print(
            f"{len(outcome.added)} added, {len(outcome.updated)} updated, {len(outcome.unchanged)} unchanged"
            + (f", {len(outcome.superseded)} superseded" if outcome.superseded else "")
            + (
                f"; {outcome.entries} entries in the knowledge base."
                if outcome.applied
                else f"; {outcome.entries} entries in the knowledge base after it (dry run: nothing changed)."
            ),
            highlight=False,
        )
    elif outcome.applied:
        out.print(
            f"Synced: {len(outcome.added)} added, {len(outcome.updated)} updated, "
            f"{len(outcome.removed)} removed"
            + (f", {len(outcome.sources)} changed source" if outcome.sources else "")
            + (f", {len(outcome.superseded)} superseded" if outcome.superseded else "")
            + f"; {outcome.entries} entries in the knowledge base.",
            highlight=False,
        )
    elif not preview_only:
        out.print("Dry run: nothing changed.", highlight=False)


@kb_app.command("add")
def kb_add(
    file: FileArg,
    on_overlap: OnOverlapOpt = "newer",
    dry_run: DryRunOpt = False,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add entries from FILE (entries with an existing id are replaced); a bad file changes nothing.

    Each new or rephrased entry is checked against the existing entries and the intents, and the
    file's entries against each other (reported only); every overlap is reported with what was done
    about it. Columns or keys of FILE that Teller does not read are named (ignored).
    """
    from bot.assistant import open_kb
    from retrieval.loaders import read_entries

    loaded = read_entries(file, encoding)
    _check_ask(on_overlap, dry_run)
    settings = get_settings()
    kb = open_kb(settings)
    admin = _admin(settings, kb)
    before = kb.entries()
    with working(_checking(loaded.entries), enabled=on_overlap != "ask"):
        outcome = admin.import_entries(
            loaded.entries,
            cast("OnOverlap", on_overlap),
            choose=_ask if on_overlap == "ask" else None,
            dry_run=dry_run,
            notes=loaded.notes,
        )
    if outcome.applied:
        _audit(settings, outcome.audit_details())
        refit_after_change(settings, kb, admin.policy)
    if as_json:
        emit_json(outcome.to_dict())
        return
    _print_outcome(outcome)
    if outcome.applied:  # its supersessions take entries (and intents) out of answers
        _corrections_gone_with(settings, before, kb.entries())
    _starter_notice(settings, kb, outcome.applied)


def _checking(entries: list[KBEntry]) -> str:
    """What :func:`working` says while ``entries`` are embedded and checked for overlaps."""
    n = len(entries)
    return f"Checking {n} {'entry' if n == 1 else 'entries'} against the knowledge base and the intents…"


def _starter_notice(settings: Settings, kb: KnowledgeBase, applied: bool) -> None:
    """After a change the bank made: a warning when the fictional starter still answers its
    customers (:func:`bot.assistant.starter_notice`), as ``teller serve`` gives at start."""
    from bot.assistant import starter_notice

    notice = starter_notice(settings, kb) if applied else None
    if notice is not None:
        err.print(f"warning: {notice}", highlight=False, markup=False)


@kb_app.command("sync")
def kb_sync(
    file: FileArg,
    dry_run: DryRunOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove entries without asking.")] = False,
    on_overlap: OnOverlapOpt = "newer",
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="FILE may hold no entries (an empty file, or a CSV header alone): every entry is "
            "removed and the knowledge base is left empty.",
        ),
    ] = False,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the knowledge base exactly FILE: shows the adds, updates, removals and source changes,
    then applies them.

    Removals are confirmed on a terminal unless --yes; without a terminal (scripts, CI) the sync is
    applied, but one that would remove more than 10 entries and more than half of the knowledge
    base needs --yes (unless it replaces the starter wholesale). Added entries are checked for
    overlaps with the entries that remain, as `kb add` does.
    Entries superseded earlier stay out while the entry that superseded them is in FILE. A FILE with
    no entries is refused (a truncated export would empty the knowledge base) unless --allow-empty.
    """
    from bot.assistant import open_kb
    from retrieval.loaders import read_entries

    loaded = read_entries(file, encoding, allow_empty=True)
    if not loaded.entries and not allow_empty:
        again = ["teller", "kb", "sync", str(file), *(["--dry-run"] if dry_run else [])]
        again += [*(["--encoding", encoding] if encoding else []), "--allow-empty"]
        raise InputError(
            f"{file} holds no entries: syncing to it would leave the knowledge base empty. To empty "
            f"it on purpose, run: {shlex.join(again)}"
        )
    _check_ask(on_overlap, dry_run)
    settings = get_settings()
    kb = open_kb(settings)
    admin = _admin(settings, kb)
    with working(_checking(loaded.entries)):
        prepared = admin.prepare("sync", loaded.entries, loaded.notes)
        preview = admin.finish(prepared, on_overlap, dry_run=True)
    before = kb.entries()
    if dry_run:
        if as_json:
            emit_json(preview.to_dict())
        else:
            _print_outcome(preview)
            _corrections_gone_with(settings, before, prepared.entries, would=True)
        return
    _refuse_mass_removal(kb, preview, file, yes or allow_empty)
    if preview.removed and _interactive() and not yes:
        if not as_json:
            _print_outcome(preview, preview_only=True)
        if not typer.confirm(f"Remove {len(preview.removed)} entries?", default=False, err=True):
            err.print("Nothing changed.")
            raise typer.Exit(1)
    with working("Applying the changes…", enabled=on_overlap != "ask"):
        outcome = admin.finish(prepared, on_overlap, choose=_ask if on_overlap == "ask" else None)
    _audit(settings, outcome.audit_details())
    refit_after_change(settings, kb, admin.policy)
    if as_json:
        emit_json(outcome.to_dict())
        return
    _print_outcome(outcome)
    _corrections_gone_with(settings, before, kb.entries())
    _starter_notice(settings, kb, outcome.applied)


#: A sync without a terminal (a script) that would remove more than this many entries, and more than
#: half of the knowledge base, needs --yes: a fresh-user trial synced a truncated export, and 137
#: of 141 entries went with exit code 0 (``kb restore`` cannot bring removed entries back).
MASS_REMOVAL = 10


def _refuse_mass_removal(kb: KnowledgeBase, preview: ImportOutcome, file: Path, confirmed: bool) -> None:
    """Raise :class:`InputError` when a sync that nobody confirms (no terminal, no --yes, no
    --allow-empty) would remove most of the knowledge base, unless it replaces the starter wholesale
    (every entry it removes is the starter's, and FILE keeps none of the starter's word for word):
    what a bank's first sync does, its edits of starter entries included."""
    removed = len(preview.removed)
    before = removed + len(preview.unchanged) + len(preview.updated)
    if confirmed or _interactive() or removed <= MASS_REMOVAL or 2 * removed <= before:
        return
    # An edited starter entry becomes the bank's: only an unchanged one keeps the starter.
    wholesale = all(kb.is_starter(i) for i in preview.removed) and not any(
        kb.is_starter(i) for i in preview.unchanged
    )
    if wholesale:
        return
    raise InputError(
        f"syncing to {file} would remove {removed} of the {before} entries (the file keeps "
        f"{before - removed}): is it a whole export, or was it cut short? Nothing changed. Check it "
        "with --dry-run; if the knowledge base is to be exactly this file, run again with --yes."
    )


@kb_app.command("export")
def kb_export(
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv, jsonl or md (default: from --out's suffix, else jsonl).",
            show_default=False,
        ),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).", show_default=False)
    ] = None,
) -> None:
    """Write every entry out as CSV, JSONL or Markdown; `kb add`/`kb sync` read it back exactly."""
    from bot.assistant import open_kb
    from retrieval.exporters import FORMATS, export_entries, format_for

    if format is not None and format not in FORMATS:
        raise InputError(f"--format must be csv, jsonl or md, not {format!r}")
    chosen = format or "jsonl"
    if out_file is not None:
        suffix_format = format_for(out_file)
        if format is not None and format != suffix_format:
            raise InputError(
                f"--out {out_file} is a {suffix_format} file name but --format is {format}; "
                "`kb add` reads a file by its suffix"
            )
        chosen = suffix_format
    kb = open_kb(get_settings())
    entries = kb.entries()
    text = export_entries(entries, chosen)
    if out_file is None:
        sys.stdout.write(text)
        return
    staging = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    try:
        with staging.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(staging, out_file)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise InputError(f"{out_file}: cannot write ({exc.strerror})") from None
    err.print(f"Exported {len(entries)} entries to {out_file} ({chosen}).", highlight=False)


#: Below this terminal width `kb list` prints a record per entry instead of a table (at 80 columns
#: the table's columns beside a long id were cut to "…", a trial's finding).
NARROW_COLUMNS = 120


@kb_app.command("list")
def kb_list(
    as_json: JsonOpt = False,
    superseded: Annotated[
        bool, typer.Option("--superseded", help="List superseded entries (restorable) instead.")
    ] = False,
    starter: Annotated[
        bool,
        typer.Option("--starter", help="Only the live entries of the shipped starter (Lumen Bank's)."),
    ] = False,
) -> None:
    """Every entry: id, questions, intent, tags and source (the bank's, or the shipped starter's);
    with --superseded, the superseded ones."""
    from bot.assistant import open_kb
    from retrieval.lifecycle import STARTER, SupersededEntry

    kb = open_kb(get_settings())
    if superseded and starter:
        raise InputError("--superseded and --starter do not go together: superseded entries are not live")
    if superseded:
        records = kb.superseded()

        def was(record: SupersededEntry) -> str:  # the live list's words for a source
            return "starter" if record.source == STARTER else "bank"

        if as_json:
            for r in records:
                emit_json({**r.to_dict(), "source": was(r)})
            return
        if out.width < NARROW_COLUMNS:  # a record per entry: a table's columns would be cut to "…"
            out.print(f"{len(records)} superseded", highlight=False)
            for r in records:
                moved = f"; intent {r.moved_intent} moved" if r.moved_intent else ""
                out.print(
                    f"{r.entry.id}  superseded by {r.superseded_by} at {r.at} ({was(r)}{moved})\n"
                    f"    {escape(r.reason)}",
                    highlight=False,
                    soft_wrap=True,
                )
            if records:
                out.print("`teller kb restore ID` puts one back.")
            return
        table = Table(title=f"{len(records)} superseded")
        widths = {
            "id": max((len(r.entry.id) for r in records), default=2),
            "superseded by": max((len(r.superseded_by) for r in records), default=13),
        }
        for name in ("id", "superseded by", "at", "intent moved", "source", "reason"):
            # ids are copied whole: never cut, however narrow the terminal (or a pipe's 80 columns)
            table.add_column(name, no_wrap=name in widths, min_width=widths.get(name))
        for r in records:
            table.add_row(r.entry.id, r.superseded_by, r.at, r.moved_intent or "", was(r), escape(r.reason))
        out.print(table)
        if records:
            out.print("`teller kb restore ID` puts one back.")
        return
    entries = [e for e in kb.entries() if kb.is_starter(e.id) or not starter]

    def source(entry_id: str) -> str:
        return "starter" if kb.is_starter(entry_id) else "bank"

    if as_json:
        for e in entries:
            emit_json(
                {
                    "id": e.id,
                    "questions": list(e.questions),
                    "intent": e.intent,
                    "tags": list(e.tags),
                    "source": source(e.id),
                }
            )
        return
    title = f"{len(entries)} {'starter ' if starter else ''}entries"
    if out.width < NARROW_COLUMNS:  # a record per entry: a table's columns would be cut to "…"
        out.print(title, highlight=False)
        for e in entries:
            about = [source(e.id)] + ([f"intent {e.intent}"] if e.intent else [])
            about += [f"tags: {', '.join(e.tags)}"] if e.tags else []
            out.print(
                f"{e.id}  ({escape('; '.join(about))})\n    {escape(' | '.join(e.questions))}",
                highlight=False,
                soft_wrap=True,
            )
        return
    table = Table(title=title)
    # The id is copied whole (`kb remove ID`): never cut, however narrow the terminal (a trial's
    # `teller kb list | grep op_` showed "op_sorry_to_he…").
    table.add_column("id", no_wrap=True, min_width=max((len(e.id) for e in entries), default=2))
    for name in ("questions", "intent", "tags", "source"):
        table.add_column(name)
    for e in entries:
        table.add_row(
            e.id, escape(" | ".join(e.questions)), e.intent or "", escape(", ".join(e.tags)), source(e.id)
        )
    out.print(table)


@kb_app.command("restore")
def kb_restore(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Id from `teller kb list --superseded`.")],
) -> None:
    """Put a superseded entry back (the entry that superseded it gives back the intent it took over)."""
    from bot.assistant import open_kb

    settings = get_settings()
    kb = open_kb(settings)
    record = kb.restore(entry_id)
    details: dict[str, Any] = {
        "command": "restore",
        "restored": entry_id,
        "superseded_by": record.superseded_by,
    }
    if record.moved_intent:
        details["intents"] = [{"intent": record.moved_intent, "from": record.superseded_by, "to": entry_id}]
    _audit(settings, details, entry_id)
    refit_after_change(settings, kb)
    gave_back = (
        f"; `{record.superseded_by}` no longer answers intent `{record.moved_intent}`"
        if record.moved_intent
        else ""
    )
    intent = kb.get(entry_id).intent
    answering = kb.for_intent(intent) if intent else None
    if answering is not None and answering.id != entry_id:
        # Two entries on one intent: say which one customers get (a trial was left to guess).
        gave_back += (
            f"; intent `{intent}` is still answered by `{answering.id}` (the bank's own entry comes "
            f"first; `teller kb supersede {answering.id} --by {entry_id}` makes it this one)"
        )
    out.print(
        f"Restored `{entry_id}` (superseded by `{record.superseded_by}` on {record.at}){gave_back}; "
        f"{len(kb)} entries in the knowledge base.",
        highlight=False,
        soft_wrap=True,
    )


@kb_app.command("supersede")
def kb_supersede(
    entry_id: Annotated[str, typer.Argument(metavar="OLD", help="The entry to take out.")],
    by: Annotated[str, typer.Option("--by", help="The entry that replaces it.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the record).")] = "by an operator",
) -> None:
    """Supersede OLD by another entry (e.g. a possible overlap `kb add` reported): OLD leaves the live
    knowledge base, is kept for `kb restore`, and its intent passes to the new entry."""
    from bot.assistant import open_kb
    from bot.knowledge import KnowledgeAdmin

    settings = get_settings()
    kb = open_kb(settings)
    before = kb.entries()
    record, lost = KnowledgeAdmin(kb).supersede(entry_id, by, reason)
    details: dict[str, Any] = {"command": "supersede", "superseded": [{"id": entry_id, "by": by}]}
    if record.moved_intent:
        details["intents"] = [{"intent": record.moved_intent, "from": entry_id, "to": by}]
    _audit(settings, {**details, "lost_intents": lost}, entry_id)
    refit_after_change(settings, kb)
    took = f"; `{by}` now answers intent `{record.moved_intent}`" if record.moved_intent else ""
    out.print(f"`{entry_id}` superseded by `{by}`{took}.", highlight=False, soft_wrap=True)
    if lost:
        out.print(
            f"warning: intent(s) without an answer entry now: {', '.join(lost)}",
            highlight=False,
            soft_wrap=True,
        )
    _corrections_gone_with(settings, before, kb.entries())


@kb_app.command("remove")
def kb_remove(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Entry id from `teller kb list`.")],
) -> None:
    """Remove one entry (and only its vectors from the index). Warns when that leaves its intent
    without an answer entry, naming the entry it superseded there (`kb restore` puts it back)."""
    from bot.assistant import open_kb

    settings = get_settings()
    kb = open_kb(settings)
    entry = kb.remove(entry_id)
    _audit(settings, {"command": "remove", "removed": [entry.id], "intent": entry.intent}, entry.id)
    refit_after_change(settings, kb)
    out.print(f"Removed {entry.id!r}; {len(kb)} entries left.")
    # Entries it superseded stay superseded (their topic may now go unanswered): say how to bring
    # them back. The one it took an intent from is named in the warning below instead.
    replaced = [r for r in kb.superseded() if r.superseded_by == entry.id]
    named_below = entry.intent is not None and kb.for_intent(entry.intent) is None
    others = [
        r.entry.id for r in replaced if not (named_below and entry.intent in (r.moved_intent, r.entry.intent))
    ]
    if others:
        listed = ", ".join(f"`{i}`" for i in others)
        out.print(
            f"note: {listed} {'was' if len(others) == 1 else 'were'} superseded by it and "
            f"{'stays' if len(others) == 1 else 'stay'} out of answers; `teller kb restore "
            f"{others[0]}` puts {'it' if len(others) == 1 else 'one'} back.",
            highlight=False,
            soft_wrap=True,
        )
    if named_below:
        earlier = [r.entry.id for r in replaced if entry.intent in (r.moved_intent, r.entry.intent)]
        restore = (
            f"; `teller kb restore {earlier[0]}` puts back the entry it took the intent from"
            if earlier
            else ""
        )
        out.print(
            f"warning: intent `{entry.intent}` has no answer entry now: its messages are answered from "
            f"the rest of the knowledge base or handed off{restore}.",
            highlight=False,
            soft_wrap=True,
        )
    _corrections_gone_with(settings, [*kb.entries(), entry], kb.entries())


def _corrections_gone_with(
    settings: Settings, before: Sequence[KBEntry], after: Sequence[KBEntry], would: bool = False
) -> None:
    """Warn of the operators' corrections in force that answered with an entry of ``before`` (the
    knowledge base before a change) that ``after`` no longer has, or with an intent that no entry of
    ``after`` answers: the policy passes them by from then on. A reviewer found them still listed as
    "in force" after `kb remove`, and a trial found `kb sync` removing operators' review-queue answers
    (``op_`` entries, in no bank's file) without a word. ``would``: said of a change not yet made."""
    from bot.assistant import open_store

    ids = {e.id for e in before} - {e.id for e in after}
    intents = {e.intent for e in before if e.intent} - {e.intent for e in after if e.intent}
    if not ids and not intents:
        return
    store = open_store(settings)
    try:
        corrections = store.feedback.corrections(current_only=True)
    finally:
        store.close()
    gone = sorted(c.id for c in corrections if (c.label in intents if c.label else c.kb_id in ids))
    if not gone:
        return
    listed = ", ".join(f"#{i}" for i in gone)
    several = len(gone) > 1
    out.print(
        f"warning: operators' correction{'s' if several else ''} {listed} "
        f"{'answer' if several else 'answers'} with an entry or an intent this change takes out of "
        "answers, and "
        + (
            "would no longer apply: those messages would be answered as if never corrected"
            if would
            else f"no longer appl{'y' if several else 'ies'}: those messages are answered as if never "
            "corrected"
        )
        + " (`teller feedback list` shows them; `teller kb restore` or a new correction brings an answer "
        "back).",
        highlight=False,
        soft_wrap=True,
    )


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many entries.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """The entries most similar to QUERY, best first."""
    from bot.assistant import open_kb

    if not query.strip():
        raise InputError("the query is empty")
    hits = open_kb(get_settings()).search(query, k=k)
    if as_json:
        for h in hits:
            emit_json(
                {
                    "id": h.entry.id,
                    "score": round(h.score, 6),
                    "question": h.question,
                    "answer": h.entry.answer,
                    "intent": h.entry.intent,
                    "tags": list(h.entry.tags),
                }
            )
        return
    table = Table("score", "id", "matched question", "answer")
    for h in hits:
        table.add_row(f"{h.score:.3f}", h.entry.id, escape(h.question), escape(h.entry.answer[:80]))
    out.print(table)
