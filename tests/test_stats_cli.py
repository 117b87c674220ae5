"""steindiff-stats: reference statistics from bundled data, image folders and run folders; --compare; errors."""

import pytest
import torch
from PIL import Image

from steindiff.cli.stats import main
from steindiff.datasets import digits_images
from steindiff.metrics.digits import DigitsFeatures, digits_fid
from steindiff.metrics.fid import FrechetDistance, load_reference
from steindiff.shards import write_shard


def _direct_stats(images):
    metric = FrechetDistance(DigitsFeatures())
    metric.update(images, real=True)
    return metric.statistics("real")


def test_digits_stats_equal_direct_and_compare(tmp_path, capsys):
    for split in ("train", "test"):
        assert main(["--data", f"digits_{split}", "--features", "digits", "--out", str(tmp_path / f"{split}.npz")]) == 0
    stats = load_reference(tmp_path / "train.npz", 64)
    direct = _direct_stats(digits_images("train"))
    assert stats.n == 1500 and stats.features == "digits"
    torch.testing.assert_close(stats.mu, direct.mu)
    torch.testing.assert_close(stats.sigma, direct.sigma)
    capsys.readouterr()
    assert main(["--compare", str(tmp_path / "test.npz"), str(tmp_path / "train.npz")]) == 0
    fid = float(capsys.readouterr().out.strip())
    assert fid == pytest.approx(digits_fid(digits_images("test"), digits_images("train")), rel=1e-6)


def test_folder_and_run_sources(tmp_path):
    images = digits_images("test")[:12]
    folder = tmp_path / "pngs"
    folder.mkdir()
    pixels = ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, p in enumerate(pixels):
        Image.fromarray(p, mode="L").save(folder / f"{i:03d}.png")
    assert main(["--data", f"folder:{folder}", "--features", "digits", "--out", str(tmp_path / "f.npz")]) == 0
    stats = load_reference(tmp_path / "f.npz", 64)  # grey PNGs stay one channel; uint8 equals EDM's quantisation
    torch.testing.assert_close(stats.mu, _direct_stats(images).mu)
    run = tmp_path / "run"
    write_shard(run, list(range(12)), images.numpy())
    assert main(["--data", f"run:{run}", "--features", "digits", "--out", str(tmp_path / "r.npz")]) == 0
    stats = load_reference(tmp_path / "r.npz", 64)
    torch.testing.assert_close(stats.mu, _direct_stats(images).mu)


@pytest.mark.parametrize("args,message", [
    (["--data", "cifar10", "--out", "x.npz"], "--data 'cifar10' is not accepted"),
    (["--data", "digits_train"], "give --data and --out"),
    (["--data", "folder:/no/such/folder", "--features", "digits", "--out", "x.npz"], "not a folder"),
    (["--data", "digits_train", "--features", "dino", "--out", "x.npz"], "features='dino' is not accepted"),
    (["--data", "digits_train", "--features", "torchscript", "--weights", "/no/file.pt", "--out", "x.npz"],
     "not found"),
    (["--compare", "/no/a.npz", "/no/b.npz"], "reference statistics not found"),
])
def test_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("steindiff-stats: error:") and message in err[0], err
    assert not (tmp_path / "x.npz").exists()
