"""Active learning and pseudo-labels on frozen embeddings: fewer human labels for a model.

The loop, headless: label a seed batch (stratified by session or clip, or random) → fit a
model → rank the unlabelled pool → label the next batch → repeat. The loop's model is the fast
probe of `barsalign.label_quality` (a logistic regression on the frozen Lite0 features of the
stopper region, cached in the frame cache by content): refitting it takes a second, where one
fine-tune takes about ten minutes of a 2-core CPU, so a fine-tune per round does not fit. The
last step is `barsalign train` on the final labels.

Strategies (`STRATEGIES`): "random"; "uncertainty", the probe's score nearest the threshold;
"diverse", k-center greedy over the embeddings among the `shortlist` × batch most uncertain
frames, so one batch is not fifty near-twins of one clip.

Pseudo-labels: `propagate` spreads the labels over a k-nearest-neighbour graph of the
embeddings (scikit-learn's LabelSpreading) and gives each unlabelled frame a label and a
confidence; `write_pseudo` records only the confident ones in the label store under the
annotator "pseudo", never over a label already given, and `undo_pseudo` takes them back in one
step (all of them, or the last batch). The labeler's order "pseudo" reviews them, least
confident first.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from barsalign.data.cache import DEFAULT_CACHE
from barsalign.errors import BarsalignError
from barsalign.label_quality import SuspectConfig, fit_probe, region_features
from barsalign.labelstore import LabelStore, by_annotator

STRATEGIES = ("random", "uncertainty", "diverse")
PSEUDO_ANNOTATOR = "pseudo"
NAMES = {1: "aligned", 0: "not_aligned"}


@dataclass(frozen=True)
class LoopConfig:
    """How the loop picks frames and fits its probe.

    Args:
        strategy: one of `STRATEGIES`.
        batch_size: frames per batch (the seed batch too).
        stratify: the seed batch is spread round-robin over the groups (sessions or clips)
            when True, drawn at random otherwise.
        shortlist: "diverse" chooses its batch among this many batches' worth of the most
            uncertain frames.
        threshold: the probe's decision threshold; "uncertainty" asks about scores nearest it.
        C: inverse L2 strength of the probe (`label_quality.fit_probe`).
    """

    strategy: str = "diverse"
    batch_size: int = 50
    stratify: bool = True
    shortlist: int = 4
    threshold: float = 0.5
    C: float = 0.001
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BarsalignError(
                f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if self.batch_size < 1 or self.shortlist < 1:
            raise BarsalignError("batch_size and shortlist must be >= 1")
        if not 0 < self.threshold < 1:
            raise BarsalignError(f"threshold must lie in (0, 1), not {self.threshold}")


def seed_batch(groups: Sequence[str], n: int, rng: random.Random, stratify: bool) -> list[int]:
    """`n` frame indices: round-robin over the groups in random order (one random frame of
    each group in turn) when `stratify`, else a plain random sample."""
    n = min(n, len(groups))
    if not stratify:
        return rng.sample(range(len(groups)), n)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    queues = list(members.values())
    rng.shuffle(queues)
    for q in queues:
        rng.shuffle(q)
    out: list[int] = []
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def reduce(features: np.ndarray, dims: int = 64, seed: int = 0) -> np.ndarray:
    """Standardised features projected on their first `dims` principal components: the space
    the distances of "diverse" and of the propagation's neighbours are measured in."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    dims = min(dims, x.shape[0], x.shape[1])
    return PCA(n_components=dims, random_state=seed).fit_transform(x)


def embedding_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D map of the embeddings [N, 2] (PCA of the standardised features), for a cluster
    view coloured by label or session."""
    return reduce(features, dims=2, seed=seed)


def embed(
    paths: Sequence[str | Path],
    roi: Any = None,
    image_size: int = 320,
    cache_dir: str | Path | None = DEFAULT_CACHE,
) -> np.ndarray:
    """The loop's embeddings [N, D] of any frames: frozen Lite0 features of the region (`roi`
    as `preprocess.parse_roi` reads it; None the whole frame), cached on disk by file content
    (`label_quality.region_features`), so a second look costs no network pass."""
    from barsalign.data import Item

    items = [Item(Path(p), 0, str(p)) for p in paths]
    if not items:
        raise BarsalignError("no frames to embed")
    cfg = SuspectConfig(roi=roi, image_size=image_size)
    return region_features(items, cfg, cache_dir)[0]


def k_center_greedy(
    space: np.ndarray, candidates: Sequence[int], labelled: Sequence[int], n: int
) -> list[int]:
    """`n` of the `candidates`, each the farthest (Euclidean in `space`) from the labelled
    frames and those picked before it (Sener & Savarese 2018)."""
    from sklearn.metrics import pairwise_distances

    cand = np.asarray(candidates, dtype=int)
    if len(cand) <= n:
        return cand.tolist()
    if len(labelled):
        d = pairwise_distances(space[cand], space[np.asarray(labelled)]).min(axis=1)
    else:
        d = np.full(len(cand), np.inf)
    picked: list[int] = []
    for _ in range(n):
        j = int(np.argmax(d))
        picked.append(int(cand[j]))
        d = np.minimum(d, np.linalg.norm(space[cand] - space[cand[j]], axis=1))
        d[j] = -1.0
    return picked


def next_batch(
    cfg: LoopConfig,
    scores: np.ndarray | None,
    labelled: Sequence[int],
    space: np.ndarray,
    rng: random.Random,
) -> list[int]:
    """The next batch of unlabelled indices by `cfg.strategy`; random while there is no model
    (`scores` None)."""
    taken = set(labelled)
    pool = [i for i in range(len(space)) if i not in taken]
    n = min(cfg.batch_size, len(pool))
    if scores is None or cfg.strategy == "random":
        return rng.sample(pool, n)
    margin = np.abs(scores[pool] - cfg.threshold)
    ranked = [pool[j] for j in np.argsort(margin, kind="stable")]
    if cfg.strategy == "uncertainty":
        return ranked[:n]
    return k_center_greedy(space, ranked[: n * cfg.shortlist], list(labelled), n)


@dataclass
class ActiveLoop:
    """The loop over one pool of embedded frames: which are labelled, the probe, the next batch.

    Labels come in through `add` (from an annotator, simulated or not); `fit` refits the probe
    on them and scores the pool; `propose` names the next batch. `space` (the reduced
    embeddings, `reduce`) may be given to share it between loops over the same pool.
    """

    features: np.ndarray
    groups: Sequence[str]
    cfg: LoopConfig = field(default_factory=LoopConfig)
    labels: dict[int, int] = field(default_factory=dict)
    probe: Any = None
    scores: np.ndarray | None = None
    space: np.ndarray | None = None
    batches: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.features) != len(self.groups):
            raise BarsalignError(
                f"{len(self.features)} embeddings but {len(self.groups)} groups: one each"
            )
        self.rng = random.Random(self.cfg.seed)
        if self.space is None:
            self.space = reduce(self.features, seed=self.cfg.seed)

    def propose(self) -> list[int]:
        """The next batch: the seed batch first, then by the strategy."""
        if not self.labels:
            return seed_batch(self.groups, self.cfg.batch_size, self.rng, self.cfg.stratify)
        return next_batch(self.cfg, self.scores, list(self.labels), self.space, self.rng)

    def add(self, answers: dict[int, int]) -> None:
        """Record one batch of answers (frame index → label, 1 aligned)."""
        self.labels.update({int(i): int(y) for i, y in answers.items()})
        self.batches.append([int(i) for i in answers])

    def fit(self) -> Any:
        """Refit the probe on the labels so far and score the pool (no model while the labels
        hold one class only; the next batch is then drawn at random)."""
        idx = np.fromiter(self.labels, dtype=int)
        y = np.array([self.labels[i] for i in idx])
        if len(set(y.tolist())) < 2:
            self.probe, self.scores = None, None
            return None
        self.probe = fit_probe(self.features[idx], y, self.cfg.C)
        self.scores = self.probe.predict_proba(self.features)[:, 1]
        return self.probe

    def status(self) -> dict[str, Any]:
        """Where the loop stands: labels so far, and what picks the next batch."""
        by = "the seed batch" if not self.labels else self.cfg.strategy
        if self.labels and self.scores is None:
            by = "random (the labels hold one class only)"
        return {"labels": len(self.labels), "next_by": by}


def noisy_answer(true_label: int, rng: random.Random, error_rate: float) -> int:
    """A simulated annotator's answer: the truth, flipped with probability `error_rate`."""
    return 1 - true_label if rng.random() < error_rate else true_label


def run_loop(
    loop: ActiveLoop,
    truth: np.ndarray,
    budgets: Sequence[int],
    on_budget: Callable[[int, ActiveLoop], None],
    error_rate: float = 0.0,
) -> None:
    """Drive `loop` with a simulated annotator (the truth, wrong with `error_rate`) until the
    largest budget; `on_budget(n, loop)` is called, probe fitted, each time n labels are in."""
    rng = random.Random(loop.cfg.seed + 7919)
    todo = sorted(b for b in set(budgets) if b <= len(truth))
    while todo:
        batch = loop.propose()[: todo[0] - len(loop.labels)]
        if not batch:
            break
        loop.add({i: noisy_answer(int(truth[i]), rng, error_rate) for i in batch})
        loop.fit()
        if len(loop.labels) >= todo[0]:
            on_budget(todo.pop(0), loop)


def propagate(
    space: np.ndarray, labels: dict[int, int], k: int = 10, alpha: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Label spreading over the k-nearest-neighbour graph of `space`: each frame's proposed
    label (1 aligned) and its confidence (the spread label distribution's larger share)."""
    from sklearn.semi_supervised import LabelSpreading

    y = np.full(len(space), -1)
    for i, lab in labels.items():
        y[i] = lab
    if len(set(labels.values())) < 2:
        raise BarsalignError("label propagation needs labelled frames of both classes")
    model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=100)
    model.fit(space, y)
    dist = np.nan_to_num(model.label_distributions_, nan=0.5)
    proposed = model.classes_[np.argmax(dist, axis=1)]
    return proposed.astype(int), dist.max(axis=1)


def confident(
    labels: dict[int, int], proposed: np.ndarray, conf: np.ndarray, min_confidence: float
) -> dict[int, tuple[int, float]]:
    """The unlabelled frames whose proposal is at least `min_confidence` sure: index →
    (label, confidence)."""
    return {
        int(i): (int(proposed[i]), float(conf[i]))
        for i in np.flatnonzero(conf >= min_confidence)
        if int(i) not in labels
    }


# -- pseudo-labels in the label store -------------------------------------------------------
def write_pseudo(
    labels_dir: str | Path, pseudo: dict[str, tuple[int, float]], batch: str | None = None
) -> tuple[str, list[str]]:
    """Record pseudo-labels (path → (label, confidence)) under the annotator "pseudo" as one
    batch; a frame labelled already (by a person or an earlier batch) is left as it is.
    Returns the batch name and the paths recorded."""
    store = LabelStore(labels_dir, annotator=PSEUDO_ANNOTATOR)
    batch = batch or time.strftime("pseudo-%Y%m%dT%H%M%S")
    rows = [(p, NAMES[lab], {"confidence": round(c, 4)}) for p, (lab, c) in pseudo.items()]
    return batch, store.label_batch(rows, batch)


def undo_pseudo(labels_dir: str | Path, last_batch_only: bool = False) -> list[str]:
    """Take back every pseudo-label (or the last batch's) in one step; human labels stay."""
    store = LabelStore(labels_dir, annotator=PSEUDO_ANNOTATOR)
    return store.undo_batch("last" if last_batch_only else None)


def pseudo_error_rate(store: LabelStore, truth: dict[str, int]) -> tuple[float | None, int]:
    """The share of the store's live pseudo-labels that the truth (path → 1 aligned, e.g.
    `label_quality.synthetic_truth`) contradicts, and how many it could check."""
    live = store.labeled()
    checked = [(live[p], truth[p]) for p, _ in pseudo_labelled(store) if p in truth]
    if not checked:
        return None, 0
    wrong = sum((cls == "aligned") != bool(t) for cls, t in checked)
    return wrong / len(checked), len(checked)


def pseudo_labelled(store: LabelStore) -> list[tuple[str, float]]:
    """(path, confidence) of the frames whose live label is a pseudo-label no person has
    given since, least confident first: the labeler's order "pseudo"."""
    live = store.labeled()
    mine = by_annotator(store).get(PSEUDO_ANNOTATOR, {})
    conf = {}
    for e in store.entries():
        if e["annotator"] == PSEUDO_ANNOTATOR and e["action"] == "label":
            conf[store.to_local(e["path"])] = float(e.get("confidence", 0.0))
    people = {p for a, labs in by_annotator(store).items() if a != PSEUDO_ANNOTATOR for p in labs}
    rows = [(p, conf.get(p, 0.0)) for p, c in mine.items() if p not in people and live.get(p) == c]
    return sorted(rows, key=lambda r: (r[1], r[0]))


# -- the loop inside the live labeler ---------------------------------------------------------
class LiveLoop:
    """The loop beside the live labeler: the probe is refitted in a background thread
    (concurrent.futures) every `retrain_every` labels, so a key press never waits for it.

    Args:
        paths: the pool's frames, in the order of `features` (the labeler's images).
        features: their embeddings (`label_quality.region_features`).
        val_features, val_labels: a labelled validation set (the example set), whose F0.5 at
            the threshold the status shows; None shows none.
        fit: fits a probe on (features, labels); `label_quality.fit_probe` by default.
    """

    def __init__(
        self,
        paths: Sequence[str],
        features: np.ndarray,
        cfg: LoopConfig | None = None,
        groups: Sequence[str] | None = None,
        val_features: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
        retrain_every: int = 50,
        fit: Callable[[np.ndarray, np.ndarray], Any] | None = None,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.paths = [str(p) for p in paths]
        self.index = {p: i for i, p in enumerate(self.paths)}
        self.loop = ActiveLoop(features, groups or self.paths, cfg or LoopConfig())
        self.val = (val_features, val_labels)
        self.retrain_every = max(1, retrain_every)
        self._fit = fit or (lambda x, y: fit_probe(x, y, self.loop.cfg.C))
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future: Any = None
        self._fitted_at = -1
        self.val_f05: float | None = None
        self.batch: list[str] = []

    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def due(self, n_labels: int) -> bool:
        """Whether `update` would start a retrain with `n_labels` labels (cheap: no store
        read), or a finished one waits to be taken by `next_first`."""
        if self._future is not None:
            return self._future.done()
        return self._fitted_at < 0 or n_labels - self._fitted_at >= self.retrain_every

    def update(self, labelled: dict[str, str]) -> bool:
        """Take the store's labels (path → class); start a retrain in the background when
        `retrain_every` new ones came in since the last and none is running. True if started."""
        self.loop.labels = {
            self.index[p]: int(c == "aligned")
            for p, c in labelled.items()
            if p in self.index and c in ("aligned", "not_aligned")
        }
        n = len(self.loop.labels)
        if self._future is not None:  # running, or finished and its batch not yet taken
            return False
        if self._fitted_at >= 0 and n - self._fitted_at < self.retrain_every:
            return False
        if len({*self.loop.labels.values()}) < 2:
            return False
        idx = np.fromiter(self.loop.labels, dtype=int)
        y = np.array([self.loop.labels[i] for i in idx])
        self._fitted_at = n
        self._future = self._pool.submit(self._retrain, idx, y)
        return True

    def _retrain(self, idx: np.ndarray, y: np.ndarray) -> list[str]:
        from barsalign.evaluation.metrics import binary_metrics

        probe = self._fit(self.loop.features[idx], y)
        scores = probe.predict_proba(self.loop.features)[:, 1]
        vx, vy = self.val
        f05 = None
        if vx is not None and vy is not None:
            s = probe.predict_proba(vx)[:, 1]
            f05 = float(binary_metrics(vy, s, self.loop.cfg.threshold)["f05"])
        labelled = list(idx)
        batch = next_batch(self.loop.cfg, scores, labelled, self.loop.space, self.loop.rng)
        self.loop.probe, self.loop.scores, self.val_f05 = probe, scores, f05
        return [self.paths[i] for i in batch]

    def next_first(self, pending: list[str]) -> list[str] | None:
        """`pending` with the newest batch first, once a retrain has finished (None before, or
        when that batch was taken already); called on the labeler's thread."""
        if self._future is None or not self._future.done():
            return None
        fut, self._future = self._future, None
        self.batch = fut.result()
        first = [p for p in self.batch if p in set(pending)]
        rest = set(first)
        return first + [p for p in pending if p not in rest]

    def status(self) -> str:
        """One line for the labeler: labels so far, validation F0.5, what picks the next batch."""
        n = len(self.loop.labels)
        f05 = "–" if self.val_f05 is None else f"{self.val_f05:.3f}"
        by = self.loop.cfg.strategy if self._fitted_at >= 0 else "the labeler's order (no model)"
        busy = " · retraining…" if self.busy else ""
        return f"loop: {n} labels · probe val F0.5 {f05} · next batch by {by}{busy}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
