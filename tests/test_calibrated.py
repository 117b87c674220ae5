"""Issue 16: a calibrated coefficient schedule (steindiff.calibrate, steindiff-calibrate, corrector=calibrated).

The file round-trips; an all-ones schedule is bit-identical to no correction; a schedule is applied exactly as
ConstantCorrector applies the same list; applied to its own calibration seeds it reproduces the trajectory
oracle's run; a run on another grid or solver is refused in one line naming both; the CLI's mistakes are one line
and exit 2. Everything on the exact ring2d mixture or small runs."""

import json
import math

import pytest
import torch

from steindiff.build import build_run, compose_sample_config
from steindiff.calibrate import calibrate, pooled_gamma
from steindiff.cli import calibrate as cli
from steindiff.core import ConstantCorrector, NoCorrector, Schedule, make_solver, mixture_preset, sample
from steindiff.core.correctors.calibrated import (
    CALIBRATION_DIR,
    CalibratedCorrector,
    CalibrationFileError,
    read_schedule,
    solver_identity,
    write_schedule,
)
from steindiff.core.correctors.oracle import OracleCorrector
from steindiff.errors import ConfigError

RING = ["denoiser=ring2d", "solver=euler", "nfe=5"]
FIELDS = ("gamma", "gamma_se", "gamma_quartiles", "sigmas", "final_step", "target", "solver", "schedule", "nfe",
          "denoiser", "seeds", "num_seeds", "seconds", "steindiff_version", "command", "oracle",
          "last_step_oracle_gamma")


@pytest.fixture(scope="module")
def ring_record():
    """The calibration of exact ring2d, Euler, NFE 5, on seeds 0-127 (one batch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return calibrate(RING, seeds="0-127", command="steindiff-calibrate test")
    finally:
        torch.set_num_threads(threads)  # a module fixture: leave the other modules' thread count alone


def _file(tmp_path, record, name="cal.json", **changes):
    return str(write_schedule(tmp_path / name, {**record, **changes}))


def _ring_run(corrector, solver="euler", steps=5, seeds=range(64)):
    grid = Schedule("edm").grid(steps)
    return sample(mixture_preset("ring2d"), grid, make_solver(solver), corrector, seeds=list(seeds), shape=(2,))


def test_calibration_on_exact_ring_writes_finite_gammas_and_every_field(ring_record, tmp_path):
    record = ring_record
    for key in FIELDS:
        assert key in record, key
    assert len(record["gamma"]) == 5 and len(record["sigmas"]) == 6
    assert all(math.isfinite(g) for g in record["gamma"])
    assert record["gamma"][-1] == 1.0 and record["oracle"]["correct_last"] is False  # last step: the solver's
    assert abs(record["last_step_oracle_gamma"]) > 10  # what the oracle would apply there: huge (module docstring)
    assert record["solver"] == {"name": "euler", "repr": "EulerSolver()"}
    assert record["num_seeds"] == 128 and record["seeds"] == "0-127" and record["nfe"] == 5
    assert record["sigmas"] == Schedule("edm").grid(5).tolist()
    assert all(se is not None and se >= 0 for se in record["gamma_se"][:-1])
    assert record["command"] == "steindiff-calibrate test" and record["steindiff_version"]
    assert record["denoiser"]["target"] == "steindiff.core.mixture.mixture_preset"
    # steps far from the data (sigma 80 -> 24): the ODE is nearly linear, the Euler step nearly exact: gamma ~ 1
    assert abs(record["gamma"][0] - 1) < 0.01


def test_schedule_applied_to_its_seeds_reproduces_the_oracle_run(ring_record, tmp_path):
    """One batch of all calibration seeds: the batch gamma the oracle applied is the pooled gamma recorded, so the
    file applied to the same seeds retraces the calibration run."""
    path = _file(tmp_path, ring_record)
    oracle = OracleCorrector(reference="trajectory", correct_last=False)
    by_oracle = _ring_run(oracle, seeds=range(128))
    by_file = _ring_run(CalibratedCorrector(path), seeds=range(128))
    applied = [t["gamma"] for t in by_oracle.trace]
    assert applied[:-1] == pytest.approx(ring_record["gamma"][:-1], rel=1e-9)
    torch.testing.assert_close(by_file.samples, by_oracle.samples, rtol=1e-5, atol=1e-5)


def test_schedule_file_round_trips(ring_record, tmp_path):
    path = _file(tmp_path, ring_record)
    back = read_schedule(path)
    for key in FIELDS:
        assert back[key] == json.loads(json.dumps(ring_record[key])), key
    assert back["gamma"] == ring_record["gamma"]  # exactly: the floats are written in full
    write_schedule(tmp_path / "again.json", back)
    assert read_schedule(tmp_path / "again.json")["gamma"] == back["gamma"]


def test_all_ones_schedule_is_bit_identical_to_no_correction(ring_record, tmp_path):
    path = _file(tmp_path, ring_record, gamma=[1.0] * 5)
    for solver in ("euler",):
        plain = _ring_run(NoCorrector(), solver)
        ones = _ring_run(CalibratedCorrector(path), solver)
        assert torch.equal(plain.samples, ones.samples)
        assert plain.nfe == ones.nfe


def test_all_ones_schedule_through_the_app_equals_corrector_none(tmp_path):
    """The app's path (config, build_run) for a learned-free multistep run: dpmpp_2m, ring2d, NFE 6."""
    overrides = ["denoiser=ring2d", "solver=dpmpp_2m", "nfe=6", "num_samples=64"]
    record = calibrate(overrides, seeds="0-31")
    path = _file(tmp_path, record, gamma=[1.0] * len(record["gamma"]))
    plain = build_run(compose_sample_config([*overrides, "corrector=none"])).sample()
    ones = build_run(compose_sample_config([*overrides, "corrector=calibrated", f"corrector.path={path}"])).sample()
    assert torch.equal(plain.samples, ones.samples)


def test_calibrated_run_equals_constant_corrector_with_the_same_list(ring_record, tmp_path):
    gammas = [0.97, 1.1, 0.8, 1.3, 0.9]  # all steps differ from 1: every one is applied
    path = _file(tmp_path, ring_record, gamma=gammas)
    constant = _ring_run(ConstantCorrector(gamma=gammas))
    calibrated = _ring_run(CalibratedCorrector(path))
    assert torch.equal(constant.samples, calibrated.samples)
    assert not torch.equal(constant.samples, _ring_run(NoCorrector()).samples)
    assert [t["gamma"] for t in calibrated.trace] == gammas


def _one_line_naming(err, *names):
    text = str(err)
    assert "\n" not in text
    for name in names:
        assert name in text, (name, text)


def test_other_grid_length_or_solver_refused_in_one_line_naming_both(ring_record, tmp_path):
    path = _file(tmp_path, ring_record)
    base = ["denoiser=ring2d", "corrector=calibrated", f"corrector.path={path}"]
    with pytest.raises(ConfigError) as err:  # 6 steps against the file's 5
        build_run(compose_sample_config([*base, "solver=euler", "nfe=6"]))
    _one_line_naming(err.value, "5 steps", "6 steps", "[80, ")
    with pytest.raises(ConfigError) as err:  # heun NFE 9 = 5 steps: the grid fits, the solver does not
        build_run(compose_sample_config([*base, "solver=heun", "nfe=9"]))
    _one_line_naming(err.value, "EulerSolver()", "HeunSolver()")
    assert build_run(compose_sample_config([*base, "solver=euler", "nfe=5"])).corrector.gammas == ring_record["gamma"]


def test_other_grid_values_refused_in_one_line_naming_both(ring_record, tmp_path):
    path = _file(tmp_path, ring_record)
    corrector = CalibratedCorrector(path)
    other = Schedule("edm", rho=5.0).grid(5)  # same length and ends, other interior values
    with pytest.raises(ValueError) as err:
        corrector.check_run(other, make_solver("euler"))
    _one_line_naming(err.value, f"{ring_record['sigmas'][1]:.6g}", f"{float(other.sigmas[1]):.6g}")
    with pytest.raises(ValueError) as err:  # and at sampling time, for a caller that did not check
        sample(mixture_preset("ring2d"), other, make_solver("euler"), corrector, seeds=range(4), shape=(2,))
    _one_line_naming(err.value, f"{ring_record['sigmas'][1]:.6g}", f"{float(other.sigmas[1]):.6g}")
    nearly = [s * (1 + 1e-8) for s in ring_record["sigmas"]]  # within 1e-6 relative: accepted
    corrector.check_grid(nearly, "zero")
    with pytest.raises(ValueError):
        corrector.check_grid([s * (1 + 1e-5) for s in ring_record["sigmas"]], "zero")


def test_bad_files_refused_in_one_line(ring_record, tmp_path):
    with pytest.raises(CalibrationFileError, match="not found"):
        CalibratedCorrector(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(CalibrationFileError, match="not a readable"):
        CalibratedCorrector(tmp_path / "text.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(CalibrationFileError, match="not a calibration file"):
        CalibratedCorrector(tmp_path / "other.json")
    bad = _file(tmp_path, ring_record, "short.json", sigmas=ring_record["sigmas"][:-1])
    with pytest.raises(CalibrationFileError, match="sigmas has 5 values, expected 6"):
        CalibratedCorrector(bad)
    nan = _file(tmp_path, ring_record, "nan.json", gamma=[1.0, float("nan"), 1.0, 1.0, 1.0])
    with pytest.raises(CalibrationFileError, match="finite"):
        CalibratedCorrector(nan)


def test_app_refuses_a_missing_file_in_one_line(tmp_path):
    with pytest.raises(ValueError) as err:
        build_run(compose_sample_config([*RING, "corrector=calibrated", f"corrector.path={tmp_path / 'x.json'}"]))
    _one_line_naming(err.value, "x.json", "not found")


def test_pooled_gamma_is_the_ratio_of_sums_with_its_delta_method_error():
    num = torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64)
    den = torch.tensor([1.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    gamma, se, quartiles = pooled_gamma(num, den)
    assert gamma == pytest.approx(11 / 8)
    resid = num - gamma * den
    assert se == pytest.approx(math.sqrt(float(resid.pow(2).sum()) * 4 / 3) / 8)
    assert quartiles == pytest.approx([1.1875, 1.375, 1.625])  # of the per-row ratios 1, 2, 1.5, 1.25
    assert pooled_gamma(num, torch.zeros(4, dtype=torch.float64))[0] == 1.0  # degenerate: the oracle's fallback


def test_calibrating_a_corrected_run_is_refused():
    with pytest.raises(ConfigError, match="corrector=stein is not accepted"):
        calibrate([*RING, "corrector=stein"], seeds="0-15")
    with pytest.raises(ConfigError, match="at least 2"):
        calibrate(RING, seeds="3")


# ---- the command line ----------------------------------------------------------------------------
def _cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize("argv, words", [
    ((*RING,), "--out FILE is required"),
    ((*RING, "--out", "{tmp}"), "is a folder"),
    ((*RING, "--out", "{tmp}/no/such/x.json"), "does not exist"),
    ((*RING, "corrector=stein", "--out", "{tmp}/x.json"), "corrector=stein is not accepted"),
    (("denoiser=ring2d", "solver=eulr", "--out", "{tmp}/x.json"), "Could not find 'solver/eulr'"),
    ((*RING, "nfe=0", "--out", "{tmp}/x.json"), "nfe=0 is not accepted"),
    ((*RING, "--seeds", "9-1", "--out", "{tmp}/x.json"), "runs backwards"),
    ((*RING, "--substeps", "0", "--out", "{tmp}/x.json"), "--substeps 0 is not accepted"),
    (("-m", *RING, "--out", "{tmp}/x.json"), "-m (a sweep) is not accepted"),
    ((*RING, "--bogus", "--out", "{tmp}/x.json"), "unrecognized arguments: --bogus"),
    ((*RING, "batch_size=0", "--out", "{tmp}/x.json"), "batch_size"),
])
def test_cli_mistakes_are_one_line_and_exit_2(capsys, tmp_path, argv, words):
    code, err, _ = _cli(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("steindiff-calibrate: error: ") and words in err[0], err
    assert not (tmp_path / "x.json").exists()


def test_cli_refuses_an_unwritable_folder(capsys, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    code, err, _ = _cli(capsys, *RING, "--out", str(tmp_path / "afile" / "x.json"))
    assert code == 2 and len(err) == 1 and "which is a file" in err[0], err
    folder = tmp_path / "ro"
    folder.mkdir()
    writable = cli.os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if str(p) == str(folder) else writable(p, mode))
    code, err, _ = _cli(capsys, *RING, "--out", str(folder / "x.json"))  # root writes anywhere: access says no
    assert code == 2 and len(err) == 1 and "not writable" in err[0], err


def test_cli_writes_the_file_a_run_loads_and_refuses_to_overwrite_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err, out = _cli(capsys, *RING, "--seeds", "0-31", "--out", "ring.json", "--no-progress")
    assert code == 0, err
    assert "wrote ring.json" in out and "corrector.path=ring.json" in out
    record = read_schedule("ring.json")
    assert record["command"].startswith("steindiff-calibrate denoiser=ring2d solver=euler nfe=5 --seeds 0-31")
    assert record["num_seeds"] == 32 and record["solver"]["name"] == "euler"
    run = build_run(compose_sample_config([*RING, "corrector=calibrated", "corrector.path=ring.json"]))
    assert run.corrector.gammas == record["gamma"]  # a relative path from the working directory
    code, err, _ = _cli(capsys, *RING, "--seeds", "0-31", "--out", "ring.json")
    assert code == 2 and "exists" in err[0] and "--force" in err[0]
    code, _, _ = _cli(capsys, *RING, "--seeds", "0-31", "--out", "ring.json", "--force", "--no-progress")
    assert code == 0


def test_cli_notes_calibration_seeds_inside_the_evaluation_sets(capsys, tmp_path):
    code, err, _ = _cli(capsys, *RING, "num_samples=10", "--seeds", "0-31", "--out", str(tmp_path / "x.json"),
                        "--no-progress")
    assert code == 0 and any("evaluation seed sets 1-3" in line and "seeds 10-39" in line for line in err), err


# ---- the committed schedules ---------------------------------------------------------------------
COMMITTED = sorted(CALIBRATION_DIR.glob("*.json")) if CALIBRATION_DIR.is_dir() else []


@pytest.mark.skipif(not COMMITTED, reason="no committed calibration files")
def test_committed_schedules_fit_the_grid_and_solver_the_app_builds():
    """Each committed file (named <denoiser>-<solver>-<schedule>-nfe<N>.json) is found by its name and fits the
    grid and solver the app builds for that cell today (a change of schedule or solver code would refuse it)."""
    experiments = {"digits_unet": "experiment=digits"}
    for path in COMMITTED:
        denoiser, solver, schedule, nfe = path.stem.split("-")
        record = read_schedule(path.name)
        assert record["path"] == str(path)
        overrides = [experiments[denoiser], f"solver={solver}", f"schedule={schedule}", f"{nfe[:3]}={nfe[3:]}"]
        run = build_run(compose_sample_config([*overrides, "corrector=calibrated", f"corrector.path={path.name}"]),
                        metrics=False)
        run.corrector.check_run(run.grid, run.solver)
        assert run.corrector.solver == solver_identity(run.solver)
        assert record["denoiser"]["checkpoint"] and record["num_seeds"] >= 256 and record["command"]
        assert path.stat().st_size < 8000
