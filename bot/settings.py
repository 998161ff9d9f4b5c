"""Settings from the environment and an optional ``.env`` file in the working directory."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.abuse import AbuseLimits, LimitSettings
from bot.errors import ConfigError

#: The fictional bank of the Lumen starter knowledge base: the name customers see by default with it.
STARTER_BANK = "Lumen Bank"


def bank_possessive(bank: str) -> str:
    """``"Harbour & Vale's"`` for a name (``"Barclays'"`` for one ending in s), ``"your bank's"``
    for none: what comes before "assistant" in Teller's greetings."""
    if not bank:
        return "your bank's"
    return f"{bank}'" if bank.endswith("s") else f"{bank}'s"


def default_home() -> Path:
    """``$XDG_DATA_HOME/teller``, i.e. ``~/.local/share/teller`` by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "teller"


class Settings(BaseSettings):
    """Every knob Teller reads. Environment variables win over ``.env``."""

    # Only the TELLER_* names count: no field is ever read from a same-named variable such as HOME.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        validation_alias="TELLER_HOME",
        description="Data directory: database, index, logs, reports.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="TELLER_DATABASE_URL",
        description=(
            "postgresql://user:password@host:5432/db to share one database between replicas; "
            "default: the SQLite file <home>/teller.db."
        ),
    )
    kb_replication: Literal["auto", "on", "off"] = Field(
        default="auto",
        validation_alias="TELLER_KB_REPLICATION",
        description=(
            "Follow the knowledge base's change log in the database (auto: with PostgreSQL, where "
            "replicas each keep their own index; off: one host sharing TELLER_HOME/kb)."
        ),
    )
    retrain_in: Literal["serve", "worker"] = Field(
        default="serve",
        validation_alias="TELLER_RETRAIN_IN",
        description=(
            "Where `/teller retrain` runs: in the replica that got the command (serve), or on a "
            "`teller worker` process (worker: the replica queues a job in the database)."
        ),
    )
    models: Path = Field(
        default=Path("models"),
        validation_alias="TELLER_MODELS",
        description="Trained artifacts; intent models live in <models>/intent/<version>/.",
    )
    precision: Literal["auto", "int8", "fp32"] = Field(
        default="auto",
        validation_alias="TELLER_PRECISION",
        description="Serving precision; auto takes the one the artifact recommends.",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        validation_alias="TELLER_THREADS",
        description="Inference threads (default: all cores, at most four).",
    )
    cache: Path | None = Field(
        default=None,
        validation_alias="TELLER_CACHE",
        description=(
            "Rebuildable derived files (the retrieval encoder's ONNX graph, calibration signals, the "
            "advice probe's fit); default <home>/cache."
        ),
    )
    host: str = Field(default="127.0.0.1", validation_alias="TELLER_HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="TELLER_PORT")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        validation_alias="TELLER_FORWARDED_ALLOW_IPS",
        description="Addresses of the reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are "
        "believed (uvicorn's forwarded_allow_ips: comma-separated addresses or networks, or *). The "
        "per-address abuse limits count the client address these give; the proxy must set the header "
        "to the client's address, not append to what the client sent.",
    )
    env: Literal["development", "production"] = Field(
        default="development",
        validation_alias="TELLER_ENV",
        description="production: the API docs (/docs, /redoc, /openapi.json) and /healthz's details "
        "are only for requests carrying the operator credential (TELLER_OPERATOR_API_KEY).",
    )
    telegram_bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_api_url: str | None = Field(
        default=None,
        validation_alias="TELEGRAM_API_URL",
        description="Bot API base URL (python-telegram-bot's base_url), e.g. a local Bot API server.",
    )
    telegram_webhook_url: str | None = Field(default=None, validation_alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="TELEGRAM_WEBHOOK_SECRET"
    )
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias="SLACK_APP_TOKEN", description="Socket Mode instead of HTTP events."
    )
    slack_api_url: str | None = Field(
        default=None,
        validation_alias="SLACK_API_URL",
        description="Slack Web API base URL (for tests or proxies).",
    )
    kb_starter: str = Field(
        default="lumen",
        validation_alias="TELLER_KB_STARTER",
        description="What a new knowledge base starts with: lumen (the fictional Lumen Bank's entries "
        "shipped with Teller), none (empty), or the path of a KB file (CSV, JSONL or Markdown). "
        "Read only when the knowledge base is first created.",
    )
    bank_name: str = Field(
        default="",
        max_length=60,
        validation_alias="TELLER_BANK_NAME",
        description="The bank's name as customers see it (the web chat's title, greetings, Telegram's "
        "/help): e.g. 'Harbour & Vale'. Unset: 'Lumen Bank' while the knowledge base holds entries "
        "of the Lumen starter, else no name ('your bank's assistant').",
    )
    phone_regions: str = Field(
        default="",
        validation_alias="TELLER_PHONE_REGIONS",
        description="The bank's regions, ISO 3166 codes separated by commas (e.g. 'SG' or 'NZ,AU'): "
        "phone numbers written without a country code are read there first when redacting (a "
        "Singapore bank's '9123 4567'), before the built-in list of regions. Unset: that list "
        "alone (GB first).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="TELLER_LOG_LEVEL"
    )
    server_timing: bool = Field(
        default=False,
        validation_alias="TELLER_SERVER_TIMING",
        description="Add a Server-Timing header to every HTTP response: the request's time per stage "
        "(bot.stages: limits, store, each encoder pass, retrieval, policy) in milliseconds. What "
        "`teller bench` reads; off by default, as it tells clients how the server spends its time.",
    )
    operators: str = Field(
        default="",
        validation_alias="TELLER_OPERATORS",
        description="Operators: Slack user ids and Telegram user ids, comma-separated "
        "(optionally prefixed slack: or telegram:).",
    )
    ops_channel: str | None = Field(
        default=None,
        validation_alias="TELLER_OPS_CHANNEL",
        description="Slack channel id for the review queue and human handoffs.",
    )
    flag_emoji: str = Field(
        default="x",
        validation_alias="TELLER_FLAG_EMOJI",
        description="Reaction (name without colons) that flags a bot answer in Slack.",
    )
    review_confidence: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        validation_alias="TELLER_REVIEW_CONFIDENCE",
        description="Intent answers below this confidence go to the review queue.",
    )
    handoff_idle_minutes: int = Field(
        default=30,
        ge=1,
        le=7 * 24 * 60,
        validation_alias="TELLER_HANDOFF_IDLE_MINUTES",
        description="A handoff with no message either way for this many minutes closes itself: the "
        "customer is told Teller answers again, and the operators see it expired in its thread.",
    )
    retrain_tolerance: float = Field(
        default=0.5,
        ge=0.0,
        validation_alias="TELLER_RETRAIN_TOLERANCE",
        description="Points of frozen-set accuracy a retrained model may lose and still be promoted.",
    )
    retrain_drift: float = Field(
        default=1.0,
        ge=0.0,
        validation_alias="TELLER_RETRAIN_DRIFT",
        description="Points of frozen-set accuracy a retrained model may be below the best model of its "
        "series ever promoted (the cumulative bound over chained retrains).",
    )
    product_managers: str = Field(
        default="",
        validation_alias="TELLER_PRODUCT_MANAGERS",
        description="Slack user ids allowed to run positioning interviews, comma-separated "
        "(empty: nobody in Slack; the terminal's `teller interview` is always allowed).",
    )

    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        validation_alias="TELLER_RETENTION_DAYS",
        description="Days customer messages are kept: older ones (with their feedback, flags, review "
        "filings, deliveries, closed handoffs and emptied conversations) are removed every hour by "
        "`teller serve` and by `teller retention run`. Unset: kept until erased (texts awaiting "
        "delivery are still dropped after 24 hours). At most 36,500 (a hundred years).",
    )
    privacy_notice: str = Field(
        default=(
            "We keep this conversation to answer you and to improve our answers, with card numbers, "
            "codes and similar details removed; our staff may read it."
        ),
        max_length=500,
        validation_alias="TELLER_PRIVACY_NOTICE",
        description="The line under the web chat telling customers what is kept (the bank's own "
        "privacy notice in one sentence, perhaps with where to read the rest); empty: none shown.",
    )
    customer_erasure: Literal["anonymous", "all", "off"] = Field(
        default="anonymous",
        validation_alias="TELLER_CUSTOMER_ERASURE",
        description="Who may erase their own conversations from the web chat ('Delete my "
        "conversation', DELETE /api/conversation): `anonymous` (default) customers the bank has "
        "not vouched for, whom no one else can name for erasure; `all`, verified customers too; "
        "`off`, nobody (erasure is then the operators': `teller forget`, DELETE /api/customers/...). "
        "A bank that must keep its verified customers' conversations as records keeps the default.",
    )
    operator_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="TELLER_OPERATOR_API_KEY",
        description="Bearer credential of the operator-only REST endpoints (DELETE "
        "/api/customers/{channel}/{user_id}), at least 16 characters. Unset: those endpoints "
        "answer 403.",
    )

    # Web customers' identity (bot/web/sessions.py).
    session_secret: SecretStr | None = Field(
        default=None,
        validation_alias="TELLER_SESSION_SECRET",
        description="Key that signs web sessions, at least 16 characters (changing it ends every "
        "session). Unset: a random key kept in the database, shared by every replica.",
    )
    session_days: float = Field(
        default=30.0,
        gt=0,
        le=366,
        validation_alias="TELLER_SESSION_DAYS",
        description="How long a web session (cookie or API token) lasts, in days.",
    )
    customer_token_key: SecretStr | None = Field(
        default=None,
        validation_alias="TELLER_CUSTOMER_TOKEN_KEY",
        description="Key of the HS256 JSON Web Tokens a bank's backend signs for its logged-in "
        "customers (claims: sub = the bank's customer id, aud = teller, exp), at least 32 "
        "characters. Unset: such tokens are refused.",
    )
    backend_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="TELLER_BACKEND_API_KEY",
        description="Bearer key of a bank's backend that speaks for its authenticated customers, "
        "naming each in the X-Teller-Customer header; at least 16 characters. Unset: refused.",
    )
    # Abuse limits (bot/abuse.py), in the `limits` library's notation.
    limit_messages: str = Field(
        default="20/minute",
        validation_alias="TELLER_LIMIT_MESSAGES",
        description="Messages one customer (web session, verified customer, Telegram or Slack "
        "user) may send.",
    )
    limit_messages_per_address: str = Field(
        default="60/minute",
        validation_alias="TELLER_LIMIT_MESSAGES_PER_ADDRESS",
        description="Web and REST messages from one client address.",
    )
    limit_messages_overall: str = Field(
        default="1200/minute",
        validation_alias="TELLER_LIMIT_MESSAGES_OVERALL",
        description="Messages from everyone together (per replica with memory:// storage).",
    )
    limit_messages_anonymous: str = Field(
        default="600/minute",
        validation_alias="TELLER_LIMIT_MESSAGES_ANONYMOUS",
        description="Messages from anonymous web customers together, a share of the overall limit "
        "(per replica with memory:// storage).",
    )
    limit_sessions: str = Field(
        default="20/minute",
        validation_alias="TELLER_LIMIT_SESSIONS",
        description="New web sessions from one client address.",
    )
    limit_handoffs_per_address: str = Field(
        default="5/hour",
        validation_alias="TELLER_LIMIT_HANDOFFS_PER_ADDRESS",
        description="Handoffs opened from one client address.",
    )
    max_open_handoffs: int = Field(
        default=100,
        ge=1,
        validation_alias="TELLER_MAX_OPEN_HANDOFFS",
        description="Open handoffs in total; beyond, customers are told the team cannot take them now.",
    )
    limit_review_posts: str = Field(
        default="10/minute",
        validation_alias="TELLER_LIMIT_REVIEW_POSTS",
        description="Review items posted to the ops channel; beyond, they wait in the queue.",
    )
    limit_review_filings: str = Field(
        default="5/hour",
        validation_alias="TELLER_LIMIT_REVIEW_FILINGS",
        description='Review items one customer\'s "not helpful" verdicts file, per customer; beyond, '
        "the verdict is kept but files nothing.",
    )
    limit_erasures: str = Field(
        default="3/hour",
        validation_alias="TELLER_LIMIT_ERASURES",
        description="Erasures a web customer asks for themselves (DELETE /api/conversation), per "
        "customer; beyond, 429 with Retry-After.",
    )
    limit_erasures_per_address: str = Field(
        default="30/hour",
        validation_alias="TELLER_LIMIT_ERASURES_PER_ADDRESS",
        description="The same, per client address (many customers may share one).",
    )
    limits_storage: str = Field(
        default="memory://",
        validation_alias="TELLER_LIMITS_STORAGE",
        description="Where the limits count (a `limits` storage URI): memory:// per replica, or "
        "redis://host:6379 shared (needs `pip install 'limits[redis]'`).",
    )

    @field_validator("operator_api_key", "session_secret", "backend_api_key")
    @classmethod
    def _key_strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError(
                "is shorter than 16 characters: use a long random value (e.g. `openssl rand -hex 32`), "
                "or unset it"
            )
        return value

    @field_validator("bank_name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("the bank's name must be printable text on one line")
        return value

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, value: str) -> str:
        import phonenumbers

        codes = [c.strip().upper() for c in re.split(r"[,;\s]+", value) if c.strip()]
        unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            hint = " (the United Kingdom's code is GB)" if "UK" in unknown else ""
            raise ValueError(
                f"{', '.join(unknown)}: not a region phone numbers are known for{hint}; use ISO 3166 "
                "two-letter codes separated by commas, e.g. 'SG' or 'NZ,AU'"
            )
        return ",".join(dict.fromkeys(codes))

    @property
    def phone_region_list(self) -> tuple[str, ...]:
        """``phone_regions`` as a tuple of codes (empty when unset)."""
        return tuple(c for c in self.phone_regions.split(",") if c)

    @field_validator("customer_token_key")
    @classmethod
    def _token_key_strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # RFC 7518 section 3.2: an HS256 key of at least 256 bits.
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("is shorter than 32 bytes (RFC 7518 asks HS256 keys of at least 256 bits)")
        return value

    def abuse_limits(self) -> AbuseLimits:
        """The abuse limits these settings describe (raises :class:`ConfigError` for a bad one)."""
        return AbuseLimits(
            LimitSettings(
                messages=self.limit_messages,
                messages_per_address=self.limit_messages_per_address,
                messages_overall=self.limit_messages_overall,
                messages_anonymous=self.limit_messages_anonymous,
                sessions_per_address=self.limit_sessions,
                handoffs_per_address=self.limit_handoffs_per_address,
                max_open_handoffs=self.max_open_handoffs,
                review_posts=self.limit_review_posts,
                review_filings=self.limit_review_filings,
                erasures=self.limit_erasures,
                erasures_per_address=self.limit_erasures_per_address,
                storage=self.limits_storage,
            )
        )

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret_telegram_accepts(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's setWebhook refuses any other secret_token: say so here, not as a Bad Request later.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        # Telegram accepts one character; Teller asks for as many as its other keys: a short secret
        # can be guessed, and the log filter does not look for one (bot.logs.OWN_SECRET_MIN).
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (one is generated when unset; or run "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_not_empty(cls, value: str | None) -> str | None:
        # An empty value in an environment file would silently give a replica a private SQLite
        # database of its own: refuse it.
        if value is not None and not value.strip():
            raise ValueError("is empty: unset it for the SQLite default, or give postgresql://…")
        return value

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def secret_values(self) -> list[str]:
        """Every secret configured, in clear: each ``SecretStr`` setting (bot tokens, signing
        secrets, keys) and the password of any URL setting (the database, the limits' storage, an
        API base URL), also as percent-encoded in the URL. The log filter hides them wherever a
        record quotes one (:func:`bot.logs.configure_logging`), whatever their format."""
        from urllib.parse import quote, quote_plus, unquote, urlsplit

        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
            elif isinstance(value, str) and "://" in value:
                try:
                    password = urlsplit(value).password
                except ValueError:
                    continue
                if password:
                    plain = unquote(password)
                    values += [password, plain, quote(plain, safe=""), quote_plus(plain)]
        return list(dict.fromkeys(v for v in values if v))

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"

    @property
    def db_path(self) -> Path:
        return self.home / "teller.db"

    @property
    def production(self) -> bool:
        """``TELLER_ENV=production``: closed by default (see ``env``)."""
        return self.env == "production"

    @property
    def replicate_kb(self) -> bool:
        """Whether knowledge-base changes go through the database's change log (see ``kb_replication``)."""
        if self.kb_replication == "auto":
            return (self.database_url or "").startswith(("postgresql", "postgres:"))
        return self.kb_replication == "on"

    @property
    def database(self) -> str:
        """What :class:`bot.storage.Database` opens: ``TELLER_DATABASE_URL``, else the SQLite file."""
        return self.database_url or str(self.db_path)

    @property
    def kb_dir(self) -> Path:
        return self.home / "kb"

    @property
    def briefs_dir(self) -> Path:
        """Where positioning briefs are written, one directory per interview (erasure and
        retention rewrite the quotes of the messages they remove there too)."""
        return self.home / "briefs"

    @property
    def kb_seed(self) -> Path | None:
        """The file a new knowledge base is filled from (``TELLER_KB_STARTER``), or None to start empty."""
        from retrieval.knowledge_base import DEFAULT_KB_FILE

        starter = self.kb_starter.strip()
        if starter.lower() == "lumen":
            return DEFAULT_KB_FILE
        if starter.lower() in ("none", ""):
            return None
        return Path(starter).expanduser()

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def serving_precision(self) -> str | None:
        return None if self.precision == "auto" else self.precision

    @property
    def operator_ids(self) -> frozenset[str]:
        """``TELLER_OPERATORS`` as ``channel:user`` keys (a bare id counts on Slack and Telegram)."""
        return _id_set(self.operators, ("slack", "telegram"))

    @property
    def product_manager_ids(self) -> frozenset[str]:
        return _id_set(self.product_managers, ("slack",))


def _id_set(raw: str, channels: tuple[str, ...]) -> frozenset[str]:
    keys: set[str] = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        channel, sep, user = item.partition(":")
        if sep and channel.lower() in ("slack", "telegram"):
            keys.add(f"{channel.lower()}:{user.strip()}")
        else:
            keys.update(f"{c}:{item}" for c in channels)
    return frozenset(keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        # pydantic prefixes a validator's own words with "Value error, ": noise to whoever reads it.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    settings.home = settings.home.expanduser()
    settings.models = settings.models.expanduser()
    if settings.cache is not None:
        settings.cache = settings.cache.expanduser()
    return settings
