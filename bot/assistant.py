"""Assembling Teller from settings: classifier, knowledge base, exemplars and calibrated policy."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
import pickle
import threading
import weakref
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.calibration import (
    COVER_PROBABILITY,
    COVER_TOP_K,
    KB_FIT_ORDERS,
    KB_FIT_PASSES,
    SUGGEST_FLOOR,
    TAKE_OVER_PROBABILITY,
    CalibrationSet,
    Targets,
    calibrate,
    calibrate_kb,
    missed_targets,
)
from bot.channels import Channel
from bot.core import TellerCore
from bot.corrections import CorrectionFollower
from bot.errors import ConfigError
from bot.exemplars import ADVICE_CUES, DATA_DIR, load_advice, load_information, load_smalltalk
from bot.kb_replication import KnowledgeReplicator, SyncResult
from bot.operators import Operators
from bot.policy import (
    ADVICE_SURE,
    ADVICE_TAG,
    OPERATOR_TAG,
    RULE_NAMES,
    SUGGEST_DEPTH,
    SUGGEST_RELATIVE,
    AnswerPolicy,
    KBExemplars,
    PolicyConfig,
    Thresholds,
)
from bot.service import TellerService
from bot.settings import STARTER_BANK, Settings
from bot.storage import AuditAction, Store

if TYPE_CHECKING:
    from bot.model_swap import ModelSwapper
from nlu import IntentClassifier, ModelRegistry
from nlu.artifact import read_base_memory, read_dev_split
from nlu.corpora import BANKING77_TRAIN, CLINC150_OOS_DEV
from nlu.data import read_labelled_csv
from nlu.language import LanguageGate
from nlu.spelling import SpellingCorrector, words
from nlu.spelling import variant as spelling_variant
from retrieval.embedder import OnnxSentenceEmbedder, embedder_key
from retrieval.errors import RetrievalError
from retrieval.knowledge_base import DEFAULT_FUSION, DEFAULT_TOP_CONFIDENCE, STARTER_PRIOR, KnowledgeBase

log = logging.getLogger(__name__)

#: Our own paraphrases of the default KB's general and advice entries, for calibration only.
FAQ_DEV_FILE = DATA_DIR / "faq_dev.csv"


def open_kb(settings: Settings, store: Store | None = None) -> KnowledgeBase:
    """The knowledge base under ``TELLER_HOME/kb``; a new one starts with ``TELLER_KB_STARTER``
    (the Lumen Bank starter, nothing, or a file). A bad starter file is a :class:`ConfigError`.

    With replication on (``TELLER_KB_REPLICATION``, by default with PostgreSQL) it is synced with
    the database's change log before it is returned (:mod:`bot.kb_replication`), and a new one
    joining a cluster that has content takes that content instead of its starter; ``store`` is the
    store to use for that (default: one opened here).
    """
    embedder = OnnxSentenceEmbedder(settings.cache_dir, threads=settings.threads)
    kb = KnowledgeBase.open(settings.kb_dir, embedder, seed=None)
    try:
        replicator = None
        if settings.replicate_kb:
            replicator = KnowledgeReplicator(kb, (store or open_store(settings)).kb_log)
            _replicators[kb] = replicator
        joining = replicator is not None and replicator.changes.head() > 0
        kb.start(None if joining else settings.kb_seed)
        if replicator is not None:
            replicator.sync()
    except RetrievalError as exc:
        kb.close()
        raise ConfigError(f"TELLER_KB_STARTER: {exc}") from None
    return kb


_replicators: weakref.WeakKeyDictionary[KnowledgeBase, KnowledgeReplicator] = weakref.WeakKeyDictionary()


def replicate_kb(kb: KnowledgeBase) -> SyncResult | None:
    """Sync ``kb`` with the change log if it is replicated (None if it is not)."""
    replicator = _replicators.get(kb)
    return replicator.sync() if replicator is not None else None


@functools.cache
def _corpus_words() -> dict[str, int]:
    """The training corpus's words found in at least two of its messages (a one-off is most often
    a typo: "acount", "paymet"), with the number of messages each is in."""
    with open(BANKING77_TRAIN, encoding="utf-8") as f:
        seen = Counter(w for row in csv.DictReader(f) for w in words(row["text"]))
    return {w: n for w, n in seen.items() if n >= 2}


def speller(classifier: IntentClassifier) -> SpellingCorrector:
    """The spelling correction of :func:`build_policy`'s policy: the training corpus's words as the
    domain vocabulary (the knowledge base's are added by the policy), the model's tokenizer's whole
    words known."""
    return SpellingCorrector(_corpus_words(), known=classifier.whole_words())


def build_policy(
    settings: Settings,
    version: str | None = None,
    kb: KnowledgeBase | None = None,
    calibrate_if_missing: bool = True,
    stored_thresholds: bool = True,
    refit_kb: bool = True,
) -> AnswerPolicy:
    """The answer policy for the active model (or ``version``), calibrating it once if it never was.

    ``stored_thresholds=False`` ignores (and ``calibrate_if_missing=False`` does not create) the
    model's ``policy.json``: for callers about to calibrate anyway. ``refit_kb=False`` leaves a stale
    knowledge-base fit to the caller (a swap that must be quick re-fits right after).
    """
    registry = ModelRegistry(settings.models)
    path = registry.path(version) if version else registry.active_path()
    classifier = IntentClassifier.load(path, precision=settings.serving_precision, threads=settings.threads)
    kb = kb if kb is not None else open_kb(settings)  # an empty one is falsy (len 0)
    examples = functools.partial(kb_exemplars, settings)
    now = examples(kb)
    # The base memory is comparable with retrieval vectors only if both come from the same encoder.
    base_memory = read_base_memory(path) if classifier.info.base_encoder == kb.embedder.name else None
    if base_memory is not None and base_memory.embeddings.shape[1] != kb.embedder.dim:
        base_memory = None
    if base_memory is not None:
        base_memory.prepare()  # its search index now, not on the first message
    policy = AnswerPolicy(
        classifier,
        kb,
        now.smalltalk,
        now.advice,
        base_memory=base_memory,
        information=load_information(),
        language=language_gate(),
        cache_dir=settings.cache_dir,
        speller=speller(classifier),
        bank=now.bank,
        exemplars=examples,
        exemplars_revision=now.revision,
    )
    config = PolicyConfig.load(path) if stored_thresholds else None
    if config is None and calibrate_if_missing:
        log.warning("policy_not_calibrated", extra={"fields": {"model": classifier.version}})
        config = calibrate_policy(policy, path)
    if config is not None:
        policy.thresholds = config.thresholds
        if stored_thresholds:
            follow_kb(policy, refit=calibrate_if_missing and refit_kb)
    return policy


#: The knowledge base's own thresholds, next to it: ``{"model", "kb_revision", "thresholds", ...}``.
KB_CALIBRATION_FILE = "calibration.json"
_calibration_sets: dict[str, CalibrationSet] = {}
#: Bump when the pickled ``CalibrationSet``/``Signals`` change shape, or the signals themselves (2: an
#: int8 classifier reads each message alone, not in batches of 64; 3: misspelt words are corrected
#: first, :mod:`nlu.spelling`): older cache files are ignored.
CALIBRATION_CACHE_FORMAT = 3
_calibration_lock = threading.Lock()


def _calibration_set(policy: AnswerPolicy, rebuild: bool = False) -> CalibrationSet:
    """The model's calibration messages with their signals, built once per model (about 20 s on two
    cores) and kept in this process and in ``<cache>/calibration-<key>.pkl`` (a derived file, keyed
    by the model version, the retrieval encoder's graph (:func:`retrieval.embedder.embedder_key`) and
    the exact calibration data and example files), so that the next
    command's re-fit takes seconds. ``rebuild`` computes the signals afresh and replaces both copies
    (a full calibration: the key does not cover everything the signals depend on, such as the
    knowledge base's advice entries or the serving precision)."""
    version = policy.classifier.version
    with _calibration_lock:
        data = None if rebuild else _calibration_sets.get(version)
        if data is not None:
            return data
        in_scope, out_of_scope, faq = calibration_data(policy.classifier.path)
        path = _calibration_cache_file(policy, in_scope, out_of_scope, faq)
        if path is not None and path.is_file() and not rebuild:
            try:
                with path.open("rb") as handle:
                    loaded = pickle.load(handle)  # our own derived file, never received from outside
                if isinstance(loaded, CalibrationSet):
                    data = loaded
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
                data = None
        if data is None:
            data = CalibrationSet.build(policy, in_scope, out_of_scope, faq)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                staging = path.with_name(f".{path.name}.{os.getpid()}")
                with staging.open("wb") as handle:
                    pickle.dump(data.without_hits(), handle, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(staging, path)
        _calibration_sets[version] = data
        return data


def _calibration_cache_file(
    policy: AnswerPolicy,
    in_scope: Sequence[tuple[str, str]],
    out_of_scope: Sequence[str],
    faq: Sequence[tuple[str, str]],
) -> Path | None:
    """``<cache>/calibration-<key>.pkl`` for these calibration messages (None without a cache
    directory): the key covers the model version, the retrieval encoder's graph, the messages and
    the example files."""
    if policy.cache_dir is None:
        return None
    embedder = embedder_key(policy.kb.embedder)
    # The messages are read with misspelt words corrected (nlu.spelling): by the rules of the
    # corrector's variant and the knowledge base's words when the signals were cached.
    key = f"{CALIBRATION_CACHE_FORMAT}:{policy.classifier.version}:{embedder}:{spelling_variant()}"
    digest = hashlib.sha256(key.encode())
    for text, label in [*in_scope, *((t, "oos") for t in out_of_scope), *faq]:
        digest.update(f"{text}\t{label}\n".encode())
    for name in sorted(p.name for p in DATA_DIR.glob("*.yaml")):
        digest.update((DATA_DIR / name).read_bytes())
    return policy.cache_dir / f"calibration-{digest.hexdigest()[:16]}.pkl"


def follow_kb(policy: AnswerPolicy, refit: bool = True) -> bool | None:
    """Give ``policy`` the thresholds fitted for its knowledge base as it is now.

    The model's thresholds come from its artifact; those of :data:`KB_THRESHOLDS` depend on the
    knowledge base and are re-fitted (seconds) whenever its revision moved since the last fit, or the
    fit was made by a Teller that scores searches or decides otherwise (:data:`KB_FIT`) or over
    another retrieval encoder graph (:func:`retrieval.embedder.embedder_key`), then kept
    in ``<kb>/calibration.json`` for every process that opens it. With
    ``refit=False`` a stale fit is left alone. Returns whether the thresholds changed, or ``None``
    when they were not looked at (an uncalibrated model, or a stale fit left alone).
    """
    kb, version = policy.kb, policy.classifier.version
    policy.follow_kb_exemplars()  # the bank's name and advice entries (the server's re-fit thread)
    if policy.kb_fit == (version, kb.revision):
        return False  # fitted for this model and revision already: no file to read (server watch loop)
    model = PolicyConfig.load(policy.classifier.path)
    if model is None:
        return None
    stored = _read_kb_calibration(kb.directory)
    if (
        stored is not None
        and stored.get("model") == version
        and stored.get("kb_revision") == kb.revision
        and stored.get("fit") == KB_FIT
        and stored.get("embedder") == embedder_key(kb.embedder)
    ):
        thresholds = Thresholds.from_dict({**model.thresholds.to_dict(), **stored["thresholds"]})
    elif refit:
        # Fitted from the model's own thresholds, not from a previous fit's.
        thresholds, report = calibrate_kb(policy, _calibration_set(policy), base=model.thresholds)
        _write_kb_calibration(
            kb.directory,
            {
                "model": version,
                "fit": KB_FIT,
                "embedder": embedder_key(kb.embedder),
                **report,
                "thresholds": _kb_part(thresholds),
            },
        )
        log.info(
            "kb_calibrated",
            extra={
                "fields": {
                    "model": version,
                    "kb_revision": report["kb_revision"],
                    "thresholds": _kb_part(thresholds),
                    "fitted": report["fitted"],
                }
            },
        )
        if not report["targets_met"]:
            # The fit kept the fewest out-of-scope answers it could (bot.calibration._search): say so.
            log.warning(
                "kb_fit_misses_targets",
                extra={
                    "fields": {
                        "model": version,
                        "kb_revision": report["kb_revision"],
                        "missed": missed_targets(report["fitted"], report["targets"]),
                    }
                },
            )
    else:
        return None
    changed = thresholds != policy.thresholds
    policy.thresholds = thresholds
    policy.kb_fit = (version, kb.revision)
    return changed


#: What a knowledge-base fit depends on besides the model and the knowledge base's revision: how
#: searches are scored (fusion, starter prior, the best entry's confidence), the rules' names,
#: what the fit aims at and how it judges the bank's entries (:func:`bot.calibration.entry_coverage`).
#: A fit stored by a Teller for which these differ (an upgrade) is re-fitted, not reused; a change to
#: a rule's test that keeps its name must change one of them too.
KB_FIT = hashlib.sha256(
    repr(
        (
            DEFAULT_FUSION,
            STARTER_PRIOR,
            DEFAULT_TOP_CONFIDENCE,
            RULE_NAMES,
            Targets(),
            # 2: judged alike by every rule (general_entry, best_entry), advice questions neutral.
            ("coverage", 2, COVER_TOP_K, COVER_PROBABILITY, TAKE_OVER_PROBABILITY),
            # general_entry answers only with the best entry of all (Signals.features "general_top").
            ("general_top", 1),
            # rule suggest: which hits are offered (Signals.suggestions) and the bar's floor.
            ("suggest", SUGGEST_DEPTH, SUGGEST_RELATIVE, SUGGEST_FLOOR, OPERATOR_TAG, 1),
            # The search: rounds of coordinate search from each order of the groups.
            ("search", KB_FIT_PASSES, KB_FIT_ORDERS),
            # What the encoders read: misspelt words corrected (nlu.spelling).
            ("spelling", spelling_variant()),
            # Rule advice: a reading short of the probe's sure one needs the words (bot.exemplars).
            ("advice", ADVICE_SURE, ADVICE_CUES.pattern),
        )
    ).encode()
).hexdigest()[:16]

#: The thresholds that depend on the knowledge base (re-fitted whenever it changes).
KB_THRESHOLDS = (
    "faq",
    "faq_margin",
    "faq_fallback",
    "bank",
    "bank_margin",
    "bank_unless_intent",
    "agree_intent",
    "agree_kb",
    "suggest",
)


def _kb_part(t: Thresholds) -> dict[str, float]:
    return {name: getattr(t, name) for name in KB_THRESHOLDS}


def kb_fit_report(kb: KnowledgeBase) -> dict[str, Any] | None:
    """The knowledge base's last threshold fit as stored in ``<kb>/calibration.json`` (its model,
    revision, ``targets``, ``targets_met`` and ``fitted`` figures, ...), or None when it has none."""
    return _read_kb_calibration(kb.directory)


def _read_kb_calibration(directory: Path) -> dict[str, Any] | None:
    path = directory / KB_CALIBRATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("thresholds"), dict) else None


def _write_kb_calibration(directory: Path, data: dict[str, Any]) -> None:
    path = directory / KB_CALIBRATION_FILE
    staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    staging.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, path)


@functools.cache
def language_gate() -> LanguageGate:
    """One language detector per process (its models load once, on first use)."""
    return LanguageGate()


def open_store(settings: Settings) -> Store:
    """The store ``TELLER_DATABASE_URL`` (or the SQLite file under ``TELLER_HOME``) names, migrated.

    Interviews from before they moved into the store (``<home>/positioning.db``) are copied in
    once; the old file is then renamed ``positioning.db.imported``.
    """
    store = Store(settings.database)
    legacy = settings.home / "positioning.db"
    if legacy.is_file():
        added = store.interviews.import_file(legacy)
        legacy.rename(legacy.with_name("positioning.db.imported"))
        log.info("interviews_imported", extra={"fields": {"count": added, "from": str(legacy)}})
    return store


def build_core(settings: Settings, version: str | None = None) -> TellerCore:
    """Everything a channel needs: the calibrated policy (of ``version``, default the model the
    database says is active, see :func:`active_version`) and the store."""
    store = open_store(settings)
    try:
        version = version or active_version(settings, store)
        policy = build_policy(settings, version=version, kb=open_kb(settings, store))
        CorrectionFollower(store, lambda: policy).refresh()  # the operators' corrections in force
    except BaseException:
        store.close()
        raise
    return TellerCore(policy, store)


def active_version(settings: Settings, store: Store) -> str | None:
    """The model version to serve: the one recorded in the database (every replica follows it), else
    the registry's ``ACTIVE`` pointer (a database that never recorded an activation)."""
    return store.deployment.active_model() or ModelRegistry(settings.models).active_version()


def activate_model(
    settings: Settings,
    version: str,
    actor: str | None = None,
    store: Store | None = None,
    overruled: Sequence[str] = (),
) -> Path:
    """Make ``version`` the active model: the registry's pointer, then the database's record that
    every replica follows within seconds (:class:`bot.model_swap.ModelSwapper`), then an
    ``activation`` entry in the audit log (``actor``; the version and the one it replaced; a failed
    audit write is logged, the activation stands). ``overruled``: the retrain gate's reasons for
    refusing ``version``, when an operator activates it all the same (``teller models activate
    --force``): the audit entry records them as ``forced`` with ``gate_reasons``, so an auditor
    tells such an activation from a rollback (a reviewer's finding). Returns its path.

    Raises :class:`nlu.NLUError` for an unknown version, :class:`bot.storage.StoreError`.
    """
    registry = ModelRegistry(settings.models)
    local_previous = registry.active_version()
    path = registry.activate(version)
    own = store is None
    store = store or open_store(settings)
    try:
        previous = store.deployment.active_model() or local_previous
        store.deployment.set_active_model(version, actor)
        details: dict[str, Any] = {"version": version, "previous": previous}
        if overruled:
            details |= {"forced": True, "gate_reasons": list(overruled)}
        store.audit.record_after(actor or "unknown", AuditAction.ACTIVATION, f"model:{version}", details)
    finally:
        if own:
            store.close()
    log.info("model_activated", extra={"fields": {"version": version, "by": actor}})
    return path


def half_configured_channels(settings: Settings) -> list[str]:
    """What is set for Slack but not enough to run it (a trial's finding: a bot token without a
    signing secret or an app token started the web chat alone, and ``/slack/events`` was a 404 with
    nothing said). Empty when Slack is off or fully configured."""
    if slack_configured(settings):
        return []
    given = [
        name
        for name, value in (
            ("SLACK_BOT_TOKEN", settings.slack_bot_token),
            ("SLACK_SIGNING_SECRET", settings.slack_signing_secret),
        )
        if value is not None
    ]
    if not given:
        return []
    return [
        f"{' and '.join(given)} set, but Slack is off: it needs SLACK_BOT_TOKEN with "
        "SLACK_SIGNING_SECRET (events over HTTP at /slack/events) or with SLACK_APP_TOKEN (Socket Mode)"
    ]


def slack_configured(settings: Settings) -> bool:
    bot_token, signing = settings.slack_bot_token, settings.slack_signing_secret
    return settings.slack_app_token is not None or (bot_token is not None and signing is not None)


def kb_exemplars(settings: Settings, kb: KnowledgeBase) -> KBExemplars:
    """The policy's examples as ``kb`` has them now (:meth:`AnswerPolicy.follow_kb_exemplars`): the
    bank's name (:func:`bank_name`), the small talk naming it, and the advice examples with the
    knowledge base's advice questions (entries tagged :data:`ADVICE_TAG`) among them."""
    with kb.lock:
        revision, name, entries = kb.revision, bank_name(settings, kb), kb.entries()
    advice_questions = [q for e in entries if ADVICE_TAG in e.tags for q in e.questions]
    return KBExemplars(name, load_smalltalk(bank=name), load_advice(extra=advice_questions), revision)


def bank_name(settings: Settings, kb: KnowledgeBase) -> str:
    """The bank's name customers see: ``TELLER_BANK_NAME``; unset, the starter's fictional bank
    (:data:`bot.settings.STARTER_BANK`) while ``kb`` still holds entries of the Lumen starter, whose
    answers name it, else "" (no name: "your bank's assistant"). A running server follows it as the
    knowledge base changes (:attr:`bot.policy.AnswerPolicy.bank`)."""
    name = " ".join(settings.bank_name.split())
    if name:
        return name
    return STARTER_BANK if any(kb.is_starter(e.id) for e in kb.entries()) else ""


def starter_notice(settings: Settings, kb: KnowledgeBase) -> str | None:
    """What to tell whoever starts Teller, or adds the bank's entries, when the bank has named
    itself (``TELLER_BANK_NAME``) or has entries of its own in the knowledge base, but entries of the
    fictional Lumen starter still answer its customers: those answers name Lumen's app, products,
    phone numbers and fees, which no rewording would make the bank's. None when neither holds or
    no starter entry is live. Read when Teller starts, and after ``teller kb add`` / ``kb sync``."""
    name = " ".join(settings.bank_name.split())
    entries = kb.entries()
    live = sum(kb.is_starter(e.id) for e in entries)
    own = len(entries) - live
    named = bool(name) and name.casefold() != STARTER_BANK.casefold()
    if not live or not (named or own):
        return None
    customers = f"{name}'s customers" if named else f"your customers beside your {own} own entries"
    return (
        f"{live} entries of the fictional {STARTER_BANK}'s starter still answer {customers}, and "
        f"they name {STARTER_BANK}'s app, products, phone numbers and fees: replace the knowledge base "
        "with the bank's own (`teller kb sync FILE`), or remove the starter entries you do not want "
        "(`teller kb list --starter` shows them; `teller kb remove ID`; an intent left without an "
        "answer entry is handed off)."
    )


def staffed(settings: Settings) -> bool:
    """Whether a served Teller has people to take handoffs over: Slack configured with an ops
    channel (``TELLER_OPS_CHANNEL``), the board :func:`build_channels` attaches. What a running
    service says of itself is :attr:`bot.service.TellerService.staffed`; this is the same question
    asked of the settings, for commands that start no channel (``teller ask``)."""
    return slack_configured(settings) and bool(settings.ops_channel)


def build_service(settings: Settings, core: TellerCore, swapper: ModelSwapper | None = None) -> TellerService:
    """The application façade every channel calls: positioning interviews (Slack DMs), handoffs and
    the review queue (operators), customer service and delivery. Everything follows the core's
    policy, so a promoted model is used at once (through ``swapper``, the server's own when it has
    one)."""
    from bot.ops_desk import OpsDesk
    from bot.review import ReviewService

    operators = Operators.from_settings(settings)
    review = ReviewService(
        core.store, lambda: core.policy, None, operators, review_confidence=settings.review_confidence
    )
    desk = None
    if slack_configured(settings):
        from bot.positioning_desk import PositioningDesk

        desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    from bot.model_swap import ModelSwapper
    from bot.retraining import QueuedRetrain, RetrainRunner

    ops = OpsDesk(core.store, review, operators)
    ops.idle_minutes = settings.handoff_idle_minutes
    ops.limits = settings.abuse_limits()  # one set, shared with the service
    swapper = swapper or ModelSwapper(settings, core)
    # A correction made here answers at once here; other replicas follow within a second.
    review.on_correction.append(lambda _: swapper.corrections.refresh())
    if settings.retrain_in == "worker":
        ops.retrainer = QueuedRetrain(core.store.jobs, core.store.database)
    else:
        ops.retrainer = RetrainRunner(settings, review, swap=swapper.sync, kb=lambda: core.policy.kb)
    return TellerService(core, desk, ops)


def check_telegram_webhook(settings: Settings) -> None:
    """Telegram's webhook mode always checks a secret: the configured one, else one the channel
    generates and registers as it starts. A generated secret is per process, and Telegram keeps only
    the last one registered, so replicas sharing a database (``TELLER_DATABASE_URL``) would refuse
    each other's updates: there the secret must be given."""
    if (
        settings.telegram_bot_token is not None
        and settings.telegram_webhook_url
        and settings.telegram_webhook_secret is None
        and settings.database_url is not None
    ):
        raise ConfigError(
            "Telegram's webhook mode (TELEGRAM_WEBHOOK_URL) with a shared database (TELLER_DATABASE_URL) "
            "needs TELEGRAM_WEBHOOK_SECRET: a secret generated by each replica would differ, and "
            "Telegram keeps only the last one registered. Set the same TELEGRAM_WEBHOOK_SECRET "
            "(1 to 256 characters of A-Z, a-z, 0-9, _ and -, e.g. `openssl rand -hex 32`) on every replica"
        )


def build_channels(
    settings: Settings, core: TellerCore, service: TellerService | None = None
) -> list[Channel]:
    """Every chat platform whose settings are present (the web chat needs none). Each can be reached
    by the ops desk (an operator's reply in a handoff); Slack's ops channel is the ops board.

    Raises :class:`ConfigError` for Telegram's webhook mode without ``TELEGRAM_WEBHOOK_SECRET`` on a
    shared database (see :func:`check_telegram_webhook`)."""
    check_telegram_webhook(settings)
    service = service or build_service(settings, core)
    channels: list[Channel] = []
    if settings.telegram_bot_token is not None:
        from bot.channels.telegram import TelegramChannel, help_text

        secret = settings.telegram_webhook_secret
        telegram = TelegramChannel(
            core,
            settings.telegram_bot_token.get_secret_value(),
            api_url=settings.telegram_api_url,
            webhook_url=settings.telegram_webhook_url,
            webhook_secret=secret.get_secret_value() if secret else None,
            service=service,
            # Telegram has one getUpdates consumer per bot: one replica polls, the others stand by.
            leadership=lambda: core.store.database.try_lock("telegram-polling"),
            help=lambda: help_text(core.policy.bank, staffed=staffed(settings)),
        )
        channels.append(telegram)
        if service.ops is not None:
            service.ops.register_transport(telegram.transport)
    if slack_configured(settings):
        from bot.channels.slack import SlackChannel

        bot_token, signing = settings.slack_bot_token, settings.slack_signing_secret
        slack = SlackChannel(
            core,
            bot_token.get_secret_value() if bot_token else None,
            signing_secret=signing.get_secret_value() if signing and not settings.slack_app_token else None,
            app_token=settings.slack_app_token.get_secret_value() if settings.slack_app_token else None,
            api_url=settings.slack_api_url,
            service=service,
            ops_channel=settings.ops_channel,
            flag_emoji=settings.flag_emoji,
        )
        channels.append(slack)
        if service.ops is not None:
            service.ops.register_transport(slack.transport)
            if staffed(settings):
                service.ops.attach_board(slack.board)
    return channels


def calibration_data(model_path: Path) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """The model's held-out dev split (in scope), the vendored out-of-scope queries, and the FAQ
    dev set (questions only a general knowledge-base entry answers)."""
    in_scope = [(e.text, e.label) for e in read_dev_split(model_path)]
    out_of_scope = [e.text for e in read_labelled_csv(CLINC150_OOS_DEV)]
    with FAQ_DEV_FILE.open(encoding="utf-8", newline="") as handle:
        faq = [(row["text"], row["kb_id"]) for row in csv.DictReader(handle)]
    return in_scope, out_of_scope, faq


def calibrate_policy(policy: AnswerPolicy, model_path: Path, targets: Targets | None = None) -> PolicyConfig:
    """Fit the thresholds on dev data and store them in the model's artifact as ``policy.json``."""
    in_scope, out_of_scope, faq = calibration_data(model_path)
    # Built once and kept (in this process and the cache directory) for the knowledge-base re-fits.
    same_model = Path(model_path) == Path(policy.classifier.path)
    data = _calibration_set(policy, rebuild=True) if same_model else None
    thresholds, report = calibrate(policy, in_scope, out_of_scope, faq, targets, data=data)
    report["kb_entries"] = len(policy.kb)
    config = PolicyConfig(thresholds, report)
    config.save(model_path)
    policy.thresholds = thresholds
    # The joint fit holds for the knowledge base as it is now, until it changes.
    _write_kb_calibration(
        policy.kb.directory,
        {
            "model": policy.classifier.version,
            "kb_revision": policy.kb.revision,
            "kb_entries": len(policy.kb),
            "fitted": report["fitted"],
            "thresholds": _kb_part(thresholds),
        },
    )
    log.info(
        "policy_calibrated",
        extra={
            "fields": {
                "model": policy.classifier.version,
                "thresholds": thresholds.to_dict(),
                "held_out": report["held_out"],
            }
        },
    )
    if any(not policy.kb.is_starter(e.id) for e in policy.kb.entries()):
        # The joint fit judged on the labels alone; the bank's own entries are weighed by what they
        # cover in the knowledge-base re-fit (the stored joint fit has no KB_FIT, so it re-fits now).
        policy.kb_fit = None
        follow_kb(policy)
    return config


def calibration_summary(config: PolicyConfig) -> dict[str, Any]:
    return {"thresholds": config.thresholds.to_dict(), **config.calibration}
