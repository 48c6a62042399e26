"""restormer_deploy.restormer.imageio: reading and writing image files (8/16 bits, alpha, EXIF orientation, broken files,
atomic writes, tensors), and the issue 16 review of image files: pixel limit, CMYK, multi-page/animated,
ICC, JPEG quality, kernels."""

import io
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import torch
from PIL import Image, ImageCms, ImageFile

from restormer_deploy.restormer import imageio
from restormer_deploy.restormer.degrade import load_kernel, parse_degradation
from restormer_deploy.restormer.imageio import (ImageReadError, from_float, list_images, read_icc_profile, read_image,
                               read_image_alpha, set_max_pixels, storable_path, to_tensor, write_image)

rng = np.random.default_rng(16)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(autouse=True)
def _default_limit(monkeypatch):
    monkeypatch.delenv("RESTORE_MAX_PIXELS", raising=False)
    yield
    set_max_pixels(None)


def _no_decoding(monkeypatch):
    """Any attempt to decode pixel data fails loudly: the checks must come from the header."""
    def refuse(*args, **kwargs):
        raise RuntimeError("pixel data was decoded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ----------------------------------------------------------------------------- crafted headers

def _png_header_only(path: Path, width: int, height: int) -> None:
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _jpeg_header_only(path: Path, width: int, height: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- 1. pixel limit

def test_default_limit_is_200_megapixels():
    assert imageio.MAX_PIXELS == 200_000_000


def test_tiff_bomb_refused_from_header(tmp_path, monkeypatch, tiff_header_only):
    path = tmp_path / "bomb.tif"
    tiff_header_only(path, 25000, 25000)
    assert path.stat().st_size < 200
    _no_decoding(monkeypatch)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(err.value) == (f"{path}: 25000x25000 = 625.0 MP is over the pixel limit of 200.0 MP "
                              "(raise it with --max-pixels or RESTORE_MAX_PIXELS)")


@pytest.mark.parametrize("craft,name", [(_png_header_only, "bomb.png"), (_jpeg_header_only, "bomb.jpg")])
def test_pillow_bombs_get_our_message_first(tmp_path, monkeypatch, craft, name):
    craft(tmp_path / name, 30000, 30000)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match=r"bomb\.\w+: 30000x30000 = 900\.0 MP is over the pixel limit of 200\.0 MP"):
        read_image_alpha(tmp_path / name)


def test_pillow_own_bomb_limit_does_not_apply_below_ours(tmp_path, monkeypatch):
    # 182 MP: over Pillow's DecompressionBombError threshold (179 MP), under our 200 MP.
    _png_header_only(tmp_path / "big.png", 14000, 13000)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match="pixel data was decoded"):
        read_image(tmp_path / "big.png")


@pytest.mark.parametrize("name", ["s.png", "s.tif"])
def test_limit_parameter_setter_and_environment(tmp_path, monkeypatch, name):
    path = tmp_path / name
    write_image(path, rng.integers(0, 256, (10, 20, 3)).astype(np.uint8))  # 200 px
    with pytest.raises(ImageReadError, match=r"20x10 = 0\.0 MP is over the pixel limit of 0\.0 MP"):
        read_image(path, max_pixels=199)
    assert read_image(path, max_pixels=200).shape == (10, 20, 3)
    assert read_image(path, max_pixels=0).shape == (10, 20, 3)  # 0: no limit
    monkeypatch.setenv("RESTORE_MAX_PIXELS", "199")
    with pytest.raises(ImageReadError, match="pixel limit"):
        read_image(path)
    assert read_image(path, max_pixels=200).shape == (10, 20, 3)  # the argument wins
    set_max_pixels(0)  # the setter (a --max-pixels option) wins over the environment
    assert read_image(path).shape == (10, 20, 3)
    set_max_pixels(199)
    monkeypatch.delenv("RESTORE_MAX_PIXELS")
    with pytest.raises(ImageReadError, match="pixel limit"):
        read_image(path)
    set_max_pixels(None)
    assert read_image(path).shape == (10, 20, 3)


def test_bad_limits_are_value_errors(tmp_path, monkeypatch):
    write_image(tmp_path / "s.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setenv("RESTORE_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="RESTORE_MAX_PIXELS.*'lots'"):
        read_image(tmp_path / "s.png")
    with pytest.raises(ValueError, match="max_pixels"):
        set_max_pixels(-1)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(tmp_path / "s.png", max_pixels=-5)


# ----------------------------------------------------------------------------- 2. CMYK

def _pillow_cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(cmyk, mode="CMYK").convert("RGB"))


def test_cmyk_tiff_is_converted_like_pillow(tmp_path):
    cmyk = rng.integers(0, 256, (9, 11, 4)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", cmyk, photometric="separated")
    img, alpha = read_image_alpha(tmp_path / "c.tif")
    assert img.shape == (9, 11, 3) and img.dtype == np.uint8 and alpha is None
    np.testing.assert_allclose(img.astype(int), _pillow_cmyk_to_rgb(cmyk).astype(int), atol=1)


def test_cmyk_tiff_16bit_and_with_alpha(tmp_path):
    cmyk = rng.integers(0, 65536, (6, 7, 4)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", cmyk, photometric="separated")
    img = read_image(tmp_path / "c16.tif")
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    assert img.dtype == np.uint16
    np.testing.assert_allclose(img, (65535 - c) * (65535 - k) / 65535, atol=0.5)
    cmyka = rng.integers(0, 256, (6, 7, 5)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ca.tif", cmyka, photometric="separated", extrasamples=["unassalpha"])
    img, alpha = read_image_alpha(tmp_path / "ca.tif")
    np.testing.assert_allclose(img.astype(int), _pillow_cmyk_to_rgb(cmyka[..., :4]).astype(int), atol=1)
    np.testing.assert_array_equal(alpha[..., 0], cmyka[..., 4])


def test_tiff_colour_models_we_cannot_convert_are_refused(tmp_path):
    inks = rng.integers(0, 256, (5, 5, 4)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "inks.tif", inks, photometric="separated", extratags=[(332, "H", 1, 2, True)])
    with pytest.raises(ImageReadError, match=r"inks\.tif.*ink set"):
        read_image(tmp_path / "inks.tif")
    tifffile.imwrite(tmp_path / "pal.tif", inks[..., 0], photometric="palette",
                     colormap=np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1)))
    with pytest.raises(ImageReadError, match=r"pal\.tif.*PALETTE"):
        read_image(tmp_path / "pal.tif")


def test_miniswhite_tiff_is_inverted(tmp_path):
    grey = rng.integers(0, 256, (5, 6)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "w.tif", 255 - grey, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tif")[..., 0], grey)


def test_cmyk_jpeg_is_converted_like_pillow(tmp_path):
    cmyk = rng.integers(0, 256, (8, 8, 4)).astype(np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    with Image.open(tmp_path / "c.jpg") as im:
        want = np.asarray(im.convert("RGB"))
    img, alpha = read_image_alpha(tmp_path / "c.jpg")
    assert alpha is None
    np.testing.assert_array_equal(img, want)


# ----------------------------------------------------------------------------- 2. pages and frames

def test_multipage_tiff_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        tif.write(np.zeros((4, 4), np.uint8))
        tif.write(np.ones((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"two\.tif: has 2 pages; .*split it first"):
        read_image(tmp_path / "two.tif")


def test_tiff_with_a_reduced_resolution_page_is_one_image(tmp_path):
    img = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyr.tif") as tif:
        tif.write(img, photometric="rgb")
        tif.write(img[::2, ::2], photometric="rgb", subfiletype=1)
    np.testing.assert_array_equal(read_image(tmp_path / "pyr.tif"), img)


@pytest.mark.parametrize("name", ["anim.png", "anim.gif"])
def test_animations_are_refused(tmp_path, name):
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (0, 120, 250)]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match=rf"{name}: has 3 frames; .*split it first"):
        read_image(tmp_path / name)
    frames[0].save(tmp_path / f"one{Path(name).suffix}")
    assert read_image(tmp_path / f"one{Path(name).suffix}").shape[:2] == (6, 6)


# ----------------------------------------------------------------------------- 2. ICC profiles

def test_icc_profile_is_read_from_pillow_and_tiff_files(tmp_path):
    img = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "p.png", icc_profile=SRGB)
    Image.fromarray(img).save(tmp_path / "j.jpg", icc_profile=SRGB)
    tifffile.imwrite(tmp_path / "t.tif", img, photometric="rgb", iccprofile=SRGB)
    write_image(tmp_path / "none.png", img)
    for name in ("p.png", "j.jpg", "t.tif"):
        assert read_icc_profile(tmp_path / name) == SRGB, name
    assert read_icc_profile(tmp_path / "none.png") is None


@pytest.mark.parametrize("name,alpha", [("o.png", False), ("o.jpg", False), ("o.tif", False),
                                        ("a.png", True), ("a.tif", True)])
def test_icc_profile_is_written(tmp_path, name, alpha):
    img = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    a = rng.integers(0, 256, (5, 6, 1)).astype(np.uint8) if alpha else None
    write_image(tmp_path / name, img, a, icc_profile=SRGB)
    assert read_icc_profile(tmp_path / name) == SRGB
    got, got_alpha = read_image_alpha(tmp_path / name)
    assert got.shape == img.shape and (got_alpha is None) == (a is None)


def test_icc_profile_of_another_colour_space_is_not_written(tmp_path):
    grey = rng.integers(0, 256, (5, 6)).astype(np.uint8)
    write_image(tmp_path / "g.png", grey, icc_profile=SRGB)  # an RGB profile cannot describe grey data
    assert read_icc_profile(tmp_path / "g.png") is None
    gray_profile = SRGB[:16] + b"GRAY" + SRGB[20:]
    write_image(tmp_path / "g.tif", grey, icc_profile=gray_profile)
    assert read_icc_profile(tmp_path / "g.tif") == gray_profile


# ----------------------------------------------------------------------------- 2. JPEG quality

def test_jpeg_is_written_at_quality_95_without_chroma_subsampling(tmp_path):
    img = rng.integers(0, 256, (16, 24, 3)).astype(np.uint8)
    write_image(tmp_path / "q.jpg", img)
    want = io.BytesIO()
    Image.fromarray(img).save(want, "JPEG", quality=95, subsampling=0)
    assert (tmp_path / "q.jpg").read_bytes() == want.getvalue()


# ----------------------------------------------------------------------------- 3. 16-bit grey, colour model

def test_16bit_grey_replicated_for_a_colour_model_degrades_and_is_storable(tmp_path):
    grey = rng.integers(0, 65536, (16, 16, 1)).astype(np.uint16)
    write_image(tmp_path / "g16.png", grey)
    rgb = read_image(tmp_path / "g16.png", channels=3)
    assert rgb.dtype == np.uint16 and rgb.shape == (16, 16, 3)
    sample = parse_degradation("noise:25").apply(rgb, seed=0)
    degraded = (sample.lq.clip(0, 1) * 65535).round().astype(np.uint16)
    target = storable_path(tmp_path / "g16_degraded.png", degraded)
    assert target == tmp_path / "g16_degraded.tif"
    write_image(target, degraded)
    np.testing.assert_array_equal(read_image(target), degraded)


def test_storable_path_keeps_what_the_format_holds(tmp_path):
    u8, u16 = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint16)
    assert storable_path(tmp_path / "a.png", u8) == tmp_path / "a.png"
    assert storable_path(tmp_path / "a.png", u16[..., :1]) == tmp_path / "a.png"
    assert storable_path(tmp_path / "a.jpg", u16[..., :1]) == tmp_path / "a.tif"
    assert storable_path(tmp_path / "a.TIF", u16) == tmp_path / "a.TIF"
    assert storable_path(tmp_path / "a.jpg", u8, alpha=u8[..., :1]) == tmp_path / "a.png"
    assert storable_path(tmp_path / "a.png", u16, alpha=u16[..., :1]) == tmp_path / "a.tif"
    with pytest.raises(ValueError, match=r"a\.png.*16-bit colour"):
        write_image(tmp_path / "a.png", u16)


# ----------------------------------------------------------------------------- 4. kernels

def _zero_kernel_files(tmp_path: Path, k: np.ndarray) -> list[Path]:
    np.save(tmp_path / "k.npy", k)
    scipy.io.savemat(tmp_path / "k5.mat", {"kernels": k})
    with h5py.File(tmp_path / "k73.mat", "w") as f:
        f.create_dataset("kernels", data=k.T)
    return [tmp_path / "k.npy", tmp_path / "k5.mat", tmp_path / "k73.mat"]


def test_all_zero_kernels_are_refused_alike_in_every_format(tmp_path):
    paths = _zero_kernel_files(tmp_path, np.zeros((5, 5)))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "k.png")
    paths.append(tmp_path / "k.png")
    messages = []
    for path in paths:
        with pytest.raises(ValueError) as err:
            load_kernel(path)
        messages.append(str(err.value).replace(str(path), "PATH"))
    assert messages == ["PATH: kernel sums to 0, not a blur (all zero or negative)"] * 4
    with pytest.raises(ValueError, match=r"bad degradation.*k\.npy: kernel sums to 0"):
        parse_degradation(f"blur:{tmp_path / 'k.npy'}")


def test_negative_sum_and_non_finite_kernels_are_refused(tmp_path):
    for path in _zero_kernel_files(tmp_path, -np.eye(3) / 3):
        with pytest.raises(ValueError, match=r"kernel sums to -1, not a blur"):
            load_kernel(path)
    for bad in (np.nan, np.inf):
        k = np.eye(3)
        k[0, 1] = bad
        for path in _zero_kernel_files(tmp_path, k):
            with pytest.raises(ValueError, match="kernel has non-finite values"):
                load_kernel(path)


# ----------------------------------------------------------------------------- reading and writing image files

def _png16_colour(path: Path, arr: np.ndarray) -> None:
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_read_8bit_png_grey_and_rgb(tmp_path):
    grey = rng.integers(0, 256, (6, 7)).astype(np.uint8)
    rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    rgb[0, 0] = [255, 0, 0]
    rgb[0, 1] = [10, 200, 30]
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (6, 7, 1) and g.dtype == np.uint8
    np.testing.assert_array_equal(g[..., 0], grey)
    grey3 = read_image(tmp_path / "g.png", channels=3)
    np.testing.assert_array_equal(grey3, np.repeat(grey[..., None], 3, 2))
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), rgb)
    y = read_image(tmp_path / "c.png", channels=1)
    assert y.shape == (6, 7, 1)
    assert y[0, 0, 0] == 76 and y[0, 1, 0] == 124  # round(.299 R + .587 G + .114 B)


def test_read_rgba_drops_alpha_and_exif_orientation(tmp_path):
    rgba = rng.integers(0, 256, (4, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    img = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "o.png", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), np.rot90(img, k=-1))


def test_read_16bit_png_and_tiff(tmp_path):
    g16 = rng.integers(0, 65536, (5, 6)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and out.shape == (5, 6, 1)
    np.testing.assert_array_equal(out[..., 0], g16)
    c16 = rng.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", c16, photometric="rgb")
    out = read_image(tmp_path / "c16.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, c16)
    tifffile.imwrite(tmp_path / "planar.tiff", np.moveaxis(c16, -1, 0),
                     photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tiff"), c16)
    _png16_colour(tmp_path / "c16.png", c16)  # Pillow would silently reduce this to 8 bits
    with pytest.raises(ImageReadError, match="16-bit"):
        read_image(tmp_path / "c16.png")


def test_read_broken_files(tmp_path):
    Image.fromarray(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "text.tif").write_text("not an image either\n")
    for name in ("trunc.png", "empty.png", "text.png", "text.tif"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        msg = str(info.value)
        assert name in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("name,img", [
    ("g.png", rng.integers(0, 256, (5, 7), dtype=np.uint8)),
    ("c.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)),
    ("c.bmp", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)),
    ("g16.png", rng.integers(0, 65536, (5, 7, 1), dtype=np.uint16)),
    ("c16.tif", rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)),
])
def test_write_image_round_trip_leaves_no_temp(tmp_path, name, img):
    write_image(tmp_path / name, img)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    back = read_image(tmp_path / name)
    np.testing.assert_array_equal(back, img.reshape(5, 7, -1))


def test_write_image_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    old = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    write_image(target, old)

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.zeros((4, 4, 3), np.uint8))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    np.testing.assert_array_equal(read_image(target), old)
    with pytest.raises(ValueError):
        write_image(tmp_path / "y.jpg", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError):
        write_image(tmp_path / "y.png", np.zeros((4, 4, 3), np.float32))


def test_list_images(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.tiff", "d.Bmp", "notes.txt", "e.jpeg", "f.tif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    expected = ["a.jpg", "b.PNG", "c.tiff", "d.Bmp", "e.jpeg", "f.tif"]
    assert [p.name for p in list_images(tmp_path)] == expected
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match="notes.txt"):
        list_images(tmp_path / "notes.txt")


def test_tensor_conversions():
    img = np.array([[[0, 128, 255]]], np.uint8)
    t = to_tensor(img)
    assert t.shape == (1, 3, 1, 1) and t.dtype == torch.float32
    np.testing.assert_allclose(t.flatten().numpy(), [0, 128 / 255, 1], rtol=1e-7)
    assert to_tensor(np.array([[65535]], np.uint16)).item() == 1.0
    x = np.array([[-0.2, 0.0, 0.4 / 255, 1.6 / 255, 0.999, 1.3]])
    out = from_float(x)
    assert out.shape == (1, 6, 1) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 0, 0, 2, 255, 255]  # clipped, rounded
    assert from_float(np.array([[0.5]]), np.uint16)[0, 0, 0] == 32768
    chw = torch.rand(1, 3, 4, 5)
    expected = np.uint8((chw[0].permute(1, 2, 0).numpy().clip(0, 1) * 255).round())
    np.testing.assert_array_equal(from_float(chw), expected)
    rgb = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(from_float(to_tensor(rgb)), rgb)
