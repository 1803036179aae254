"""Labelled frames: `labels` reads and writes every label format, `datamodule` turns labelled
frames into Lightning batches.

The data module's names are imported on first use, so reading or converting labels (the
`labels` command, the labeler, the renderer's pools) never imports torch or Lightning.
"""

from __future__ import annotations

from typing import Any

from barsalign.config import IMAGE_SUFFIXES
from barsalign.data.cache import CacheUsage, FrameCache, cache_limit_from_env
from barsalign.data.labels import (
    LABELS,
    NAMES,
    Item,
    export_labels,
    folder_label,
    import_labels,
    is_layout,
    layout_root,
    load_labels,
    metadata_rows,
    read_class_files,
    read_csv_labels,
    read_folder_labels,
    read_labels,
    write_csv_labels,
    write_folder_labels,
)

_DATAMODULE = (
    "AlignmentDataModule",
    "FrameDataset",
    "check_both_classes",
    "class_counts",
    "grouped_split",
    "split_labels",
)


def __getattr__(name: str) -> Any:
    """`barsalign.data.datamodule`'s public names, imported when first asked for."""
    if name in _DATAMODULE:
        from barsalign.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_DATAMODULE,
    "CacheUsage",
    "FrameCache",
    "IMAGE_SUFFIXES",
    "Item",
    "LABELS",
    "NAMES",
    "cache_limit_from_env",
    "export_labels",
    "folder_label",
    "import_labels",
    "is_layout",
    "layout_root",
    "load_labels",
    "metadata_rows",
    "read_class_files",
    "read_csv_labels",
    "read_folder_labels",
    "read_labels",
    "write_csv_labels",
    "write_folder_labels",
]
