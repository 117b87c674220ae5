"""The run-folder module (claim, refuse another config, resumable keys) and the atomic writes it uses."""

import json

import pytest

from steindiff.io import TMP_PREFIX, atomic_open, atomic_write_bytes, atomic_write_text
from steindiff.runfolder import RunFolderError, claim_run_folder, flatten, read_record

CONFIG = {"solver": {"order": 2}, "nfe": 8, "logger": {"name": "csv"}}


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_claim_records_and_accepts_the_same_config(tmp_path):
    claim_run_folder(tmp_path, "run.json", CONFIG, ("logger",), extra={"seeds": [0, 1]})
    record = read_record(tmp_path, "run.json")
    assert record == {"config": {"solver.order": 2, "nfe": 8}, "seeds": [0, 1]}
    claim_run_folder(tmp_path, "run.json", {**CONFIG, "logger": {"name": "wandb"}}, ("logger",))  # resumable


def test_claim_refuses_another_config_in_one_line(tmp_path):
    claim_run_folder(tmp_path, "run.json", CONFIG)
    with pytest.raises(RunFolderError, match=r"holds a run with another configuration: nfe \(8 -> 6\); use a new "
                                             r"folder") as err:
        claim_run_folder(tmp_path, "run.json", {**CONFIG, "nfe": 6})
    assert "\n" not in str(err.value)
    assert read_record(tmp_path, "run.json")["config"]["nfe"] == 8  # the refused claim wrote nothing


def test_orphans_without_record_are_refused_and_stale_files_removed(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "seeds-0-9.npz").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="holds samples but no run record"):
        claim_run_folder(tmp_path, "run.json", CONFIG, orphans="samples/seeds-*.npz")
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text("{}")
    claim_run_folder(other, "run.json", CONFIG, stale=("results.json",))
    assert not (other / "results.json").exists()


def test_binding_file_decides_whether_an_old_record_binds(tmp_path):
    claim_run_folder(tmp_path, "train.json", CONFIG, binding="checkpoints/last.ckpt")
    claim_run_folder(tmp_path, "train.json", {**CONFIG, "nfe": 6}, binding="checkpoints/last.ckpt")  # no checkpoint
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(RunFolderError, match=r"nfe \(6 -> 4\)"):
        claim_run_folder(tmp_path, "train.json", {**CONFIG, "nfe": 4}, binding="checkpoints/last.ckpt")


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_failure(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_text(path, json.dumps({"a": 1}))
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert json.loads(path.read_text()) == {"a": 1} and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError), atomic_open(path, "w") as f:
        f.write("half a fi")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}  # the old file, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    with pytest.raises(ValueError, match="mode='a'"):
        with atomic_open(path, "a"):
            pass
