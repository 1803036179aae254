"""Grad-CAM points at the evidence, for NCHW and channels-last (Swin) feature maps."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from barsalign.gradcam import grad_cam, overlay


class _Brightness(nn.Module):
    """A tiny timm-shaped backbone: features = brightness per 8x8 cell, pooled by mean."""

    num_features = 1

    def __init__(self, channels_last: bool = False) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(8)
        self.channels_last = channels_last

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.pool(x.mean(dim=1, keepdim=True)))
        return f.permute(0, 2, 3, 1) if self.channels_last else f

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean(dim=(1, 2)) if self.channels_last else f.mean(dim=(2, 3))


@pytest.mark.parametrize("channels_last", [False, True])
def test_heat_map_peaks_on_the_region_that_raises_the_logit(channels_last: bool) -> None:
    x = torch.zeros(1, 3, 64, 64)
    x[:, :, 40:56, 8:24] = 1.0  # the only bright patch: lower left
    head = nn.Linear(1, 1)
    with torch.no_grad():
        head.weight.fill_(2.0)
    cam = grad_cam(_Brightness(channels_last), head, x)[0]
    assert cam.shape == (64, 64) and cam.max() == pytest.approx(1.0)
    y, x_ = np.unravel_index(np.argmax(cam), cam.shape)
    assert 36 <= y <= 60 and 4 <= x_ <= 28
    assert cam[:20, 40:].max() < 0.05, "nothing lights up where nothing is"


def test_real_timm_backbones_give_maps_of_the_input_size() -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    cam = grad_cam(model, nn.Linear(model.num_features, 1), torch.randn(2, 3, 96, 96))
    assert cam.shape == (2, 96, 96) and np.isfinite(cam).all()
    assert model.training is True, "the backbone's mode is restored"


def test_overlay_keeps_the_image_size_and_type() -> None:
    img = np.full((120, 160, 3), 100, np.uint8)
    out = overlay(img, np.random.default_rng(0).random((30, 40)).astype(np.float32))
    assert out.shape == img.shape and out.dtype == np.uint8
