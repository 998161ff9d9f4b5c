"""Corrections that take effect at once, everywhere, and spread to how other customers put the need.

**At once.** The corrections in force (the database's ``corrections`` table, newest wins per
text) are an override memory of the answer policy (:class:`nlu.corrections.CorrectionMemory`,
:attr:`bot.policy.AnswerPolicy.corrections`): the ``correction`` rule answers a message that is the
same as a corrected one, or nearly (the calibrated similarity of
:data:`nlu.corrections.OVERRIDE_SIMILARITY`), with what the operator said, before the model's own
rules, and says so in the reply's reason. :class:`CorrectionFollower` keeps a policy's memory
current: one ``max(id)`` query per poll (every second, on the model watcher's thread of every
``teller serve`` replica), and the texts are embedded again only when a correction was stored
anywhere; the replica where the operator acted refreshes at once. The next retrain trains on the
same corrections, so the model learns them.

**Spreading.** When an operator corrects a message to an intent, :class:`Spreader` proposes the
stored customer messages most likely to share that need, for the operator to confirm or reject in
bulk (Slack, ``teller review proposals``). Candidates are the newest :data:`SCAN` customer messages
Teller answered, not yet reviewed (never corrected, not in a settled review item, not proposed and
still open, not rejected for that intent before), and currently answered otherwise (the classifier
does not answer them with that intent). Each is scored by how likely it is to share the corrected
need, from two readings:

- similarity, as the mean of two cosines: in the base encoder's space (all-MiniLM-L6-v2,
  general-purpose: same meaning) to the corrected message, and in the classifier's space (fine-tuned:
  what the model reads) to the corrected message or to the nearest training example of the
  corrected intent, whichever is closer (a message the model misreads the same way is close to the
  first, one nearly read as the right intent to the second);
- the classifier's probability of the corrected intent for it;

the score is the mean of the two. The base encoder picks the :data:`SHORTLIST` nearest first (its
vectors are cached per text), the classifier reads only those. At most :data:`PER_CORRECTION`
proposals, scoring at least :data:`MIN_SCORE`, best first. On the demonstration log (``python -m
bot.correction_demo``: 20 corrections, 501 stored messages of which 87 shared a corrected need and
were misread) the ten slots held 69 of those 87 (and 104 messages an operator would reject); the
similarity alone found 57 (131), the base encoder's alone 42, the classifier's space alone 24.
Measured again with model 20261204-094841-c2db79 (2026-12-04; 71 such messages), by the lowest
score proposed: 0 (ten slots each): 56 of the 71 and 144 to reject; 0.25: 49 and 111; 0.30: 42 and
60; 0.35: 27 and 24; 0.40: 22 and 7. A trial's operator, on a log of 41 messages, rejected every
proposal (scores 0.26-0.31): from 0.30, half the rejects go for a seventh of the right ones.
Confirmed proposals become corrections with their provenance (who, when, ``origin_id``: the
correction they were proposed from).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from bot.choices import is_choice
from bot.policy import AnswerPolicy
from bot.storage import Correction, NewProposal, Proposal, ProposalStatus, Store
from nlu.corrections import CorrectionMemory, Override, canonical

log = logging.getLogger(__name__)

#: Newest customer messages a proposal looks at.
SCAN = 3000
#: Of those, how many (the base encoder's nearest) the classifier reads.
SHORTLIST = 200
#: Proposals per correction at most (what one Slack post's checkboxes hold).
PER_CORRECTION = 10
#: Lowest score proposed (see the module docstring; 0.25 until 2026-12-04).
MIN_SCORE = 0.30
#: Base-encoder vectors kept per process (by text), so that later proposals embed only new messages.
VECTOR_CACHE = 50_000


class _VectorCache:
    """Base-encoder vectors by text, least recently used dropped first. Thread-safe."""

    def __init__(self, size: int = VECTOR_CACHE) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embed: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        fresh = embed(missing) if missing else np.zeros((0, 0), dtype=np.float32)
        with self._lock:
            for text, vector in zip(missing, fresh, strict=True):
                self._vectors[text] = np.asarray(vector, dtype=np.float32)
            out = []
            for text in texts:
                vector = self._vectors[text] if text in self._vectors else embed([text])[0]
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
                out.append(vector)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)


def overrides(corrections: Sequence[Correction]) -> list[Override]:
    """The corrections that say how to answer (an intent, or a knowledge-base entry), as overrides."""
    return [
        Override(c.id, c.text, c.label, c.kb_id, c.author, c.created_at, c.origin_id)
        for c in corrections
        if not c.superseded and (c.label or c.kb_id)
    ]


class CorrectionFollower:
    """Keeps the override memory of the policy in use current with the corrections in force."""

    def __init__(self, store: Store, policy: Callable[[], AnswerPolicy]) -> None:
        self.store = store
        self.policy = policy
        self._vectors = _VectorCache()
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> bool:
        """Read the corrections in force again if one was stored, removed or rewritten since the
        memory was built (or ``force``); returns whether the memory changed. One aggregate query
        (:meth:`~bot.storage.FeedbackRepository.corrections_head`) when nothing did."""
        with self._lock:
            policy = self.policy()
            head = self.store.feedback.corrections_head()
            current = policy.corrections
            if not force and current is not None and current.head == head:
                return False
            if not force and current is None and not head:
                policy.corrections = CorrectionMemory([], np.zeros((0, 0)), head=head)
                return False
            found = overrides(self.store.feedback.corrections(current_only=True))
            vectors = self._vectors.embed(policy.kb.embedder.embed, [o.text for o in found])
            policy.corrections = CorrectionMemory(found, vectors, head=head)
        log.info("corrections_followed", extra={"fields": {"in_force": len(found), "head": head}})
        return True


class Spreader:
    """Proposes stored customer messages that likely share a corrected message's need."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], AnswerPolicy],
        scan: int = SCAN,
        per_correction: int = PER_CORRECTION,
        min_score: float = MIN_SCORE,
    ) -> None:
        self.store = store
        self.policy = policy
        self.scan = scan
        self.per_correction = per_correction
        self.min_score = min_score
        self._vectors = _VectorCache()
        self._lock = threading.Lock()

    def propose(self, correction: Correction, key: Callable[[str], str]) -> list[Proposal]:
        """Store and return the open proposals for ``correction`` (best first); ``key`` is the
        review queue's normalisation of a text. Only corrections to an intent spread."""
        if correction.label is None or correction.superseded:
            return []
        with self._lock:
            found = self._candidates(correction, key)
        self.store.proposals.add(found)
        log.info(
            "corrections_proposed",
            extra={"fields": {"correction": correction.id, "label": correction.label, "count": len(found)}},
        )
        return self.store.proposals.list(ProposalStatus.OPEN, correction_id=correction.id)

    def _candidates(self, correction: Correction, key: Callable[[str], str]) -> list[NewProposal]:
        label = correction.label
        assert label is not None
        policy = self.policy()
        reviewed = self.store.proposals.reviewed_keys(label)
        reviewed.add(correction.key)
        # The correction answers these itself: the same question with a greeting or thanks around it
        # (as the policy matches it), which a reviewer was offered as a proposal, and accepting it
        # made a second correction of the same question.
        itself = canonical(correction.text)
        seen: set[str] = set()
        log_messages = []
        for message in self.store.proposals.log_messages(self.scan):
            k = key(message.text)
            if not k or k in seen or k in reviewed or is_choice(message.text):
                continue
            if canonical(message.text) == itself:
                continue
            seen.add(k)
            log_messages.append((k, message))
        if not log_messages:
            return []
        vectors = self._vectors.embed(
            policy.kb.embedder.embed, [correction.text, *(m.text for _, m in log_messages)]
        )
        base = vectors[1:] @ vectors[0]
        # Answered with that intent already by a correction in force (the same text, or nearly).
        memory, bar = policy.corrections, policy.thresholds.correction if policy.thresholds else 1.0
        overridden = {
            i
            for i, m in enumerate(
                memory.match([msg.text for _, msg in log_messages], vectors[1:]) if memory else []
            )
            if m is not None and m.similarity >= bar and m.override.label == label
        }
        order = [int(i) for i in np.argsort(-base, kind="stable") if int(i) not in overridden]
        shortlist = order[:SHORTLIST]
        texts = [log_messages[i][1].text for i in shortlist]
        predictions = policy.classifier.predict(
            [correction.text, *texts], top_k=len(policy.classifier.labels)
        )
        anchor = predictions[0].embedding
        assert anchor is not None
        examples = _intent_examples(policy, label)
        intent_threshold = policy.thresholds.intent if policy.thresholds is not None else 0.0
        scored: list[NewProposal] = []
        for i, p in zip(shortlist, predictions[1:], strict=True):
            if p.intent == label and p.confidence >= intent_threshold:
                continue  # answered with that intent already
            assert p.embedding is not None
            model = float(p.embedding @ anchor)
            if len(examples):
                model = max(model, float((examples @ p.embedding).max()))
            probability = dict(p.alternatives).get(label, 0.0)
            score = ((float(base[i]) + model) / 2 + probability) / 2
            if score < self.min_score:
                continue
            k, message = log_messages[i]
            scored.append(
                NewProposal(
                    correction.id,
                    message.message_id,
                    message.text,
                    k,
                    label,
                    correction.kb_id,
                    round(score, 4),
                    round(float(base[i]), 4),
                    round(model, 4),
                    p.intent,
                )
            )
        scored.sort(key=lambda n: -n.score)
        return scored[: self.per_correction]


def _intent_examples(policy: AnswerPolicy, label: str) -> np.ndarray:
    """The classifier's training examples of ``label`` (its memory), in its space."""
    memory = policy.classifier.scorer.memory
    labels = policy.classifier.labels
    if memory is None or label not in labels:
        return np.zeros((0, 0), dtype=np.float32)
    return memory.embeddings[memory.targets == labels.index(label)]
