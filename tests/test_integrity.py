"""Nothing silently wrong in a run folder (issue 14): shards carry the fingerprint of the run that made them
(config, denoiser weights, seeds, batching), resume and steindiff-verify accept no other; verify recomputes
what results.json claims; a resumed run reports the NFE of a fresh one; the per-step trace is stored as
numbers; bad input to verify is one line. The app runs in-process (main() with sys.argv) to stay fast."""

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from steindiff.cli.sample import main as sample_main
from steindiff.cli.verify import main as verify_main
from steindiff.lightning import load_samples
from steindiff.lightning.sampling import weights_hash
from steindiff.models.checkpoint import resolve_path
from steindiff.shards import SET_ASIDE_DIR, read_shard, shard_path, write_shard
from steindiff.tracecodec import decode_trace, encode_trace

BASE = ["num_samples=120", "batch_size=40", "metrics=none", "plots=false", "logger=[]"]


@pytest.fixture
def app(tmp_path, monkeypatch, capsys):
    """``app.sample(folder, *overrides)`` runs steindiff-sample in-process -> (exit code, our stderr lines);
    ``app.verify(folder)`` runs steindiff-verify -> (exit code, stdout, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEINDIFF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")

    class App:
        @staticmethod
        def sample(folder, *overrides):
            capsys.readouterr()
            monkeypatch.setattr(sys, "argv", ["steindiff-sample", *BASE, *overrides, f"hydra.run.dir={folder}"])
            try:
                code = sample_main()
            except SystemExit as err:
                code = err.code
            err = capsys.readouterr().err
            return code, [line for line in err.splitlines() if line.startswith("steindiff-sample:")]

        @staticmethod
        def verify(folder):
            capsys.readouterr()
            code = verify_main([str(folder)])
            out, err = capsys.readouterr()
            return code, out, [line for line in err.splitlines() if line.strip()]

    return App()


def results(folder):
    return json.loads((folder / "results.json").read_text())


def test_shard_of_another_config_is_refused_by_resume_and_verify(app, tmp_path):
    euler, dpm = tmp_path / "euler", tmp_path / "dpm"
    assert app.sample(euler, "solver=euler")[0] == 0
    assert app.sample(dpm, "solver=dpmpp_2m")[0] == 0
    fresh_seeds, fresh = load_samples(dpm)
    target = shard_path(dpm, list(range(40)))
    shutil.copy(shard_path(euler, list(range(40))), target)  # same seed range, another solver
    code, out, _ = app.verify(dpm)
    assert code == 1 and "NOT COMPLETE" in out
    assert "shard of another run, not counted: samples/seeds-00000000-00000039.npz" in out
    assert "80/120 seeds" in out
    code, warnings = app.sample(dpm, "solver=dpmpp_2m")  # resume: the euler shard is set aside, resampled
    assert code == 0
    assert len(warnings) == 1 and "seeds-00000000-00000039.npz was made by another run" in warnings[0]
    kept = dpm / SET_ASIDE_DIR / target.name
    assert kept.read_bytes() == shard_path(euler, list(range(40))).read_bytes()  # nothing deleted
    seeds, got = load_samples(dpm)
    assert np.array_equal(seeds, fresh_seeds) and np.array_equal(got, fresh)  # bit-identical to the fresh run
    assert results(dpm)["complete"] and results(dpm)["resumed_batches"] == 2
    assert app.verify(dpm)[0] == 0


def _perturbed_copy(source, target, delta):
    with safe_open(str(source), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + delta
    save_file(tensors, str(target), metadata=metadata)


def test_checkpoint_overwritten_between_attempts_is_detected(app, tmp_path):
    ckpt = tmp_path / "net.safetensors"
    shutil.copy(resolve_path("ring2d_mlp.safetensors"), ckpt)
    net = ["denoiser=ring2d_mlp", f"denoiser.path={ckpt}"]
    run = tmp_path / "run"
    assert app.sample(run, *net)[0] == 0
    old_weights = json.loads((run / ".steindiff" / "run.json").read_text())["fingerprint"]["weights"]
    for seeds in (range(40, 80), range(80, 120)):  # an attempt interrupted after its first batch
        shard_path(run, list(seeds)).unlink()
    (run / "results.json").unlink()
    _perturbed_copy(ckpt, ckpt, 1e-2)  # the checkpoint overwritten at the same path
    code, out, _ = app.verify(run)
    assert code == 1 and "40/120 seeds" in out  # the old shard still matches the old record: not yet stale
    code, warnings = app.sample(run, *net)
    assert code == 0 and len(warnings) == 1 and "made by another run" in warnings[0]
    record = json.loads((run / ".steindiff" / "run.json").read_text())
    assert record["fingerprint"]["weights"] != old_weights
    assert (run / SET_ASIDE_DIR / "seeds-00000000-00000039.npz").exists()
    fresh = tmp_path / "fresh"
    assert app.sample(fresh, *net)[0] == 0  # one model's samples only: those of a fresh run on the new weights
    assert np.array_equal(load_samples(run)[1], load_samples(fresh)[1])
    assert app.verify(run)[0] == 0


def test_a_fully_resumed_run_reports_the_nfe_and_trace_of_a_fresh_one(app, tmp_path):
    overrides = ["nfe=9", "schedule.final_step=denoise", "corrector=stein", "metrics=mixture"]
    run = tmp_path / "run"
    assert app.sample(run, *overrides)[0] == 0
    fresh = results(run)
    assert fresh["nfe"] == fresh["expected_nfe"] == 9  # 8 steps' calls and the final denoising call
    assert fresh["trace"][-1]["nfe"] == 8  # the trace counts calls up to the last step only
    (run / "results.json").unlink()
    assert app.sample(run, *overrides)[0] == 0  # every batch read from disk
    resumed = results(run)
    assert resumed["resumed_batches"] == 3 and resumed["nfe"] == 9
    assert resumed["trace"] == fresh["trace"] and all("gamma" in t for t in fresh["trace"])
    assert resumed["metrics"] == fresh["metrics"] and resumed["checksum"] == fresh["checksum"]
    assert read_shard(shard_path(run, list(range(40)))).nfe == 9
    assert app.verify(run)[0] == 0


@pytest.mark.parametrize("edit", ["metric", "nfe", "num_samples", "trace"])
def test_results_edited_by_hand_fail_verify(app, tmp_path, edit):
    run = tmp_path / "run"
    assert app.sample(run, "num_samples=80", "metrics=mixture", "diagnostics.lipschitz=true",
                      "diagnostics.lipschitz_iters=1")[0] == 0
    assert app.verify(run)[0] == 0
    data = results(run)
    if edit == "metric":
        name = sorted(data["metrics"])[0]
        data["metrics"][name] *= 0.5
    elif edit == "nfe":
        data["nfe"] = data["expected_nfe"] = 4
    elif edit == "num_samples":
        data["num_samples"] = 800
    else:
        data["trace"][0]["lipschitz_mean"] = 0.0
    (run / "results.json").write_text(json.dumps(data))
    code, out, _ = app.verify(run)
    assert code == 1 and "NOT COMPLETE" in out
    expected = {"metric": "does not match its checksum", "nfe": "says nfe 4, the shards give 8",
                "num_samples": "says num_samples 800, the shards give 80", "trace": "per-step trace differs"}[edit]
    assert expected in out


def test_unknown_files_in_samples_are_reported_then_set_aside(app, tmp_path):
    run = tmp_path / "run"
    assert app.sample(run)[0] == 0
    (run / "samples" / "seeds-junk.npz").write_bytes(b"junk")
    write_shard(run, list(range(20)), np.zeros((20, 2), dtype=np.float32), nfe=8)  # another batching
    code, out, _ = app.verify(run)
    assert code == 1 and "unknown files 2" in out and "120/120 seeds" in out  # reported, never counted
    assert "unknown file in samples/, not counted: seeds-junk.npz" in out
    (run / "results.json").unlink()
    code, warnings = app.sample(run)
    assert code == 0 and len(warnings) == 2 and all("none of this run's batches" in w for w in warnings)
    assert sorted(p.name for p in (run / SET_ASIDE_DIR).iterdir()) == ["seeds-00000000-00000019.npz",
                                                                        "seeds-junk.npz"]
    assert results(run)["complete"] and app.verify(run)[0] == 0


def test_trace_is_stored_as_numbers_and_comes_back_exactly(tmp_path):
    rows = [{"batch": 2**62 + 7, "step": i, "sigma": 80.0 / (i + 1), "sigma_next": 80.0 / (i + 2), "nfe": 2 * i + 2,
             "gamma": [float("nan"), -0.0, 1.5][i % 3]} for i in range(2000)]
    rows[5]["nonfinite"] = 1
    back = decode_trace(encode_trace(rows))
    assert json.dumps(back) == json.dumps(rows)  # bit for bit (NaN, -0.0, ints beyond 2**53), the same types
    assert [type(v) for v in back[5].values()] == [type(v) for v in rows[5].values()]
    assert decode_trace(encode_trace([{"step": 0, "flag": True}])) == [{"step": 0, "flag": True}]  # JSON fallback
    assert decode_trace(encode_trace([])) == []
    path = write_shard(tmp_path, [0, 1], np.zeros((2, 2), dtype=np.float32), rows, nfe=4000)
    as_json = len(np.asarray(json.dumps(rows)).tobytes())  # what the JSON trace of the shards took before
    assert path.stat().st_size < 3 * 8 * 2000 + 6000 < as_json / 20  # 3 float64 columns, names, zip headers
    assert json.dumps(read_shard(path).trace) == json.dumps(rows)


def test_a_long_run_writes_shards_proportional_to_its_columns(app, tmp_path):
    run = tmp_path / "run"
    assert app.sample(run, "num_samples=2", "batch_size=2", "steps=1000")[0] == 0
    shard = shard_path(run, [0, 1])
    assert shard.stat().st_size < 24_000  # sigma and sigma_next: 16 bytes a step; JSON took 1.2 MB
    assert len(results(run)["trace"]) == 1000 and app.verify(run)[0] == 0


@pytest.mark.parametrize("case", ["list", "truncated_record", "file", "missing", "record_list"])
def test_verify_bad_input_is_one_line_exit_2(app, tmp_path, case):
    run = tmp_path / "run"
    if case in ("list", "truncated_record", "record_list"):
        (run / ".steindiff").mkdir(parents=True)
        (run / ".steindiff" / "run.json").write_text(json.dumps({"config": {"batch_size": 4}, "seeds": [0, 1]}))
    if case == "list":
        (run / "results.json").write_text("[1, 2]")
    elif case == "truncated_record":
        text = (run / ".steindiff" / "run.json").read_text()
        (run / ".steindiff" / "run.json").write_text(text[: len(text) // 2])
    elif case == "record_list":
        (run / ".steindiff" / "run.json").write_text("[]")
    elif case == "file":
        run.write_text("not a folder")
    code, out, err = app.verify(run)
    assert code == 2 and out == "" and len(err) == 1 and err[0].startswith("steindiff-verify: error: "), err
    expected = {"list": "holds a JSON list, expected an object", "truncated_record": "is not valid JSON",
                "file": "is a file, not a steindiff run folder", "missing": "does not exist",
                "record_list": "is not one steindiff-sample writes"}[case]
    assert expected in err[0]


def test_weights_hash_sees_every_tensor():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    before = weights_hash(net)
    assert before == weights_hash(net) and len(before) == 64
    with torch.no_grad():
        net[1].running_mean[0] += 1e-7  # a buffer, not a parameter
    assert weights_hash(net) != before
    assert weights_hash(object()) == ""
