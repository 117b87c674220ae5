"""Divergence (Jacobian trace) estimators for a batched map f: (B, *shape) -> (B, *shape).

Every estimator returns per-sample divergences (B,) and the standard error of each estimate (B,)
(zero for exact methods). Each sample's map is assumed to depend on that sample's row alone.

- "hutchinson":   E_v[v^T (df/dx) v] with Gaussian probes, through vector-Jacobian products of
                  an already built graph (no extra forward pass), one backward pass per probe
                  (``batched=True``: one ``is_grads_batched`` call for all probes);
- "rademacher":   the same with Rademacher (+-1) probes (lower variance for near-diagonal Jacobians);
- probe kind "orthogonal" (ours): each sample's M Gaussian probes orthogonalised (QR, Haar-distributed
                  frame) and rescaled to norm sqrt(d), so E[v v^T] = I still holds (unbiased) and the M
                  quadratic forms are negatively correlated (with M = d the estimate is the exact trace;
                  M > d: blocks of d);
- "jvp":          forward-mode Jacobian-vector products, one extra forward pass per probe;
- "finite_difference": v^T (f(x + eps v) - f(x)) / eps, one extra forward pass per probe and no
                  autograd memory (central differences optional, two passes per probe);
- "exact":        the full Jacobian trace, one basis vector per dimension (for small d; the
                  mixture test-bed's analytic trace is ``GaussianMixture.divergence``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from .rng import shift_right, splitmix64

__all__ = ["DIVERGENCE_ESTIMATORS", "PROBE_KINDS", "make_probes", "seeded_probes", "orthogonalize_probes",
           "vjp_divergence", "jvp_divergence", "finite_difference_divergence", "exact_divergence"]

DIVERGENCE_ESTIMATORS = ("hutchinson", "rademacher", "jvp", "finite_difference", "exact")
#: probe kinds: "gaussian" (the paper's), "rademacher", "orthogonal" (ours)
PROBE_KINDS = ("gaussian", "rademacher", "orthogonal")


def orthogonalize_probes(probes: Tensor) -> Tensor:
    """(M, B, *shape) probes -> each sample's M probes orthonormalised and rescaled to norm sqrt(d) (ours).

    QR of each sample's (d, M) matrix in float64, with the signs of R's diagonal moved into Q, so that
    Gaussian input gives a Haar-distributed frame: every probe is uniform on the sphere of radius sqrt(d)
    (E[v v^T] = I, the estimate stays unbiased) and the probes of a sample are orthogonal. Each sample
    is transformed on its own, so the output row depends on that row's input alone. With M > d the probes
    are taken in consecutive blocks of d, each block an independent orthogonal frame.
    """
    m, b = probes.shape[:2]
    d = int(torch.Size(probes.shape[2:]).numel())
    blocks = []
    for lo in range(0, m, d):
        a = probes[lo:lo + d].reshape(-1, b, d).permute(1, 2, 0).to(torch.float64)  # (B, d, block)
        q, r = torch.linalg.qr(a)
        sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        blocks.append((q * sign[:, None, :] * d**0.5).permute(2, 0, 1))
    return torch.cat(blocks).reshape(probes.shape).to(probes.dtype).contiguous()


def make_probes(num_probes: int, like: Tensor, kind: str = "gaussian",
                generator: torch.Generator | None = None) -> Tensor:
    """(M, *like.shape) probes with E[v v^T] = I, drawn on the CPU then moved (reproducible)."""
    shape = (int(num_probes), *like.shape)
    if kind in ("gaussian", "orthogonal"):
        v = torch.randn(shape, generator=generator, dtype=torch.float64)
        if kind == "orthogonal":  # ours: the same Gaussian draws, orthogonalised per sample
            v = orthogonalize_probes(v)
    elif kind == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    else:
        raise ValueError(f"unknown probe kind {kind!r}; accepted: {', '.join(PROBE_KINDS)}")
    return v.to(device=like.device, dtype=like.dtype)


def seeded_probes(seeds: Tensor, step: int, num_probes: int, shape, kind: str = "gaussian", salt: int = 0,
                  dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(M, B, *shape) probes where row b depends only on (seeds[b], step, salt): a counter-based
    generator (SplitMix64 hash + Box-Muller), vectorised over the batch, so probes do not depend on
    batch size, position or device count, at the cost of one hash per number. The rows are hashed
    ``_PROBE_CHUNK`` numbers at a time (the same bits; the working set stays in cache: 2x faster and
    a fraction of the memory at B * M * d = 1.3e6, and no slower at small B). Kind "orthogonal" (ours):
    the Gaussian probes of the same seeds, orthogonalised per sample (``orthogonalize_probes``)."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; accepted: {', '.join(PROBE_KINDS)}")
    orthogonal = kind == "orthogonal"
    kind = "gaussian" if orthogonal else kind
    n = int(num_probes) * int(torch.Size(shape).numel())
    key = splitmix64(seeds.to(torch.int64).cpu() * 1_000_003 + int(step) * 7919 + int(salt) * 104_729)  # (B,)
    counter = torch.arange(n if kind == "rademacher" else 2 * n, dtype=torch.int64)  # Rademacher needs n bits
    hashed_counter = splitmix64(counter)
    values = torch.empty(len(seeds), n, dtype=torch.float64)
    rows = max(1, _PROBE_CHUNK // len(counter))
    for lo in range(0, len(seeds), rows):
        values[lo:lo + rows] = _probe_values(key[lo:lo + rows], hashed_counter, n, kind)
    values = values.reshape(len(seeds), int(num_probes), *shape).transpose(0, 1)
    if orthogonal:
        values = orthogonalize_probes(values)
    return values.to(device=device if device is not None else seeds.device, dtype=dtype).contiguous()


_PROBE_CHUNK = 1 << 18  # numbers hashed at a time by seeded_probes


def _probe_values(key: Tensor, hashed_counter: Tensor, n: int, kind: str) -> Tensor:
    """(len(key), n) float64 probe values of the rows with these keys."""
    bits = splitmix64(key[:, None] ^ hashed_counter[None, :])  # (rows, n or 2n)
    if kind == "rademacher":
        return (shift_right(bits, 63) * 2 - 1).to(torch.float64)
    # in place, in the same order of operations as the formulas in the comments (the same bits)
    bits >>= 11
    bits &= (1 << 53) - 1
    u = bits.to(torch.float64).add_(0.5).mul_(1.0 / (1 << 53))  # (bits + 0.5) / 2^53: uniform in (0, 1)
    values = u[:, :n].log_().mul_(-2.0).sqrt_()  # sqrt(-2 log u1)
    values *= u[:, n:].mul_(2 * torch.pi).cos_()  # * cos(2 pi u2)
    return values


def _per_sample(v: Tensor, w: Tensor) -> Tensor:
    """<v, w> per probe and sample: (M, B, ...) -> (M, B)."""
    return (v * w).flatten(2).sum(-1)


def _reduce(quad: Tensor) -> tuple[Tensor, Tensor]:
    m = quad.shape[0]
    mean = quad.mean(0)
    err = quad.std(0, unbiased=True) / m**0.5 if m > 1 else torch.zeros_like(mean)
    return mean, err


def vjp_divergence(y: Tensor, x: Tensor, probes: Tensor, batched: bool = False,
                   retain_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Hutchinson through VJPs of the graph y(x): (mean over probes of v^T dy/dx v, its standard error).

    The default loops over the probes, one backward pass each, and releases the graph on the last
    one (``retain_graph=False``), so no activation outlives the estimate: on CPU this is the
    physical floor (one forward plus M backward passes). ``batched=True`` asks autograd for all
    probes at once (``is_grads_batched``, torch's vmap): the same numbers to float rounding, faster
    only where every backward op has a batching rule (measure on your device).
    """
    if batched:
        (g,) = torch.autograd.grad(y, x, grad_outputs=probes, is_grads_batched=True, retain_graph=retain_graph)
        return _reduce(_per_sample(probes, g).detach())
    rows = []
    for i, v in enumerate(probes):
        keep = retain_graph or i < len(probes) - 1
        (g,) = torch.autograd.grad(y, x, grad_outputs=v, retain_graph=keep)
        rows.append((v * g).flatten(1).sum(-1).detach())
    return _reduce(torch.stack(rows))


def jvp_divergence(f: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    """Hutchinson through forward-mode JVPs: one forward pass of f per probe."""
    rows = []
    for v in probes:
        with fwAD.dual_level():
            out = f(fwAD.make_dual(x.detach(), v))
            jv = fwAD.unpack_dual(out).tangent
        rows.append((v * jv).flatten(1).sum(-1))
    return _reduce(torch.stack(rows).detach())


def finite_difference_divergence(f: Callable[[Tensor], Tensor], x: Tensor, fx: Tensor, probes: Tensor,
                                 eps: float = 1e-3, central: bool = False) -> tuple[Tensor, Tensor]:
    """v^T (f(x + eps v) - f(x)) / eps per probe (``central``: (f(x + eps v) - f(x - eps v)) / 2 eps).

    ``eps`` is an absolute step in x; the Stein corrector passes fd_eps * sigma, since a denoiser at
    noise level sigma varies on the scale sigma.
    """
    scale = float(eps)
    rows = []
    with torch.no_grad():
        for v in probes:
            plus = f(x.detach() + scale * v)
            diff = (plus - f(x.detach() - scale * v)) / (2 * scale) if central else (plus - fx.detach()) / scale
            rows.append((v * diff).flatten(1).sum(-1))
    return _reduce(torch.stack(rows))


def exact_divergence(y: Tensor, x: Tensor, retain_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Trace of the per-sample Jacobian from d basis-vector VJPs of the graph y(x) (small d only);
    the graph is released afterwards unless ``retain_graph``."""
    d = x[0].numel()
    basis = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, 1, *x.shape[1:]).expand(d, *x.shape)
    (g,) = torch.autograd.grad(y, x, grad_outputs=basis.contiguous(), is_grads_batched=True,
                               retain_graph=retain_graph)
    trace = _per_sample(basis, g).sum(0)
    return trace.detach(), torch.zeros_like(trace).detach()
