"""Frame preprocessing: keep the stopper square, shrink it, reduce it to the edges near the stopper.

The pipeline (plant-proven defaults, every step a field of `PreprocessConfig`):
0. optionally crop the frame to a region of interest around the stopper (`roi`, off by
   default): steps 1-6 then run on that crop;
1. crop a square of side = height, keeping the right side (drop the leftmost columns);
   a portrait frame keeps its bottom square of side = width;
2. resize to `target_size` (INTER_AREA; a smaller frame is upscaled, with a warning);
3. grayscale;
4. brightness/contrast: `convertScaleAbs` with the dark pair if the mean < `dark_threshold`,
   else the light pair;
5. edges = adjusted - GaussianBlur(adjusted, blur_kernel) (saturating);
6. zero the left `mask_fraction` of the columns.
Mode "none" stops after step 2 (colour kept), "grayscale" after step 3, "edges" runs all.
`to_tensor` is the one place a processed frame becomes a normalised float tensor.

The package, in pipeline order:

- `config`: `PreprocessConfig` and the region of interest (`parse_roi`, `roi_box`);
- `frames`: files and arrays as uint8 BGR (`read_image`, `decode_image`, `list_images`);
- `pipeline`: the steps above (`crop_resize`, `finish`, `preprocess`) and `normalise`;
- `masked`: the fast path `preprocess` takes when the left mask is on and it is exact;
- `cli`: the `barsalign preprocess` command.

The names below are the public API, what the other stages and the notebooks import; the
modules hold the rest. `IMAGE_SUFFIXES` is config's, named here because `data` reads it here.
"""

from barsalign.config import IMAGE_SUFFIXES
from barsalign.preprocess.config import (
    MODES,
    PreprocessConfig,
    parse_roi,
    roi_box,
)
from barsalign.preprocess.frames import decode_image, list_images, read_image, to_bgr8
from barsalign.preprocess.pipeline import (
    crop_resize,
    finish,
    normalise,
    preprocess,
    scoring_problem,
    to_tensor,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "PreprocessConfig",
    "crop_resize",
    "decode_image",
    "finish",
    "list_images",
    "normalise",
    "parse_roi",
    "preprocess",
    "read_image",
    "roi_box",
    "scoring_problem",
    "to_bgr8",
    "to_tensor",
]
