"""Lightning modules: sampling/evaluation (``sampling``)."""

from .sampling import NonFiniteSamples, RunInterrupted, SamplingModule, SeedBatches, seed_batches
from .shards import load_samples, read_shard, verify_run, write_shard

__all__ = ["SamplingModule", "SeedBatches", "load_samples", "seed_batches", "RunInterrupted", "NonFiniteSamples",
           "read_shard", "verify_run", "write_shard"]
