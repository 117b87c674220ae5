"""The estimator-error study (benchmarks/estimator_error.py) and the estimator observer with named correctors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from steindiff.core import (
    Corrector,
    EstimatorObserver,
    Schedule,
    SteinCorrector,
    make_solver,
    mixture_preset,
    num_steps_for_nfe,
    sample,
)
from steindiff.core.estimator_observer import estimate_key, unclipped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import estimator_error  # noqa: E402

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _grid(solver, nfe=6):
    return Schedule("edm", final_step="zero").grid(num_steps_for_nfe(solver, nfe, "zero"))


def _variants() -> dict:
    """Named correctors to observe: the paper's estimator, other settings, and the family's options where present."""
    out = {"paper": SteinCorrector(), "exact divergence, sample statistics": SteinCorrector(divergence="exact",
                                                                                           statistics="sample")}
    options = {"smoothing 0.5": {"smoothing": 0.5},  # state kept across the steps of a batch
               "flow history": {"history": "flow"}, "shrinkage": {"shrinkage": True},
               "orthogonal probes": {"probes": "orthogonal"}}
    for name, kwargs in options.items():
        try:
            out[name] = SteinCorrector(**kwargs)
        except TypeError:  # the option is not in this checkout yet
            pass
    try:
        from steindiff.core.correctors.renoised import RenoisedSteinCorrector
        out["renoised"] = RenoisedSteinCorrector()  # evaluates the step again at re-noised states
    except ImportError:
        pass
    return out


def test_euler_exact_ring2d_oracle_is_one_at_every_step_and_the_observer_reports_it():
    data, s = mixture_preset("ring2d"), make_solver("euler")
    result = sample(data, _grid(s), s, None, seeds=range(200), shape=(2,), dtype=F64,
                    observers=[EstimatorObserver(data=data, correctors={"paper": SteinCorrector()})])
    assert len(result.trace) == 6
    assert all(abs(t["oracle_gamma"] - 1) < 1e-10 for t in result.trace)
    estimates = [t[estimate_key("paper")] for t in result.trace]
    assert all(torch.isfinite(torch.tensor(estimates))) and "stein_estimate" not in result.trace[0]
    # the script's own path (compose + build_run, float32): the records carry the oracle's 1 and the estimate
    records, refused = estimator_error.evaluate("ring2d", "euler", 6, 1, 64, {"paper": SteinCorrector()},
                                                {"paper": ["corrector=stein"]}, 8)
    assert not refused and records[0]["reference"] == "posterior" and records[0]["nfe"] == 6
    assert all(abs(o - 1) < 1e-5 for step in records[0]["oracle"] for o in step)
    assert len(records[0]["gamma"]) == len(records[0]["sigma"]) == 6


@pytest.mark.parametrize("name", list(_variants()))
def test_a_variants_gamma_is_what_the_corrector_reports_running_the_step_itself(name):
    data, s = mixture_preset("aniso32"), make_solver("dpmpp_2m")  # multistep: the history is the loop's
    corrector = _variants()[name]
    observer = EstimatorObserver(data=data, correctors={name: corrector})
    run = sample(data, _grid(s), s, corrector, seeds=range(48), shape=(32,), dtype=F64, batch_size=24,
                 observers=[observer])  # two batches: a stateful corrector starts afresh on each
    assert len(run.trace) == 12
    for t in run.trace:  # the observer sees the states the corrector corrects, with the same seeds and probes
        assert t[estimate_key(name)] == pytest.approx(t["gamma"], rel=1e-9, abs=1e-12), t


def test_the_observer_reads_the_unclipped_gamma_of_a_clipped_corrector():
    data, s = mixture_preset("ring2d"), make_solver("heun")
    clipped = SteinCorrector(gamma_min=0.9, gamma_max=1.1)
    run = sample(data, _grid(s), s, clipped, seeds=range(64), shape=(2,), dtype=F64,
                 observers=[EstimatorObserver(data=data, correctors={"c": clipped})])
    raw = [t[estimate_key("c")] for t in run.trace]
    assert any(not 0.9 <= g <= 1.1 for g in raw)  # the clip acts somewhere on this path, so the test can fail
    assert all(min(max(g, 0.9), 1.1) == pytest.approx(t["gamma"], rel=1e-9) for g, t in zip(raw, run.trace))
    assert clipped.gamma_min == 0.9 and unclipped(clipped).gamma_min is None  # the caller's corrector is untouched


def test_the_observer_leaves_samples_and_counted_nfe_unchanged():
    data, s = mixture_preset("aniso32"), make_solver("heun")
    kw = dict(seeds=range(40), shape=(32,), dtype=F64, batch_size=20)
    base = sample(data, _grid(s), s, None, **kw)
    seen = sample(data, _grid(s), s, None, observers=[EstimatorObserver(data=data, correctors=_variants())], **kw)
    assert torch.equal(seen.samples, base.samples) and seen.nfe == base.nfe == 5  # Heun: 2 + 2 + 1 (to sigma 0)
    assert [t["nfe"] for t in seen.trace] == [t["nfe"] for t in base.trace]
    assert all(estimate_key(n) in t for n in _variants() for t in seen.trace)


def test_the_observer_refuses_what_is_not_a_dict_of_correctors():
    for bad in ({}, {"x": 1.0}, [SteinCorrector()]):
        with pytest.raises(ValueError):
            EstimatorObserver(data="ring2d", correctors=bad)


class _Refuses(Corrector):
    def correct(self, x, output, context):
        raise ValueError("this corrector refuses this test-bed")


def test_the_script_skips_missing_and_refused_variants_in_one_line_each_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(estimator_error, "VARIANTS", {
        "ok": ["corrector=stein"],
        "missing": ["corrector=no_such_corrector"],
        "refused": ["corrector=stein", "corrector.divergence=no_such_estimator"],
    })
    argv = ["run", "--testbeds", "ring2d", "--solvers", "euler", "--nfe", "4", "--seed-sets", "1,2", "--samples",
            "32", "--records", str(tmp_path / "r.jsonl"), "--out-md", str(tmp_path / "r.md"), "--figures",
            str(tmp_path)]
    assert estimator_error.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("skipped 'missing'" in line for line in lines) == 1
    assert sum("skipped 'refused'" in line for line in lines) == 1
    records = estimator_error.read_records(tmp_path / "r.jsonl")
    assert sorted((r["variant"], r["seed_set"]) for r in records) == [("ok", 1), ("ok", 2)]
    assert (tmp_path / "estimator_error_ring2d.png").is_file()
    text = (tmp_path / "r.md").read_text()
    assert "| ok |" in text and "missing" in text and "python benchmarks/estimator_error.py run" in text
    assert estimator_error.main(argv) == 0  # resumed: nothing left to compute
    assert len(estimator_error.read_records(tmp_path / "r.jsonl")) == 2
    # a corrector that refuses at run time: left out, said, the others recorded
    records, refused = estimator_error.evaluate("ring2d", "euler", 4, 1, 16, {"bad": _Refuses(),
                                                                            "ok": SteinCorrector()},
                                                {"bad": [], "ok": []}, 8)
    assert list(refused) == ["bad"] and "refuses" in refused["bad"] and [r["variant"] for r in records] == ["ok"]
    json.dumps(records)  # a record is JSON
