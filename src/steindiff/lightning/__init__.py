"""Lightning modules: sampling/evaluation (``sampling``)."""

from .sampling import SamplingModule, SeedBatches, load_samples, seed_batches

__all__ = ["SamplingModule", "SeedBatches", "load_samples", "seed_batches"]
