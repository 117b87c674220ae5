"""A small U-Net for images: the raw network F(c_in x, c_noise) of EDM preconditioning.

A compact DDPM++/ADM-style architecture (Song et al., 2021; Dhariwal & Nichol, 2021; as configured
in EDM, Karras et al., 2022): residual blocks with GroupNorm and SiLU, the noise embedding added as an
adaptive scale and shift, self-attention at the chosen resolutions (by default the lowest), skip
connections scaled by 1/sqrt(2), zero-initialised output layers. The noise level enters as
``c_noise`` (EDM: log(sigma)/4) through a positional or random-Fourier embedding; class conditioning
(one-hot labels) is off by default.

    net = UNet(img_resolution=16, in_channels=1, model_channels=32, channel_mult=(1, 2, 2))
    denoiser = EDMPrecond(net, sigma_data=0.5)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["UNet", "NoiseEmbedding", "group_norm"]


def group_norm(channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> nn.GroupNorm:
    """GroupNorm with as many groups as fit (at most 32, at least 4 channels per group), dividing channels."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class NoiseEmbedding(nn.Module):
    """Embedding of the (B,) noise input c_noise into (B, num_channels) features.

    ``kind="positional"``: sin/cos of c_noise at frequencies (1/max_positions)^(i/(n/2 - 1)), i < n/2
    (the transformer embedding with endpoint, as in EDM's DDPM++). ``kind="fourier"``: sin/cos of
    2 pi f c_noise with fixed random frequencies f ~ N(0, scale^2) (NCSN++), stored as a buffer.

    Args:
        num_channels: the embedding width (even, >= 2).
        kind: "positional" or "fourier".
        max_positions: the lowest frequency's period of the positional embedding.
        scale: the standard deviation of the Fourier frequencies.
    """

    def __init__(self, num_channels: int, kind: str = "positional", max_positions: int = 10000, scale: float = 16.0):
        super().__init__()
        if kind not in ("positional", "fourier"):
            raise ValueError(f"embedding={kind!r} is not accepted: expected positional or fourier")
        if num_channels < 2 or num_channels % 2:
            raise ValueError(f"the noise embedding needs an even number of channels >= 2, got {num_channels}")
        self.kind = kind
        half = num_channels // 2
        if kind == "positional":
            freqs = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        else:
            freqs = 2 * math.pi * torch.randn(half, generator=torch.Generator().manual_seed(0)) * scale
        self.register_buffer("freqs", freqs)

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.reshape(-1, 1).to(self.freqs.dtype) * self.freqs.reshape(1, -1)  # (B, half)
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map (pre-norm, residual).

    Args:
        channels: the feature channels C.
        head_channels: channels per head (heads = C // head_channels, at least 1).
    """

    def __init__(self, channels: int, head_channels: int = 32):
        super().__init__()
        self.num_heads = max(1, channels // head_channels)
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        # (B, heads, HW, head_channels)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ResBlock(nn.Module):
    """GN-SiLU-conv, adaptive scale/shift from the embedding, GN-SiLU-dropout-conv, skip; optional attention.

    Args:
        in_channels: input channels.
        out_channels: output channels (a 1x1 convolution on the skip path when they differ).
        emb_channels: the width of the noise (and class) embedding.
        dropout: dropout probability before the second convolution.
        attention: add self-attention after the block.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float = 0.0,
                 attention: bool = False):
        super().__init__()
        self.norm0 = group_norm(in_channels)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.affine = nn.Linear(emb_channels, 2 * out_channels)
        self.norm1 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.attention = SelfAttention(out_channels) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        x = (h + self.skip(x)) * (1 / math.sqrt(2))
        if self.attention is not None:
            x = self.attention(x)
        return x


class UNet(nn.Module):
    """U-Net F(x, c_noise, class_labels) -> (B, out_channels, H, W), H = W = ``img_resolution``.

    ``channel_mult[i]`` * ``model_channels`` channels at level i (resolution img_resolution / 2^i);
    ``num_blocks`` residual blocks per level on the way down (one more on the way up, taking the
    skip connections); self-attention in blocks whose resolution is in ``attn_resolutions``
    (None: the lowest resolution only; an empty list: nowhere). ``num_classes`` > 0 adds a class
    embedding of (B, num_classes) one-hot labels (all-zero rows: unconditional).

    Args:
        img_resolution: H = W of the images (divisible by 2^(len(channel_mult) - 1)).
        in_channels: image channels.
        out_channels: output channels (None: in_channels).
        model_channels: channels at the first level.
        channel_mult: channel multiplier per level.
        num_blocks: residual blocks per level on the way down.
        attn_resolutions: resolutions with self-attention (None: the lowest only).
        dropout: dropout probability in the residual blocks.
        num_classes: classes of one-hot labels (0: unconditional).
        embedding: "positional" or "fourier" noise embedding.
    """

    def __init__(self, img_resolution: int = 16, in_channels: int = 1, out_channels: int | None = None,
                 model_channels: int = 32, channel_mult: tuple[int, ...] | list[int] = (1, 2, 2),
                 num_blocks: int = 2, attn_resolutions: tuple[int, ...] | list[int] | None = None,
                 dropout: float = 0.0, num_classes: int = 0, embedding: str = "positional"):
        super().__init__()
        levels = len(channel_mult)
        if levels < 1 or img_resolution % (2 ** (levels - 1)):
            raise ValueError(f"img_resolution={img_resolution} is not divisible by 2^{levels - 1} "
                             f"(channel_mult={list(channel_mult)})")
        lowest = img_resolution // 2 ** (levels - 1)
        attn = {lowest} if attn_resolutions is None else set(attn_resolutions)
        self.img_resolution, self.in_channels = int(img_resolution), int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.num_classes = int(num_classes)
        emb_channels = 4 * model_channels
        self.noise_embedding = NoiseEmbedding(model_channels, kind=embedding)
        self.map_label = nn.Linear(num_classes, model_channels, bias=False) if num_classes else None
        self.map = nn.Sequential(nn.Linear(model_channels, emb_channels), nn.SiLU(),
                                 nn.Linear(emb_channels, emb_channels), nn.SiLU())

        self.input = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [model_channels]
        ch = model_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level > 0:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # downsample
                skips.append(ch)
            for _ in range(num_blocks):
                self.down.append(ResBlock(ch, model_channels * mult, emb_channels, dropout, res in attn))
                ch = model_channels * mult
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_channels, dropout, attention=True),
                                  ResBlock(ch, ch, emb_channels, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            for _ in range(num_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), model_channels * mult, emb_channels, dropout, res in attn))
                ch = model_channels * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out_norm = group_norm(ch)
        self.out = nn.Conv2d(ch, self.out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, c_noise: Tensor, class_labels: Tensor | None) -> Tensor:
        emb = self.noise_embedding(c_noise)
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels.to(emb.dtype))
        return self.map(emb)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise, class_labels).to(x.dtype)  # (B, 4 * model_channels)
        h = self.input(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = block(h)
        return self.out(F.silu(self.out_norm(h)))
