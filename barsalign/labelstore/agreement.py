"""Agreement between annotators: each one's live labels, and Cohen's kappa of two of them."""

from __future__ import annotations

from barsalign.errors import BarsalignError
from barsalign.labelstore.journal import live_stacks
from barsalign.labelstore.store import LabelStore


def cohen_kappa(a: dict[str, str], b: dict[str, str]) -> tuple[float, list[tuple[str, str, str]]]:
    """Cohen's kappa of two annotators over the frames both labelled, and their disagreements."""
    common = sorted(set(a) & set(b))
    if not common:
        raise BarsalignError("the two annotators share no labelled frames")
    # scikit-learn takes a second to import: only the kappa needs it, not the labeler
    from sklearn.metrics import cohen_kappa_score

    first, second = [a[p] for p in common], [b[p] for p in common]
    if len({*first, *second}) == 1:  # one class for every frame: full agreement (sklearn warns)
        return 1.0, []
    kappa = cohen_kappa_score(first, second)
    return float(kappa), [(p, a[p], b[p]) for p in common if a[p] != b[p]]


def by_annotator(store: LabelStore) -> dict[str, dict[str, str]]:
    """Each annotator's live labels (local path -> class)."""
    stacks = live_stacks(store.entries())
    return {a: {store.to_local(e["path"]): e["cls"] for e in st} for a, st in stacks.items()}
