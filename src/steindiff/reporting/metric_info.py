"""What the report knows about each metric: a readable name, its unit, which direction is better, its range.

    info = metric_info("energy_distance")   # MetricInfo(label="energy distance", unit="data units", ...)
    axis_label("mode_tv")                   # "mode-weight TV error [fraction], lower is better"

A metric not listed here keeps its key as label, no unit, direction unknown, any sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MetricInfo", "axis_label", "metric_info"]


@dataclass(frozen=True)
class MetricInfo:
    """label: readable name. unit: "" when unitless. better: "lower", "higher" or "" (unknown).
    low, high: the values the metric can take (fractions: 0 and 1; distances: 0 and inf; NLL: -inf and inf)."""

    label: str
    unit: str = ""
    better: str = ""
    low: float = -math.inf
    high: float = math.inf

    @property
    def nonnegative(self) -> bool:
        return self.low >= 0.0


_DISTANCE = dict(unit="data units", better="lower", low=0.0)
_FRACTION = dict(better="lower", low=0.0, high=1.0)
KNOWN = {
    "energy_distance": MetricInfo("energy distance to the exact mixture", **_DISTANCE),
    "sliced_w2": MetricInfo("sliced Wasserstein-2 distance", **_DISTANCE),
    "trajectory_error": MetricInfo("trajectory error |x - x_ref| (mean)", **_DISTANCE),
    "nll": MetricInfo("NLL -log p0(x) under the exact density", unit="nats per sample", better="lower"),
    "mode_tv": MetricInfo("mode-weight TV error", unit="fraction", **_FRACTION),
    "off_manifold": MetricInfo("off-manifold samples", unit="fraction", **_FRACTION),
    "fid": MetricInfo("FID", better="lower", low=0.0),
    "kid": MetricInfo("KID (raw MMD^2, not x1000)", better="lower"),  # the unbiased estimate can fall below 0
    "inception_score": MetricInfo("Inception Score", better="higher", low=1.0),
    # the digits classifier's feature space (steindiff.metrics.digits): not comparable with Inception's numbers;
    # runs made before the metrics were named so hold them as fid, kid, inception_score
    "digits_fid": MetricInfo("digits-FID (digits-classifier features)", better="lower", low=0.0),
    "digits_kid": MetricInfo("digits-KID (raw MMD^2, not x1000)", better="lower"),
    "digits_inception_score": MetricInfo("digits Inception Score (digits classifier)", better="higher", low=1.0),
}


def metric_info(name: str) -> MetricInfo:
    """The known facts about metric ``name``; an unknown metric gets its key as label and no claims."""
    return KNOWN.get(name, MetricInfo(name))


def axis_label(name: str) -> str:
    """'<label> [<unit>], <lower|higher> is better' (the parts that are known)."""
    info = metric_info(name)
    text = info.label + (f" [{info.unit}]" if info.unit else "")
    return text + (f", {info.better} is better" if info.better else ", direction unknown")
