"""Supervised harness: data loaders and variants, the trainer, ``rlsub train`` and its errors.

Data come from ``$RLSUB_DATA`` or the ``shared/data`` folder beside the checkout; nothing is ever
downloaded here (the download function is replaced wherever a file is missing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rlsub.cli import main
from rlsub.config import ConfigError
from rlsub.errors import UserError
from rlsub.supervised import data as sdata
from rlsub.supervised import trainer

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RLSUB_DATA") or ROOT.parent / "shared" / "data")
MNIST_FC = str(ROOT / "configs" / "supervised" / "mnist_fc.yaml")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

needs_mnist = pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST in {DATA}")
needs_cifar = pytest.mark.skipif(not (DATA / "cifar10").is_dir(), reason=f"no CIFAR-10 in {DATA}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    def refuse(url, dest):
        raise OSError(f"tests never download ({url})")

    monkeypatch.setattr(sdata, "_fetch", refuse)


@pytest.fixture(scope="module")
def mnist():
    return sdata.load_mnist(DATA)


def small_config(**overrides) -> dict:
    base = {"dataset": "mnist", "data_dir": str(DATA), "model": "mlp", "model_kwargs": {"hidden": [200, 200]},
            "dim": 750, "subset": 2000, "epochs": 3, "batch_size": 64, "lr": 0.03, "full_lr": 0.001}
    return trainer.resolve(None, {**base, **overrides})


# --- data ---------------------------------------------------------------------------------------


@needs_mnist
def test_mnist_loads_with_official_shapes_and_label_counts(mnist):
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert len(mnist.y_test) == 10000 and mnist.source == "mnist-idx"


@pytest.mark.slow  # decoding 60,000 JPEGs takes about 20 s the first time (cached afterwards)
@needs_cifar
def test_cifar_loads_5000_per_class_train_1000_test():
    cifar = sdata.load_cifar10(DATA)
    assert cifar.x_train.shape == (50000, 3, 32, 32) and cifar.x_test.shape == (10000, 3, 32, 32)
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    assert cifar.source in sdata.SOURCES
    if cifar.source == "cifar10-images-jpeg":
        assert "JPEG" in cifar.describe


@needs_mnist
def test_pixel_shuffle_is_one_permutation_for_train_and_test(mnist):
    shuffled = sdata.shuffle_pixels(mnist, seed=3)
    perm = shuffled.pixel_perm
    assert sorted(perm.tolist()) == list(range(784)) and not np.array_equal(perm, np.arange(784))
    for orig, new in ((mnist.x_train, shuffled.x_train), (mnist.x_test, shuffled.x_test)):
        assert np.array_equal(new.reshape(len(new), -1), orig.reshape(len(orig), -1)[:, perm])
    assert np.array_equal(sdata.shuffle_pixels(mnist, seed=3).pixel_perm, perm)


@needs_mnist
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.1])
def test_label_shuffle_replaces_exactly_the_fraction(mnist, fraction):
    sub = sdata.take_subset(mnist, 2001, seed=0)
    out = sdata.shuffle_labels(sub, fraction, seed=1)
    k = round(fraction * 2001)
    assert len(out.shuffled_idx) == k == len(np.unique(out.shuffled_idx))
    untouched = np.setdiff1d(np.arange(2001), out.shuffled_idx)
    assert np.array_equal(out.y_train[untouched], sub.y_train[untouched])
    changed = int((out.y_train != sub.y_train).sum())
    assert 0.8 * k <= changed <= k  # uniform random labels keep their old value 1 time in 10
    assert np.array_equal(sdata.shuffle_labels(sub, fraction, seed=1).y_train, out.y_train)
    assert np.array_equal(out.y_test, sub.y_test)


@needs_mnist
def test_subset_is_seeded_and_of_the_asked_size(mnist):
    a, b, c = (sdata.take_subset(mnist, 500, seed=s) for s in (0, 0, 1))
    assert len(a.y_train) == 500 and a.x_train.shape == (500, 1, 28, 28)
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.x_train, c.x_train)


def test_missing_data_offline_names_the_file_and_the_folder(tmp_path):
    with pytest.raises(UserError) as err:
        sdata.load_mnist(tmp_path)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "mnist") in message
    with pytest.raises(UserError, match="cifar-10-python.tar.gz"):
        sdata.load_cifar10(tmp_path)


def test_download_with_a_wrong_md5_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sdata, "_fetch", lambda url, dest: Path(dest).write_bytes(b"not mnist"))
    with pytest.raises(UserError, match="expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        sdata.load_mnist(tmp_path)
    assert not any((tmp_path / "mnist").iterdir())  # nothing half-downloaded left behind


def _jpeg_tarball(path: Path, rng: np.random.Generator, per_class: int) -> dict[str, list]:
    """A CIFAR-10-layout tarball of random 32x32 JPEGs; returns {split: [(label, pixels HWC), ...]} as PIL
    decodes them (JPEG is lossy, so the reference is the decoded file, not the random pixels)."""
    import io
    import tarfile

    from PIL import Image

    decoded = {"train": [], "test": []}
    with tarfile.open(path, "w:gz") as tar:
        for split in decoded:
            for label, cls in enumerate(sdata.CIFAR_CLASSES):
                for k in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                    info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{k:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
                    decoded[split].append((label, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))))
    return decoded


def test_cifar_jpeg_decodes_to_c_ordered_images_before_and_after_the_cache(tmp_path, monkeypatch):
    """A first load decodes the JPEGs (no cache yet), a second reads the cache: both give the pixels PIL
    decodes, channels first, in C order, so that the trainer's batch gather (a view as rows of bytes) works
    on the very first run as on later ones."""
    import torch

    monkeypatch.setenv("RLSUB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    decoded = _jpeg_tarball(tmp_path / "data" / "cifar10" / sdata.CIFAR_JPEG, np.random.default_rng(0), 2)
    first = sdata.load_cifar10(tmp_path / "data")
    assert any((tmp_path / "cache").iterdir())
    second = sdata.load_cifar10(tmp_path / "data")
    for data in (first, second):
        assert data.source == "cifar10-images-jpeg"
        for split in ("train", "test"):
            x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
            assert x.flags.c_contiguous and x.shape == (20, 3, 32, 32)
            np.testing.assert_array_equal(y, [label for label, _ in decoded[split]])
            np.testing.assert_array_equal(x.transpose(0, 2, 3, 1), np.stack([p for _, p in decoded[split]]))
        images, labels = trainer.Batches(data).train_batch(torch.tensor([3, 0, 17]))
        assert images.shape == (3, 3, 32, 32) and labels.tolist() == [1, 0, 8]


def test_the_decode_cache_follows_file_contents_not_paths_or_timestamps(tmp_path, monkeypatch):
    """The same files in another folder (new path, new mtime) reuse the decoded cache; a changed file is
    decoded afresh into a cache entry of its own."""
    import shutil

    monkeypatch.setenv("RLSUB_CACHE", str(tmp_path / "cache"))
    for name in ("a", "b"):
        (tmp_path / name / "cifar10").mkdir(parents=True)
    tarball = tmp_path / "a" / "cifar10" / sdata.CIFAR_JPEG
    _jpeg_tarball(tarball, np.random.default_rng(0), 1)
    first = sdata.load_cifar10(tmp_path / "a")
    os.utime(tarball, ns=(1, 1))
    shutil.copyfile(tarball, tmp_path / "b" / "cifar10" / sdata.CIFAR_JPEG)
    monkeypatch.setattr(sdata, "_decode_cifar_jpeg", lambda path: pytest.fail("decoded again"))
    for root in ("a", "b"):
        np.testing.assert_array_equal(sdata.load_cifar10(tmp_path / root).x_train, first.x_train)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    monkeypatch.undo()
    monkeypatch.setenv("RLSUB_CACHE", str(tmp_path / "cache"))
    decoded = _jpeg_tarball(tmp_path / "b" / "cifar10" / sdata.CIFAR_JPEG, np.random.default_rng(1), 1)
    changed = sdata.load_cifar10(tmp_path / "b")
    np.testing.assert_array_equal(changed.x_train.transpose(0, 2, 3, 1), np.stack([p for _, p in decoded["train"]]))
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_image_data_holds_its_images_in_c_order():
    x = np.zeros((4, 5, 5, 3), dtype=np.uint8).transpose(0, 3, 1, 2)  # channels-first view of HWC memory
    data = sdata.ImageData("fake", x, np.zeros(4, dtype=np.int64), x, np.zeros(4, dtype=np.int64), source="mnist-idx")
    assert data.x_train.flags.c_contiguous and data.x_test.flags.c_contiguous
    np.testing.assert_array_equal(data.x_train, x)


# --- training -----------------------------------------------------------------------------------


@needs_mnist
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_train_batch_is_the_standardised_images_at_the_indices(shape):
    """The batch gather against numpy's fancy indexing and the per-channel formula (x / 255 - mean) / std,
    the statistics computed in float64 over the whole training set."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(300,) + shape, dtype=np.uint8)
    y = rng.integers(0, 10, size=300)
    data = sdata.ImageData("fake", x, y, x[:10], y[:10], source="mnist-idx")
    batches = trainer.Batches(data)
    idx = rng.permutation(300)[:64]
    images, labels = batches.train_batch(torch.from_numpy(idx))
    scaled = x.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3), keepdims=True)
    std = scaled.std(axis=(0, 2, 3), keepdims=True)
    expected = (scaled[idx] - mean) / std
    assert images.shape == (64,) + shape and images.dtype == torch.float32
    np.testing.assert_allclose(images.numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(labels.numpy(), y[idx])


def test_subspace_training_beats_chance_and_is_deterministic(tmp_path):
    config = small_config()
    first = trainer.train(config, tmp_path / "a", quiet=True)
    second = trainer.train(config, tmp_path / "b", quiet=True)
    assert first["test_accuracy"] > 0.6 and second["test_accuracy"] == first["test_accuracy"]  # chance: 0.1
    assert first["D"] == 199210 and first["d"] == 750 and first["metric"] == "test_accuracy"
    assert first["value"] == first["test_accuracy"] and first["metric_min"] == 0
    theta_a, theta_b = np.load(tmp_path / "a" / "theta_d.npy"), np.load(tmp_path / "b" / "theta_d.npy")
    assert theta_a.shape == (750,) and np.array_equal(theta_a, theta_b)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert {"train_loss", "train_acc_running", "test_acc", "wall_time_s"} <= set(rows[0])
    written = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert written["trainer"] == "supervised" and written["data_source"] == "mnist-idx"


@needs_mnist
def test_resume_continues_exactly(tmp_path):
    straight = trainer.train(small_config(epochs=2, dim=100), tmp_path / "a", quiet=True)
    trainer.train(small_config(epochs=1, dim=100), tmp_path / "b", quiet=True)
    resumed = trainer.train(small_config(epochs=2, dim=100), tmp_path / "b", resume=True, quiet=True)
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert np.array_equal(np.load(tmp_path / "a" / "theta_d.npy"), np.load(tmp_path / "b" / "theta_d.npy"))
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2
    recorded = json.loads((tmp_path / "b" / "config.json").read_text())
    assert recorded["epochs"] == 2 and recorded["resumed_with"] == [{"key": "epochs", "from": 1, "to": 2, "at": 1}]


@needs_mnist
def test_eval_every_skips_test_evaluations_without_changing_training(tmp_path):
    every = trainer.train(small_config(epochs=3, dim=100, subset=500), tmp_path / "a", quiet=True)
    sparse = trainer.train(small_config(epochs=3, dim=100, subset=500, eval_every=2), tmp_path / "b", quiet=True)
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [("test_acc" in r) for r in rows_b] == [False, True, True]  # epoch 2, and the last one
    assert rows_b[1]["test_acc"] == rows_a[1]["test_acc"] and sparse["test_accuracy"] == every["test_accuracy"]
    assert [r["train_loss"] for r in rows_b] == [r["train_loss"] for r in rows_a]
    assert np.array_equal(np.load(tmp_path / "a" / "theta_d.npy"), np.load(tmp_path / "b" / "theta_d.npy"))


@needs_mnist
def test_lr_ref_dim_scales_the_step_by_the_root_of_the_dimension_ratio(tmp_path):
    scaled = trainer.train(small_config(epochs=1, dim=100, subset=500, lr=0.01, lr_ref_dim=400), tmp_path / "a",
                           quiet=True)
    plain = trainer.train(small_config(epochs=1, dim=100, subset=500, lr=0.02), tmp_path / "b", quiet=True)
    assert scaled["lr"] == pytest.approx(0.02, rel=1e-12) and plain["lr"] == 0.02
    assert np.allclose(np.load(tmp_path / "a" / "theta_d.npy"), np.load(tmp_path / "b" / "theta_d.npy"),
                       rtol=0, atol=1e-6)
    full = trainer.train(small_config(epochs=1, dim="full", subset=500, lr_ref_dim=400), tmp_path / "c", quiet=True)
    assert full["lr"] == 0.001  # full_lr: the scaling is for subspaces


@needs_mnist
def test_full_space_saves_theta_D_and_uses_full_lr(tmp_path):
    summary = trainer.train(small_config(dim="full", epochs=1), tmp_path / "full", quiet=True)
    assert summary["d"] is None and summary["projection"] is None and summary["lr"] == 0.001
    assert np.load(tmp_path / "full" / "theta_D.npy").shape == (199210,)
    assert summary["test_accuracy"] > 0.6


@needs_mnist
def test_memorisation_metric_is_training_accuracy(tmp_path):
    config = small_config(shuffle_labels=1.0, metric="train_accuracy", subset=300, epochs=1, dim=50)
    summary = trainer.train(config, tmp_path / "m", quiet=True)
    assert summary["value"] == summary["train_accuracy"]


# --- the command and its errors -----------------------------------------------------------------


@needs_mnist
def test_cli_train_runs_a_config(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["train", "--config", MNIST_FC, "--dim", "20", "--epochs", "1",
            "--subset", "500", "--data-dir", str(DATA), "--out", str(out), "--quiet"]
    monkeypatch.setattr("sys.argv", ["/some/venv/bin/rlsub", *args])
    code = main(args)
    assert code == 0
    assert json.loads((out / "config.json").read_text())["dim"] == 20
    # the summary records the command line that started the run, as every trainer's does
    assert json.loads((out / "summary.json").read_text())["command"] == "rlsub " + " ".join(args)
    assert "mnist_fc: d=20" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--dim", "0"], "dim must be >= 1"),
    (["--dim", "-5"], "dim must be >= 1"),
    (["--dim", "500000"], "exceeds the network's D = 199210"),
    (["--dim", "abc"], "dim must be a positive integer or 'full'"),
    (["--epochs", "0"], "epochs must be a positive integer"),
])
def test_cli_bad_input_is_one_error_and_writes_nothing(tmp_path, capsys, args, message):
    if "500000" in args and not (DATA / "mnist").is_dir():
        pytest.skip("needs MNIST to build the network")
    out = tmp_path / "run"
    code = main(["train", "--config", MNIST_FC, "--data-dir", str(DATA),
                 "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_missing_data_offline_is_one_error(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", MNIST_FC, "--data-dir", str(tmp_path / "none"),
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "train-images-idx3-ubyte.gz" in err and not out.exists()


def test_unknown_config_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: mnist\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        trainer.resolve(str(bad), {})


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "supervised").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_resolves(path):
    config = trainer.resolve(str(path), {})
    assert config["task"] and config["dataset"] in sdata.DATASETS
    assert config["dim"] == "full" or config["dim"] >= 1


@needs_mnist
def test_bad_model_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model must be one of"):
        small_config(model="resnet")
    with pytest.raises(ConfigError, match="activation"):
        trainer.train(small_config(model_kwargs={"activation": "gelu"}), tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists()
