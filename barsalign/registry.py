"""The MLflow model registry: every `barsalign export` is a version of `barsalign-aligned`, and
the alias `champion` names the one on the line.

A version holds the exported files and their cards (its run's `model/` artefacts) and carries
as tags the card (JSON), the threshold and where it came from, the backbone, each file's
sha256, the card's metrics and the held-out metrics the tracker holds for the training run
(`heldout.*`, put there by `barsalign evaluate` or 05 on frames the run never saw). An export
is not a deployment: `champion` moves only when asked (`barsalign export --promote`, or
`barsalign runs --registry --promote VERSION` for an earlier one), so a trial export never
replaces the model on the line. `barsalign runs --registry` lists the versions with their
aliases.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

from barsalign import tracking
from barsalign.errors import BarsalignError

REGISTERED_MODEL = "barsalign-aligned"
"""The registry's name for exported aligned / not-aligned models (`barsalign export`)."""
CHAMPION = "champion"
"""The alias of the version on the line."""
REGISTRY_COLUMNS = ("version", "alias", "created", "run", "backbone", "threshold", "held-out F0.5")


def _card_tags(card: dict[str, Any], cards: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The card's identity and numbers as version tags (MLflow tags are strings)."""
    tags = {
        "backbone": str(card["backbone"]),
        "image_size": str(card["image_size"]),
        "run": str(card.get("run", "")),
        "metrics_source": str(card.get("metrics", {}).get("source", "")),
        **{f"{f}_sha256": str(cd["model_sha256"]) for f, cd in cards.items()},
        **{
            f"metric.{k}": str(v)
            for k, v in card.get("metrics", {}).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)
        },
    }
    text = json.dumps(card, indent=1)
    if len(text) <= 8000:  # MLflow's longest tag value
        tags["card"] = text
    return tags


def _heldout_tags(trained: Any) -> dict[str, str]:
    """The training run's held-out metrics (`heldout_*`) and data, as version tags."""
    if trained is None:
        return {}
    m, t = trained.data.metrics, trained.data.tags
    tags = {
        f"heldout.{k}": str(m[f"heldout_{k}"]) for k in tracking.HELDOUT_KEYS if f"heldout_{k}" in m
    }
    if tags and "heldout_data" in t:
        tags["heldout.data"] = t["heldout_data"]
    return tags


def log_export(summary: dict[str, Any], promote: bool = False) -> dict[str, Any]:
    """An MLflow run for one export (`barsalign export`) holding the model files and their
    cards, registered as a new version of `REGISTERED_MODEL` (see the module's docstring);
    `promote` moves `CHAMPION` to it. Returns the run id, the model name, the version and its
    aliases."""
    exported = {f: r for f, r in summary["formats"].items() if r.get("status") == "exported"}
    if not exported:
        raise BarsalignError("nothing was exported: no model to register")
    cards = {
        f: json.loads(Path(r["card"]).read_text(encoding="utf-8")) for f, r in exported.items()
    }
    card = next(iter(cards.values()))
    c = tracking.client()
    eid = tracking.experiment_id(c)
    ckpt = Path(summary["checkpoint"])
    run_dir = tracking.checkpoint_run_dir(ckpt)
    trained = tracking.find_training_run(c, run_dir) if run_dir is not None else None
    tags = {"kind": "export", "checkpoint": str(ckpt.resolve()), **tracking.git_state()}
    if trained is not None:
        tags["trained_run_id"] = trained.info.run_id
    run = c.create_run(eid, run_name=f"export {card.get('run', ckpt.stem)}", tags=tags)
    run_id = run.info.run_id
    params = {
        "checkpoint": str(ckpt),
        "threshold": str(summary["threshold"]),
        "threshold_source": str(summary["threshold_source"]),
        "formats": ",".join(exported),
        "backbone": str(card["backbone"]),
        "image_size": str(card["image_size"]),
        "metrics_source": str(card.get("metrics", {}).get("source", "")),
    }
    tracking.log_params(c, run_id, params)
    parity = {
        f"{f}.{k}": v
        for f, r in exported.items()
        for k, v in r.items()
        if k in ("max_abs_logit_diff", "labels_differ", "deployed_max_abs_logit_diff")
    }
    card_metrics = {f"card.{k}": v for k, v in card.get("metrics", {}).items()}
    tracking.log_metrics(c, run_id, {"threshold": summary["threshold"], **parity, **card_metrics})
    files = [Path(r["path"]) for r in exported.values()] + [
        Path(r["card"]) for r in exported.values()
    ]
    tracking.log_files(c, run_id, files, "model")
    c.set_terminated(run_id)

    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(REGISTERED_MODEL)
    except MlflowException:
        c.create_registered_model(
            REGISTERED_MODEL,
            description="Bars aligned / not aligned at the stopper: each version is one "
            f"`barsalign export`, its model files and cards under model/; the alias "
            f"{CHAMPION!r} is the version on the line.",
        )
    version_tags = {
        "threshold": str(summary["threshold"]),
        "threshold_source": str(summary["threshold_source"]),
        **_card_tags(card, cards),
        **_heldout_tags(trained),
    }
    version = c.create_model_version(
        REGISTERED_MODEL,
        source=f"runs:/{run_id}/model",
        run_id=run_id,
        tags=version_tags,
        description=f"{card['backbone']} at {card['image_size']} px from {ckpt}, threshold "
        f"{summary['threshold']:.4f} ({summary['threshold_source']})",
    )
    number = int(version.version)
    if promote:
        c.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(number))
    return {
        "run_id": run_id,
        "model": REGISTERED_MODEL,
        "version": number,
        "aliases": [CHAMPION] if promote else [],
    }


def _aliases(c: Any) -> dict[str, list[str]]:
    """Version number → its aliases (from the registered model, which every store fills)."""
    out: dict[str, list[str]] = {}
    for alias, version in c.get_registered_model(REGISTERED_MODEL).aliases.items():
        out.setdefault(str(version), []).append(alias)
    return out


def promote(version: int, alias: str = CHAMPION) -> None:
    """Move `alias` to an existing version of `REGISTERED_MODEL`."""
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    try:
        c.get_model_version(REGISTERED_MODEL, str(version))
    except MlflowException:
        raise BarsalignError(
            f"{REGISTERED_MODEL} has no version {version} in {tracking.tracking_uri()} "
            "(`barsalign runs --registry` lists them)"
        ) from None
    c.set_registered_model_alias(REGISTERED_MODEL, alias, str(version))


def versions() -> list[dict[str, Any]]:
    """The registered versions, newest first, one row each (`REGISTRY_COLUMNS` and more)."""
    import time

    from mlflow.exceptions import MlflowException

    c = tracking.client()
    try:
        aliases = _aliases(c)
    except MlflowException:
        return []  # nothing exported yet
    rows = []
    for v in c.search_model_versions(f"name = '{REGISTERED_MODEL}'"):
        t = v.tags
        held = t.get("heldout.f05")
        rows.append(
            {
                "version": int(v.version),
                "alias": ",".join(sorted(aliases.get(str(v.version), []))) or "-",
                "created": time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(v.creation_timestamp / 1000)
                ),
                "run": t.get("run", "-"),
                "backbone": t.get("backbone", "-"),
                "threshold": float(t["threshold"]) if "threshold" in t else None,
                "held-out F0.5": float(held) if held is not None else None,
                "run_id": v.run_id,
                "checkpoint": json.loads(t["card"]).get("checkpoint") if "card" in t else None,
            }
        )
    return sorted(rows, key=lambda r: -r["version"])


def champion() -> dict[str, Any] | None:
    """The row of the version on the line (`CHAMPION`), None when no version is promoted."""
    return next((r for r in versions() if CHAMPION in r["alias"].split(",")), None)


__all__ = ["CHAMPION", "REGISTERED_MODEL", "champion", "log_export", "promote", "versions"]
