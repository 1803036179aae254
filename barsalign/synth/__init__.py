"""The synthetic conveyor: the project's default data set and its looks, rendered from a seed.

The package, in pipeline order:

- `geometry`: where things are in a frame (bed, cameras, bars, stopper face), the truth;
- `looks`: the camera and scene looks (`LOOKS`, `barsalign synth --look NAME`);
- `scenes`: what a frame shows, drawn from `SynthConfig` and a seed;
- `render`: the pixels of one `SceneSpec`;
- `dataset`: the sets on disk (the default set, the looks' small labelled sets, metadata);
- `pools`: training pools from the default set; `gap_pairs`: short-bar scenes and twins;
- `cli`: the `barsalign synth` command.

The names below are the public API; the modules hold the rest.
"""

from barsalign.synth.dataset import (
    LOOK_SPLITS,
    RENDERER_VERSION,
    ensure_default,
    load_metadata,
    render_dataset,
    render_look_sets,
    resolve_roi,
)
from barsalign.synth.geometry import STOPPER_ROI, SceneSpec
from barsalign.synth.looks import LOOKS, Look, get_look
from barsalign.synth.pools import hard_pool, mixed_rows, pool_labels
from barsalign.synth.scenes import LABELS, SynthConfig, flush_twin, look_config, sample_scene

__all__ = [
    "LABELS",
    "LOOKS",
    "LOOK_SPLITS",
    "RENDERER_VERSION",
    "STOPPER_ROI",
    "Look",
    "SceneSpec",
    "SynthConfig",
    "ensure_default",
    "flush_twin",
    "get_look",
    "hard_pool",
    "load_metadata",
    "look_config",
    "mixed_rows",
    "pool_labels",
    "render_dataset",
    "render_look_sets",
    "resolve_roi",
    "sample_scene",
]
