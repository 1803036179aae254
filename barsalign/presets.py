"""The backbones the project knows and their image sizes; torch-free, so the CLI starts fast."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A backbone the project knows, with the image size it is trained at."""

    name: str
    image_size: int
    profile: str  # "cpu": trains on a laptop; "gpu": the study's backbones


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tf_efficientnet_lite0", 320, "cpu"),
        Preset("resnet18", 224, "cpu"),
        Preset("mobilenetv3_large_100", 224, "cpu"),
        Preset("tf_efficientnetv2_s", 384, "gpu"),
        Preset("convnext_tiny", 384, "gpu"),
        Preset("swin_tiny_patch4_window7_224", 224, "gpu"),
        Preset("resnet50", 224, "gpu"),
    )
}
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
WEIGHTS = ("auto", "imagenet", "random")
"""Where a backbone's weights come from (`barsalign.modeling.backbones.create_backbone`)."""
