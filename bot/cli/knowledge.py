"""``teller kb``: manage and search the FAQ knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bot.cli.app import EncodingOpt, JsonOpt, emit_json, kb_app, out
from bot.errors import InputError
from bot.settings import get_settings


@kb_app.command("add")
def kb_add(
    file: Annotated[Path, typer.Argument(help="CSV (id,question,answer[,intent,tags]), JSONL, or Markdown.")],
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add entries from FILE (entries with an existing id are replaced); a bad file changes nothing."""
    from bot.assistant import open_kb

    kb = open_kb(get_settings())
    report = kb.add_file(file, encoding=encoding)
    if as_json:
        emit_json(
            {
                "added": report.added,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "embedded": report.embedded,
                "entries": len(kb),
            }
        )
        return
    out.print(
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged; "
        f"{len(kb)} entries in the knowledge base."
    )


@kb_app.command("list")
def kb_list(as_json: JsonOpt = False) -> None:
    """Every entry: id, questions, intent and tags."""
    from bot.assistant import open_kb

    entries = open_kb(get_settings()).entries()
    if as_json:
        for e in entries:
            emit_json({"id": e.id, "questions": list(e.questions), "intent": e.intent, "tags": list(e.tags)})
        return
    table = Table("id", "questions", "intent", "tags", title=f"{len(entries)} entries")
    for e in entries:
        table.add_row(e.id, " | ".join(e.questions), e.intent or "", ", ".join(e.tags))
    out.print(table)


@kb_app.command("remove")
def kb_remove(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="Entry id from `teller kb list`.")],
) -> None:
    """Remove one entry (and only its vectors from the index)."""
    from bot.assistant import open_kb

    kb = open_kb(get_settings())
    entry = kb.remove(entry_id)
    out.print(f"Removed {entry.id!r}; {len(kb)} entries left.")


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
        table.add_row(f"{h.score:.3f}", h.entry.id, h.question, h.entry.answer[:80])
    out.print(table)
