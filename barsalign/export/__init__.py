"""Build time only: export a trained checkpoint into the files `barsalign.inference` loads.

`export_checkpoint` writes ONNX and TorchScript (CoreML where coremltools installs), checks each
against PyTorch on real frames and writes a model card beside it; nothing here runs on the line.

The package, in the order an export runs:

- `sources`: the checkpoint (the best run's by default) and the operating threshold;
- `formats`: the trained net written as each format, the scoring fields inside the file;
- `checks`: the parity check against PyTorch on real frames (strict, and the optimised session);
- `build`: `ExportConfig`, `export_checkpoint` (export, check, card, register) and
  `write_smoothing` (06's chosen smoothing into a card);
- `report`: the summary's lines, each runtime's size and latency;
- `cli`: the `barsalign export` command;
- `quantize`: an int8 copy of an ONNX export (`barsalign quantize`), imported by its command only.

The names below are the public API, what notebook 06, `quantize`, the benchmarks and the tests
import; the modules hold the rest.
"""

from barsalign.export.build import ExportConfig, export_checkpoint, write_smoothing
from barsalign.export.checks import default_parity_data, parity, parity_frames
from barsalign.export.report import format_summary, latency_table
from barsalign.export.sources import best_checkpoint, operating_point, untrained_checkpoint

__all__ = [
    "ExportConfig",
    "best_checkpoint",
    "default_parity_data",
    "export_checkpoint",
    "format_summary",
    "latency_table",
    "operating_point",
    "parity",
    "parity_frames",
    "untrained_checkpoint",
    "write_smoothing",
]
