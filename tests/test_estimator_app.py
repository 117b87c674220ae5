"""diagnostics.estimator_correctors: the app's estimator observer reading several named Stein estimators per step
("stein_estimate[name]"), their checks, and gamma.png drawing each."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.core import EstimatorObserver, SteinCorrector
from steindiff.core.correctors import RenoisedSteinCorrector
from steindiff.core.estimator_observer import estimate_key
from steindiff.errors import ConfigError
from steindiff.plots import draws_gamma, estimate_names, trace_plot

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BASE = ["denoiser=ring2d", "solver=dpmpp_2m", "nfe=6", "num_samples=64", "batch_size=32"]
ON = "diagnostics.estimator=true"


def _sample(*overrides):
    return build_run(compose_sample_config([*BASE, *overrides]), metrics=False).sample()


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# ---- building ------------------------------------------------------------------------------------------

def test_default_is_the_single_estimate():
    cfg = compose_sample_config([*BASE, ON])
    assert cfg.diagnostics.estimator_correctors is None
    (observer,) = build_run(cfg, metrics=False).observers
    assert isinstance(observer, EstimatorObserver) and observer.correctors is None
    assert isinstance(observer.stein, SteinCorrector)


@pytest.mark.parametrize("value,names", [
    ("[stein,stein_renoised]", ["stein", "stein_renoised"]),
    ("stein_clipped", ["stein_clipped"]),
    ("{paper: stein, renoised: stein_renoised}", ["paper", "renoised"]),
])
def test_named_correctors_are_built_from_their_config_files(value, names):
    (observer,) = build_run(compose_sample_config([*BASE, ON, f"diagnostics.estimator_correctors={value}"]),
                            metrics=False).observers
    assert list(observer.correctors) == names
    for name, option in zip(names, value.strip("[]{}").split(",")):
        option = option.split(":")[-1].strip()
        built = build_run(compose_sample_config([*BASE, f"corrector={option}"]), metrics=False).corrector
        corrector = observer.correctors[name]
        assert type(corrector) is type(built)
        assert corrector.gamma_min is None and corrector.gamma_max is None  # the observer reads them unclipped
        assert {k: v for k, v in vars(corrector).items() if k not in ("gamma_min", "gamma_max")} == \
            {k: v for k, v in vars(built).items() if k not in ("gamma_min", "gamma_max")}
    if "stein_renoised" in value:
        assert isinstance(observer.correctors[names[-1]], RenoisedSteinCorrector)


def test_overrides_of_an_option_and_a_whole_config():
    value = ("{shrunk: {corrector: stein, shrinkage: true, num_probes: 3},"
             " whole: {_target_: steindiff.core.correctors.SteinCorrector, target: state}}")
    (observer,) = build_run(compose_sample_config([*BASE, ON, f"diagnostics.estimator_correctors={value}"]),
                            metrics=False).observers
    shrunk, whole = observer.correctors["shrunk"], observer.correctors["whole"]
    assert shrunk.shrinkage is True and shrunk.num_probes == 3 and shrunk.target == "data"
    assert type(whole) is SteinCorrector and whole.target == "state"


def test_naming_estimators_switches_the_observer_on_and_empty_names_keep_the_single_estimate():
    (observer,) = build_run(compose_sample_config([*BASE, "diagnostics.estimator_correctors=[stein]"]),
                            metrics=False).observers
    assert list(observer.correctors) == ["stein"]
    assert build_run(compose_sample_config([*BASE, "diagnostics.estimator_correctors=[]"]),
                     metrics=False).observers == []
    for empty in ("[]", "{}", "null"):  # today's single estimate
        (observer,) = build_run(compose_sample_config([*BASE, ON, f"diagnostics.estimator_correctors={empty}"]),
                                metrics=False).observers
        assert observer.correctors is None


@pytest.mark.parametrize("value,words", [
    ("[stein,nope]", ["no corrector option 'nope'", "accepted: stein, stein_clipped, stein_renoised"]),
    ("[constant]", ["ConstantCorrector is not a Stein estimator", "stein, stein_clipped, stein_renoised"]),
    ("[none]", ["NoCorrector is not a Stein estimator"]),
    ("[oracle]", ["OracleCorrector is not a Stein estimator", "oracle_gamma"]),
    ("[stein,stein]", ["named twice"]),
    ("{a: {shrinkage: true}}", ["names the option it overrides"]),
    ("{a: {_target_: torch.nn.Linear}}", ["torch.nn.Linear is not a Stein estimator"]),
    ("{a: {corrector: stein, num_probes: 0}}", ["diagnostics.estimator_correctors.a:"]),
    ("5", ["diagnostics.estimator_correctors=5 is not accepted"]),
])
def test_mistakes_are_one_line_config_errors(value, words):
    with pytest.raises(ConfigError) as err:
        build_run(compose_sample_config([*BASE, ON, f"diagnostics.estimator_correctors={value}"]), metrics=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("diagnostics.estimator_correctors")
    assert all(w in message for w in words), message


# ---- what the run records ------------------------------------------------------------------------------

def test_two_named_estimates_at_every_step_and_the_samples_unchanged():
    plain = _sample()
    seen = _sample(ON, "diagnostics.estimator_correctors=[stein,stein_renoised]")
    assert torch.equal(seen.samples, plain.samples) and seen.nfe == plain.nfe == 6
    keys = [estimate_key("stein"), estimate_key("stein_renoised")]
    assert len(seen.trace) == 2 * 6  # two batches of six steps
    for t in seen.trace:
        assert all(isinstance(t.get(k), float) and t[k] == t[k] for k in keys), t
        assert "oracle_gamma" in t and "stein_estimate" not in t
    assert any(t[keys[0]] != t[keys[1]] for t in seen.trace)  # two estimators, two numbers
    assert estimate_names(seen.trace) == ["stein", "stein_renoised"]


def test_named_stein_is_the_default_estimate_bit_for_bit():
    """stein.yaml's estimator (data reading, batch statistics, 5 probes, seed 0) is the observer's default one."""
    default = _sample(ON)
    named = _sample(ON, "diagnostics.estimator_correctors=[stein]")
    assert [t["stein_estimate"] for t in default.trace] == [t[estimate_key("stein")] for t in named.trace]
    assert [t["oracle_gamma"] for t in default.trace] == [t["oracle_gamma"] for t in named.trace]
    # and it is not the same number as another estimator's (the check can fail)
    other = _sample(ON, "diagnostics.estimator_target=state")
    assert [t["stein_estimate"] for t in other.trace] != [t[estimate_key("stein")] for t in named.trace]


@pytest.mark.parametrize("option,corrector", [
    ("{c: {corrector: stein, shrinkage: true}}", ["corrector=stein", "corrector.shrinkage=true"]),
    ("{c: stein_renoised}", ["corrector=stein_renoised"]),
])
def test_named_estimate_is_what_the_unclipped_corrector_reports(option, corrector):
    """On a run corrected by the same corrector without its clip: the observer's number at each step is the
    corrector's own gamma there (same states, same probes)."""
    unclip = ["corrector.gamma_min=null", "corrector.gamma_max=null"]
    run = _sample(*corrector, *unclip, ON, f"diagnostics.estimator_correctors={option}")
    assert all(t[estimate_key("c")] == pytest.approx(t["gamma"], rel=1e-9, abs=1e-12) for t in run.trace)
    assert len({round(t["gamma"], 6) for t in run.trace}) > 3  # gamma varies: the comparison means something


# ---- the plot and the app ------------------------------------------------------------------------------

def test_gamma_plot_draws_one_line_per_named_estimate():
    steps = [(80.0, 1.07, 1.1, 1.0, 1.0), (5.0, 0.2, 0.8, 1.3, 1.2), (0.1, -0.5, 0.6, 0.9, 0.95)]
    trace = [{"batch": b, "step": i, "sigma": s, "stein_estimate[paper]": e + b, "stein_estimate[renoised]": r,
              "oracle_gamma": o, **({"gamma": g} if b == 0 else {})}
             for b in (0, 1) for i, (s, e, r, o, g) in enumerate(steps)]
    fig = trace_plot(None, trace, "gamma", "run")
    legend = _legend(fig)
    named = [t for t in legend if t.startswith("Stein estimate: ")]  # each: its line (median) and band (min..max)
    assert named == [f"Stein estimate: {n} (observer), {what} over 2 batches" for n in ("paper", "renoised")
                     for what in ("median", "min..max")]
    assert "gamma (the corrector's)" in legend and any(t.startswith("oracle gamma (observer)") for t in legend)
    lines = {ln.get_label().split(",")[0]: ln for ln in fig.axes[0].get_lines()}
    paper, renoised = lines["Stein estimate: paper (observer)"], lines["Stein estimate: renoised (observer)"]
    assert paper.get_marker() != renoised.get_marker() and paper.get_color() != renoised.get_color()
    assert list(paper.get_ydata()) == pytest.approx([1.57, 0.7, 0.0], abs=1e-12)  # the median of two batches
    assert draws_gamma([{"step": 0, "sigma": 1.0, "stein_estimate[x]": 1.0}])
    assert not draws_gamma([{"step": 0, "sigma": 1.0, "lipschitz_mean": 1.0}])


def test_gamma_plot_without_named_estimates_is_unchanged():
    trace = [{"batch": 0, "step": i, "sigma": s, "stein_estimate": e, "oracle_gamma": o, "gamma": 1.0}
             for i, (s, e, o) in enumerate([(80.0, 1.07, 1.0), (5.0, 0.2, 1.3), (0.1, -0.5, 0.9)])]
    assert _legend(trace_plot(None, trace, "gamma", "run")) == [
        "gamma (the corrector's)", "Stein estimate (observer)", "oracle gamma (observer)", "gamma = 1 (no correction)"]
    assert estimate_names(trace) == []


def _app(tmp_path, monkeypatch, capsys, folder, *overrides):
    from steindiff.cli.sample import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["steindiff-sample", *BASE, "logger=[]", *overrides, f"hydra.run.dir={folder}"])
    try:
        code = main()
    except SystemExit as err:
        code = err.code
    return code, *capsys.readouterr()


def test_app_writes_the_named_estimates_and_draws_them(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    code, _, err = _app(tmp_path, monkeypatch, capsys, folder, ON,
                        "diagnostics.estimator_correctors={paper: stein, renoised: stein_renoised}")
    assert code in (0, None), err
    results = json.loads((folder / "results.json").read_text())
    assert len(results["trace"]) == 6
    assert all(estimate_key("paper") in t and estimate_key("renoised") in t for t in results["trace"])
    assert (folder / "gamma.png").is_file()  # corrector none: drawn for the observer's numbers alone
    assert "renoised" in results["observers"][0]


def test_app_refuses_an_unknown_name_in_one_line_before_writing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    code, _, err = _app(tmp_path, monkeypatch, capsys, folder, ON, "diagnostics.estimator_correctors=[stien]")
    assert code == 2 and not folder.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no corrector option 'stien'" in lines[0] and "stein_renoised" in lines[0], err
