"""Tests of repro.data: the registry, verified reads from a mirror and from the pooch cache.

No test touches the network: an autouse fixture makes every pooch download fail unless a test
installs its own fake downloader. Tests that read real data need the files on this machine:
the mirror named by REPRO_DATA_MIRROR (CI sets it), or the download cache filled by `repro data
fetch` (`make test` runs it first); without them they are skipped with a reason that says so.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pooch
import pytest
import requests
import torch
from PIL import Image
from scipy.signal import fftconvolve

from repro import data

MIRROR = data.mirror_dir()
# The files on this machine, read before any test changes the environment: the mirror when
# REPRO_DATA_MIRROR is set, else the download cache once `repro data fetch` has filled it (the
# cache has the mirror's layout). `make test` fetches them first, so these tests always run there.
SOURCE = (MIRROR or data.cache_dir()) if data.available() else None
needs_mirror = pytest.mark.skipif(
    MIRROR is None,
    reason=f"{data.MIRROR_ENV} is not set: the registry is compared with the mirror's own manifest",
)


def needs_real_data(test):
    """Run ``test`` with the real files as its mirror; skip it, saying how to get them, without them."""
    reason = (f"the data sets are not on this machine: run `repro data fetch` once (downloads them), "
              f"or set {data.MIRROR_ENV} to a copy of the data mirror")
    return pytest.mark.skipif(SOURCE is None, reason=reason)(pytest.mark.usefixtures("real_data")(test))


LEVIN_IM1 = "levin/gt/im1.png"
LEVIN_K1 = "levin/gt/kernel1.png"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, a private download cache, and a fresh per-process verification cache."""

    def no_network(self, url, output_file, pooch_, check_only=False):
        raise requests.exceptions.ConnectionError(f"network disabled in tests ({url})")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", no_network)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_VERIFIED", {})


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)


@pytest.fixture
def real_data(monkeypatch):
    monkeypatch.setenv(data.MIRROR_ENV, str(SOURCE))


@pytest.fixture
def fake_mirror(monkeypatch, tmp_path):
    """A mirror with only levin/gt/im1.png and levin/gt/kernel1.png, copied from the real files."""
    root = tmp_path / "mirror"
    for relpath in (LEVIN_IM1, LEVIN_K1):
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCE / relpath, root / relpath)
    monkeypatch.setenv(data.MIRROR_ENV, str(root))
    return root


def serve_from(monkeypatch, files: dict[str, bytes], calls: list):
    """Replace pooch's HTTP download by a lookup of the URL in ``files``."""

    def download(self, url, output_file, pooch_, check_only=False):
        calls.append(url)
        Path(output_file).write_bytes(files[url])

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", download)


# --- the registry ------------------------------------------------------------------------


def test_registry_counts_per_dataset_and_split():
    reg = data.registry()
    assert len(reg) == 569
    assert {name: ds.count for name, ds in data.datasets().items()} == {
        "levin": 45,
        "kodak": 24,
        "bsds500": 500,
    }
    assert [len(data.bsds500(s)) for s in data.BSDS500_SPLITS] == [200, 100, 200]
    levin = {p for p in reg if p.startswith("levin/")}
    expected = (
        {f"levin/gt/im{i}.png" for i in range(1, 5)}
        | {f"levin/gt/kernel{j}.png" for j in range(1, 9)}
        | {f"levin/im{i}_kernel{j}_img.png" for i in range(1, 5) for j in range(1, 9)}
        | {data.LEVIN_KERNELS}
    )
    assert levin == expected
    assert {p for p in reg if p.startswith("kodak/")} == {
        f"kodak/kodim{i:02d}.png" for i in range(1, 25)
    }


def test_every_entry_has_https_url_and_sha256():
    for relpath, entry in data.registry().items():
        assert entry.relpath == relpath
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), relpath
        assert entry.url.startswith("https://"), relpath
        expected_name = "Levin09.mat" if relpath == data.LEVIN_KERNELS else relpath.split("/")[-1]
        assert entry.url.endswith("/" + expected_name), relpath
        assert entry.origin.startswith(("http://", "https://")), relpath
    for ds in data.datasets().values():
        assert ds.source and ds.licence and ds.title


def test_exact_upstream_urls():
    reg = data.registry()
    raw = "https://raw.githubusercontent.com/"
    selfdeblur = raw + "csdwren/SelfDeblur/master/datasets/levin/"
    assert reg["levin/gt/im1.png"].url == selfdeblur + "gt/im1.png"
    assert reg["levin/im3_kernel7_img.png"].url == selfdeblur + "im3_kernel7_img.png"
    assert reg[data.LEVIN_KERNELS].url == raw + "cszn/KAIR/master/kernels/Levin09.mat"
    assert reg["kodak/kodim07.png"].url == raw + "cszn/IRCNN/master/testsets/Set24/kodim07.png"
    assert reg["kodak/kodim07.png"].origin == "http://r0k.us/graphics/kodak/kodak/kodim07.png"
    assert (
        reg["bsds500/val/3096.jpg"].url
        == raw + "BIDS/BSDS500/master/BSDS500/data/images/val/3096.jpg"
    )


@needs_mirror
def test_registry_equals_the_mirror_manifest():
    manifest = {}
    for line in (MIRROR / "MANIFEST.sha256").read_text().splitlines():
        sha, path = line.split(maxsplit=1)
        manifest[path.removeprefix("./")] = sha
    assert len(manifest) == 569
    assert {p: e.sha256 for p, e in data.registry().items()} == manifest


def test_kernel_content_hash_is_the_float64_c_order_bytes():
    k = np.arange(6.0).reshape(2, 3)
    expected = hashlib.sha256(np.ascontiguousarray(k).tobytes()).hexdigest()
    assert data.kernel_content_sha256(np.asfortranarray(k)) == expected
    assert data.kernel_content_sha256(k.astype(np.float32)) == expected
    assert data.kernel_content_sha256(k.T) != expected


# --- validation --------------------------------------------------------------------------


def test_data_error_is_a_value_error():
    assert issubclass(data.DataError, ValueError)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: data.fetch("levin/gt/im9.png"), "relpath 'levin/gt/im9.png' is not a registered"),
        (lambda: data.fetch(Path("levin/gt/im1.png")), "relpath must be a str"),
        (lambda: data.load_image(LEVIN_IM1, gray="yes"), "gray must be True or False"),
        (lambda: data.load_image(data.LEVIN_KERNELS), "is not an image"),
        (lambda: data.levin_sharp(0), r"i must be an integer in 1\.\.4"),
        (lambda: data.levin_sharp(True), r"i must be an integer in 1\.\.4"),
        (lambda: data.levin_sharp(1.0), r"i must be an integer in 1\.\.4"),
        (lambda: data.levin_blurred(1, 9), r"j must be an integer in 1\.\.8"),
        (lambda: data.levin_kernel(1, source="jpg"), "source must be one of"),
        (lambda: data.kodak(25), r"i must be an integer in 1\.\.24"),
        (lambda: data.bsds500("validation"), "split must be one of"),
        (lambda: data.load_bsds500("val", n=0), r"n must be an integer in 1\.\.100"),
        (lambda: data.load_bsds500("val", n=101), r"n must be an integer in 1\.\.100"),
        (lambda: data.skimage_images(["lena"]), "names must be one of"),
        (lambda: data.skimage_images("camera"), "names must be a list"),
    ],
)
def test_invalid_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mirror_that_is_not_a_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="REPRO_DATA_MIRROR=.*is not a directory"):
        data.fetch(LEVIN_IM1)


# --- reading the real mirror -------------------------------------------------------------


@needs_real_data
def test_levin_images_and_kernels():
    sharp, blurred = data.levin_sharp(2), data.levin_blurred(4, 8)
    for image in (sharp, blurred):
        assert image.shape == (1, 255, 255) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
    reference = np.asarray(Image.open(SOURCE / "levin/gt/im2.png"), dtype=np.float64) / 255
    np.testing.assert_allclose(sharp[0].numpy(), reference, atol=1e-7)

    floats, pngs = data.levin_kernels(), data.levin_kernels(source="png")
    assert [k.shape[0] for k in floats] == list(data.LEVIN_KERNEL_SIZES)
    for j, (k, p) in enumerate(zip(floats, pngs), start=1):
        assert k.dtype == p.dtype == torch.float64
        assert k.shape == p.shape and k.shape[0] == k.shape[1]
        assert abs(float(k.sum()) - 1) < 1e-12 and abs(float(p.sum()) - 1) < 1e-12
        assert k.min() >= 0 and p.min() >= 0
        # the PNG is the float kernel scaled to max 255 and rounded; 4 and 8 are rotated 180 deg
        oriented = torch.flip(k, (0, 1)) if j in (4, 8) else k
        np.testing.assert_allclose(
            (p / p.max()).numpy(), (oriented / oriented.max()).numpy(), atol=0.5 / 255 + 1e-9
        )
        assert data.kernel_content_sha256(k.numpy()) == data.LEVIN_KERNEL_CONTENT[
            f"kernel{j}"
        ][1]


@needs_real_data
def test_levin_blurred_image_fits_the_rotated_float_kernel():
    """The fact stated in levin_kernel's docstring, on image 1 / kernel 6."""
    x = data.levin_sharp(1)[0].double().numpy()
    y = data.levin_blurred(1, 6)[0].double().numpy()
    k = data.levin_kernel(6).numpy()

    def rmse_up_to_shift(kernel):
        z = fftconvolve(x, kernel, mode="same")
        c = slice(20, -20)
        return min(
            np.sqrt(np.mean((np.roll(z, (dy, dx), (0, 1))[c, c] - y[c, c]) ** 2))
            for dy in range(-6, 7)
            for dx in range(-6, 7)
        )

    rotated, as_stored = rmse_up_to_shift(k[::-1, ::-1]), rmse_up_to_shift(k)
    assert rotated < 3 / 255
    assert as_stored > 3 * rotated


@needs_real_data
def test_kodak_images():
    images = data.kodak_images()
    assert len(images) == 24
    assert images[0].shape == (3, 512, 768) and images[3].shape == (3, 768, 512)
    for image in images:
        assert image.shape in {(3, 512, 768), (3, 768, 512)} and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1


@needs_real_data
def test_bsds500_and_gray_conversion():
    val = data.bsds500("val")
    assert val[0] == "bsds500/val/101085.jpg" and val == sorted(val)
    colour = data.load_bsds500("val", n=2)
    gray = data.load_bsds500("val", n=2, gray=True)
    assert len(colour) == 2
    for c, g, relpath in zip(colour, gray, val):
        assert c.shape[0] == 3 and c.shape[1:] in {(321, 481), (481, 321)}
        assert g.shape == (1, *c.shape[1:])
        # Rec. 601 luma, as Pillow's convert("L") (which rounds to 8 bits)
        pil = np.asarray(Image.open(SOURCE / relpath).convert("L"), dtype=np.float64) / 255
        np.testing.assert_allclose(g[0].numpy(), pil, atol=1 / 255)
        assert abs(float(g.mean()) - pil.mean()) < 0.2 / 255


# --- a fake mirror with broken files -------------------------------------------------------


@needs_real_data
def test_fake_mirror_intact_file(fake_mirror):
    path = data.fetch(LEVIN_IM1)
    assert path == fake_mirror / LEVIN_IM1
    assert torch.equal(data.levin_sharp(1), data._read_image(SOURCE / LEVIN_IM1, False))


@needs_real_data
@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_fake_mirror_corrupt_file_names_file_and_both_hashes(fake_mirror, damage):
    path = fake_mirror / LEVIN_IM1
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        path.write_bytes(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
    expected = data.registry()[LEVIN_IM1].sha256
    with pytest.raises(data.DataError) as info:
        data.levin_sharp(1)
    message = str(info.value)
    assert LEVIN_IM1 in message and expected in message and sha256_of(path) in message
    assert "data mirror" in message and "Restore" in message
    # the kernel PNG of the same mirror is fine
    assert data.levin_kernel(1, source="png").shape == (19, 19)


@needs_real_data
def test_fake_mirror_missing_file(fake_mirror):
    with pytest.raises(data.DataError, match=r"levin/gt/im2\.png is missing from the data mirror"):
        data.levin_sharp(2)


@needs_real_data
def test_available_and_fetch_all_see_only_the_files_there_are(fake_mirror):
    """The fake mirror holds two Levin files and the whole of Kodak: only Kodak is available, and
    fetching Levin stops at its first missing file with the mirror's error."""
    for relpath in data.registry():
        if relpath.startswith("kodak/"):
            (fake_mirror / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SOURCE / relpath, fake_mirror / relpath)
    assert data.local_copy(LEVIN_IM1) == fake_mirror / LEVIN_IM1
    assert data.local_copy("levin/gt/im2.png") is None
    assert data.available("kodak") and not data.available("levin") and not data.available()
    paths = data.fetch_all("kodak", progress=False)
    assert len(paths) == 24 and all(path.parent == fake_mirror / "kodak" for path in paths)
    with pytest.raises(data.DataError, match="is missing from the data mirror"):
        data.fetch_all("levin", progress=False)
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.available("set14")


def test_local_copy_reads_the_download_cache_without_a_mirror(no_mirror, tmp_path):
    assert data.local_copy(LEVIN_IM1) is None and not data.available("levin")
    cached = tmp_path / "cache" / LEVIN_IM1  # the offline fixture's cache
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not checked here")
    assert data.local_copy(LEVIN_IM1) == cached


@needs_real_data
def test_verification_is_cached_and_invalidated_by_a_change(fake_mirror, monkeypatch):
    hashed = []
    real_sha256 = data._sha256
    monkeypatch.setattr(data, "_sha256", lambda p: hashed.append(p) or real_sha256(p))
    for _ in range(3):
        data.fetch(LEVIN_IM1)
    assert len(hashed) == 1
    path = fake_mirror / LEVIN_IM1
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(data.DataError, match="does not match the registry"):
        data.fetch(LEVIN_IM1)
    assert len(hashed) == 2


@needs_real_data
def test_fake_mirror_levin_kernels_checked_by_content(fake_mirror):
    kernels = dict(np.load(SOURCE / data.LEVIN_KERNELS))
    target = fake_mirror / data.LEVIN_KERNELS
    # the same values saved again: other zip bytes, same content -> accepted
    np.savez(target, **{name: np.ascontiguousarray(k) for name, k in kernels.items()})
    assert sha256_of(target) != data.registry()[data.LEVIN_KERNELS].sha256
    expected3 = torch.from_numpy(np.ascontiguousarray(kernels["kernel3"]))
    assert torch.equal(data.levin_kernel(3), expected3)
    # one value changed -> rejected, naming the kernel and both content hashes
    kernels["kernel5"] = kernels["kernel5"].copy()
    kernels["kernel5"][6, 6] += 1e-12
    np.savez(target, **kernels)
    expected = data.LEVIN_KERNEL_CONTENT["kernel5"][1]
    with pytest.raises(data.DataError) as info:
        data.levin_kernel(1)
    message = str(info.value)
    assert "kernel5" in message and expected in message
    assert data.kernel_content_sha256(kernels["kernel5"]) in message


# --- no mirror: the pooch download cache ---------------------------------------------------


def test_no_mirror_and_no_network_says_how_to_point_at_a_mirror(no_mirror, tmp_path):
    with pytest.raises(data.DataError) as info:
        data.levin_sharp(1)
    message = str(info.value)
    assert "REPRO_DATA_MIRROR" in message and "export" in message
    assert data.registry()[LEVIN_IM1].url in message
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@needs_real_data
def test_download_into_cache_then_reuse(no_mirror, monkeypatch, tmp_path):
    entry = data.registry()[LEVIN_IM1]
    calls = []
    serve_from(monkeypatch, {entry.url: (SOURCE / LEVIN_IM1).read_bytes()}, calls)
    path = data.fetch(LEVIN_IM1)
    assert path == tmp_path / "cache" / LEVIN_IM1 and sha256_of(path) == entry.sha256
    assert torch.equal(data.levin_sharp(1), data._read_image(SOURCE / LEVIN_IM1, False))
    assert calls == [entry.url]
    assert [p.name for p in path.parent.iterdir()] == ["im1.png"]


@needs_real_data
def test_corrupt_cached_file_is_detected_and_downloaded_again(no_mirror, monkeypatch, tmp_path):
    entry = data.registry()[LEVIN_IM1]
    cached = tmp_path / "cache" / LEVIN_IM1
    cached.parent.mkdir(parents=True)
    cached.write_bytes((SOURCE / LEVIN_IM1).read_bytes()[:500])
    # offline: the corrupt copy is reported, never used
    with pytest.raises(data.DataError, match="cached copy .* failed its hash check"):
        data.fetch(LEVIN_IM1)
    # a download that serves other bytes: rejected by pooch, nothing half-written left behind
    calls = []
    serve_from(monkeypatch, {entry.url: b"not a png"}, calls)
    with pytest.raises(data.DataError) as info:
        data.fetch(LEVIN_IM1)
    assert entry.sha256 in str(info.value) and LEVIN_IM1 in str(info.value)
    assert [p.name for p in cached.parent.iterdir()] == ["im1.png"]
    # a good download repairs the cache
    serve_from(monkeypatch, {entry.url: (SOURCE / LEVIN_IM1).read_bytes()}, calls)
    assert sha256_of(data.fetch(LEVIN_IM1)) == entry.sha256
    assert len(calls) == 2


def test_levin_kernels_without_mirror_need_h5py(no_mirror, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    calls = []
    serve_from(monkeypatch, {}, calls)
    with pytest.raises(data.DataError, match=r"pip install h5py.*source='png'"):
        data.levin_kernel(1)
    assert calls == []


@needs_real_data
@pytest.mark.parametrize("tamper", [False, True])
def test_levin_kernels_converted_from_mat_are_verified(no_mirror, monkeypatch, tmp_path, tamper):
    """The download-and-convert path, with the HDF5 reader replaced by the mirror's arrays."""
    kernels = {k: np.ascontiguousarray(v) for k, v in np.load(SOURCE / data.LEVIN_KERNELS).items()}
    if tamper:
        kernels["kernel2"] = kernels["kernel2"].T.copy()
    monkeypatch.setattr(data, "_require_h5py", lambda: None)
    monkeypatch.setattr(data, "_kernels_from_mat", lambda path: kernels)
    url = data.registry()[data.LEVIN_KERNELS].url
    calls = []
    serve_from(monkeypatch, {url: b"stand-in for Levin09.mat"}, calls)
    folder = tmp_path / "cache" / "levin"
    if tamper:
        with pytest.raises(data.DataError, match="kernel2 of .*Levin09.mat"):
            data.levin_kernel(2)
        assert not folder.exists() or list(folder.iterdir()) == []
        return
    assert torch.equal(data.levin_kernel(2), torch.from_numpy(kernels["kernel2"]))
    assert sorted(p.name for p in folder.iterdir()) == ["Levin09.mat", "levin_kernels.npz"]
    assert calls == [url]
    data.levin_kernel(4)  # from the cached npz, no second download
    assert calls == [url]


# --- scikit-image's bundled images -----------------------------------------------------------


def test_skimage_images_offline(monkeypatch):
    import skimage.data

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(pooch, "retrieve", refuse)
    images = data.skimage_images()
    assert list(images) == list(data.SKIMAGE_IMAGES)
    for name in ("camera", "astronaut", "coffee", "rocket"):
        reference = torch.from_numpy(np.asarray(getattr(skimage.data, name)(), dtype=np.float32))
        reference = reference[None] if reference.ndim == 2 else reference.permute(2, 0, 1)
        assert torch.equal(images[name] * 255, reference), name
    gray = data.skimage_images(["astronaut", "camera"], gray=True)
    assert gray["astronaut"].shape == (1, 512, 512)
    assert torch.equal(gray["camera"], images["camera"])


def test_read_image_converts_other_modes(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = data._read_image(path, gray=False)
    assert image.shape == (3, 4, 5)
    assert torch.equal(image[0], torch.ones(4, 5)) and image[1:].abs().max() == 0
    buffer = io.BytesIO()
    Image.fromarray(rgba[..., :3], "RGB").save(buffer, format="PNG")
    gray = data._read_image(io.BytesIO(buffer.getvalue()), gray=True)
    np.testing.assert_allclose(gray.numpy(), np.full((1, 4, 5), 0.299), atol=1e-7)


def test_gray_is_rec601_luma_computed_elementwise_the_same_on_every_cpu(tmp_path):
    """Luma as three float32 products summed in a fixed order, bit for bit. A BLAS dot product
    (``np.tensordot``) gave other last bits with the AVX-512 kernel that numpy's OpenBLAS picks on
    an AVX-512 CPU than with its AVX2 kernel, and a SelfDeblur run on the grey image amplified the
    difference to 0.6 dB."""
    rgb = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb, "RGB").save(path)
    channels = [torch.from_numpy(rgb[..., i].astype(np.float32)) / 255 for i in range(3)]
    r, g, b = (torch.tensor(w, dtype=torch.float32) * c for w, c in zip((0.299, 0.587, 0.114), channels))
    assert torch.equal(data.read_image(path, gray=True), ((r + g) + b)[None])


def test_read_image_handles_the_common_modes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = (rng.random((6, 5, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((6, 5), 7, np.uint8)])).save(tmp_path / "rgba.png")
    deep = (rng.random((6, 5)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    expected = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.equal(data.read_image(tmp_path / "rgb.png"), expected)
    assert torch.equal(data.read_image(tmp_path / "rgba.png"), expected)  # alpha dropped
    grey16 = data.read_image(tmp_path / "deep.png")
    assert grey16.shape == (1, 6, 5)
    torch.testing.assert_close(grey16[0], torch.from_numpy(deep.astype(np.float32) / 65535))
    assert data.read_image(tmp_path / "rgb.png", gray=True).shape == (1, 6, 5)
