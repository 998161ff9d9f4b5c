"""Fine-tuning the intent model on the CPU.

The recipe ("linear probe, then fine-tune"):

1. Encode the training split once with the frozen encoder and fit a logistic regression on the
   normalised mean-pooled embeddings. That regression initialises the head, so fine-tuning starts
   from a good classifier instead of random noise, and the encoder is not wrecked by the large
   gradients a random head sends back in the first steps.
2. Fine-tune encoder and head together with AdamW, a linear warm-up and decay, on batches of
   similar length (bucketed), so almost no compute is spent on padding.
3. Embed the training split with the fine-tuned encoder: this "memory" lets the classifier blend
   a k-nearest-neighbour vote into the head's distribution (see :mod:`nlu.knn`), and tells how far
   a message is from anything seen in training.
4. Fit a softmax temperature on the dev split, so confidences are calibrated.

Retraining (:mod:`nlu.retraining`) passes an explicit dev split (the frozen evaluation set) and
operator corrections: a correction overrides the corpus label of the same text and is repeated
``correction_repeats`` times in the probe and fine-tuning data (once in the memory).

Everything is seeded; the same data, seed and thread count give bit-identical weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from nlu.calibration import fit_temperature
from nlu.data import Corpus, Example, hash_examples, stratified_split, text_key
from nlu.errors import TrainingError
from nlu.knn import Memory
from nlu.metrics import Metrics, compute_metrics
from nlu.model import IntentModel
from nlu.scoring import Scorer
from nlu.tokenization import TextEncoder, length_sorted_batches, pad

#: ``progress(stage, done, total)``; stages are "probe", "train", "memory" and "dev".
ProgressFn = Callable[[str, int, int], None]


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run; stored in the artifact."""

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    probe_c: float = 5.0
    freeze_embeddings: bool = True
    knn_k: int = 10
    knn_tau: float = 0.05
    knn_weight: float = 0.3
    dev_fraction: float = 0.1
    max_length: int = 128
    seed: int = 0
    bucket_batches: int = 50
    #: Each correction counts this many times in the probe and fine-tuning data (once in the memory).
    correction_repeats: int = 6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class TrainedModel:
    """The outcome of :func:`train`: a model ready to be saved as an artifact."""

    model: IntentModel
    labels: list[str]
    config: TrainConfig
    temperature: float
    memory: Memory
    #: The training examples embedded by the *base* encoder (before fine-tuning): how far a message
    #: is from them in that general-purpose space is the best out-of-scope signal.
    base_memory: Memory
    dev_metrics: Metrics | None
    train_size: int
    dev_size: int
    data_hash: str
    sources: list[str]
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    dev_examples: list[Example] = field(default_factory=list)
    #: Dev accuracy of the head alone, before the nearest-neighbour vote is blended in.
    dev_head_accuracy: float | None = None
    #: Corrections trained on (with weight ``config.correction_repeats``), in training order.
    corrections: list[Example] = field(default_factory=list)

    def scorer(self) -> Scorer:
        c = self.config
        return Scorer(len(self.labels), self.temperature, self.memory, c.knn_k, c.knn_tau, c.knn_weight)


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _shuffled_buckets(lengths: Sequence[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """Shuffle, sort each chunk of ``bucket_batches`` batches by length, cut into batches, shuffle those."""
    rng = random.Random(config.seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = config.batch_size * config.bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + config.batch_size] for j in range(0, len(part), config.batch_size))
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def forward_all(
    model: IntentModel,
    ids: Sequence[Sequence[int]],
    batch_size: int = 128,
    progress: ProgressFn | None = None,
    stage: str = "dev",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of every tokenized text, in input order."""
    model.eval()
    logits = np.zeros((len(ids), model.head.out_features), dtype=np.float32)
    embeddings = np.zeros((len(ids), model.hidden_size), dtype=np.float32)
    done = 0
    for batch in length_sorted_batches([len(x) for x in ids], batch_size):
        input_ids, mask = pad([ids[i] for i in batch])
        out_logits, out_emb = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
        logits[batch] = out_logits.numpy()
        embeddings[batch] = out_emb.numpy()
        done += len(batch)
        if progress:
            progress(stage, done, len(ids))
    return logits, embeddings


def split_for_training(
    corpus: Corpus,
    config: TrainConfig,
    dev_examples: Sequence[Example] | None = None,
    corrections: Sequence[Example] = (),
) -> tuple[list[Example], list[Example], list[Example]]:
    """``(train, dev, corrections)``: the examples fitted, held out, and repeated.

    A correction replaces any corpus example with the same text (see :func:`nlu.data.text_key`)
    and is always trained on. Without ``dev_examples`` the rest is split as usual (stratified,
    seeded); with them, they are the dev split and every corpus example with one of their texts is
    left out of training. A correction may not be in ``dev_examples``.
    """
    fixed = {text_key(e.text): e for e in corrections}
    base = [e for e in corpus.examples if text_key(e.text) not in fixed]
    if dev_examples is None:
        train_ex, dev_ex = stratified_split(base, config.dev_fraction, config.seed)
    else:
        dev_ex = list(dev_examples)
        dev_keys = {text_key(e.text) for e in dev_ex}
        clash = dev_keys & fixed.keys()
        if clash:
            raise TrainingError(
                f"{len(clash)} correction(s) are also in the dev split, e.g. {sorted(clash)[0]!r}; "
                "take them out of the dev split"
            )
        train_ex = [e for e in base if text_key(e.text) not in dev_keys]
    fixed_ex = sorted(fixed.values(), key=lambda e: (e.label, e.text))
    return train_ex + fixed_ex, dev_ex, fixed_ex


def train(
    corpus: Corpus,
    encoder_dir: str | Path,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    *,
    dev_examples: Sequence[Example] | None = None,
    corrections: Sequence[Example] = (),
) -> TrainedModel:
    """Fine-tune ``encoder_dir`` on ``corpus`` and return the model with its dev metrics.

    ``dev_examples`` replaces the stratified dev split; ``corrections`` override corpus labels and
    weigh ``config.correction_repeats`` times in fitting (see :func:`split_for_training`).
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    if config.epochs <= 0:
        raise TrainingError(f"epochs must be positive, got {config.epochs}")
    if config.correction_repeats < 1:
        raise TrainingError(f"correction_repeats must be at least 1, got {config.correction_repeats}")
    labels = sorted(set(corpus.labels) | {e.label for e in corrections})
    if len(labels) < 2:
        raise TrainingError(f"training needs at least two categories, got {len(labels)}")
    train_ex, dev_ex, fixed_ex = split_for_training(corpus, config, dev_examples, corrections)
    unknown = sorted({e.label for e in dev_ex} - set(labels))
    if unknown:
        raise TrainingError(f"the dev split has intents the training data lacks: {', '.join(unknown)}")
    index = {label: i for i, label in enumerate(labels)}
    tokenizer = TextEncoder(Path(encoder_dir) / "tokenizer.json", config.max_length)
    train_ids = tokenizer.encode([e.text for e in train_ex])
    dev_ids = tokenizer.encode([e.text for e in dev_ex])
    y_train = np.array([index[e.label] for e in train_ex], dtype=np.int64)
    y_dev = np.array([index[e.label] for e in dev_ex], dtype=np.int64)
    # Corrections are the last len(fixed_ex) training examples; their extra copies go to fitting only.
    extra = list(range(len(train_ex) - len(fixed_ex), len(train_ex))) * (config.correction_repeats - 1)
    weights = None
    if extra:
        weights = np.ones(len(train_ex), dtype=np.float64)
        weights[len(train_ex) - len(fixed_ex) :] = config.correction_repeats
    fit_ids = list(train_ids) + [train_ids[i] for i in extra]
    y_fit = np.concatenate([y_train, y_train[extra]]) if extra else y_train

    with _deterministic(config.seed):
        model = IntentModel.from_encoder(encoder_dir, len(labels))
        base_embeddings = _init_head_from_probe(
            model, train_ids, y_train, len(labels), config, progress, weights
        )
        history = _fine_tune(model, fit_ids, y_fit, config, progress)
        model.eval()
        _, train_embeddings = forward_all(model, train_ids, progress=progress, stage="memory")
    memory = Memory(train_embeddings, y_train)
    base_memory = Memory(base_embeddings, y_train)

    temperature, dev_metrics, head_accuracy = 1.0, None, None
    if dev_ex:
        logits, dev_embeddings = forward_all(model, dev_ids, progress=progress, stage="dev")
        temperature = fit_temperature(logits, y_dev)
        head_accuracy = float((logits.argmax(-1) == y_dev).mean())
        scorer = Scorer(len(labels), temperature, memory, config.knn_k, config.knn_tau, config.knn_weight)
        probs, _ = scorer(logits, memory.similarities(dev_embeddings))
        dev_metrics = compute_metrics(
            [e.label for e in dev_ex],
            [labels[i] for i in probs.argmax(-1)],
            probs.max(-1).tolist(),
            known_labels=labels,
        )
    return TrainedModel(
        model=model,
        labels=labels,
        config=config,
        temperature=temperature,
        memory=memory,
        base_memory=base_memory,
        dev_metrics=dev_metrics,
        dev_head_accuracy=head_accuracy,
        train_size=len(train_ex),
        dev_size=len(dev_ex),
        data_hash=corpus.content_hash()
        if dev_examples is None and not fixed_ex
        else hash_examples([*train_ex, *dev_ex]),
        sources=corpus.sources,
        seconds=time.perf_counter() - started,
        history=history,
        dev_examples=dev_ex,
        corrections=fixed_ex,
    )


def _init_head_from_probe(
    model: IntentModel,
    ids: Sequence[Sequence[int]],
    targets: np.ndarray,
    num_labels: int,
    config: TrainConfig,
    progress: ProgressFn | None,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Fit a logistic regression on frozen embeddings and copy it into the head; return those embeddings."""
    _, embeddings = forward_all(model, ids, progress=progress, stage="probe")
    probe = LogisticRegression(C=config.probe_c, max_iter=3000)
    probe.fit(embeddings, targets, sample_weight=sample_weight)
    weight = np.zeros((num_labels, embeddings.shape[1]), dtype=np.float32)
    bias = np.full(num_labels, -10.0, dtype=np.float32)  # a category absent from train is never predicted
    if len(probe.classes_) == 2 and num_labels == 2:
        weight[1], bias[1], bias[0] = probe.coef_[0], probe.intercept_[0], 0.0
    else:
        weight[probe.classes_] = probe.coef_
        bias[probe.classes_] = probe.intercept_
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    return embeddings


def _fine_tune(
    model: IntentModel,
    ids: Sequence[Sequence[int]],
    targets: np.ndarray,
    config: TrainConfig,
    progress: ProgressFn | None,
) -> list[dict[str, float]]:
    lengths = [len(x) for x in ids]
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total = max(1, round(steps_per_epoch * config.epochs))
    warmup = int(config.warmup_ratio * total)
    optimizer = torch.optim.AdamW(_param_groups(model, config))
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    y = torch.from_numpy(targets)
    step, epoch, history = 0, 0, []
    while step < total:
        model.train()
        epoch_loss, batches = 0.0, 0
        for batch in _shuffled_buckets(lengths, config, epoch):
            if step >= total:
                break
            scale = (
                (step + 1) / (warmup + 1)
                if step < warmup
                else max(0.0, (total - step) / max(1, total - warmup))
            )
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * scale
            input_ids, mask = pad([ids[i] for i in batch])
            logits, _ = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
            loss = F.cross_entropy(logits, y[batch], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            epoch_loss += loss.item()
            batches += 1
            if progress:
                progress("train", step, total)
        epoch += 1
        history.append({"epoch": float(epoch), "loss": epoch_loss / max(1, batches)})
    return history


def _param_groups(model: IntentModel, config: TrainConfig) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.encoder.named_parameters():
        if config.freeze_embeddings and name.startswith("embeddings."):
            # 12M of the encoder's 23M parameters, touched sparsely by any batch: updating them
            # costs about a third of each step and does not help accuracy.
            param.requires_grad_(False)
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return [
        {"params": decay, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": no_decay, "lr": config.learning_rate, "weight_decay": 0.0},
        {"params": list(model.head.parameters()), "lr": config.head_learning_rate, "weight_decay": 0.0},
    ]
