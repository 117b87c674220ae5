"""The paper's published numbers, as data, and the section of docs/results.md that shows them beside ours.

Every number here is copied from the paper (Li & Zeng, "Mitigating the Contractivity Trap in Diffusion ODEs via
Stein Stabilization", ICML 2026, arXiv 2606.07835), as collected in the project's method notes: FID on 50k
samples of large image models. None of them was reproduced by this project, so the section captions every table
"published by the paper, not measured here" and says why the tables are not comparable cell for cell with the
study's (different models and data, FID on 50k samples against energy distance on a few thousand samples).

    from study_paper import paper_section   # a markdown section (str) for docs/results.md
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = ("Li & Zeng, \"Mitigating the Contractivity Trap in Diffusion ODEs via Stein Stabilization\", ICML 2026, "
          "arXiv 2606.07835")
CAPTION = "published by the paper, not measured here"


@dataclass(frozen=True)
class PublishedTable:
    """One table of the paper: FID (lower is better) per method (rows) and column (NFE or a label)."""

    title: str  # the model and data set
    metric: str  # what the numbers are
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]  # (method, one value per column; None: not published)
    note: str = ""

    def markdown(self, number: int) -> list[str]:
        head = [f"Table P{number}. {self.title}: {self.metric} ({CAPTION}).", "",
                f"| {self.title} | " + " | ".join(self.columns) + " |", "|---|" + "---|" * len(self.columns)]
        body = [f"| {method} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |"
                for method, values in self.rows]
        return head + body + ([""] + [self.note] if self.note else [])


FID_50K = "FID on 50k samples"
NFE = ("NFE 5", "NFE 6", "NFE 8", "NFE 10", "NFE 20")

#: the paper's tables (its LSUN numbers, its ImageNet-64 number, and the CIFAR-10 reference baselines it lists)
TABLES: tuple[PublishedTable, ...] = (
    PublishedTable(
        "LSUN-Bedroom 256, latent diffusion", FID_50K, NFE,
        (("DPM-Solver++ (2M)", (21.29, 10.97, 5.13, 3.88, 3.25)),
         ("DPM-Solver++ (3M)", (18.61, 8.52, 4.15, 3.61, 3.17)),
         ("SteinDiff (SC)", (7.64, 4.71, 3.72, 3.38, 2.77))),
        "\"SteinDiff (SC)\", a self-consistency variant behind these numbers, is not described in the paper and is "
        "not implemented here."),
    PublishedTable(
        "ImageNet-64 (EDM model), logSNR schedule, Heun, 3 steps", FID_50K, ("FID",),
        (("Heun", (230.05,)), ("Heun + SteinDiff", (124.69,))),
        "The paper states the change as -45.8%."),
    PublishedTable(
        "CIFAR-10 unconditional (EDM model), reference baselines", FID_50K, NFE[:4],
        (("Euler (DDIM)", (49.66, 35.62, 22.32, 15.69)),
         ("Heun", (None, 99.74, 38.06, 15.93)),
         ("DPM-Solver++ (3M)", (24.97, 11.99, 4.54, 3.00)),
         ("UniPC-3", (23.98, 11.14, 3.99, 2.89)),
         ("iPNDM-4", (13.59, 7.05, 3.69, 2.77))),
        "Sampling ends at sigma = 0.002 with no final denoising step; Euler and Heun on the EDM rho = 7 grid, "
        "DPM-Solver++ and UniPC on the logSNR grid. The paper gives its own CIFAR-10 results only as plots."),
)

WHY_NOT_COMPARABLE = (
    "These tables are not comparable cell for cell with the study's: the paper uses different models and data "
    "(latent diffusion on LSUN-Bedroom, EDM on ImageNet-64 and CIFAR-10) and scores them by FID on 50k samples, "
    "while the study scores exact Gaussian mixtures and small learned models by energy distance (and a digits FID) "
    "on a few thousand samples per seed set.")


def paper_section(level: int = 2) -> str:
    """The markdown section for docs/results.md: the paper's tables, each captioned as the paper's."""
    lines = [f"{'#' * level} The paper's published numbers", "",
             f"Copied from {SOURCE}; {CAPTION}. {WHY_NOT_COMPARABLE}"]
    for number, table in enumerate(TABLES, start=1):
        lines += ["", *table.markdown(number)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(paper_section(), end="")
