"""Lightning modules: sampling/evaluation (``sampling``) with its results callback (``results``), denoiser
training (``training``) and the DataModules of the data that ships inside packages (``data``)."""

from steindiff.shards import load_samples, read_shard, verify_run, write_shard

from .data import DigitsDataModule, MixtureDataModule, PatchesDataModule
from .results import RunResults, trace_summary
from .sampling import NonFiniteSamples, RunInterrupted, SamplingModule, SeedBatches, seed_batches
from .training import EDMTrainingModule, edm_loss

__all__ = ["SamplingModule", "SeedBatches", "RunResults", "trace_summary", "load_samples", "seed_batches",
           "RunInterrupted", "NonFiniteSamples", "read_shard", "verify_run", "write_shard", "EDMTrainingModule",
           "edm_loss", "DigitsDataModule", "MixtureDataModule", "PatchesDataModule"]
