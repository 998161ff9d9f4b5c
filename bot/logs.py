"""Structured JSON-lines logging with PII redaction on every record.

Call ``log.info("event_name", extra={"fields": {...}})``; each line in ``<home>/logs/teller.jsonl``
is one JSON object. Message, arguments, fields and tracebacks pass through
:func:`bot.privacy.redaction.redact` first, uvicorn's error and access logs included
(:func:`uvicorn_log_config`), after Teller's own configured secrets (bot tokens, signing secrets,
keys, the database password) are replaced by ``[CREDENTIAL]`` wherever a record quotes one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from bot.privacy.redaction import redact_recurring

LOG_FILE = "teller.jsonl"


#: Teller's own secrets as configured (:meth:`bot.settings.Settings.secret_values`), longest first:
#: a record quoting one (a request URL in an error, a token echoed by a library) has it replaced by
#: ``[CREDENTIAL]`` before redaction, whatever its format; so has a piece of one at least
#: :data:`OWN_SECRET_PIECE` characters long that starts it (a message cut short by the code that
#: logged it). Set by :func:`configure_logging`.
_OWN_SECRETS: tuple[str, ...] = ()
#: Shorter secrets are not looked for (too likely to be ordinary text, and replaced everywhere):
#: give every secret setting at least this many characters.
OWN_SECRET_MIN = 8
OWN_SECRET_PIECE = 12


def _hide_own(text: str) -> str:
    for secret in _OWN_SECRETS:
        head = secret[:OWN_SECRET_PIECE]
        at = text.find(head)
        while at >= 0:
            end = at + len(head)
            while end - at < len(secret) and end < len(text) and text[end] == secret[end - at]:
                end += 1
            text = text[:at] + "[CREDENTIAL]" + text[end:]
            at = text.find(head, at + len("[CREDENTIAL]"))
    return text


def _clean(text: str) -> str:
    return redact_recurring(_hide_own(text) if _OWN_SECRETS else text)


def _redact_value(value: Any) -> Any:
    """``value`` fit for the log: text cleaned, containers walked (keys too), numbers kept, and
    anything else cleaned as the text the JSON formatter would write for it."""
    if isinstance(value, str):
        return _clean(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_redact_value(k) if isinstance(k, str) else k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return _clean(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites the message, its arguments and structured fields of a record before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.getMessage())
        record.args = None
        fields = getattr(record, "fields", None)
        if fields is not None:
            record.fields = _redact_value(fields)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = _clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


#: Paths whose last segment names a customer (erasure): logged with that segment masked.
_CUSTOMER_PATH = re.compile(r"^(/api/customers/[^/]+/).+$")


def loggable_path(path: str) -> str:
    """A request path fit for a log: no query string (percent-encoded, so redaction would not see
    what it holds), and the customer's id of ``/api/customers/{channel}/{id}`` masked as ``…``."""
    return _CUSTOMER_PATH.sub(r"\1…", path.split("?", 1)[0])


class QueryDropped(logging.Filter):
    """uvicorn's access lines through :func:`loggable_path`: ``/api/messages?after=…`` is logged as
    ``/api/messages``, ``/api/customers/web/alice`` as ``/api/customers/web/…``; and the client's
    address through :func:`masked_address` ("203.0.113.0/24", not the customer's own address)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (masked_address(args[0]), args[1], loggable_path(args[2]), args[3], args[4])
        return True


def masked_address(client: object) -> str:
    """A client's address as an access line keeps it: the network, not the host (IPv4 to its /24,
    IPv6 to its /48, the port dropped), as web analytics' IP anonymisation does, since a customer's
    IP address is personal data (GDPR recital 30). "-" for anything else."""
    text = str(client)
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text  # "1.2.3.4:5678"
    host = host.strip("[]").split("]:")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "-"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class _OwnerOnlyFileHandler(RotatingFileHandler):
    """A rotating log file readable by its owner only, each file of the rotation (redacted, but
    still customers' traffic: a trial found it created readable by every local user)."""

    def _open(self) -> TextIOWrapper:
        stream = super()._open()
        with contextlib.suppress(OSError):  # not ours to change (another user's file): left as it is
            os.chmod(self.baseFilename, 0o600)
        return stream


def configure_logging(log_dir: Path, level: str = "INFO", secrets: Iterable[str] = ()) -> Path:
    """Send all records to ``<log_dir>/teller.jsonl`` (rotated at 10 MB), redacted, with each of
    ``secrets`` (Teller's own tokens and keys) hidden wherever a record quotes it. Idempotent."""
    global _OWN_SECRETS
    _OWN_SECRETS = tuple(sorted({s for s in secrets if len(s) >= OWN_SECRET_MIN}, key=lambda s: (-len(s), s)))
    new_home = not log_dir.parent.exists()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if new_home:  # TELLER_HOME made just now: its owner's (one that exists keeps its mode)
        os.chmod(log_dir.parent, 0o700)
    path = log_dir / LOG_FILE
    if not path.exists():
        path.touch(mode=0o600)  # its owner's from the start, not only once the handler opens it

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_teller", False):
            root.removeHandler(handler)
            handler.close()
    handler = _OwnerOnlyFileHandler(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
    handler._teller = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # alembic: its context lines come with every revision look-up; migrations log their own event.
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "PIL", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def uvicorn_log_config(level: str = "WARNING") -> dict[str, Any]:
    """uvicorn's logging, redacted like every other record (``logging.config.dictConfig`` form).

    By default uvicorn writes its error log (tracebacks of failed requests, which may quote a
    request's text) and its access log (paths with their query strings) straight to the terminal.
    Here both pass :class:`RedactingFilter` first, access lines without their query string
    (:class:`QueryDropped`): errors go to stderr and, like access lines, to Teller's JSON log
    through the root logger. ``level``: of ``uvicorn.error`` on stderr; access
    lines are logged at INFO to the JSON log only.
    """
    redacted = {"()": "bot.logs.RedactingFilter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redacted": redacted, "query_dropped": {"()": "bot.logs.QueryDropped"}},
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["redacted"],
                "formatter": "plain",
                "level": level.upper(),
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": True},
            "uvicorn.error": {"level": "INFO", "propagate": True},
            "uvicorn.access": {
                "handlers": [],
                "filters": ["query_dropped"],
                "level": "INFO",
                "propagate": True,
            },
        },
    }
