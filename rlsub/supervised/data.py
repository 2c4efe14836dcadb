"""Image data for the supervised tasks of Li et al. 2018: MNIST and CIFAR-10, with their variants.

Files are read from a data folder: ``--data-dir``, else the ``RLSUB_DATA`` environment variable,
else ``~/.cache/rlsub/data``. The folder holds ``mnist/<the four IDX .gz files>`` and
``cifar10/cifar-10-python.tar.gz`` (official, preferred) or ``cifar10/cifar10-images-jpeg.tar.gz``
(a JPEG re-encoding, ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, decoded with pillow; its
pixels differ slightly from the official release, so every result records ``source``). A missing
file is downloaded from its official location and checked by md5; without a network the loader
raises :class:`rlsub.errors.UserError` naming the file and where to put it.

Decoded arrays are cached as an uncompressed ``.npz`` (written atomically) in ``$RLSUB_CACHE``,
else ``~/.cache/rlsub/cache`` (never in the data folder, which may be shared and read-only), so
a second load is a plain file read.

Variants (all from a seed through ``numpy.random.Generator``; no global RNG):
- ``subset``: N training examples drawn without replacement;
- ``shuffle_pixels``: one fixed permutation of the H*W pixel positions (channels move together),
  the same for train and test;
- ``shuffle_labels``: exactly ``round(fraction * N)`` training labels, at random positions,
  replaced by labels drawn uniformly from the classes (so about 1/10 of them keep their value).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rlsub.errors import UserError
from rlsub.subspace import atomic_write

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: MNIST file -> (md5 of the official .gz, md5 of the decompressed IDX)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}
CIFAR_PYTHON = "cifar-10-python.tar.gz"
CIFAR_PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_PYTHON_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_JPEG = "cifar10-images-jpeg.tar.gz"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: source -> what summaries say about it
SOURCES = {
    "mnist-idx": "MNIST, official IDX files",
    "cifar-10-python": "CIFAR-10, official python tarball",
    "cifar10-images-jpeg": "CIFAR-10, JPEG re-encoding (cifar10-images-jpeg.tar.gz; pixels not bit-exact, "
    "accuracies run a few points below the official data)",
}

# distinct Generator streams for the variants of one seed
_SUBSET, _PIXELS, _LABELS = 1, 2, 3


@dataclass(frozen=True)
class ImageData:
    """A classification data set: uint8 images [N, C, H, W] and int64 labels [N]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int = 10
    pixel_perm: np.ndarray | None = None  # [H*W] when pixels are shuffled
    shuffled_idx: np.ndarray | None = None  # training positions whose label was replaced

    def __post_init__(self):
        # consumers view the images as rows of bytes (the trainer's batch gather); hold C order
        for name in ("x_train", "x_test"):
            value = getattr(self, name)
            if not value.flags.c_contiguous:
                object.__setattr__(self, name, np.ascontiguousarray(value))

    @property
    def describe(self) -> str:
        return SOURCES[self.source]


# --- locating and fetching files ----------------------------------------------------------------


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$RLSUB_DATA``, else ``~/.cache/rlsub/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("RLSUB_DATA"):
        return Path(os.environ["RLSUB_DATA"]).expanduser()
    return Path.home() / ".cache" / "rlsub" / "data"


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (the only function here that touches the network)."""
    with urllib.request.urlopen(url, timeout=30) as response, open(dest, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _download(dest: Path, urls: list[str], md5: str) -> Path:
    """Fetch ``dest`` from the first of ``urls`` that answers with the right md5; UserError otherwise."""
    problems = []
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problems.append(f"cannot create {dest.parent}: {exc}")
        urls = []
    for url in urls:
        tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
        try:
            _fetch(url, tmp)
            got = file_md5(tmp)
            if got != md5:
                problems.append(f"{url}: md5 {got}, expected {md5}")
                continue
            os.replace(tmp, dest)
            return dest
        except OSError as exc:  # URLError, timeouts, refused connections, a read-only folder
            problems.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise UserError(
        f"data file {dest} is missing and could not be downloaded ({'; '.join(problems)}). "
        f"Put the official file {dest.name} (md5 {md5}) at {dest}, or point --data-dir or RLSUB_DATA "
        f"at a folder that holds {dest.parent.name}/{dest.name}"
    )


# --- decoding -----------------------------------------------------------------------------------


def _read_idx(path: Path, raw_md5: str) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:  # cut short or not gzip at all
        raise UserError(f"{path} is corrupt ({type(exc).__name__}: {exc}); replace it with the official file") from None
    if hashlib.md5(raw).hexdigest() != raw_md5:
        raise UserError(f"{path} is corrupt: its decompressed md5 is not {raw_md5}; replace it with the official file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _decode_mnist(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", MNIST_FILES[f"{prefix}-images-idx3-ubyte.gz"][1])
        labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", MNIST_FILES[f"{prefix}-labels-idx1-ubyte.gz"][1])
        arrays[f"x_{split}"] = images[:, None, :, :].copy()
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return arrays


def _decode_cifar_python(path: Path) -> dict[str, np.ndarray]:
    batches = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name.startswith("data_batch_") or name == "test_batch":
                batches[name] = pickle.load(tar.extractfile(member), encoding="bytes")
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]

    def stack(parts):
        x = np.concatenate([p[b"data"] for p in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(p[b"labels"], dtype=np.int64) for p in parts])
        return x, y

    (xtr, ytr), (xte, yte) = stack(train), stack([batches["test_batch"]])
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def _decode_cifar_jpeg(path: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    found: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or not member.name.endswith(".jpg") or len(parts) < 3:
                continue
            split, cls = parts[-3], parts[-2]
            if split not in found or cls not in CIFAR_CLASSES:
                continue
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
            found[split].append((CIFAR_CLASSES.index(cls), parts[-1], pixels.transpose(2, 0, 1)))
    arrays = {}
    for split, items in found.items():
        if not items:
            raise UserError(f"{path} holds no {split}/<class>/*.jpg images")
        items.sort(key=lambda t: (t[0], t[1]))
        # channels-first views of channels-last pixels: the stack keeps their memory order, and
        # ImageData puts it in C order
        arrays[f"x_{split}"] = np.stack([t[2] for t in items])
        arrays[f"y_{split}"] = np.array([t[0] for t in items], dtype=np.int64)
    return arrays


def _guarded(path: Path, decode) -> dict[str, np.ndarray]:
    """decode(path), with a damaged archive reported as a UserError naming the file."""
    try:
        return decode(path)
    except UserError:
        raise
    except (OSError, EOFError, zlib.error, tarfile.TarError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise UserError(f"{path} is corrupt ({type(exc).__name__}: {exc}); replace it with the official file") from None


# --- caching ------------------------------------------------------------------------------------


def _cache_path(name: str, sources: list[Path]) -> Path:
    """Where the decoded arrays of ``sources`` live: ``$RLSUB_CACHE`` or ``~/.cache/rlsub/cache``.

    The key is a hash of the sources' contents (their md5s; about 30 ms for CIFAR-10's 19 MB), so a replaced file
    is decoded afresh, while a copy of the same files (another data folder, or the same files copied
    again with new timestamps) reuses the cache instead of adding another 185 MB decoded copy. The data
    folder itself is never written to (it is often a shared, read-only copy).
    """
    key = hashlib.sha1(";".join(file_md5(p) for p in sources).encode())
    folder = Path(os.environ.get("RLSUB_CACHE") or Path.home() / ".cache" / "rlsub" / "cache")
    return folder.expanduser() / f"{name}-{key.hexdigest()[:16]}.npz"


def _cached(path: Path, decode) -> dict[str, np.ndarray]:
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except Exception:  # a damaged cache file is decoded afresh (and rewritten)
            pass
    arrays = decode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
    except OSError:  # a cache that cannot be written only costs time
        pass
    return arrays


# --- public loaders -----------------------------------------------------------------------------


def load_mnist(data_dir=None) -> ImageData:
    """MNIST: 60,000 / 10,000 images [N, 1, 28, 28] uint8."""
    root = data_root(data_dir)
    folder = root / "mnist"
    files = []
    for name, (gz_md5, _) in MNIST_FILES.items():
        path = folder / name
        if not path.exists():
            _download(path, [m + name for m in MNIST_MIRRORS], gz_md5)
        files.append(path)
    arrays = _cached(_cache_path("mnist", files), lambda: _decode_mnist(folder))
    return ImageData("mnist", source="mnist-idx", **arrays)


def load_cifar10(data_dir=None) -> ImageData:
    """CIFAR-10: 50,000 / 10,000 images [N, 3, 32, 32] uint8; the official tarball when present."""
    root = data_root(data_dir)
    official, jpeg = root / "cifar10" / CIFAR_PYTHON, root / "cifar10" / CIFAR_JPEG
    if not official.exists() and jpeg.exists():
        arrays = _cached(_cache_path("cifar10-jpeg", [jpeg]), lambda: _guarded(jpeg, _decode_cifar_jpeg))
        return ImageData("cifar10", source="cifar10-images-jpeg", **arrays)
    if not official.exists():
        _download(official, [CIFAR_PYTHON_URL], CIFAR_PYTHON_MD5)
    arrays = _cached(_cache_path("cifar10", [official]), lambda: _guarded(official, _decode_cifar_python))
    return ImageData("cifar10", source="cifar-10-python", **arrays)


DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def take_subset(data: ImageData, n: int, seed: int) -> ImageData:
    """``n`` training examples drawn without replacement (kept in their original order)."""
    total = len(data.y_train)
    if not 1 <= n <= total:
        raise UserError(f"subset must be between 1 and {total} for {data.name}, got {n}")
    idx = np.sort(_rng(seed, _SUBSET).choice(total, size=n, replace=False))
    return replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])


def shuffle_pixels(data: ImageData, seed: int) -> ImageData:
    """Apply one permutation of the H*W pixel positions (from ``seed``) to train and test alike."""
    _, c, h, w = data.x_train.shape
    perm = _rng(seed, _PIXELS).permutation(h * w)

    def apply(x):
        return np.ascontiguousarray(x.reshape(len(x), c, h * w)[:, :, perm].reshape(x.shape))

    return replace(data, x_train=apply(data.x_train), x_test=apply(data.x_test), pixel_perm=perm)


def shuffle_labels(data: ImageData, fraction: float, seed: int) -> ImageData:
    """Replace exactly round(fraction * N) training labels by uniformly random ones."""
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"shuffle_labels must be a fraction in [0, 1], got {fraction}")
    n = len(data.y_train)
    k = int(round(fraction * n))
    rng = _rng(seed, _LABELS)
    idx = np.sort(rng.choice(n, size=k, replace=False))
    y = data.y_train.copy()
    y[idx] = rng.integers(0, data.num_classes, size=k)
    return replace(data, y_train=y, shuffled_idx=idx)


def load_dataset(name: str, data_dir=None, seed: int = 0, subset: int | None = None,
                 pixels_shuffled: bool = False, labels_shuffled: float = 0.0) -> ImageData:
    """Data set ``name`` (mnist, cifar10) with its variants applied: subset, then pixels, then labels."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    data = DATASETS[name](data_dir)
    if subset is not None:
        data = take_subset(data, subset, seed)
    if pixels_shuffled:
        data = shuffle_pixels(data, seed)
    if labels_shuffled:
        data = shuffle_labels(data, labels_shuffled, seed)
    return data
