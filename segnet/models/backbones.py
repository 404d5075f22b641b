"""Feature trunks for FCN: torchvision ImageNet classifiers cut to stride-8, -16, -32 maps.

Every trunk maps (N, 3, H, W) with H, W multiples of 32 to the tuple
(N, C8, H/8, W/8), (N, C16, H/16, W/16), (N, C32, H/32, W/32) with ``channels == (C8, C16, C32)``.

ImageNet weights (``pretrained=True``) come from torchvision's weights API, one fixed member per
backbone (``IMAGENET_WEIGHTS``), downloaded once into ``$TORCH_HOME/hub/checkpoints/``:

==================  =======================================  ===============================
backbone            weights                                  file
==================  =======================================  ===============================
resnet18            ResNet18_Weights.IMAGENET1K_V1           resnet18-f37072fd.pth
resnet34            ResNet34_Weights.IMAGENET1K_V1           resnet34-b627a593.pth
resnet50            ResNet50_Weights.IMAGENET1K_V2           resnet50-11ad3fa6.pth
resnet101           ResNet101_Weights.IMAGENET1K_V2          resnet101-cd907fc2.pth
vgg16               VGG16_Weights.IMAGENET1K_V1              vgg16-397923af.pth
mobilenet_v3_large  MobileNet_V3_Large_Weights.IMAGENET1K_V2 mobilenet_v3_large-5c1a4163.pth
==================  =======================================  ===============================

These are torchvision's current defaults: for resnet50/101 the V2 recipe gives 80.9/81.9%
ImageNet top-1 against V1's 76.1/77.4%. (torchvision's own fcn_resnet50 was trained from V1; to
reproduce that, pass the V1 file as ``weights_path``.) ``weights_path`` loads such a file from
anywhere: the state dict of ``torchvision.models.<name>``, with or without its classifier.

mobilenet_v3_large is the light backbone for CPU demos trained from scratch: much cheaper per
step than resnet18, with stride-8/16 maps wide enough for the skips (40/112 channels; 24/48 on
mobilenet_v3_small). The timings behind the choice are in docs/benchmarks.md, the reasons in
docs/design.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn


class Backbone(nn.Module):
    """A trunk returning its stride-8, -16 and -32 feature maps; ``channels`` gives their widths."""

    channels: tuple[int, int, int]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError


class ResNetTrunk(Backbone):
    """ResNet (He et al., 2016) without avgpool/fc: stride 8, 16, 32 = layer2, layer3, layer4.

    Submodule names are torchvision's, so state-dict keys match its checkpoints.
    """

    def __init__(self, net: torchvision.models.ResNet) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        expansion = type(net.layer1[0]).expansion
        self.channels = (128 * expansion, 256 * expansion, 512 * expansion)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c8 = self.layer2(x)
        c16 = self.layer3(c8)
        return c8, c16, self.layer4(c16)


class VGGTrunk(Backbone):
    """VGG16 (Simonyan & Zisserman, 2015) as in FCN: pool3, pool4 and conv-ified fc6/fc7.

    FCN "convolutionalizes" the classifier (Long et al., Sec. 3.1): fc6 becomes a 7x7 conv with
    4096 outputs and fc7 a 1x1 conv, carrying the ImageNet weights over unchanged (a reshape),
    with the classifier's dropout (p=0.5) after each, as in the paper. fc8 (1000-way) is dropped.
    Unlike the original, fc6 is padded by 3 instead of padding conv1_1 by 100: the stride-32 map
    then has exactly H/32 x W/32 cells, aligned with pool4, for any input, without the 100-pixel
    margin that made the original compute ~(H+200)(W+200) pixels and crop afterwards.
    This is the heavy one (134M parameters, 4096 channels at stride 32), kept for fidelity.
    """

    def __init__(self, net: torchvision.models.VGG) -> None:
        super().__init__()
        self.features = net.features
        self.taps = (16, 23, 30)  # pool3, pool4, pool5
        fc6, fc7 = net.classifier[0], net.classifier[3]
        conv6 = nn.Conv2d(512, 4096, 7, padding=3, device="meta")
        conv7 = nn.Conv2d(4096, 4096, 1, device="meta")
        # Reuse the (possibly pretrained) Linear weights: flatten order of pool5 is (C, 7, 7).
        conv6.weight = nn.Parameter(fc6.weight.detach().view(4096, 512, 7, 7))
        conv6.bias = nn.Parameter(fc6.bias.detach())
        conv7.weight = nn.Parameter(fc7.weight.detach().view(4096, 4096, 1, 1))
        conv7.bias = nn.Parameter(fc7.bias.detach())
        self.fc67 = nn.Sequential(
            conv6,
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            conv7,
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )
        self.channels = (256, 512, 4096)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c8, c16, pool5 = _tapped(self.features, self.taps, x)
        return c8, c16, self.fc67(pool5)


class MobileNetTrunk(Backbone):
    """MobileNetV3 (Howard et al., 2019) ``features``, tapped before each stride-2 block.

    The light backbone for CPU demos: the stride-32 map is the final 1x1 expansion conv.
    Batch-norm momentum goes from torchvision's 0.01 (set for long ImageNet runs) to PyTorch's
    default 0.1, as the ResNets have: trained from scratch for 200 steps on the demo data, eval
    mode at 0.01 still predicted only background (its running statistics lag the weights)
    while at 0.1 it matched train mode.
    """

    def __init__(self, net: torchvision.models.MobileNetV3) -> None:
        super().__init__()
        self.features = net.features
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
        # ``_is_cn`` marks torchvision's stride-2 blocks (strides 4, 8, 16, 32 in order).
        downsample = [i for i, block in enumerate(self.features) if getattr(block, "_is_cn", False)]
        self.taps = (downsample[2] - 1, downsample[3] - 1, len(self.features) - 1)
        self.channels = tuple(self.features[i].out_channels for i in self.taps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return _tapped(self.features, self.taps, x)


def _tapped(features: nn.Sequential, taps: tuple[int, int, int], x: Tensor) -> tuple[Tensor, ...]:
    """Run ``features`` on x, keeping the outputs of the blocks at indices ``taps``."""
    maps = []
    for i, block in enumerate(features[: taps[-1] + 1]):
        x = block(x)
        if i in taps:
            maps.append(x)
    return tuple(maps)


@dataclass(frozen=True)
class _Spec:
    weights: str  # the torchvision weights member used for pretrained=True
    trunk: Callable[[nn.Module], Backbone]
    dropped: tuple[str, ...]  # state-dict prefixes of the classifier layers FCN discards


_SPECS: dict[str, _Spec] = {
    "resnet18": _Spec("ResNet18_Weights.IMAGENET1K_V1", ResNetTrunk, ("fc.",)),
    "resnet34": _Spec("ResNet34_Weights.IMAGENET1K_V1", ResNetTrunk, ("fc.",)),
    "resnet50": _Spec("ResNet50_Weights.IMAGENET1K_V2", ResNetTrunk, ("fc.",)),
    "resnet101": _Spec("ResNet101_Weights.IMAGENET1K_V2", ResNetTrunk, ("fc.",)),
    "vgg16": _Spec("VGG16_Weights.IMAGENET1K_V1", VGGTrunk, ("classifier.6.",)),
    "mobilenet_v3_large": _Spec(
        "MobileNet_V3_Large_Weights.IMAGENET1K_V2", MobileNetTrunk, ("classifier.",)
    ),
}
BACKBONES: tuple[str, ...] = tuple(_SPECS)
IMAGENET_WEIGHTS: dict[str, str] = {name: spec.weights for name, spec in _SPECS.items()}


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded or read from the cache."""


def build_backbone(
    name: str, pretrained: bool = False, weights_path: str | None = None
) -> Backbone:
    """The trunk ``name``: random init, torchvision ImageNet weights, or weights from a file.

    ``weights_path`` (a torchvision ImageNet state dict for this architecture, e.g. the ``.pth``
    the weights API downloads) takes precedence over ``pretrained``; its classification layer may
    be absent. ``pretrained=False`` without ``weights_path`` never touches the network.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    spec = _SPECS[name]
    state, source = None, ""
    if weights_path is not None:  # read first: a bad file fails before building anything
        state, source = _read_state_dict(weights_path), str(weights_path)
    elif pretrained:
        state, source = _download(name, spec), spec.weights
    net = torchvision.models.get_model(name, weights=None)
    if state is not None:
        _load_imagenet_state(net, state, name, spec, source)
    return spec.trunk(net)


def _download(name: str, spec: _Spec) -> dict[str, Tensor]:
    weights = torchvision.models.get_weight(spec.weights)
    filename = os.path.basename(urlparse(weights.url).path)
    cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        return weights.get_state_dict(
            progress=True, check_hash=True, map_location="cpu", weights_only=True
        )
    except Exception as err:  # offline (URLError), bad cache file, hash mismatch, ...
        cached = os.path.join(cache_dir, filename)
        corrupt = (
            f"\n  (a file {cached} exists but could not be loaded: delete it first)"
            if os.path.exists(cached)
            else ""
        )
        raise PretrainedWeightsUnavailable(
            f"cannot get the ImageNet weights for backbone {name!r} (torchvision {spec.weights}): "
            f"{type(err).__name__}: {err}{corrupt}\nFix it in one of these ways:\n"
            f"  1. connect to the internet and run again (it downloads {weights.url} once);\n"
            f"  2. copy the file {filename} into {cache_dir}/ (the torch hub cache; TORCH_HOME "
            f"moves it);\n"
            f"  3. pass model.weights_path=/local/{filename} (FCN's weights_path argument), "
            "a local copy of that file;\n"
            "  4. set model.pretrained=false (FCN's pretrained=False) to train the backbone "
            "from scratch."
        ) from err


def _read_state_dict(path: str) -> Mapping[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights_path {path!r} does not exist or is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"weights_path {path!r} cannot be read as a PyTorch state dict "
            f"(torch.load with weights_only=True): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(
            f"weights_path {path!r} is not a state dict (parameter name -> tensor); found {keys}. "
            "Save one with torch.save(model.state_dict(), path)."
        )
    return state


def _load_imagenet_state(
    net: nn.Module, state: Mapping[str, Tensor], name: str, spec: _Spec, source: str
) -> None:
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(spec.dropped)}
    missing = [k for k in expected if k not in state and not k.startswith(spec.dropped)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for what, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", wrong),
            )
            if keys
        ]
        raise ValueError(
            f"{source}: not an ImageNet state dict of torchvision.models.{name}: "
            f"{'; '.join(problems)}"
        )
    net.load_state_dict(state, strict=False)
