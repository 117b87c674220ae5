"""An MLP for low-dimensional data: the raw network F(c_in x, c_noise) of EDM preconditioning.

The input vector and the noise embedding (positional features of c_noise = log(sigma)/4, mapped by
a small MLP) are projected to ``hidden`` features; residual blocks (LayerNorm, SiLU, Linear, with
the embedding added) follow; the zero-initialised output layer returns ``dim`` values.

    net = MLP(dim=2, hidden=256, num_blocks=3)
    denoiser = EDMPrecond(net, sigma_data=1.4)
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from .unet import NoiseEmbedding

__all__ = ["MLP"]


class _Block(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc0 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        r = self.fc0(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc1(self.dropout(F.silu(r)))


class MLP(nn.Module):
    """F(x, c_noise, class_labels) -> (B, dim) for (B, dim) inputs; ``num_classes`` > 0 adds a class embedding.

    Args:
        dim: the data dimension d.
        hidden: the width of the residual blocks.
        num_blocks: the number of residual blocks.
        embedding_channels: the channels of the noise embedding (even).
        dropout: dropout probability inside the blocks.
        num_classes: classes of (B, num_classes) one-hot labels (0: unconditional).
        embedding: "positional" or "fourier" noise embedding (``NoiseEmbedding``).
    """

    def __init__(self, dim: int = 2, hidden: int = 256, num_blocks: int = 3, embedding_channels: int = 64,
                 dropout: float = 0.0, num_classes: int = 0, embedding: str = "positional"):
        super().__init__()
        self.dim, self.num_classes = int(dim), int(num_classes)
        self.noise_embedding = NoiseEmbedding(embedding_channels, kind=embedding)
        self.map_label = nn.Linear(num_classes, embedding_channels, bias=False) if num_classes else None
        self.map = nn.Sequential(nn.Linear(embedding_channels, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([_Block(hidden, dropout) for _ in range(num_blocks)])
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        emb = self.noise_embedding(c_noise)
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels.to(emb.dtype))
        emb = self.map(emb).to(x.dtype)  # (B, hidden)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))
