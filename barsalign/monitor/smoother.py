"""The operator's state from a stream of scores: `Smoother`, pure and separately tested."""

from __future__ import annotations

import collections
import math
from typing import Any

from barsalign.errors import BarsalignError

ALIGNED, NOT_ALIGNED, UNCERTAIN = "aligned", "not_aligned", "uncertain"

BANDS = ("frame", "mean")
"""What the amber band is laid on: each frame's own score, or the mean over the last n frames."""

DEFAULT_SMOOTHING = {"k": 3, "n": 4, "margin": 0.5, "band": "frame"}
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
        band: "frame" lays the band on the current frame's score; "mean" on the mean logit of
            the last `n` frames, which must also lie on the current frame's side, so a score
            that swings across the threshold stays amber however many frames land on one side.
    """

    def __init__(
        self, threshold: float, k: int = 3, n: int = 4, margin: float = 0.5, band: str = "frame"
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise BarsalignError(f"threshold must lie in (0, 1), not {threshold}")
        if not 1 <= k <= n:
            raise BarsalignError(f"smoothing needs 1 <= k <= n, not k={k}, n={n}")
        if margin < 0:
            raise BarsalignError(f"margin must be >= 0, not {margin}")
        if band not in BANDS:
            raise BarsalignError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
        self.threshold, self.k, self.n, self.margin, self.band = threshold, k, n, margin, band
        self._cut = math.log(threshold / (1.0 - threshold))
        self.history: collections.deque[float] = collections.deque(maxlen=n)  # logits - cut

    def reset(self) -> None:
        """Forget the past (after a reconnect: the scene may have changed)."""
        self.history.clear()

    def update(self, score: float) -> str:
        """The state to show for this frame, given its P(aligned)."""
        s = min(max(float(score), 1e-7), 1.0 - 1e-7)
        off = math.log(s / (1.0 - s)) - self._cut  # logits past the threshold
        aligned = off >= 0
        self.history.append(off)
        if self.band == "mean":
            off = sum(self.history) / len(self.history)
            if (off >= 0) != aligned:
                return UNCERTAIN
        if abs(off) < self.margin:
            return UNCERTAIN
        votes = sum((h >= 0) == aligned for h in self.history)
        if votes >= self.k:
            return ALIGNED if aligned else NOT_ALIGNED
        return UNCERTAIN


def resolve_smoothing(
    card: dict[str, Any],
    k: int | None = None,
    n: int | None = None,
    margin: float | None = None,
    band: str | None = None,
) -> dict[str, Any]:
    """k, n, margin and band to run with: those given, else the model card's `smoothing` (chosen
    by 06_export's sweep; a card without a band has the frame band), else `DEFAULT_SMOOTHING`;
    `source` says where they came from."""
    stored = card.get("smoothing")
    base, source = dict(DEFAULT_SMOOTHING), "default"
    if stored is not None:
        ok = isinstance(stored, dict) and all(
            isinstance(stored.get(f), int | float) and not isinstance(stored.get(f), bool)
            for f in ("k", "n", "margin")
        )
        ok = ok and stored.get("band", "frame") in BANDS
        if not ok or not 1 <= stored["k"] <= stored["n"] or stored["margin"] < 0:
            raise BarsalignError(
                f"model card of {card.get('model_file', 'the model')}: smoothing {stored!r} needs "
                f"integers 1 <= k <= n, a margin >= 0 and a band of {', '.join(BANDS)}; "
                "export the model again"
            )
        base = {
            "k": int(stored["k"]),
            "n": int(stored["n"]),
            "margin": float(stored["margin"]),
            "band": str(stored.get("band", "frame")),
        }
        source = "model card"
    given = {"k": k, "n": n, "margin": margin, "band": band}
    if any(v is not None for v in given.values()):
        source = (
            "command line" if all(v is not None for v in given.values()) else source + " + given"
        )
    return {**base, **{f: v for f, v in given.items() if v is not None}, "source": source}
