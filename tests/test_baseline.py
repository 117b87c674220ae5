"""baseline=true: the same seeds sampled uncorrected beside a corrected run (steindiff.cli.baseline)."""

import json
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from steindiff.build import compose_sample_config
from steindiff.cli.baseline import baseline_config, check_baseline, compare_with_baseline, is_corrected
from steindiff.cli.sample import main as sample_main
from steindiff.errors import ConfigError
from steindiff.shards import load_samples

BASE = ["num_samples=200", "batch_size=100", "plots=false", "logger=[]", "nfe=6"]


def _sample(tmp_path, monkeypatch, capsys, folder, *overrides):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["steindiff-sample", *BASE, *overrides, f"hydra.run.dir={folder}"])
    try:
        code = sample_main()
    except SystemExit as err:
        code = err.code
    out, err = capsys.readouterr()
    return code, out, err


def test_baseline_run_equals_a_corrector_none_run_and_prints_both(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "corrected"
    code, out, _ = _sample(tmp_path, monkeypatch, capsys, folder, "corrector=constant", "corrector.gamma=0.9",
                           "baseline=true")
    assert code in (0, None)
    plain = tmp_path / "plain"
    assert _sample(tmp_path, monkeypatch, capsys, plain, "corrector=none")[0] in (0, None)
    seeds_b, samples_b = load_samples(folder / "baseline")
    seeds_p, samples_p = load_samples(plain)
    np.testing.assert_array_equal(seeds_b, seeds_p)
    np.testing.assert_array_equal(samples_b, samples_p)  # the baseline is exactly corrector=none on the same seeds
    _, samples_c = load_samples(folder)
    assert not np.array_equal(samples_c, samples_p)  # and the corrected run is not
    comparison = json.loads((folder / "comparison.json").read_text())
    corrected = json.loads((folder / "results.json").read_text())["metrics"]
    uncorrected = json.loads((folder / "baseline" / "results.json").read_text())["metrics"]
    assert uncorrected == json.loads((plain / "results.json").read_text())["metrics"]
    ed = comparison["metrics"]["energy_distance"]
    assert ed["corrected"] == corrected["energy_distance"] and ed["uncorrected"] == uncorrected["energy_distance"]
    line = [row for row in out.splitlines() if row.startswith("corrected vs uncorrected")]
    assert len(line) == 1 and f"energy_distance {ed['corrected']:.4g} vs {ed['uncorrected']:.4g}" in line[0]


def test_baseline_of_an_uncorrected_run_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    code, out, err = _sample(tmp_path, monkeypatch, capsys, folder, "baseline=true")
    assert code in (0, None)
    assert not (folder / "baseline").exists() and not (folder / "comparison.json").exists()
    assert "uncorrected already" in err


def test_baseline_config_is_the_uncorrected_twin():
    cfg = compose_sample_config(["corrector=stein", "epsilon_scaling=1.05", "baseline=true"])
    twin = baseline_config(cfg)
    assert is_corrected(cfg) and not is_corrected(twin)
    assert twin.corrector._target_.endswith("NoCorrector") and twin.epsilon_scaling is None and not twin.baseline
    for key in ("denoiser", "solver", "schedule", "metrics", "nfe", "num_samples", "seed_set", "batch_size"):
        same = (OmegaConf.to_container(twin[key]) == OmegaConf.to_container(cfg[key]) if OmegaConf.is_config(cfg[key])
                else twin[key] == cfg[key])
        assert same, key
    assert baseline_config(compose_sample_config(["corrector=stein"])) is None  # baseline off


def test_epsilon_scaling_alone_counts_as_corrected():
    assert is_corrected(compose_sample_config(["epsilon_scaling=1.05"]))
    assert not is_corrected(compose_sample_config(["epsilon_scaling=1"]))


def test_baseline_under_ddp_is_refused_in_one_line():
    cfg = compose_sample_config(["corrector=stein", "baseline=true"])
    with pytest.raises(ConfigError, match="one process") as err:
        check_baseline(cfg, 2)
    assert "\n" not in str(err.value)
    check_baseline(cfg, 1)


def test_comparison_reports_relative_change(tmp_path, capsys):
    comparison = compare_with_baseline({"setting": "a", "nfe": 6, "metrics": {"fid": 30.0, "kid": 0.0}},
                                       {"setting": "b", "nfe": 6, "metrics": {"fid": 40.0, "kid": 0.0}}, tmp_path)
    assert comparison["metrics"]["fid"]["relative_change"] == pytest.approx(-0.25)
    assert comparison["metrics"]["kid"]["relative_change"] is None  # no relative change from 0
    assert "fid 30 vs 40 (-25%)" in capsys.readouterr().out
