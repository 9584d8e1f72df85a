"""The spatial-temporal convolution connector (`stc_connector_v35`) from vision features to video tokens.

`RegStage` blocks are written here (rather than imported from timm) with the module names of timm's RegNet
bottleneck, so the official checkpoint keys (`s1.b1.conv1.conv.weight`, `s1.b1.conv1.bn.weight`, ...) load unchanged
and the layout cannot drift with timm releases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["STCConnector", "RegStage"]


class LayerNormAct2d(nn.LayerNorm):
    """Layer norm over the channels of a `(n, c, h, w)` map, then an optional SiLU (timm `LayerNormAct2d`)."""

    def __init__(self, channels: int, apply_act: bool = True, eps: float = 1e-5):
        super().__init__(channels, eps=eps)
        self.act = nn.SiLU() if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return self.act(x.permute(0, 3, 1, 2))


class ConvNormAct(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, groups: int = 1, apply_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = LayerNormAct2d(out_chs, apply_act=apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * scale.sigmoid()


class Bottleneck(nn.Module):
    """RegNet bottleneck: 1x1 conv, depthwise 3x3 conv, squeeze-excite, 1x1 conv, residual, SiLU."""

    def __init__(self, in_chs: int, out_chs: int, se_ratio: float = 0.25):
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, out_chs, 1)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, groups=out_chs)
        self.se = SqueezeExcite(out_chs, int(round(in_chs * se_ratio)))
        self.conv3 = ConvNormAct(out_chs, out_chs, 1, apply_act=False)
        self.downsample = ConvNormAct(in_chs, out_chs, 1, apply_act=False) if in_chs != out_chs else nn.Identity()
        self.act3 = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act3(out + self.downsample(x))


class RegStage(nn.Module):
    def __init__(self, depth: int, in_chs: int, out_chs: int):
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", Bottleneck(in_chs if i == 0 else out_chs, out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


class STCConnector(nn.Module):
    """`(b, t, h*w, C)` frame features to `(b, t/2 * (h/2) * (w/2), D)` video tokens, in (t h w) order."""

    def __init__(self, vision_hidden_size: int, hidden_size: int, depth: int = 4):
        super().__init__()
        self.s1 = RegStage(depth, vision_hidden_size, hidden_size)
        self.sampler = nn.Sequential(nn.Conv3d(hidden_size, hidden_size, kernel_size=2, stride=2), nn.SiLU())
        self.s2 = RegStage(depth, hidden_size, hidden_size)
        self.readout = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, t, n, c = features.shape
        side = int(round(n**0.5))
        x = features.reshape(b * t, side, side, c).permute(0, 3, 1, 2)  # (b t, C, h, w)
        x = self.s1(x)
        d = x.shape[1]
        x = x.reshape(b, t, d, side, side).transpose(1, 2)  # (b, D, t, h, w)
        x = self.sampler(x)
        t2, h2, w2 = x.shape[2:]
        x = x.transpose(1, 2).reshape(b * t2, d, h2, w2)  # (b t', D, h', w')
        x = self.s2(x)
        x = x.reshape(b, t2, d, h2 * w2).permute(0, 1, 3, 2).reshape(b, t2 * h2 * w2, d)  # (b, t' h' w', D)
        return self.readout(x)

    @staticmethod
    def num_tokens(num_frames: int, grid: int) -> int:
        return (num_frames // 2) * (grid // 2) ** 2
