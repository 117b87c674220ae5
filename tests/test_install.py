"""The apps as a user gets them: --help names the command, STEINDIFF_CONF is honoured, and a wheel of the
checkout installed (not editable) in a fresh venv runs both apps from an unrelated folder."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from steindiff.cli.app import conf_dir

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    """The caller's environment without PYTHONPATH and STEINDIFF_CONF, W&B off."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STEINDIFF_CONF")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1", **extra)
    return env


def _app(app: str, *args, cwd, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"steindiff.cli.{app}", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("app,own,other", [("sample", "solver: ", "net: "), ("train", "net: ", "solver: ")])
def test_help_names_the_command_and_lists_only_its_groups(tmp_path, app, own, other):
    proc = _app(app, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"steindiff-{app}"), proc.stdout[:300]
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert own in groups and "logger: csv" in groups and "trainer: cpu" in groups and other not in groups


def _conf_copy(tmp_path) -> Path:
    """A copy of the packaged configs with a changed default and a new shared trainer option."""
    folder = tmp_path / "myconf"
    shutil.copytree(conf_dir("sample").parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    sample_yaml = folder / "sample" / "sample.yaml"
    text = sample_yaml.read_text()
    assert "\nnum_samples: 1000\n" in text
    sample_yaml.write_text(text.replace("\nnum_samples: 1000\n", "\nnum_samples: 37\n"))
    (folder / "shared" / "trainer" / "mine.yaml").write_text("accelerator: cpu\ndevices: 1\nstrategy: auto\n"
                                                              "benchmark: true\n")
    return folder


def test_steindiff_conf_is_honoured(tmp_path):
    folder = _conf_copy(tmp_path)
    proc = _app("sample", "--cfg", "job", "trainer=mine", cwd=tmp_path, STEINDIFF_CONF=str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "num_samples: 37" in proc.stdout and "benchmark: true" in proc.stdout
    proc = _app("sample", "--help", cwd=tmp_path, STEINDIFF_CONF=str(folder))
    assert proc.returncode == 0 and "trainer: cpu, ddp, gpu, mine" in proc.stdout, proc.stderr[-3000:]
    # tab completion reads the same folders
    proc = _app("sample", "-sc", "query=bash", cwd=tmp_path, STEINDIFF_CONF=str(folder),
                COMP_LINE="steindiff-sample trainer=")
    assert proc.returncode == 0 and "trainer=mine" in proc.stdout.split(), proc.stderr[-3000:]
    # the one-line check before Hydra composes from the same folders: an unknown option is named in one line
    proc = _app("sample", "trainer=nope", cwd=tmp_path, STEINDIFF_CONF=str(folder))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "mine" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_steindiff_conf_that_is_not_a_config_folder_is_one_line(tmp_path):
    proc = _app("train", cwd=tmp_path, STEINDIFF_CONF=str(tmp_path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("steindiff-train: error: STEINDIFF_CONF=") and "train/train.yaml" in lines[0]


def _wheel(tmp_path) -> Path:
    """A wheel built from a copy of the checkout's sources (as from a clone; the checkout stays untouched)."""
    source = tmp_path / "clone"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, env=_env(), timeout=600)
    (wheel,) = (tmp_path / "dist").glob("steindiff-*.whl")
    return wheel


def _venv(tmp_path, wheel: Path) -> Path:
    """A venv seeing the machine's packages (torch, ...) with the wheel installed in it; returns its bin/."""
    venv = tmp_path / "venv"
    # the machine's own pip (a system site-package) installs into the venv: no ensurepip, no network
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--force-reinstall",
                    str(wheel)], check=True, env=_env(), timeout=600)
    return venv / "bin"


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_both_apps_from_anywhere(tmp_path):
    bin_dir = _venv(tmp_path, _wheel(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(bin_dir / "python"), "-c", "import steindiff; print(steindiff.__file__)"],
                           cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=300)
    location = Path(where.stdout.strip()).resolve()
    # the machine's editable install of the checkout is visible too: the venv's own site-packages must win
    assert location.is_relative_to((tmp_path / "venv").resolve()), location
    commands = {
        "help": ["steindiff-sample", "--help"],
        "a": ["steindiff-sample", "num_samples=20", "batch_size=20", f"hydra.run.dir={tmp_path / 'a'}"],
        "b": ["steindiff-sample", "experiment=digits", "num_samples=16", "batch_size=16", "nfe=5",
              f"hydra.run.dir={tmp_path / 'b'}"],
        "c": ["steindiff-train", "experiment=ring2d_mlp", "max_steps=3", "val_every_steps=3",
              "checkpoint_every_steps=3", "progress=false", f"hydra.run.dir={tmp_path / 'c'}"],
    }
    for name, (command, *args) in commands.items():
        proc = subprocess.run([str(bin_dir / command), *args], cwd=elsewhere, env=_env(), capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
    assert (tmp_path / "a" / "results.json").exists() and (tmp_path / "b" / "results.json").exists()
    assert (tmp_path / "c" / "denoiser.safetensors").exists()
    assert not (elsewhere / "runs").exists()  # every run went where hydra.run.dir said
