"""Grad-CAM for the one-logit classifier: where in the frame the model looked.

Works on any timm backbone with `forward_features` (a spatial map, NCHW or NHWC as in Swin)
and `forward_head`, which is every backbone `modeling.model` builds. `model_view` gives the map
together with the pixels the model saw (the region of interest, squared and resized), so an
overlay lands where the network looked, not on the whole frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from barsalign.preprocess import crop_resize


def grad_cam(
    backbone: nn.Module, head: nn.Module, x: torch.Tensor, toward_aligned: bool = True
) -> np.ndarray:
    """Heat maps in [0, 1], shape [B, H, W] at the input size, for the "aligned" logit
    (its negative, the "not aligned" evidence, with `toward_aligned` False).

    Args:
        backbone: the timm model whose classifier was reset (it returns pooled features).
        head: maps pooled features to one logit.
        x: a normalised batch [B, 3, H, W].
    """
    was_training = backbone.training
    backbone.eval()
    head.eval()
    try:
        with torch.enable_grad():
            # the input requires grad so maps exist even for a frozen (requires_grad=False) backbone
            feats = backbone.forward_features(x.detach().requires_grad_(True))
            feats.retain_grad()
            logits = head(backbone.forward_head(feats)).reshape(-1)
            (logits.sum() if toward_aligned else -logits.sum()).backward()
        grads, acts = feats.grad, feats.detach()
    finally:
        backbone.train(was_training)
    channels_last = (
        acts.shape[-1] == getattr(backbone, "num_features", -1) and acts.shape[1] != acts.shape[-1]
    )
    if channels_last:
        grads, acts = grads.permute(0, 3, 1, 2), acts.permute(0, 3, 1, 2)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=1)).cpu().numpy()
    out = np.zeros((x.shape[0], x.shape[2], x.shape[3]), np.float32)
    for i, c in enumerate(cam):
        c = cv2.resize(
            c.astype(np.float32), (x.shape[3], x.shape[2]), interpolation=cv2.INTER_LINEAR
        )
        peak = float(c.max())
        out[i] = c / peak if peak > 0 else c
    return out


def overlay(image_rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map blended over an RGB uint8 image (resized to the image)."""
    heat = cv2.resize(cam, (image_rgb.shape[1], image_rgb.shape[0]))
    colour = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    base = image_rgb if image_rgb.ndim == 3 else np.repeat(image_rgb[..., None], 3, axis=2)
    return np.uint8(np.clip((1 - alpha) * base + alpha * colour, 0, 255))


def model_view(
    predictor: Any, image_bgr: np.ndarray, toward_aligned: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """The square the model saw (RGB uint8, `predictor.image_size` px: region of interest,
    stopper square, resize, before the edge filter) and its Grad-CAM map on that square
    (None for a model without torch weights: an export or the baseline).

    Args:
        predictor: an `inference.Predictor`.
        toward_aligned: map the evidence for "aligned" (else for "not aligned").
    """
    seen = cv2.cvtColor(crop_resize(image_bgr, predictor.preprocess_cfg), cv2.COLOR_BGR2RGB)
    model = predictor.torch_model
    if model is None:
        return seen, None
    x = torch.from_numpy(predictor.tensors([image_bgr]))
    return seen, grad_cam(model.backbone, model.head, x, toward_aligned)[0]
