"""What a new user runs into (issue 13, findings 5-8): each mistake is one line and exit code 2 before anything
is written; numbers are named for what they are and noted when made from too few samples; scripts and the
README's examples never overwrite files git tracks unless asked to."""

import hashlib
import json
import os
import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import steindiff.cli.app as app
from steindiff.build import build_run, compose_sample_config
from steindiff.datasets import digits_images
from steindiff.errors import CheckpointError, ConfigError
from steindiff.metrics import digits_training
from steindiff.metrics.digits import DIGITS_CLASSIFIER
from steindiff.metrics.features import INCEPTION_ENV, INCEPTION_ENV_OLD, InceptionFeatures, find_inception
from steindiff.metrics.fid import FrechetDistance, image_metrics
from steindiff.tracked import tracked_files

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "src" / "steindiff" / "conf"
GAUSSIAN = "denoiser._target_=tests.fake_modules.DigitsGaussian"
IN_GIT = bool(tracked_files(DIGITS_CLASSIFIER))
needs_git = pytest.mark.skipif(not IN_GIT, reason="needs the git work tree of the repository (tracked files)")


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A fresh working folder with runs going there; ``user.run(prog, *argv)`` runs an app's main() in-process
    and returns (exit code, stderr lines). Hydra itself must never start: every case here stops before it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEINDIFF_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv(app.OVERWRITE_TRACKED_ENV, raising=False)

    def hydra_started(*args, **kwargs):
        raise AssertionError("Hydra started: the mistake was not caught before the run")

    monkeypatch.setattr(app, "_run_hydra", hydra_started)

    class User:
        folder = tmp_path

        @staticmethod
        def run(prog: str, *argv: str) -> int:
            monkeypatch.setattr(sys, "argv", [prog, *argv])
            if prog == "steindiff-train":
                from steindiff.cli.train import main
            else:
                from steindiff.cli.sample import main
            return main()

    return User()


def one_error_line(capsys, prog: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


# ---- finding 5: every mandatory value (???) of the packaged configs ----------------------------------------
def required_values() -> list[tuple[str, list[str], str, str]]:
    """(prog, overrides that select the file, dotted key, the ??? line) for every ``???`` in conf/**.yaml."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        text = path.read_text()
        parts = path.relative_to(CONF).parts
        if parts[0] == "shared":
            continue  # none today; a shared group's ??? would need an app to compose it (add a case here)
        prog = f"steindiff-{parts[0]}"
        group, option = "/".join(parts[1:-1]), path.stem
        for line in text.splitlines():
            match = re.match(r"^(\s*)(\w+)\s*:\s*['\"]?\?\?\?", line)
            if not match:
                continue
            assert match.group(1) == "", f"{path}: a nested ??? ({line!r}): teach this scan its parent keys"
            top_level = not group or "@package _global_" in text
            key = match.group(2) if top_level else f"{group.replace('/', '.')}.{match.group(2)}"
            found.append((prog, [f"{group}={option}"] if group else [], key, line))
    return found


REQUIRED = required_values()


def test_the_scan_finds_the_known_required_values():
    keys = sorted((overrides[0], key) for _, overrides, key, _ in REQUIRED)
    assert keys == [("corrector=calibrated", "corrector.path"), ("decoder=autoencoder_kl", "decoder.path"),
                    ("denoiser=diffusers_unet", "denoiser.path"),
                    ("denoiser=edm_pickle", "denoiser.path"), ("metrics=fid", "metrics.reference"),
                    ("schedule=explicit", "schedule.sigmas")]


@pytest.mark.parametrize("prog,overrides,key,line", REQUIRED, ids=[f"{o[0] if o else p}" for p, o, _, _ in REQUIRED])
def test_a_missing_required_value_is_one_line_naming_it(user, capsys, prog, overrides, key, line):
    # the comment after ??? says what to give: "# <placeholder>: what it is"
    comment = re.search(r"#\s*(<[^>]+>):\s*(.+)$", line)
    assert comment, f"{line!r}: give the ??? a comment '# <placeholder>: what it is'"
    assert user.run(prog, *overrides) == 2
    message = one_error_line(capsys, prog)
    assert message == f"{prog}: error: {key} is required ({comment.group(2).strip()}): add {key}={comment.group(1)}"
    assert not (user.folder / "runs").exists()  # nothing written, no run folder


def test_a_missing_value_in_one_sweep_job_stops_the_sweep_before_it_starts(user, capsys):
    assert user.run("steindiff-sample", "-m", "denoiser=ring2d,edm_pickle", "nfe=4,8") == 2
    assert "denoiser.path is required (an EDM network snapshot" in one_error_line(capsys, "steindiff-sample")
    assert not (user.folder / "runs").exists()


def test_the_diffusers_example_of_the_issue(user, capsys):
    assert user.run("steindiff-sample", "denoiser=diffusers_unet", "metrics=fid") == 2
    message = one_error_line(capsys, "steindiff-sample")
    assert message.startswith("steindiff-sample: error: denoiser.path is required (a diffusers UNet folder")
    assert message.endswith("add denoiser.path=<folder> (also missing: metrics.reference)")


# ---- finding 7: keys added with + that nothing reads ---------------------------------------------------------
@pytest.mark.parametrize("override,hint", [("+seed=42", "(did you mean seeds=42?)"), ("+foo=1", "; accepted"),
                                           ("++seed=42", "(did you mean seeds=42?)")])
def test_an_unknown_added_key_is_refused(user, capsys, override, hint):
    assert user.run("steindiff-sample", override, "num_samples=10") == 2
    message = one_error_line(capsys, "steindiff-sample")
    assert message.startswith(f"steindiff-sample: error: {override} is not accepted: ") and hint in message
    assert "accepted top-level keys: baseline, batch_size, corrector," in message and "seeds" in message
    assert not (user.folder / "runs").exists()


def test_an_unknown_added_key_is_refused_by_the_training_app_too(user, capsys):
    assert user.run("steindiff-train", "+sed=1") == 2
    message = one_error_line(capsys, "steindiff-train")
    assert "+sed=1 is not accepted" in message and "(did you mean seed=1?)" in message


@pytest.mark.parametrize("argv", [["++nfe=3"], ["experiment=digits"], ["~denoiser.name"],
                                  ["hydra.job.chdir=false", "hydra.run.dir=elsewhere"],
                                  ["+hydra.job.env_set.OMP_NUM_THREADS=1"], ["+trainer.precision=64"],
                                  ["-m", "solver=euler,heun", "nfe=4,8"]])
def test_legitimate_overrides_pass_the_checks(user, monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["steindiff-sample", *argv])
    primary, shared = app.config_folders("sample")
    from steindiff.config import check_values

    assert app.precheck("steindiff-sample", primary, "sample", check_values, shared=shared) is None


def test_an_unknown_key_is_refused_from_python_too():
    with pytest.raises(ConfigError, match=r"^seed is not a key of the steindiff-sample config \(did you mean seeds"):
        build_run(compose_sample_config(["+seed=42"]))


# ---- finding 6: the Inception weights' variable -----------------------------------------------------------
@pytest.fixture
def stand_in_inception(tmp_path, monkeypatch):
    for name in (INCEPTION_ENV, INCEPTION_ENV_OLD):  # set, then removed: monkeypatch restores them (load_dotenv
        monkeypatch.setenv(name, "")                   # writes os.environ itself)
        monkeypatch.delenv(name)
    path = tmp_path / "my_inception.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated; the file format is not
        torch.jit.save(torch.jit.script(torch.nn.Flatten()), str(path))
    return path


def test_env_example_names_the_variable_the_code_reads():
    names = [line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
             if re.match(r"^[A-Z_]+=", line)]
    assert INCEPTION_ENV in names and INCEPTION_ENV_OLD not in names


def test_weights_named_in_dotenv_are_used_under_either_name(stand_in_inception, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"{INCEPTION_ENV_OLD}={stand_in_inception}\n")  # as the old .env.example said
    app.load_dotenv(tmp_path / ".env")
    with pytest.warns(FutureWarning, match=f"{INCEPTION_ENV_OLD} is deprecated: rename it to \\${INCEPTION_ENV}"):
        assert InceptionFeatures().path == stand_in_inception  # the user's file, not the wheel's
    monkeypatch.delenv(INCEPTION_ENV_OLD)
    monkeypatch.setenv(INCEPTION_ENV, str(stand_in_inception))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_inception() == stand_in_inception


def test_a_named_inception_file_that_does_not_exist_is_one_line(stand_in_inception, tmp_path, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "typo.pt"))
    with pytest.raises(CheckpointError) as err:
        image_metrics("inception", reference=str(tmp_path / "ref.npz"))
    assert str(err.value).startswith(f"{tmp_path / 'typo.pt'}: Inception weights file not found (named by "
                                      f"${INCEPTION_ENV})") and "\n" not in str(err.value)
    monkeypatch.setenv(INCEPTION_ENV_OLD, str(stand_in_inception))  # both names, two files: which one?
    with pytest.raises(CheckpointError, match=f"keep only \\${INCEPTION_ENV}"):
        find_inception()


# ---- findings 6, 7: FID / KID from too few samples, and names that say what the number is ------------------
@pytest.mark.slow
def test_fid_notes_too_few_samples_for_the_feature_dimension():
    metrics = image_metrics("digits", reference_data="digits_train", kid=True, kid_subset_size=1000)
    assert list(metrics) == ["digits_fid", "digits_kid"]  # a digits-classifier FID is not called "fid"
    test = digits_images("test")  # 297 held-out digits; the features have 64 dimensions
    for n, expected in [(40, "computed from 40 generated samples, fewer than the 64 feature dimensions"),
                        (200, "computed from 200 generated samples, fewer than 320 = 5 x 64"), (297, "297 generated")]:
        metrics.reset()
        metrics.update(test[:n])
        metrics.compute()
        assert len(metrics["digits_fid"].notes) == 1 and expected in metrics["digits_fid"].notes[0]
    fid = FrechetDistance(metrics["digits_fid"].feature, metrics["digits_fid"].reference)
    real = digits_images("train")
    fid.update(real, real=True)  # 1500 real images, and 1500 generated: enough
    fid.update(real)
    assert float(fid.compute()) == pytest.approx(0.0, abs=1e-6) and fid.notes == []


def test_kid_subsets_larger_than_the_samples_are_shrunk_with_a_note():
    test = digits_images("test")[:40]
    asked, exact = (image_metrics("digits", reference_data="digits_train", kid=True, kid_subset_size=size)
                    for size in (1000, 40))
    asked.update(test)
    exact.update(test)
    assert float(asked.compute()["digits_kid"]) == float(exact.compute()["digits_kid"])  # shrunk to 40
    assert asked["digits_kid"].notes == ["subsets of 40 samples, not kid_subset_size=1000: only 40 generated and "
                                         "1500 reference samples (KID of smaller subsets has the same mean and a "
                                         "larger spread)"]
    assert exact["digits_kid"].notes == []


@pytest.mark.slow  # a subprocess run of the app (about 8 s on 2 cores): the parts are tested in-process above
def test_a_small_image_run_says_so_and_names_its_metrics(tmp_path):
    """The app end to end: notes in results.json and warnings on stderr; the summary names the digits metrics
    and states KID's scale."""
    env = dict(os.environ, STEINDIFF_RUNS_DIR=str(tmp_path / "runs"), WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "steindiff.cli.sample", f"hydra.run.dir={tmp_path / 'run'}",
                           "~denoiser.name", "~denoiser.temperature", "~denoiser.residual_scale",
                           "~denoiser.sigma_scale", GAUSSIAN, "metrics=digits_fid", "solver=euler", "nfe=2",
                           "num_samples=40", "batch_size=40", "plots=false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["metrics"]) == {"digits_fid", "digits_kid", "digits_inception_score"}
    notes = [n for n in results["notes"] if n.startswith(("digits_fid:", "digits_kid:"))]
    assert notes[0].startswith("digits_fid: computed from 40 generated samples, fewer than the 64 feature")
    assert notes[1].startswith("digits_kid: subsets of 40 samples, not kid_subset_size=1000")
    for note in notes:
        assert f"steindiff-sample: warning: {note}" in proc.stderr
    summary = next(line for line in proc.stdout.splitlines() if "NFE 2" in line)
    kid = results["metrics"]["digits_kid"]
    assert f"digits_fid {results['metrics']['digits_fid']:.4g}" in summary
    assert f"digits_kid {kid:.4g} (raw MMD^2, not x1000)" in summary


# ---- finding 8: nothing tracked is overwritten unless asked ---------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy: digits is imported
def test_the_digits_module_writes_nothing(tmp_path, monkeypatch):
    """``python -m steindiff.metrics.digits`` (the README once said so) used to retrain and overwrite the
    committed weights; run as a script now, it writes nothing (runpy: what ``python -m`` does, in-process)."""
    monkeypatch.chdir(tmp_path)
    before, stamp = sha256(DIGITS_CLASSIFIER), DIGITS_CLASSIFIER.stat().st_mtime_ns
    runpy.run_module("steindiff.metrics.digits", run_name="__main__")
    assert list(tmp_path.iterdir()) == [] and sha256(DIGITS_CLASSIFIER) == before
    assert DIGITS_CLASSIFIER.stat().st_mtime_ns == stamp


def test_the_classifier_script_writes_to_the_working_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stats = {"train_accuracy": 1.0, "test_accuracy": 1.0, "seconds": 0.0}
    fake = digits_training.DigitsClassifier()
    monkeypatch.setattr(digits_training, "train_classifier", lambda *a, **k: (fake, stats))
    before = sha256(DIGITS_CLASSIFIER)
    assert digits_training.main([]) == 0
    assert (tmp_path / "digits_classifier.safetensors").is_file() and sha256(DIGITS_CLASSIFIER) == before


@needs_git
def test_the_classifier_script_replaces_the_committed_weights_only_with_force(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(digits_training, "train_classifier", lambda *a, **k: pytest.fail("trained before refusing"))
    before = sha256(DIGITS_CLASSIFIER)
    assert digits_training.main(["--out", str(DIGITS_CLASSIFIER)]) == 2
    message = one_error_line(capsys, "python -m steindiff.metrics.digits_training")
    assert "is tracked by git" in message and "--force" in message and sha256(DIGITS_CLASSIFIER) == before


@needs_git
@pytest.mark.parametrize("argv", [["experiment=aniso32_overshoot", "hydra.run.dir={docs}/runs/aniso32_overshoot"],
                                  ["-m", "nfe=4,6", "hydra.sweep.dir={docs}/sweeps/aniso32_overshoot"]])
def test_the_app_refuses_to_overwrite_a_committed_run(user, capsys, monkeypatch, argv):
    docs = REPO / "docs"
    argv = [a.format(docs=docs) for a in argv]
    folder = Path(argv[-1].split("=", 1)[1])
    before = {p: sha256(p) for p in folder.rglob("*") if p.is_file()}
    assert user.run("steindiff-sample", *argv) == 2
    message = one_error_line(capsys, "steindiff-sample")
    assert f"={folder} holds" in message and "files tracked by git" in message
    assert message.endswith(f"or set {app.OVERWRITE_TRACKED_ENV}=1 to replace them")
    assert {p: sha256(p) for p in folder.rglob("*") if p.is_file()} == before
    monkeypatch.setenv(app.OVERWRITE_TRACKED_ENV, "1")  # asked: then the checks let it through
    monkeypatch.setattr(sys, "argv", ["steindiff-sample", *argv])
    primary, shared = app.config_folders("sample")
    assert app.precheck("steindiff-sample", primary, "sample", None, shared=shared) is None


def test_readme_commands_write_nothing_under_docs():
    commands = (REPO / "README.md").read_text() + (REPO / "docs" / "long_run.md").read_text()
    writes = re.findall(r"(hydra\.(?:run|sweep)\.dir=docs/\S*|steindiff-report docs/\S*|--out docs/\S*)", commands)
    assert writes  # the README names the committed folders in prose ("made with `hydra.run.dir=docs/...`") ...
    for line in commands.splitlines():  # ... never in a command
        if any(found in line for found in writes):
            assert "steindiff-sample" not in line and "steindiff-report" not in line, line
