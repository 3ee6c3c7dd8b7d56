"""The public test data: a registry (relative path, SHA-256, upstream URL) and verified loaders.

Three data sets are registered, 569 files in all (:func:`datasets` lists them with their
source and terms of use):

- ``levin/``   Levin et al. 2009: 4 sharp images, 8 ground-truth kernels (PNG and float), the
  32 real camera-shake blurred images;
- ``kodak/``   Kodak PhotoCD, 24 RGB images;
- ``bsds500/`` Berkeley Segmentation Data Set 500, images only: ``train`` 200, ``val`` 100
  (the BSDS300 test set usually called BSD100), ``test`` 200.

Where the bytes come from, in this order:

1. a **mirror**: a local folder with the same layout, named by the environment variable
   ``REPRO_DATA_MIRROR`` (CI sets it to ``../shared/data``). Files are read in place after their
   SHA-256 is checked; a file that is missing or does not match is an error, never a download.
2. otherwise a **download** with :mod:`pooch` from the upstream URL of the registry into a user
   cache (``pooch.os_cache("repro")``, or ``REPRO_DATA_CACHE``). Pooch writes to a temporary file
   and moves it into place only once its hash matches, and re-downloads a cached file whose hash
   no longer matches.

The float Levin kernels are the one derived file: ``levin/levin_kernels.npz`` of the mirror is a
lossless NumPy conversion of ``Levin09.mat`` (MATLAB v7.3, i.e. HDF5) from the KAIR repository.
Without a mirror they are downloaded as ``Levin09.mat`` and converted, which needs the optional
package ``h5py`` (``pip install h5py``; it is not a dependency of repro). The ``.mat`` file's own
hash is not known here, so the conversion is verified by the SHA-256 of each kernel's float64
C-order bytes (:func:`kernel_content_sha256`). The 8-bit ground-truth kernel PNGs
(``levin_kernel(j, source="png")``) need no h5py.

Every read is verified, every error is a :class:`DataError` (a ``ValueError``) that names the
file, the expected and the actual hash, and what to do.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import operator
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import requests
import torch
from PIL import Image
from tqdm.auto import tqdm

from ._checks import check_choice
from ._io import atomic_path

MIRROR_ENV = "REPRO_DATA_MIRROR"
CACHE_ENV = "REPRO_DATA_CACHE"

LEVIN_KERNELS = "levin/levin_kernels.npz"
LEVIN_KERNEL_SIZES = (19, 17, 15, 27, 13, 21, 23, 23)
"""Side of the ground-truth kernels 1..8 (README of the mirror). SelfDeblur's scripts *estimate*
kernels of sizes 17, 15, 13, 27, 11, 19, 21, 21 instead (FACTS.md)."""
BSDS500_SPLITS = ("train", "val", "test")

_SELFDEBLUR = "https://raw.githubusercontent.com/csdwren/SelfDeblur/master/datasets/levin/"
_KAIR_LEVIN09 = "https://raw.githubusercontent.com/cszn/KAIR/master/kernels/Levin09.mat"
_LEVIN_HOME = "http://www.wisdom.weizmann.ac.il/~levina/papers/LevinEtalCVPR09Data.rar"
_IRCNN_SET24 = "https://raw.githubusercontent.com/cszn/IRCNN/master/testsets/Set24/"
_KODAK_HOME = "http://r0k.us/graphics/kodak/kodak/"
_BSDS500_GITHUB = "https://raw.githubusercontent.com/BIDS/BSDS500/master/BSDS500/data/images/"
_BSDS500_HOME = (
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html"
)

_LUMA_601 = (0.299, 0.587, 0.114)
"""Rec. 601 luma weights, as MATLAB's ``rgb2gray`` and Pillow's ``convert("L")``."""


class DataError(ValueError):
    """A data file is missing, corrupt, or cannot be obtained (no mirror and no network)."""


@dataclass(frozen=True)
class DataFile:
    """One registered file.

    ``url`` is the download address whose bytes match ``sha256`` (for ``levin_kernels.npz``: the
    ``Levin09.mat`` it is converted from); ``origin`` is the original home of the data, which
    may serve the same images in different bytes or only as an archive.
    """

    relpath: str
    sha256: str
    url: str
    origin: str
    dataset: str


@dataclass(frozen=True)
class Dataset:
    """A registered data set: its folder in the mirror, file count, source and terms of use."""

    name: str
    title: str
    count: int
    source: str
    licence: str


def _make_entry(relpath: str, sha256: str) -> DataFile:
    dataset, name = relpath.split("/", 1)
    if dataset == "levin":
        url = _KAIR_LEVIN09 if relpath == LEVIN_KERNELS else _SELFDEBLUR + name
        return DataFile(relpath, sha256, url, _LEVIN_HOME, dataset)
    if dataset == "kodak":
        return DataFile(relpath, sha256, _IRCNN_SET24 + name, _KODAK_HOME + name, dataset)
    if dataset == "bsds500":
        return DataFile(relpath, sha256, _BSDS500_GITHUB + name, _BSDS500_HOME, dataset)
    raise DataError(f"registry entry {relpath!r} belongs to no known data set")


def _read_registry() -> dict[str, str]:
    """relpath → SHA-256 from ``data_registry.txt`` beside this module (pooch's registry format)."""
    text = importlib.resources.files(__package__).joinpath("data_registry.txt").read_text()
    return dict(line.split() for line in text.splitlines() if line.strip() and not line.startswith("#"))


_REGISTRY = {relpath: _make_entry(relpath, sha) for relpath, sha in _read_registry().items()}

LEVIN_KERNEL_CONTENT = {
    # name: (shape, SHA-256 of the float64 C-order bytes)
    "kernel1": ((19, 19), "790503b6f3f449eb344dbd02c892c987962b281b0e9d4242bd257345884d66b1"),
    "kernel2": ((17, 17), "535770f6c9e43566c99c37f273f481d9adaf7db3bac278b60e8f4abfae243f30"),
    "kernel3": ((15, 15), "e8388c216270ab4293711cc6c08cd62dfb5c727c4398a80e9e8f51b7ed5dcc80"),
    "kernel4": ((27, 27), "79c819c0c8774b157b59684aba75a597f44ec5e65995ac59f76aabbbaf0e794d"),
    "kernel5": ((13, 13), "11b770c03177aee0f60b6c99e194d18da4ac54e5d89be8b594a51b7e605da4f6"),
    "kernel6": ((21, 21), "cb1f9bcda612b0d9f1b7a08056ae85eefcc5bb90640846a9cd5b1ed273647d75"),
    "kernel7": ((23, 23), "f24d5b12ba26328cad24e5dba2bfdcb5c778e35713e7899051fb8006411a34cd"),
    "kernel8": ((23, 23), "66c2fffff5ffd9fdf9428f7bd218c9839425137d6ff18738f058ff1f5052e172"),
}
"""The Levin float kernels' shapes and content hashes (:func:`kernel_content_sha256` of the
arrays in the mirror's ``levin/levin_kernels.npz``): hashes of the values, whatever the bytes of
the file that holds them."""

_DATASETS = {
    "levin": (
        "Levin et al. 2009, 'Understanding and evaluating blind deconvolution algorithms': "
        "4 sharp 255x255 grey images, 8 kernels (PNG scaled to max 255, and float), "
        "32 real camera-shake blurred images",
        "images as distributed with the SelfDeblur code (github.com/csdwren/SelfDeblur, "
        "datasets/levin/); float kernels Levin09.mat as distributed with KAIR "
        f"(github.com/cszn/KAIR, kernels/); original home {_LEVIN_HOME}",
        "research use, as the original authors distribute it",
    ),
    "kodak": (
        "Kodak PhotoCD set, 24 RGB images 768x512 or 512x768",
        f"{_KODAK_HOME.rsplit('kodak/', 1)[0]} (bytes of the copy in github.com/cszn/IRCNN, "
        "testsets/Set24/)",
        "released by Kodak for unrestricted use",
    ),
    "bsds500": (
        "Berkeley Segmentation Data Set 500, images only: train 200, val 100 (= BSD100), "
        "test 200 JPEG, 481x321 or 321x481",
        f"{_BSDS500_HOME} (copy in github.com/BIDS/BSDS500)",
        "research use, as the original authors distribute it",
    ),
}

SKIMAGE_IMAGES = {
    "astronaut": ("astronaut.png", "public domain (NASA)"),
    "camera": ("camera.png", "CC0 (Lav Varshney)"),
    "chelsea": ("chelsea.png", "CC0 (Stefan van der Walt)"),
    "coffee": ("coffee.png", "CC0 (Rachel Michetti)"),
    "rocket": ("rocket.jpg", "public domain (SpaceX)"),
    "coins": ("coins.png", "no known copyright restrictions"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "public domain (NASA)"),
    "brick": ("brick.png", "CC0 (CC0Textures)"),
    "grass": ("grass.png", "CC0 (CC0Textures)"),
    "gravel": ("gravel.png", "CC0 (CC0Textures)"),
}
"""Natural images shipped inside the scikit-image wheel (no download), with their terms as the
docstrings of :mod:`skimage.data` state them."""


def registry() -> dict[str, DataFile]:
    """Every registered file, keyed by its path relative to the mirror root."""
    return dict(_REGISTRY)


def datasets() -> dict[str, Dataset]:
    """The registered data sets with their file counts, source and terms of use."""
    counts = {name: 0 for name in _DATASETS}
    for entry in _REGISTRY.values():
        counts[entry.dataset] += 1
    return {
        name: Dataset(name, title, counts[name], source, licence)
        for name, (title, source, licence) in _DATASETS.items()
    }


def mirror_dir() -> Path | None:
    """The mirror named by ``REPRO_DATA_MIRROR``, or ``None`` when the variable is unset."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{MIRROR_ENV}={value!r} is not a directory: point it at a copy of the data mirror "
            f"(the folder that holds levin/, kodak/, bsds500/), or unset it to download"
        )
    return path


def cache_dir() -> Path:
    """The download cache: ``REPRO_DATA_CACHE`` or the user cache ``pooch.os_cache("repro")``."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path(pooch.os_cache("repro"))


def kernel_content_sha256(kernel) -> str:
    """SHA-256 of a kernel's values as float64 bytes in C order (shape not included)."""
    array = np.ascontiguousarray(np.asarray(kernel, dtype=np.float64))
    return hashlib.sha256(array.tobytes()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[str, tuple[int, int, int]] = {}
"""Resolved path -> (size, mtime_ns, inode) of files verified in this process: a file is hashed
again only when one of these changes."""


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _check_kernel_content(kernels: dict, where: str) -> None:
    """Raise a DataError unless ``kernels`` holds exactly the registered Levin float kernels."""
    expected = LEVIN_KERNEL_CONTENT
    if sorted(kernels) != sorted(expected):
        raise DataError(f"{where} holds {sorted(kernels)}, expected the keys {sorted(expected)}")
    for name, (shape, sha) in expected.items():
        array = np.asarray(kernels[name])
        actual = kernel_content_sha256(array)
        if array.shape != shape or actual != sha:
            raise DataError(
                f"{name} of {where} does not match the registry: expected shape {shape} and "
                f"content SHA-256 {sha}, got shape {array.shape} and {actual}"
            )


def _verify(entry: DataFile, path: Path, where: str, remedy: str) -> Path:
    """Return ``path`` if its bytes are the registered ones (the npz: its kernel values)."""
    key = str(path.resolve())
    stamp = _stamp(path)
    if _VERIFIED.get(key) == stamp:
        return path
    actual = _sha256(path)
    if actual != entry.sha256:
        message = (
            f"{entry.relpath} in the {where} ({path}) does not match the registry: expected "
            f"SHA-256 {entry.sha256}, got {actual}; the file is truncated, altered or another "
            f"version. {remedy}"
        )
        if entry.relpath != LEVIN_KERNELS:
            raise DataError(message)
        try:  # a re-saved npz may differ in its zip bytes but not in its values
            with np.load(path, allow_pickle=False) as npz:
                _check_kernel_content(dict(npz), str(path))
        except (OSError, ValueError) as exc:  # DataError is a ValueError
            raise DataError(f"{message} ({exc})") from exc
    _VERIFIED[key] = stamp
    return path


def _retrieve(entry: DataFile, url: str, known_hash: str | None, target: Path) -> Path:
    """Download ``url`` to ``target`` with pooch (temporary file, moved once the hash matches).

    Pooch re-downloads a cached ``target`` whose hash does not match ``known_hash``.
    """
    stale = f" (the cached copy {target} failed its hash check)" if target.exists() else ""
    try:
        return Path(
            pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=target.name,
                path=target.parent,
                downloader=pooch.HTTPDownloader(timeout=60),
            )
        )
    except requests.exceptions.RequestException as exc:
        raise DataError(
            f"cannot get {entry.relpath}{stale}: no data mirror is set and downloading {url} "
            f"failed ({type(exc).__name__}: {exc}). Without a network, point {MIRROR_ENV} at a "
            f"folder with the layout of the data mirror, e.g. "
            f"`export {MIRROR_ENV}=/path/to/shared/data`."
        ) from exc
    except ValueError as exc:  # pooch: the downloaded bytes do not match known_hash
        raise DataError(
            f"the download of {entry.relpath} from {url} does not match the registry "
            f"(expected SHA-256 {entry.sha256}) and was discarded{stale}: {exc} Retry later, "
            f"or use a mirror ({MIRROR_ENV})."
        ) from exc


def _require_h5py():
    """The optional h5py module, or a DataError that says how to do without it."""
    try:
        import h5py  # optional: only the float Levin kernels need it
    except ImportError:
        raise DataError(
            "the Levin float kernels come from Levin09.mat (MATLAB v7.3 / HDF5), which needs "
            f"h5py: `pip install h5py`, or point {MIRROR_ENV} at a mirror that holds "
            f"{LEVIN_KERNELS}, or use levin_kernel(j, source='png') (8-bit kernels)"
        ) from None
    return h5py


def _kernels_from_mat(path: Path) -> dict[str, np.ndarray]:
    """Read the cell array ``kernels`` (1x8) of ``Levin09.mat`` (MATLAB v7.3) with h5py.

    HDF5 stores MATLAB arrays transposed: each kernel is read and transposed back.
    """
    with _require_h5py().File(path, "r") as f:
        refs = np.asarray(f["kernels"]).ravel()
        return {
            f"kernel{j}": np.ascontiguousarray(np.asarray(f[ref], dtype=np.float64).T)
            for j, ref in enumerate(refs, start=1)
        }


def _download_levin_kernels(entry: DataFile) -> Path:
    """Download ``Levin09.mat``, convert and verify it, and cache the result as the npz."""
    target = cache_dir() / entry.relpath
    remedy = f"Delete {target} to convert Levin09.mat again."
    if target.exists():
        return _verify(entry, target, "download cache", remedy)
    _require_h5py()  # before downloading anything
    mat = _retrieve(entry, entry.url, None, target.with_name("Levin09.mat"))
    try:
        kernels = _kernels_from_mat(mat)
        _check_kernel_content(kernels, f"{mat} (downloaded from {entry.url})")
    except BaseException:
        mat.unlink(missing_ok=True)  # a bad download must not be reused
        raise
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **kernels)
    return _verify(entry, target, "download cache", remedy)


def _check_relpath(relpath) -> DataFile:
    if not isinstance(relpath, str):
        raise ValueError(f"relpath must be a str, got {type(relpath).__name__}")
    entry = _REGISTRY.get(relpath)
    if entry is None:
        raise ValueError(
            f"relpath {relpath!r} is not a registered data file; registered paths look like "
            f"'levin/gt/im1.png', 'kodak/kodim01.png', 'bsds500/val/3096.jpg' (see registry())"
        )
    return entry


def fetch(relpath: str) -> Path:
    """Local path of a registered file, after checking its SHA-256.

    From the mirror (``REPRO_DATA_MIRROR``) when it is set, else from the download cache
    (downloading it first if needed). Raises :class:`DataError` for a missing or corrupt file
    or when the file can be neither read from a mirror nor downloaded.
    """
    entry = _check_relpath(relpath)
    mirror = mirror_dir()
    if mirror is not None:
        path = mirror / entry.relpath
        if not path.is_file():
            raise DataError(
                f"{entry.relpath} is missing from the data mirror {mirror} ({MIRROR_ENV}): "
                f"expected {path} with SHA-256 {entry.sha256}. Restore it from {entry.url}, "
                f"or unset {MIRROR_ENV} to download it."
            )
        return _verify(entry, path, "data mirror", f"Restore an intact copy from {entry.url}.")
    if entry.relpath == LEVIN_KERNELS:
        return _download_levin_kernels(entry)
    target = cache_dir() / entry.relpath
    if target.is_file() and _VERIFIED.get(str(target.resolve())) == _stamp(target):
        return target
    path = _retrieve(entry, entry.url, f"sha256:{entry.sha256}", target)
    return _verify(entry, path, "download cache", f"Delete {path} and fetch it again.")



def _files_of(dataset: str | None) -> list[DataFile]:
    if dataset is not None:
        check_choice(dataset, "dataset", _DATASETS)
    return [entry for entry in _REGISTRY.values() if dataset is None or entry.dataset == dataset]


def local_copy(relpath: str) -> Path | None:
    """The file :func:`fetch` would read without a network (the mirror's copy when
    ``REPRO_DATA_MIRROR`` is set, else the download cache's), or ``None`` if there is none.
    Only its presence is checked here; :func:`fetch` checks its hash."""
    entry = _check_relpath(relpath)
    mirror = mirror_dir()
    path = (mirror if mirror is not None else cache_dir()) / entry.relpath
    return path if path.is_file() else None


def available(dataset: str | None = None) -> bool:
    """Whether every file of ``dataset`` (``"levin"``, ``"kodak"``, ``"bsds500"``; default all)
    can be read without a network (:func:`local_copy`)."""
    return all(local_copy(entry.relpath) is not None for entry in _files_of(dataset))


def fetch_all(dataset: str | None = None, progress: bool = True) -> list[Path]:
    """:func:`fetch` every file of ``dataset`` (default all): download what is missing, and check
    the SHA-256 of every file, with a progress bar. The first missing or corrupt file raises."""
    entries = _files_of(dataset)
    return [fetch(entry.relpath)
            for entry in tqdm(entries, desc=f"data {dataset or 'all'}", unit="file", disable=not progress)]

def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_index(value, name: str, count: int) -> int:
    """A 1-based index in ``1..count`` (the numbering of the data sets' file names)."""
    try:
        index = operator.index(value)
    except TypeError:
        index = None
    if index is None or isinstance(value, bool) or not 1 <= index <= count:
        raise ValueError(f"{name} must be an integer in 1..{count}, got {value!r}")
    return index


def _decode(im: Image.Image) -> np.ndarray:
    """A PIL image as an (H, W) or (H, W, 3) float32 array in [0, 1]; alpha is dropped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale (PNG, TIFF)
        return np.clip(np.asarray(im, dtype=np.float32) / np.float32(65535), 0, 1)
    if im.mode not in ("L", "RGB"):  # palette, alpha, CMYK, 1-bit, ...
        im = im.convert("L" if im.mode in ("1", "LA", "La") else "RGB")
    return np.asarray(im, dtype=np.float32) / np.float32(255)


def _read_image(path: Path, gray: bool) -> torch.Tensor:
    """Decode an image file into a (C, H, W) float32 tensor in [0, 1]."""
    with Image.open(path) as im:
        array = _decode(im)
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
        if gray:
            # elementwise, not a BLAS dot product: BLAS picks its kernel (and so the last bit of
            # the sum) by CPU, and a SelfDeblur run amplifies a last-bit change of its input
            r, g, b = (np.float32(w) * channel for w, channel in zip(_LUMA_601, array))
            array = ((r + g) + b)[None]
    return torch.from_numpy(np.ascontiguousarray(array))


def read_image(path: str | os.PathLike, gray: bool = False) -> torch.Tensor:
    """Any image file (PNG, JPEG, TIFF, ...) as a (C, H, W) float32 tensor in [0, 1].

    For your own photographs. 8-bit files are divided by 255, 16-bit greyscale PNGs by 65535;
    greyscale gives C = 1, colour C = 3 (palette and CMYK images are converted to RGB, an alpha
    channel is dropped); ``gray=True`` gives Rec. 601 luma as :func:`load_image`. A missing,
    empty, truncated or undecodable file raises :class:`DataError` naming it.
    """
    _check_flag(gray, "gray")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        return _read_image(path, gray)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None


def load_image(relpath: str, gray: bool = False) -> torch.Tensor:
    """A registered image as a (C, H, W) float32 tensor in [0, 1] (8-bit values / 255).

    Grey files give C = 1, colour files C = 3; ``gray=True`` turns colour into Rec. 601 luma
    (0.299 R + 0.587 G + 0.114 B, as MATLAB's ``rgb2gray``), C = 1. Add the batch axis with
    ``[None]`` for the (B, C, H, W) functions of the package.
    """
    entry = _check_relpath(relpath)
    _check_flag(gray, "gray")
    if entry.relpath == LEVIN_KERNELS:
        raise ValueError(f"relpath {relpath!r} is not an image; use levin_kernel(j)")
    return _read_image(fetch(entry.relpath), gray)


def levin_sharp(i: int) -> torch.Tensor:
    """Sharp Levin image ``i`` in 1..4, (1, 255, 255) float32."""
    return load_image(f"levin/gt/im{_check_index(i, 'i', 4)}.png")


def levin_blurred(i: int, j: int) -> torch.Tensor:
    """Levin image ``i`` (1..4) blurred by camera shake ``j`` (1..8), (1, 255, 255) float32.

    These are real captures: ``levin_sharp(i)`` blurred with kernel ``j`` matches them only up
    to a residual of 1-4 grey levels and an integer shift of a few pixels (mirror README), and
    with the float kernels only after the 180-degree rotation described in :func:`levin_kernel`.
    """
    _check_index(i, "i", 4)
    _check_index(j, "j", 8)
    return load_image(f"levin/im{i}_kernel{j}_img.png")


def levin_kernel(j: int, source: str = "float") -> torch.Tensor:
    """Ground-truth Levin kernel ``j`` in 1..8, a (kh, kw) float64 tensor summing to 1.

    ``source="float"``: the float kernels of ``Levin09.mat`` (mirror ``levin_kernels.npz``);
    ``source="png"``: the 8-bit PNG of the SelfDeblur data, divided by its sum. Sizes are
    :data:`LEVIN_KERNEL_SIZES`. Both are returned as distributed, and they disagree in
    orientation: the PNGs of kernels 4 and 8 are the float kernels rotated by 180 degrees, the
    six others equal them up to 8-bit rounding. Checked on the mirror, the blurred images are
    best explained by true convolution with the float kernels rotated by 180 degrees
    (``torch.flip(k, (0, 1))``) for all eight kernels, hence with the PNG as given only for
    kernels 4 and 8. Compare kernels up to shift and flip (Levin et al.'s protocol).
    """
    j = _check_index(j, "j", 8)
    check_choice(source, "source", ("float", "png"))
    if source == "png":
        kernel = load_image(f"levin/gt/kernel{j}.png")[0].to(torch.float64)
        return kernel / kernel.sum()
    with np.load(fetch(LEVIN_KERNELS), allow_pickle=False) as npz:
        kernel = np.ascontiguousarray(npz[f"kernel{j}"], dtype=np.float64)
    return torch.from_numpy(kernel)


def levin_kernels(source: str = "float") -> list[torch.Tensor]:
    """The 8 ground-truth Levin kernels, in order (see :func:`levin_kernel`)."""
    return [levin_kernel(j, source) for j in range(1, 9)]


def kodak(i: int, gray: bool = False) -> torch.Tensor:
    """Kodak image ``i`` in 1..24, (3, 512, 768) or (3, 768, 512) float32 (C = 1 if ``gray``)."""
    return load_image(f"kodak/kodim{_check_index(i, 'i', 24):02d}.png", gray)


def kodak_images(gray: bool = False) -> list[torch.Tensor]:
    """The 24 Kodak images, in order."""
    return [kodak(i, gray) for i in range(1, 25)]


def bsds500(split: str) -> list[str]:
    """Relative paths of a BSDS500 split (``train``, ``val`` = BSD100, ``test``), sorted by name."""
    check_choice(split, "split", BSDS500_SPLITS)
    prefix = f"bsds500/{split}/"
    return sorted(relpath for relpath in _REGISTRY if relpath.startswith(prefix))


def load_bsds500(split: str, n: int | None = None, gray: bool = False) -> list[torch.Tensor]:
    """The first ``n`` (default all) images of a BSDS500 split, (C, 321, 481) or (C, 481, 321)."""
    relpaths = bsds500(split)
    if n is not None:
        n = _check_index(n, "n", len(relpaths))
    _check_flag(gray, "gray")
    return [load_image(relpath, gray) for relpath in relpaths[:n]]


def skimage_images(names=None, gray: bool = False) -> dict[str, torch.Tensor]:
    """scikit-image's bundled natural images (:data:`SKIMAGE_IMAGES`), an offline fallback.

    The files ship inside the scikit-image wheel and are read from there, with no network and
    no hash registry (they are not part of the data mirror). Returns name -> (C, H, W) float32.
    """
    if names is None:
        names = list(SKIMAGE_IMAGES)
    elif isinstance(names, str):
        raise ValueError(f"names must be a list of image names, got the string {names!r}")
    names = [check_choice(name, "names", SKIMAGE_IMAGES) for name in names]
    _check_flag(gray, "gray")
    folder = importlib.resources.files("skimage") / "data"
    images = {}
    for name in names:
        resource = folder / SKIMAGE_IMAGES[name][0]
        if not resource.is_file():
            raise DataError(f"scikit-image's bundled image {resource} is missing")
        with importlib.resources.as_file(resource) as path:
            images[name] = _read_image(path, gray)
    return images
