"""Small talk and advice requests, recognised by meaning against example phrasings (bot/data/*.yaml).

Whether a finance question asks for advice ("should I put my savings in a cash ISA?") or for
information ("how is interest on a cash ISA calculated?") is a question of modality more than of
topic, and nearest-example similarity confuses the two (the pair above shares almost every word).
:class:`AdviceProbe` is a logistic regression on the sentence embeddings of the advice and the
information examples: on ``tests/data/advice_boundary.csv`` (70 close pairs written separately,
never trained on) it is right for 69 (98.6 %; every information question kept), where comparing
the nearest examples of each kind is right for 52 (74 %).

The probe's middle band still takes requests to do something ("borrow money for a car", "put cash
in my account", "get some euros before I fly out": 0.52-0.66 on the operator-FAQ dev banks) for
advice. :func:`asks_what_to_do` reads the modality in the words themselves: a request for advice
asks for a recommendation, a judgement ("worth", "better", "a good idea"), a forecast or a choice.
Every example of ``advice.yaml`` and every advice request of the boundary cases says so in one of
those ways; none of the 129 information examples does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from bot.errors import ConfigError
from bot.settings import STARTER_BANK, bank_possessive

DATA_DIR = Path(__file__).resolve().parent / "data"
SMALLTALK_FILE = DATA_DIR / "smalltalk.yaml"
ADVICE_FILE = DATA_DIR / "advice.yaml"
INFORMATION_FILE = DATA_DIR / "information.yaml"


#: The words by which a message asks what the customer should do with their money rather than how
#: something works: an obligation or recommendation ("should", "would you", "recommend"), a
#: judgement ("worth", "better", "a good idea", "right for me", "riskier", "pros and cons"), a
#: forecast ("will rates come down", "is now the time") or a choice ("... or wait", "what to buy").
#: Written from the advice route's definition (the knowledge-base issue), checked against
#: ``advice.yaml``, ``information.yaml`` and ``tests/data/advice_boundary.csv``, then widened and
#: narrowed after a reviewer's 221 messages of their own (2026-12-06): negations ("shouldn't"),
#: "vs", "help me choose", "thoughts on", forecasts with "expect"; not "the best rate you offer",
#: "should I receive a letter", "would you be able to send", the company Wise, a remittance advice.
ADVICE_CUES = re.compile(
    r"""\b(?:
    # Obligation, recommendation, opinion ("would you" and "do you think" not as a polite request).
    should(?!\s+(?:i|we)\s+(?:receive|expect|bring|hear|have\s+(?:got|received|had|heard))\b)
    |shouldn['\u2019]?t|shall|shud|ought
    |rec+om+e?nd\w*|(?<!remittance\s)(?<!payment\s)advice|advise(?!\s+(?:when|once)\b)
    |suggest\w*(?!\s+a\s+(?:time|date|day)\b)|suit\w*|reckon|tips|tip\s+on
    |would\s+(?:you|u)(?!\s+(?:be\s+able|mind|please|kindly|also|send|close|cancel|open|move|transfer
        |change|update|call|email|post|check|confirm)\b)
    |wouldn['\u2019]?t\s+(?:you|u|it\s+be)
    |if\s+you\s+were|in\s+my\s+(?:shoes|position|situation|place)
    |do\s+(?:you|u)\s+think(?!\s+(?:you|u)\s+(?:could|can|would|might)\b)
    |your\s+(?:view|opinion|take|pick)|thoughts\s+on|opinions?\s+on
    # Judgement ("best" not of a rate, number or way to reach the bank; "Wise" the company is none).
    |better|worth|wiser|wisest|(?<!my\s)(?<!to\s)wise(?!\s+(?:account|card|transfer|app)\b)
    |smart(?:est|er)?|sensible|advisable|(?<!by\s)mistake(?!\s+(?:on|in)\s+(?:a|my|the)\s)
    |best(?!\s+(?:buy\s+)?(?:rates?|number|interest|way\s+to\s+(?:contact|reach|call|get\s+(?:in\s+touch|hold)))
        \b(?!.{0,40}\bfor\s+(?:me|us|my\s+(?:situation|circumstances))\b))
    |good\s+(?:idea|time|move|bet|choice|option|investment|deal|plan|place|way|shout)|bad\s+idea
    |good\s+or\s+bad|no[-\s]?brainer|daft|dumb|crazy|mad\s+to
    |makes?\s+sense|right\s+(?:for|call|move|choice|time|thing|option|one|home|way)
    |too\s+(?:early|late|risky|soon|old|young)|risk(?:y|ier|iest)|safer|safest|pros\s+and\s+cons
    # Choice.
    |help\s+me\s+(?:decide|choose|pick)|(?:decide|deciding|choose|choosing|torn)\s+between
    |not\s+sure\s+which|can['\u2019]?t\s+decide|(?:vs\.?|versus)(?!.{0,40}\bdifference)
    |what\s+to\s+(?:do|buy|invest|choose|pick)|where\s+to\s+(?:put|keep|invest|park|stash)|which\s+to
    |where\s+do\s+i\s+(?:put|stick|keep|park|invest|stash)
    |what\s+(?:do|can)\s+i\s+do\s+with\s+(?:my\s+|this\s+|the\s+)?(?:[£$€]?\d[\d,.]*k?|money|savings|cash
        |bonus|inheritance|lump\s+sum|windfall)
    |(?:stocks?|shares?|funds?|bonds?|coins?|crypto\w*|etfs?)\s+to\s+(?:buy|sell|pick|invest\s+in)
    |do\s+i\s+(?:really\s+)?need(?!\s+(?:to\s+(?:tell|give|bring|provide|send|show|sign|log|call|pay\s+tax)
        |my|a\s+(?:card|pin|password|deposit)|an?\s+(?:id|appointment))\b)
    |do\s+i\s+\w+.{0,60}?\bor\s+not|(?:whether|if)\s+to\b.{0,60}?\bor\s+not
    |or\s+(?:wait|save|invest|keep|spend|pay)
    # Forecast (not of the customer's own rate, payments or fees: "will my overdraft limit increase").
    |going\s+to\s+(?:go\s+up|go\s+down|rise|fall|drop|crash)
    |will\s+(?!(?:my|our)\s+(?:\w+\s+){0,2}?(?:rates?|payments?|repayments?|interest|fees?|bill|direct\s+debit
        |limit|balance|overdraft)\b)
        (?:\w+\s+){0,3}(?:go\s+up|go\s+down|rise|fall|drop|crash|come\s+down|recover|increase|climb|tank
        |plummet|soar|be\s+(?:cut|raised|higher|lower))
    |(?:expect|predict|forecast)\w*\s+(?:\w+\s+){0,3}to\s+(?:go\s+up|go\s+down|rise|fall|drop|crash|come\s+down
        |recover|increase|climb)
    |forecast\s+for
    |is\s+(?:it|now)\s+(?:a\s+good\s+)?(?:the\s+)?time(?!-)|time\s+to\s+(?:buy|sell|fix|invest|switch|move|get|start)
    )\b""",
    re.X | re.I,
)
#: A short question offering two options ("pension or ISA?", "fixed or variable?") asks to choose.
_CHOICE = re.compile(r"^\W*(?:\S+\s+){0,5}?\S*\bor\b(?:\s+\S+){1,5}?\W*\?\W*$", re.I)


@functools.lru_cache(maxsize=4096)
def asks_what_to_do(text: str) -> bool:
    """Whether ``text`` asks in so many words what the customer should do (:data:`ADVICE_CUES`, or
    a short question of two options of at most six words): the advice route takes a message the
    probe is not sure of only then (:data:`bot.policy.ADVICE_SURE`)."""
    return bool(ADVICE_CUES.search(text) or (len(text.split()) <= 6 and _CHOICE.search(text)))


@dataclass
class ExemplarSet:
    """Example phrasings, each with a category; embedded once, then matched by cosine similarity."""

    texts: list[str]
    categories: list[str]
    replies: dict[str, str]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    #: Per category whose reply offers a person, what is said instead where no person can take over
    #: (no ops channel; :func:`bot.core.unstaffed`).
    unstaffed: dict[str, str] = field(default_factory=dict)

    def embed_with(self, embed: Any) -> ExemplarSet:
        self.vectors = np.asarray(embed(self.texts), dtype=np.float32)
        return self

    def best(self, queries: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """For each query vector: the best-matching category and its similarity."""
        if not self.texts:
            return [None] * len(queries), np.zeros(len(queries), dtype=np.float32)
        sims = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        index = sims.argmax(axis=1)
        return [self.categories[i] for i in index], sims[np.arange(len(queries)), index]

    def leave_one_out(self) -> np.ndarray:
        """Each example's similarity to the closest *other* example of its own category."""
        sims = self.vectors @ self.vectors.T
        np.fill_diagonal(sims, -np.inf)
        same = np.array([[a == b for b in self.categories] for a in self.categories])
        sims[~same] = -np.inf
        return np.asarray(sims.max(axis=1), dtype=np.float32)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


#: What stands for the bank's name, in the possessive, in a small-talk reply.
BANK_PLACEHOLDER = "{bank's}"


def load_smalltalk(path: Path = SMALLTALK_FILE, bank: str = STARTER_BANK) -> ExemplarSet:
    """The small talk Teller answers itself, its replies naming ``bank`` (the bank's name
    customers see; "" for none, see :func:`bot.settings.bank_possessive`). A category's optional
    ``unstaffed`` reply is what is said instead where no person can take over
    (:attr:`ExemplarSet.unstaffed`)."""
    data = _read_yaml(path)
    possessive = bank_possessive(bank)
    texts, categories, replies, unstaffed = [], [], {}, {}
    for category, body in data.items():
        replies[category] = str(body["reply"]).replace(BANK_PLACEHOLDER, possessive)
        if body.get("unstaffed"):
            unstaffed[category] = str(body["unstaffed"]).replace(BANK_PLACEHOLDER, possessive)
        for example in body["examples"]:
            texts.append(str(example))
            categories.append(category)
    return ExemplarSet(texts, categories, replies, unstaffed=unstaffed)


def load_advice(path: Path = ADVICE_FILE, extra: list[str] | None = None) -> ExemplarSet:
    """Advice examples plus ``extra`` phrasings (the knowledge base's advice questions)."""
    data = _read_yaml(path)
    texts = [str(t) for t in data["examples"]] + list(extra or [])
    return ExemplarSet(texts, ["advice"] * len(texts), {"advice": " ".join(str(data["reply"]).split())})


def load_information(path: Path = INFORMATION_FILE, extra: list[str] | None = None) -> ExemplarSet:
    """Information requests (how a product, rate, fee or term works): the counterweight that keeps
    such questions from the advice route; ``extra`` adds phrasings (the knowledge base's questions)."""
    data = _read_yaml(path)
    texts = [str(t) for t in data["examples"]] + list(extra or [])
    return ExemplarSet(texts, ["information"] * len(texts), {})


class AdviceProbe:
    """P(advice | text) from a logistic regression (scikit-learn, C = 3, balanced classes) fitted on
    the embeddings of ``advice`` (positives) and ``information`` (negatives) examples at start-up
    (a fraction of a second). Only meaningful for finance questions: the policy asks it only when a
    message is already close to the advice examples.

    With a ``cache_dir``, the fitted weights are kept there as ``advice-probe-<key>.npz`` (a derived
    file keyed by the exact example vectors and the fit's settings) and read back by the next
    process: importing scikit-learn alone took 2.2 s of the 8.6 s a ``teller serve`` took to come
    up, and of every CLI command that builds the answer policy (2 cores, 2026-12-03)."""

    #: Bump when the fit or the file's fields change: older files are then ignored.
    CACHE_FORMAT = 1
    #: How many fits the cache directory keeps (the most recently written or read).
    CACHE_KEEP = 8
    C = 3.0
    #: scikit-learn's ``LogisticRegression`` settings; all of them are in the cache's key.
    FIT: ClassVar[dict[str, Any]] = {"C": C, "max_iter": 2000, "class_weight": "balanced"}

    def __init__(self, advice: ExemplarSet, information: ExemplarSet, cache_dir: Path | None = None) -> None:
        self._weights: np.ndarray | None = None
        self._bias = np.float32(0.0)
        if not (len(advice.texts) and len(information.texts)):
            return
        x = np.concatenate([advice.vectors, information.vectors]).astype(np.float32)
        y = np.r_[np.ones(len(advice.vectors)), np.zeros(len(information.vectors))]
        path = self._cache_file(cache_dir, x, y)
        if path is not None and self._load(path, x.shape[1]):
            return
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(**self.FIT).fit(x, y)
        # Scored here as the model's own predict_proba would (the logistic of the decision
        # function, in float32 as it does), without scikit-learn's input checks: 0.09 -> 0.003 ms
        # of each message alone, 0.4 ms in the server's stage profile (2 cores, 2026-12-01).
        self._weights = np.asarray(model.coef_[0], dtype=np.float32)
        self._bias = np.float32(model.intercept_[0])
        if path is not None:
            self._save(path)

    @property
    def fitted(self) -> bool:
        """Whether there were examples of both kinds to fit on (else every text reads as advice)."""
        return self._weights is not None

    @classmethod
    def _cache_file(cls, cache_dir: Path | None, x: np.ndarray, y: np.ndarray) -> Path | None:
        if cache_dir is None:
            return None
        digest = hashlib.sha256(f"{cls.CACHE_FORMAT}:{cls.FIT}:{x.shape}".encode())
        digest.update(np.ascontiguousarray(x).tobytes())
        digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
        return cache_dir / f"advice-probe-{digest.hexdigest()[:16]}.npz"

    def _load(self, path: Path, dim: int) -> bool:
        try:
            with np.load(path, allow_pickle=False) as stored:
                weights = np.asarray(stored["weights"], dtype=np.float32)
                bias = np.float32(stored["bias"])
        except Exception:
            return False
        if weights.shape != (dim,) or not (np.isfinite(weights).all() and np.isfinite(bias)):
            return False
        self._weights, self._bias = weights, bias
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: the pruning keeps the most recently used fits
        return True

    def _save(self, path: Path) -> None:
        assert self._weights is not None
        staging: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A staging file of its own (threads of one process build policies too), complete on
            # disk before it takes the cache file's name.
            handle, name = tempfile.mkstemp(dir=path.parent, prefix=".advice-probe-", suffix=".npz")
            staging = Path(name)
            os.chmod(staging, 0o644)  # as the cache's other files (mkstemp makes it the owner's alone)
            with os.fdopen(handle, "wb") as out:
                np.savez(out, weights=self._weights, bias=self._bias)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, path)
            staging = None
            # One file per set of examples (the knowledge base's questions are among them): the
            # most recently written few are kept.
            kept = sorted(path.parent.glob("advice-probe-*.npz"), key=_modified, reverse=True)
            for old in kept[self.CACHE_KEEP :]:
                old.unlink(missing_ok=True)
        except OSError:
            pass  # a cache: without it, the next process fits again
        finally:
            if staging is not None:
                staging.unlink(missing_ok=True)

    def probability(self, vectors: np.ndarray) -> np.ndarray:
        """``(n,)`` probabilities that each vector's text asks for advice (1.0 without examples)."""
        if self._weights is None:
            return np.ones(len(vectors), dtype=np.float64)
        z = np.asarray(vectors, dtype=np.float32) @ self._weights + self._bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -80.0, 80.0))), dtype=np.float64)
