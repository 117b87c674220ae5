"""Sample quality of the learned digits denoiser: digits-FID of Heun samples and a grid of 100 samples.

    python benchmarks/digits_samples.py                       # the committed assets/digits_unet.safetensors
    python benchmarks/digits_samples.py --checkpoint runs/train/digits/denoiser.safetensors --png none

Heun (EDM's 2nd-order solver) on the EDM grid (rho 7, sigma 0.002..80), NFE 35 (18 steps, the last an
Euler step to sigma 0), float32, seeds 0..N-1. The digits-FID (``steindiff.metrics.digits``: Frechet
distance in a small digits classifier's 64-d features) of the samples against the held-out test split
(297 digits) is set beside the same distance for real digits (train digits against the test split):
the floor a perfect model would reach at these set sizes. A memorisation check compares the distance
of each sample to its nearest training digit with that of held-out digits. Writes
docs/digits_samples.png and benchmarks/results/digits_samples.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.datasets import digits_images
from steindiff.models.checkpoint import read_spec, resolve_path

ROOT = Path(__file__).resolve().parents[1]


def save_grid(path: Path, images: torch.Tensor, title: str) -> None:
    """A 10 x 10 grid of (100, 1, H, W) images in [-1, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, _, h, w = images.shape
    rows = (n + 9) // 10
    grid = torch.full((rows * (h + 1) + 1, 10 * (w + 1) + 1), -0.6)  # light grey separators
    for i, image in enumerate(images[:, 0].clamp(-1, 1)):
        r, c = divmod(i, 10)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = image
    fig, ax = plt.subplots(figsize=(5, 5.3), dpi=120)
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="digits_unet.safetensors")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--nfe", type=int, default=35)
    parser.add_argument("--solver", default="heun")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--png", default=str(ROOT / "docs" / "digits_samples.png"), help="'none' to skip")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "digits_samples.md"),
                        help="'none' to skip")
    args = parser.parse_args(argv)

    # the app's experiment=digits with this script's options, built as the app builds it
    run = build_run(compose_sample_config([
        "experiment=digits", f"denoiser.path={args.checkpoint}", f"solver={args.solver}", f"nfe={args.nfe}",
        f"num_samples={args.num}", f"batch_size={args.batch_size}", "metrics=none"]))
    checkpoint, shape, steps = resolve_path(args.checkpoint), run.shape, run.grid.num_steps
    t0 = time.perf_counter()
    with torch.no_grad():
        result = run.sample()
    seconds = time.perf_counter() - t0
    samples = result.samples.clamp(-1, 1)
    size = shape[-1]
    train, test = digits_images("train", size), digits_images("test", size)
    out = {"checkpoint": str(checkpoint), "shape": list(shape), "solver": args.solver,
           "nfe": result.nfe, "steps": steps, "num_samples": args.num, "sample_seconds": round(seconds, 1),
           "training": read_spec(checkpoint).get("training", {})}
    try:
        from steindiff.metrics.digits import digits_fid
    except ImportError:
        digits_fid = None
    if digits_fid is not None:
        out["fid_samples_vs_test"] = digits_fid(samples, test)
        out["fid_samples_vs_train"] = digits_fid(samples, train)
        out["fid_train_vs_test"] = digits_fid(train, test)
        out["fid_train1000_vs_test"] = digits_fid(train[:args.num], test)
    # memorisation check: distance of each sample to its nearest training digit, against held-out digits
    out["nn_distance_samples_to_train_median"] = float(torch.cdist(samples.flatten(1), train.flatten(1)).min(1)
                                                       .values.median())
    out["nn_distance_test_to_train_median"] = float(torch.cdist(test.flatten(1), train.flatten(1)).min(1)
                                                    .values.median())
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items() if k != "training"}
    print(json.dumps(shown, indent=1))
    if args.png != "none":
        title = (f"{checkpoint.name}: {args.solver}, NFE {result.nfe}, seeds 0-99"
                 + (f", digits-FID {out['fid_samples_vs_test']:.2f}" if "fid_samples_vs_test" in out else ""))
        save_grid(Path(args.png), samples[:100], title)
    if args.results != "none":
        training = out["training"]
        lines = [
            "# Digits denoiser: sample quality", "",
            "`python benchmarks/digits_samples.py` (2 CPU cores).", "",
            f"- checkpoint: `{checkpoint.name}`, sample shape {tuple(shape)}",
            f"- trained by: `{training.get('command', '?')}`, {training.get('steps', '?')} steps, "
            f"{training.get('train_seconds', '?')} s, final EMA validation loss {training.get('final_val_loss')}",
            f"- sampler: {args.solver}, EDM grid, {steps} steps, measured NFE {result.nfe}, "
            f"{args.num} samples (seeds 0-{args.num - 1}) in {seconds:.1f} s", "",
        ]
        if "fid_samples_vs_test" in out:
            lines += [
                "| digits-FID (classifier features, 64-d) | value |", "|---|---|",
                f"| {args.num} samples vs test split (297) | {out['fid_samples_vs_test']:.3f} |",
                f"| {args.num} samples vs train split (1500) | {out['fid_samples_vs_train']:.3f} |",
                f"| real: train split (1500) vs test split (297) | {out['fid_train_vs_test']:.3f} |",
                f"| real: first {args.num} train digits vs test split (297) | {out['fid_train1000_vs_test']:.3f} |",
                "",
            ]
        lines += [
            "Nearest training digit (L2 in pixel space, median): "
            f"{out['nn_distance_samples_to_train_median']:.2f} for the samples, "
            f"{out['nn_distance_test_to_train_median']:.2f} for held-out test digits "
            "(samples much closer than held-out digits would mean memorised training digits).", "",
        ]
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
