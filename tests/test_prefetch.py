"""The first batch sampled on a thread while the app starts (steindiff.prefetch): same samples, NFE and trace
as sampling it in Lightning's loop; errors reach the caller; a cancelled batch stops within a step."""

import pytest
import pytorch_lightning as pl
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.core.sampling import seed_batches
from steindiff.lightning import SamplingModule
from steindiff.prefetch import FirstBatch
from steindiff.shards import read_shard, shard_path


def _run(*overrides, stein=True):
    corrected = ["corrector=stein", "corrector.num_probes=2", "diagnostics.lipschitz=true"] if stein else []
    return build_run(compose_sample_config(["metrics=none", "num_samples=48", "batch_size=16", *corrected,
                                            *overrides]))


def test_first_batch_equals_sampling_the_same_seeds():
    run = _run()
    seeds = seed_batches(run.seeds, run.batch_size)[0]
    first = FirstBatch(run, seeds)
    assert first.take(seeds[1:]) is None  # not its seeds: the caller samples them itself
    got, expected = first.take(seeds), run.sample(seeds)
    assert torch.equal(got.samples, expected.samples) and got.nfe == expected.nfe == run.expected_nfe
    assert got.trace == expected.trace and all("gamma" in t and "lipschitz_mean" in t for t in got.trace)
    assert first.ready_s is not None and first.ready_s > 0


def _test_loop(run, out_dir, first_batch=None):
    module = SamplingModule(run, out_dir, first_batch=first_batch)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                         inference_mode=False)
    trainer.test(module, verbose=False)
    return module


def test_module_takes_the_prefetched_batch_and_writes_the_same_shards(tmp_path, monkeypatch):
    run = _run()
    batches = seed_batches(run.seeds, run.batch_size)
    plain = _test_loop(run, tmp_path / "plain")
    calls = []
    original = type(run).sample
    monkeypatch.setattr(type(run), "sample", lambda self, seeds=None, **kw: calls.append(seeds) or
                        original(self, seeds, **kw))
    first = FirstBatch(run, batches[0])
    prefetched = _test_loop(run, tmp_path / "prefetched", first)
    assert calls[0] == batches[0] and calls[1:] == batches[1:]  # the thread's call, then the loop's own
    for seeds in batches:
        a, b = read_shard(shard_path(tmp_path / "plain", seeds)), read_shard(shard_path(tmp_path / "prefetched", seeds))
        assert a[0].tolist() == b[0].tolist() and (a[1] == b[1]).all() and a[2] == b[2]
    assert plain.traces == prefetched.traces and plain.nfe == prefetched.nfe
    assert prefetched.timing["first_batch_s"] == round(first.ready_s, 3)


class _Probe(torch.nn.Module):
    """Wraps a denoiser: counts calls, and on call ``at`` runs ``action`` (set a cancel, raise)."""

    def __init__(self, denoiser, at, action):
        super().__init__()
        self.inner, self.at, self.action, self.calls = denoiser, at, action, 0
        self.spec = denoiser.spec

    def forward(self, x, sigma, labels=None):
        self.calls += 1
        if self.calls == self.at:
            self.action()
        return self.inner(x, sigma, labels)


def test_cancel_stops_the_batch_at_its_next_step():
    run = _run("steps=200", stein=False)
    holder = {}
    run.denoiser = probe = _Probe(run.denoiser, 3, lambda: holder["first"]._cancel.set())
    seeds = seed_batches(run.seeds, run.batch_size)[0]
    holder["first"] = first = FirstBatch(run, seeds)
    first.cancel()
    assert not first._thread.is_alive() and first.take(seeds) is None
    assert probe.calls <= 3 + 1  # the step in progress (one call for dpmpp_2m) finishes, no further one starts


def test_an_error_in_the_first_batch_reaches_the_caller():
    run = _run(stein=False)

    def fail():
        raise ValueError("the denoiser broke")

    run.denoiser = _Probe(run.denoiser, 2, fail)
    seeds = seed_batches(run.seeds, run.batch_size)[0]
    with pytest.raises(ValueError, match="the denoiser broke"):
        FirstBatch(run, seeds).take(seeds)
