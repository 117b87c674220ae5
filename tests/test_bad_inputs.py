"""The bad-input suite (issue 14): every mistake a user can make through steindiff-sample's command line ends in one
line on stderr, exit code 2, and nothing written (Hydra never starts: the app's checks run before it creates the run
folder), or, for a folder damaged or in use, the damage is refused in one line or repaired on resume.

Each case runs the app's ``main()`` in-process (a subprocess costs 5-10 s of imports); the ``cli`` fixture makes
Hydra starting a failure for the cases that must stop before it. Kill trials and resume repairs are in
test_resume.py; missing values and added keys in test_user_errors.py.
"""

import errno
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import steindiff.cli.app as app
from steindiff.build import compose_sample_config
from steindiff.config import count_seeds
from steindiff.errors import filesystem_message
from steindiff.runfolder import RunFolderError, claim_run_folder, lock_holder, lock_run_folder

PROG = "steindiff-sample"
SMALL = ["num_samples=4", "batch_size=4", "plots=false", "solver=euler", "nfe=2"]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``cli.run(*argv, hydra=False)``: steindiff-sample's main() in a fresh working folder; with hydra=False,
    Hydra starting is a failure (the mistake must be caught before anything is written)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("STEINDIFF_RUNS_DIR", str(work / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv(app.OVERWRITE_TRACKED_ENV, raising=False)
    monkeypatch.delenv(app.CONF_ENV, raising=False)
    real_hydra = app._run_hydra

    class Cli:
        folder = work

        @staticmethod
        def run(*argv: str, hydra: bool = False) -> int:
            def hydra_started(*args, **kwargs):
                raise AssertionError("Hydra started: the mistake was not caught before the run")

            monkeypatch.setattr(app, "_run_hydra", real_hydra if hydra else hydra_started)
            monkeypatch.setattr(sys, "argv", [PROG, *argv])
            from steindiff.cli.sample import main

            try:
                return main()
            except SystemExit as err:  # the Hydra task's sys.exit(code)
                return err.code

        @staticmethod
        def files() -> list[str]:
            return sorted(str(p.relative_to(work)) for p in work.rglob("*"))

    return Cli()


def one_error_line(capsys) -> str:
    """The single non-empty stderr line, which must be ``steindiff-sample: error: ...`` without a traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# ---- config values: refused before Hydra starts, nothing written ----------------------------------------------
CONFIG_CASES = [
    # (id, argv, a fragment of the one line)
    ("nfe-zero", ["nfe=0"], "nfe=0 is not accepted: expected an integer >= 1"),
    ("nfe-negative", ["nfe=-3"], "nfe=-3 is not accepted"),
    ("nfe-text", ["nfe=abc"], "nfe=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("nfe-float", ["nfe=2.5"], "nfe=2.5: Value '2.5' of type 'float' could not be"),
    ("nfe-huge", ["nfe=1000000", "num_samples=2"], "nfe=1000000 is not accepted: more than limits.max_nfe=10000"),
    ("nfe-just-over", ["nfe=10001"], "give limits.max_nfe=10001 to run it"),
    ("steps-zero", ["steps=0"], "steps=0 is not accepted"),
    ("steps-huge", ["steps=20000"], "steps=20000 is not accepted: more than limits.max_nfe=10000"),
    ("nfe-and-steps-null", ["nfe=null"], "give either nfe (an NFE budget) or steps"),
    ("max-nfe-zero", ["limits.max_nfe=0"], "limits.max_nfe=0 is not accepted"),
    ("max-samples-zero", ["limits.max_samples=0"], "limits.max_samples=0 is not accepted"),
    ("num-samples-zero", ["num_samples=0"], "num_samples=0 is not accepted"),
    ("num-samples-negative", ["num_samples=-1"], "num_samples=-1 is not accepted"),
    ("num-samples-float", ["num_samples=1.5"], "num_samples=1.5: Value '1.5'"),
    ("num-samples-huge", ["num_samples=1000000000"],
     "num_samples=1000000000 is not accepted: 1000000000 samples, more than limits.max_samples=1000000"),
    ("num-samples-over-limit", ["num_samples=200", "limits.max_samples=100"], "give limits.max_samples=200"),
    ("seed-set-negative", ["seed_set=-1"], "seed_set=-1 is not accepted"),
    ("seed-set-beyond-int64", ["seed_set=9223372036854775807"], "beyond the largest seed 2**63 - 1"),
    ("seeds-huge-range", ["seeds=0-999999999"], "seeds=0-999999999 is not accepted: 1000000000 samples"),
    ("seeds-beyond-int64", ["seeds=9223372036854775808"], "seed 9223372036854775808 is beyond the largest seed"),
    ("seeds-range-beyond-int64", ["seeds=0-9223372036854775808"], "is beyond the largest seed 2**63 - 1"),
    ("seeds-text", ["seeds=abc"], "malformed seed range 'abc'"),
    ("seeds-backwards", ["seeds=5-2"], "runs backwards"),
    ("seeds-repeated", ["seeds='1,1'"], "seeds must be distinct"),
    ("seeds-negative", ["seeds='-1'"], "malformed seed range"),
    ("seeds-empty-part", ["seeds='0-3,'"], "malformed seed range"),
    ("batch-size-zero", ["batch_size=0"], "batch_size=0 is not accepted"),
    ("batch-size-negative", ["batch_size=-5"], "batch_size=-5 is not accepted"),
    ("batch-size-text", ["batch_size=abc"], "batch_size=abc: Value 'abc'"),
    ("num-threads-zero", ["num_threads=0"], "num_threads=0 is not accepted"),
    ("dtype-float16", ["dtype=float16"], "dtype='float16' is not accepted: expected float32, float64"),
    ("dtype-unknown", ["dtype=banana"], "dtype='banana' is not accepted"),
    ("process-unknown", ["process=banana"], "process='banana' is not accepted: expected one of"),
    ("shape-negative", ["shape=[-1]"], "shape=[-1] is not accepted: expected positive sizes"),
    ("shape-zero", ["shape=[0]"], "shape=[0] is not accepted"),
    ("shape-empty", ["shape=[]"], "shape=[] is not accepted"),
    ("shape-3-for-2d", ["shape=[3]"], "shape=[3] does not fit the denoiser, which declares [2]"),
    ("shape-image-for-2d", ["shape=[1,8,8]"], "does not fit the denoiser, which declares [2]"),
    ("shape-text", ["shape=abc"], "shape=abc: Invalid value assigned: str is not a ListConfig"),
    ("lipschitz-iters-negative", ["diagnostics.lipschitz_iters=-1"],
     "diagnostics.lipschitz_iters=-1 is not accepted: expected an integer >= 1"),
    ("lipschitz-iters-zero", ["diagnostics.lipschitz=true", "diagnostics.lipschitz_iters=0"],
     "diagnostics.lipschitz_iters=0"),
    ("plots-not-bool", ["plots=maybe"], "plots=maybe: Value 'maybe' is not a valid bool"),
    ("devices-text", ["trainer.devices=abc"], "trainer.devices='abc' is not accepted"),
    ("devices-zero", ["trainer.devices=0"], "trainer.devices=0 is not accepted"),
    ("devices-minus-one-cpu", ["trainer.devices=-1"], "trainer.devices=-1 is not accepted with trainer.accelerator"),
    ("devices-list-cpu", ["trainer.devices=[0,1]"], "expected a number of processes >= 1 or auto"),
    ("ddp-devices-text", ["trainer=ddp", "trainer.devices=abc"], "trainer.devices='abc' is not accepted"),
    ("logger-null", ["logger=null"], "a config group takes an option name, not null (no logger: 'logger=[]'"),
    ("ddp-rank-without-a-batch", ["trainer=ddp", "trainer.devices=2", "num_samples=100"],
     "2 DDP ranks but 1 batch of seeds (num_samples=100, batch_size=500): every rank needs one; give batch_size=50"),
    ("num-nodes-zero", ["+trainer.num_nodes=0"], "trainer.num_nodes=0 is not accepted"),
    ("accelerator-unknown", ["trainer.accelerator=tpu"], "trainer.accelerator='tpu' is not accepted"),
    ("group-splits-batch", ["corrector=stein", "corrector.statistics=group", "batch_size=7"],
     "batch_size=7 is not accepted with corrector.statistics=group: it splits groups of corrector.group_size=50"),
    ("group-splits-batch-small", ["corrector=stein", "corrector.statistics=group", "corrector.group_size=4",
                                  "batch_size=6"], "give a multiple of 4, e.g. batch_size=4"),
    ("corrector-statistics-unknown", ["corrector=stein", "corrector.statistics=banana"],
     "corrector: unknown statistics 'banana'; accepted: batch, sample, group"),
    ("corrector-unknown", ["corrector=banana"], "Could not find 'corrector/banana' Available options"),
    ("solver-unknown", ["solver=banana"], "Could not find 'solver/banana'"),
    ("schedule-unknown", ["schedule=banana"], "Could not find 'schedule/banana'"),
    ("denoiser-unknown", ["denoiser=banana"], "Could not find 'denoiser/banana'"),
    ("experiment-unknown", ["experiment=banana"], "Could not find 'experiment/banana'"),
    ("metrics-unknown", ["metrics=banana"], "Could not find 'metrics/banana'"),
    ("key-unknown", ["foo=1"], "Could not override 'foo'. To append to your config use +foo=1"),
    ("key-added", ["+foo=1"], "+foo=1 is not accepted"),
    ("key-added-typo", ["+seed=42"], "(did you mean seeds=42?)"),
    ("nested-key-unknown", ["diagnostics.foo=1"], "Key 'foo' not in 'DiagnosticsConfig'"),
    ("schedule-sigma-min-negative", ["schedule.sigma_min=-1"], "schedule: need 0 < sigma_min < sigma_max"),
    ("schedule-sigma-min-above-max", ["schedule.sigma_min=100", "schedule.sigma_max=1"],
     "got sigma_min=100, sigma_max=1"),
    ("digits-fid-one-sample", ["denoiser=digits_unet", "metrics=digits_fid", "num_samples=1", "batch_size=1"],
     "num_samples=1 is too few for metrics image_metrics"),
    ("sweep-one-bad-value", ["-m", "nfe=4,0"], "nfe=0 is not accepted"),
    ("sweep-one-bad-seed-range", ["-m", "seeds=0-3,0-999999999"], "seeds=0-999999999 is not accepted"),
    ("edm-pickle-not-trusted", ["denoiser=edm_pickle", "denoiser.path=nowhere.pkl"], "opt in with allow_pickle=True"),
    ("edm-pickle-missing", ["denoiser=edm_pickle", "denoiser.path=nowhere.pkl", "denoiser.allow_pickle=true"],
     "nowhere.pkl"),
]


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_value_is_one_line_before_anything_is_written(cli, capsys, argv, fragment):
    assert cli.run(*argv) == 2
    assert fragment in one_error_line(capsys)
    assert cli.files() == []


def test_the_suite_holds_the_issue_cases():
    ids = {c[0] for c in CONFIG_CASES}
    assert {"devices-text", "shape-negative", "num-samples-huge", "seeds-huge-range", "seeds-beyond-int64",
            "shape-3-for-2d", "digits-fid-one-sample", "lipschitz-iters-negative", "key-added", "nfe-huge",
            "group-splits-batch"} <= ids


def test_a_gpu_run_without_a_gpu_is_one_line(cli, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.run("trainer=gpu") == 2
    assert one_error_line(capsys).endswith("trainer.accelerator=gpu needs a CUDA GPU, and torch sees none on this "
                                           "machine: give trainer=cpu (or trainer.accelerator=auto)")
    assert cli.files() == []


def test_more_gpus_than_the_machine_has_is_one_line(cli, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cli.run("trainer=gpu", "trainer.devices=4") == 2
    assert "trainer.devices=4 is not accepted: this machine has 1 GPUs" in one_error_line(capsys)


def test_a_group_statistics_run_with_whole_groups_passes_the_checks(cli, monkeypatch):
    monkeypatch.setattr(sys, "argv", [PROG, "corrector=stein", "corrector.statistics=group",
                                      "corrector.group_size=4", "batch_size=8", "num_samples=10"])
    from steindiff.cli.checks import check_sample_run

    primary, shared = app.config_folders("sample")
    assert app.precheck(PROG, primary, "sample", check_sample_run, shared=shared) is None


def test_seeds_are_counted_without_listing_them():
    assert count_seeds("0-999999999999") == 10**12  # a list would not fit in memory
    assert count_seeds("0-9,20,30-31") == 13 and count_seeds("x") is None


# ---- reference statistics: checked before the run ---------------------------------------------------------------
def _stats(mu, sigma):
    return {"mu": np.asarray(mu, np.float64), "sigma": np.asarray(sigma, np.float64)}


REFERENCE_CASES = [
    ("nan-mu", _stats([np.nan, 0, 0], np.eye(3)), "reference statistics mu holds 1 NaN or Inf values"),
    ("inf-sigma", _stats([0, 0, 0], np.diag([1.0, np.inf, 1.0])), "sigma holds 1 NaN or Inf values"),
    ("negative-definite", _stats([0, 0, 0], -np.eye(3)), "is not positive semi-definite (smallest eigenvalue -1)"),
    ("indefinite", _stats([0, 0, 0], [[1, 2, 0], [2, 1, 0], [0, 0, 1]]), "not positive semi-definite"),
    ("not-symmetric", _stats([0, 0, 0], [[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]), "sigma is not symmetric"),
    ("not-an-npz", b"this is not an npz", "not a readable npz of reference statistics"),
    ("truncated", "truncate", "not a readable npz of reference statistics"),
    ("missing", None, "reference statistics not found (make them with steindiff-stats)"),
]


@pytest.mark.parametrize("content,fragment", [c[1:] for c in REFERENCE_CASES], ids=[c[0] for c in REFERENCE_CASES])
def test_bad_reference_statistics_are_refused_before_sampling(cli, capsys, tmp_path, content, fragment):
    path = tmp_path / "ref.npz"
    if isinstance(content, dict):
        np.savez(path, **content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncate":
        np.savez(path, **_stats(np.zeros(64), np.eye(64)))
        path.write_bytes(path.read_bytes()[:200])
    assert cli.run("denoiser=digits_unet", "metrics=digits_fid", "metrics.reference_data=null",
                   f"metrics.reference={path}", "metrics.kid=false", "num_samples=4") == 2
    message = one_error_line(capsys)
    assert f"{path}: " in message and fragment in message
    assert cli.files() == []


def test_a_semi_definite_covariance_is_accepted():
    from steindiff.cli.checks import check_reference_statistics

    rng = np.random.default_rng(0)
    features = rng.standard_normal((10, 64)).astype(np.float32)  # 10 samples, 64 features: rank 9, eigenvalues ~0
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"psd-{os.getpid()}.npz"
    try:
        np.savez(path, mu=features.mean(0), sigma=np.cov(features, rowvar=False).astype(np.float32))
        check_reference_statistics(path)  # float rounding below zero is not a refusal
    finally:
        path.unlink(missing_ok=True)


# ---- the run folder: a file, under a file, read-only, in use ---------------------------------------------------
def _folder_case(kind: str, root: Path) -> Path:
    if kind == "is-a-file":
        (root / "run").write_text("x")
        return root / "run"
    if kind == "under-a-file":
        (root / "file").write_text("x")
        return root / "file" / "sub" / "run"
    folder = root / "run"
    folder.mkdir()
    if kind in ("records-a-file", "samples-a-file"):
        (folder / (".steindiff" if kind == "records-a-file" else "samples")).write_text("x")
    return folder


FOLDER_CASES = [
    ("is-a-file", "is a file, not a folder: give another hydra.run.dir=<folder>, or move the file"),
    ("under-a-file", "which is a file: give another hydra.run.dir=<folder>"),
    ("records-a-file", "holds a file .steindiff where the run keeps a folder"),
    ("samples-a-file", "holds a file samples where the run keeps a folder"),
]


@pytest.mark.parametrize("kind,fragment", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_a_run_folder_that_cannot_be_a_folder_is_one_line(cli, capsys, tmp_path, kind, fragment):
    folder = _folder_case(kind, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert cli.run(*SMALL, f"hydra.run.dir={folder}") == 2
    assert fragment in one_error_line(capsys)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_a_read_only_folder_is_one_line(cli, capsys, tmp_path, monkeypatch, multirun):
    """Tests run as root here, for whom every folder is writable: os.access stands in for the file system."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != readonly and real_access(p, mode))
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    assert cli.run(*(["-m"] if multirun else []), *SMALL, f"{key}={readonly / 'run'}") == 2
    message = one_error_line(capsys)
    assert f"{key}={readonly / 'run'} is not writable ({readonly}, where it would be made, is not writable)" in message
    assert list(readonly.iterdir()) == []


def test_a_folder_in_use_is_refused_in_one_line(cli, capsys, tmp_path):
    folder = tmp_path / "run"
    with lock_run_folder(folder):
        assert lock_holder(folder) == str(os.getpid())
        assert cli.run(*SMALL, f"hydra.run.dir={folder}") == 2
        message = one_error_line(capsys)
        assert f"is being written by another steindiff process (pid {os.getpid()})" in message
        with pytest.raises(RunFolderError, match="is being written by another steindiff process"):
            with lock_run_folder(folder):
                pass
    assert lock_holder(folder) is None  # released with the block (and with the process)
    assert sorted(p.name for p in folder.rglob("*")) == [".steindiff", "lock"]


def test_ddp_ranks_other_than_zero_do_not_refuse_rank_zeros_lock(tmp_path, monkeypatch):
    """Lightning re-runs the command on rank 1 (LOCAL_RANK=1) in the folder rank 0 holds: that is the same run."""
    folder = tmp_path / "run"
    with lock_run_folder(folder):
        assert app.unwritable_folder_message(folder, "hydra.run.dir") is not None
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert app.unwritable_folder_message(folder, "hydra.run.dir") is None


# ---- a failed start blocks nothing; default folders never collide ---------------------------------------------
def test_a_record_without_shards_is_replaced_by_the_corrected_command(tmp_path):
    claim_run_folder(tmp_path, "run.json", {"shape": [3], "nfe": 8}, orphans="samples/seeds-*.npz")
    assert claim_run_folder(tmp_path, "run.json", {"shape": None, "nfe": 8},
                            orphans="samples/seeds-*.npz") == {"shape": None, "nfe": 8}
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "seeds-000000-000003.npz").write_bytes(b"")  # a shard: now the record binds
    with pytest.raises(RunFolderError, match=r"another configuration: shape \(None -> \[3\]\)"):
        claim_run_folder(tmp_path, "run.json", {"shape": [3], "nfe": 8}, orphans="samples/seeds-*.npz")


@pytest.mark.parametrize("damage", ["truncated", "a-list", "binary"])
def test_a_damaged_record_is_replaced_without_shards_and_refused_with_them(tmp_path, damage):
    record = tmp_path / ".steindiff" / "run.json"
    record.parent.mkdir()
    record.write_bytes({"truncated": b'{"config": {"nfe"', "a-list": b"[1, 2]", "binary": b"\xff\xfe"}[damage])
    claim_run_folder(tmp_path, "run.json", {"nfe": 8}, orphans="samples/seeds-*.npz")
    assert json.loads(record.read_text())["config"] == {"nfe": 8}  # repaired
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "seeds-000000-000003.npz").write_bytes(b"")
    record.write_bytes(b'{"config": {"nfe"')
    with pytest.raises(RunFolderError, match=r"is not a readable run record .* cannot be matched to a configuration"):
        claim_run_folder(tmp_path, "run.json", {"nfe": 8}, orphans="samples/seeds-*.npz")


def test_default_run_folders_differ_within_a_second(monkeypatch):
    monkeypatch.setattr(sys, "argv", [PROG])
    primary, shared = app.config_folders("sample")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        dirs = {str(compose(config_name="sample", overrides=[f"hydra.searchpath=['file://{shared}']"],
                            return_hydra_config=True).hydra.run.dir) for _ in range(3)}
    assert len(dirs) == 3  # microseconds in the name


# ---- file system errors while the run writes: one line, and the folder resumes ----------------------------------
def test_a_full_disk_while_writing_a_shard_is_one_line_and_resumes(cli, capsys, tmp_path, monkeypatch):
    import steindiff.lightning.sampling as sampling

    folder = tmp_path / "run"
    argv = ["num_samples=8", "batch_size=4", "plots=false", "solver=euler", "nfe=2", "metrics=none",
            "debug.prefetch=false", f"hydra.run.dir={folder}"]
    real_write, written = sampling.write_shard, []

    def second_fails(out_dir, seeds, *args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "samples" / "tmp-shard"))
        written.append(real_write(out_dir, seeds, *args, **kwargs))

    monkeypatch.setattr(sampling, "write_shard", second_fails)
    assert cli.run(*argv, hydra=True) == 2
    message = one_error_line(capsys)
    assert message.startswith(f"{PROG}: error: No space left on device: {folder}/samples/tmp-shard: free some space")
    assert message.endswith("then rerun the same command in the same folder to resume")
    assert len(list((folder / "samples").glob("seeds-*.npz"))) == 1 and lock_holder(folder) is None
    monkeypatch.setattr(sampling, "write_shard", real_write)
    assert cli.run(*argv, hydra=True) == 0  # space freed: the same command resumes
    assert len(list((folder / "samples").glob("seeds-*.npz"))) == 2
    assert json.loads((folder / "results.json").read_text())["num_samples"] == 8


@pytest.mark.parametrize("code,advice", [(errno.ENOSPC, "free some space"), (errno.EACCES, "make it writable"),
                                         (errno.EROFS, "read-only"), (errno.ENOTDIR, "a file stands where a folder"),
                                         (errno.EDQUOT, "disk quota")])
def test_file_system_errors_say_what_to_do(code, advice):
    message = filesystem_message(OSError(code, os.strerror(code), "/some/file"))
    assert message.startswith(f"{os.strerror(code)}: /some/file: ") and advice in message and "\n" not in message
    assert filesystem_message(OSError(errno.EIO, "I/O error")) is None  # not the user's to fix: a traceback
    assert filesystem_message(ValueError("x")) is None


def test_the_packaged_config_composes_with_the_limits():
    cfg = compose_sample_config([])
    assert (cfg.limits.max_nfe, cfg.limits.max_samples) == (10_000, 1_000_000)


# ---- W&B online with no server: files only within seconds --------------------------------------------------------
def test_wandb_waits_seconds_not_minutes_for_its_server():
    cfg = compose_sample_config(["logger=wandb"])
    assert cfg.logger.wandb.init_timeout == 5


@pytest.mark.slow  # starts W&B's service (several seconds)
def test_wandb_online_without_a_server_falls_back_within_seconds(tmp_path, monkeypatch, capsys):
    import socket
    import time

    from omegaconf import OmegaConf

    from steindiff.cli.sample import _start_logger

    with socket.socket() as probe:  # a loopback port with nothing listening: the only address this test uses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb  # noqa: F401 - imported before the clock starts: the import is not the wait

    node = OmegaConf.create({"_target_": "steindiff.cli.loggers.wandb_logger", "save_dir": str(tmp_path),
                             "project": "p", "offline": False, "init_timeout": 3})
    start = time.monotonic()
    assert _start_logger(node) is None
    assert time.monotonic() - start < 15  # was about 100 s with W&B's defaults
    assert "warning: logger wandb_logger unavailable" in capsys.readouterr().err


def test_a_runs_folder_under_a_file_is_one_line(cli, capsys, tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("x")
    monkeypatch.setenv("STEINDIFF_RUNS_DIR", str(tmp_path / "runs"))  # the default run folder goes under it
    assert cli.run(*SMALL) == 2
    assert f"lies under {tmp_path / 'runs'}, which is a file: give another hydra.run.dir=<folder>" in \
        one_error_line(capsys)
    assert cli.files() == []


def test_a_start_that_failed_before_its_first_shard_blocks_nothing(cli, capsys, tmp_path, monkeypatch):
    """The first attempt dies at its first shard (a full disk) after claiming the folder; the corrected command,
    another configuration, then runs in the same folder instead of being refused."""
    import steindiff.lightning.sampling as sampling

    folder = tmp_path / "run"
    common = ["num_samples=4", "batch_size=4", "plots=false", "metrics=none", "debug.prefetch=false",
              f"hydra.run.dir={folder}"]

    def no_space(out_dir, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_write = sampling.write_shard
    monkeypatch.setattr(sampling, "write_shard", no_space)
    assert cli.run(*common, "solver=heun", "nfe=3", hydra=True) == 2
    assert one_error_line(capsys).endswith("No space left on device: free some space, then rerun the same command "
                                           "in the same folder to resume")
    assert (folder / ".steindiff" / "run.json").is_file() and not list(folder.glob("samples/seeds-*.npz"))
    monkeypatch.setattr(sampling, "write_shard", real_write)
    assert cli.run(*common, "solver=euler", "nfe=2", hydra=True) == 0
    assert json.loads((folder / ".steindiff" / "run.json").read_text())["config"]["nfe"] == 2
