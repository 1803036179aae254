"""Label storage that never loses a label: an fsynced, file-locked JSON-lines journal is the truth.

The package:

- `classfiles`: the seed's class files (`class_aligned.txt`, `class_not_aligned.txt`,
  `class_skipped.txt`, `class_unreadable.txt`; one image path a line) and the paths they hold;
- `journal`: the journal file (read on incrementally, a torn last line repaired, whole lines
  appended and fsynced) and its one replay into live labels and conflicts;
- `store`: `LabelStore`, the API the labeler, active learning and notebook 02 use;
- `agreement`: each annotator's labels and Cohen's kappa of two.

The names below are the public API, what the labeler, `data`, active learning, notebook 02 and
the benchmarks import; the modules hold the rest.
"""

from barsalign.labelstore.agreement import by_annotator, cohen_kappa
from barsalign.labelstore.classfiles import (
    ALL_CLASSES,
    CLASSES,
    class_file,
    frame_index,
    in_range,
    path_problem,
    read_class_file,
    read_text_file,
)
from barsalign.labelstore.journal import JOURNAL
from barsalign.labelstore.store import LabelStore

__all__ = [
    "ALL_CLASSES",
    "CLASSES",
    "JOURNAL",
    "LabelStore",
    "by_annotator",
    "class_file",
    "cohen_kappa",
    "frame_index",
    "in_range",
    "path_problem",
    "read_class_file",
    "read_text_file",
]
