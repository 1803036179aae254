"""The operator's state from a stream of scores: `Smoother`, pure and separately tested."""

from __future__ import annotations

import collections
import math
from typing import Any

from barsalign.errors import BarsalignError

ALIGNED, NOT_ALIGNED, UNCERTAIN = "aligned", "not_aligned", "uncertain"

DEFAULT_SMOOTHING = {"k": 3, "n": 4, "margin": 0.5}
"""k of n and the amber band when neither the user nor the model card chooses."""


class Smoother:
    """k-of-n smoothing with an uncertain band: scores in, display states out (pure).

    Green ("aligned") only when the current frame is aligned, clear of the band, and at least
    `k` of the last `n` frames were aligned — so never before `k` aligned frames. Red likewise
    for not aligned. Anything else is amber ("uncertain"): a score within `margin` logits of the
    threshold, or a decision not yet confirmed. With n == k that is k frames in a row.

    Args:
        threshold: P(aligned) at or above which one frame counts as aligned.
        margin: half-width of the uncertain band in logits (log-odds), so it means the same at
            a threshold of 0.5 and of 0.97; 0 disables the band.
    """

    def __init__(self, threshold: float, k: int = 3, n: int = 4, margin: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise BarsalignError(f"threshold must lie in (0, 1), not {threshold}")
        if not 1 <= k <= n:
            raise BarsalignError(f"smoothing needs 1 <= k <= n, not k={k}, n={n}")
        if margin < 0:
            raise BarsalignError(f"margin must be >= 0, not {margin}")
        self.threshold, self.k, self.n, self.margin = threshold, k, n, margin
        self._cut = math.log(threshold / (1.0 - threshold))
        self.history: collections.deque[bool] = collections.deque(maxlen=n)

    def reset(self) -> None:
        """Forget the past (after a reconnect: the scene may have changed)."""
        self.history.clear()

    def update(self, score: float) -> str:
        """The state to show for this frame, given its P(aligned)."""
        s = min(max(float(score), 1e-7), 1.0 - 1e-7)
        logit = math.log(s / (1.0 - s))
        aligned = logit >= self._cut
        self.history.append(aligned)
        if abs(logit - self._cut) < self.margin:
            return UNCERTAIN
        votes = sum(self.history) if aligned else len(self.history) - sum(self.history)
        if votes >= self.k:
            return ALIGNED if aligned else NOT_ALIGNED
        return UNCERTAIN


def resolve_smoothing(
    card: dict[str, Any], k: int | None = None, n: int | None = None, margin: float | None = None
) -> dict[str, Any]:
    """k, n and margin to run with: those given, else the model card's `smoothing` (chosen by
    06_export's sweep), else `DEFAULT_SMOOTHING`; `source` says where they came from."""
    stored = card.get("smoothing")
    base, source = dict(DEFAULT_SMOOTHING), "default"
    if stored is not None:
        ok = isinstance(stored, dict) and all(
            isinstance(stored.get(f), int | float) and not isinstance(stored.get(f), bool)
            for f in DEFAULT_SMOOTHING
        )
        if not ok or not 1 <= stored["k"] <= stored["n"] or stored["margin"] < 0:
            raise BarsalignError(
                f"model card of {card.get('model_file', 'the model')}: smoothing {stored!r} needs "
                "integers 1 <= k <= n and a margin >= 0; export the model again"
            )
        base = {"k": int(stored["k"]), "n": int(stored["n"]), "margin": float(stored["margin"])}
        source = "model card"
    given = {"k": k, "n": n, "margin": margin}
    if any(v is not None for v in given.values()):
        source = (
            "command line" if all(v is not None for v in given.values()) else source + " + given"
        )
    return {**base, **{f: v for f, v in given.items() if v is not None}, "source": source}
