"""Image files <-> HxWxC uint8/uint16 arrays <-> (1, C, H, W) float tensors in [0, 1].

Pillow reads and writes PNG/JPEG/BMP, tifffile reads and writes TIFF.

Reading refuses, with one ``ImageReadError`` line naming the file: images over the pixel limit
(checked from the header, before any pixel is decoded: ``MAX_PIXELS`` = 200 megapixels by default,
changed by ``read_image(..., max_pixels=)``, ``set_max_pixels`` or the environment variable
``RESTORE_MAX_PIXELS``; 0 = no limit), multi-page TIFFs and animated PNG/GIFs (only single images
are restored), and TIFF colour models other than grey, RGB and CMYK. CMYK (JPEG or TIFF) is
converted to RGB as Pillow does (no colour management). ``read_icc_profile`` returns the embedded
ICC profile, which ``write_image(..., icc_profile=)`` keeps. JPEG is written at quality 95 without
chroma subsampling (4:4:4); Pillow's default (75, 4:2:0) costs about 0.6 dB.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps

from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.fileio import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_EXTENSIONS = (".tif", ".tiff")
# ITU-R BT.601 luma (what Pillow's and OpenCV's RGB -> grey conversions approximate).
_LUMA_601 = np.array([0.299, 0.587, 0.114])
MAX_PIXELS = 200_000_000  # default read limit; a 200 MP 8-bit RGB image is 600 MB decoded
_max_pixels: int | None = None  # set_max_pixels
_PILLOW_OPEN = threading.Lock()
ICC_LIMIT = 16 << 20  # the largest embedded ICC profile read (profiles with big LUTs reach a few MB)
_PILLOW_SAVE = {"JPEG": {"quality": 95, "subsampling": 0}}
_TIFF_ICC = 34675  # InterColorProfile
_P = tifffile.PHOTOMETRIC


class ImageReadError(BadInput):
    """A file that exists but cannot be decoded as an image."""


def set_max_pixels(n: int | None) -> None:
    """Set this process's read limit in pixels (0: no limit; None: back to RESTORE_MAX_PIXELS/MAX_PIXELS)."""
    global _max_pixels
    _max_pixels = None if n is None else _valid_limit(n)


def pixel_limit() -> int:
    """The read limit in force: ``set_max_pixels``, else $RESTORE_MAX_PIXELS, else ``MAX_PIXELS``; 0 = none."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get("RESTORE_MAX_PIXELS", "").strip()
    if not text:
        return MAX_PIXELS
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"RESTORE_MAX_PIXELS must be a whole number of pixels (0: no limit), got {text!r}")
    return int(text)


def _valid_limit(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"max_pixels must be a whole number of pixels >= 0 (0: no limit), got {n!r}")
    return int(n)


def _check_pixels(path: Path, width: int, height: int, limit: int) -> None:
    if limit and width * height > limit:
        raise ImageReadError(f"{path}: {width}x{height} = {width * height / 1e6:.1f} MP is over the pixel limit "
                             f"of {limit / 1e6:.1f} MP (raise it with --max-pixels or RESTORE_MAX_PIXELS)")


def _check_single(path: Path, count: int, what: str) -> None:
    if count > 1:
        raise ImageReadError(f"{path}: has {count} {what}; only single images can be restored: split it first")


def list_images(folder) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.name)


def read_image(path, channels: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as HxWxC uint8 (uint16 for 16-bit files), C in {1, 3}.

    channels=1: grey (colour converted with BT.601 luma, rounded); 3: RGB (grey replicated);
    None: as stored. Alpha is dropped. max_pixels: the read limit (None: ``pixel_limit()``; 0: none).
    """
    img, _alpha = read_image_alpha(path, channels, max_pixels)
    return img


def read_image_alpha(path, channels: int | None = None,
                     max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """As ``read_image``, but also return the alpha channel (HxWx1, same dtype) or None.

    EXIF orientation is applied (Pillow formats) to both colour and alpha.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    limit = pixel_limit() if max_pixels is None else _valid_limit(max_pixels)
    path = _existing_file(path)
    with _read_errors(path):
        img = _decode_tiff(path, limit) if path.suffix.lower() in _TIFF_EXTENSIONS else _decode_pillow(path, limit)
    img, alpha = _split_alpha(img)
    return _convert_channels(img, channels), alpha


def read_icc_profile(path) -> bytes | None:
    """The ICC colour profile embedded in an image file, or None; reads the header only.

    Pass it to ``write_image(..., icc_profile=)`` so that the output keeps the input's colour space.
    """
    path = _existing_file(path)
    with _read_errors(path):
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(_TIFF_ICC)
                return bytes(tag.value) if tag is not None else None
        with _open_pillow(path) as im:
            return im.info.get("icc_profile") or None


def _existing_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected an image file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty")
    return path


@contextlib.contextmanager
def _read_errors(path: Path):
    try:
        yield
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"cannot read image {path}: {reason}") from exc


@contextlib.contextmanager
def _open_pillow(path: Path):
    # Our pixel limit replaces Pillow's, which would refuse 179-200 MP and ignore a raised limit:
    # Image.open reads only the header, and callers check the size before decoding.
    # Pillow's 1 MB limit on decompressed PNG chunks would refuse a large ICC profile (iCCP comes
    # before the pixels, so Image.open reads it): ICC_LIMIT while opening.
    from PIL import PngImagePlugin

    with _PILLOW_OPEN:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        saved_chunk, PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_CHUNK, max(PngImagePlugin.MAX_TEXT_CHUNK, ICC_LIMIT)
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK = saved, saved_chunk
    with im:
        yield im


def _decode_pillow(path: Path, limit: int) -> np.ndarray:
    _refuse_16bit_colour_png(path)
    with _open_pillow(path) as im:
        _check_pixels(path, *im.size, limit)
        if im.format != "MPO":  # MPO: frame 0 is the photo, the others previews or depth maps
            _check_single(path, getattr(im, "n_frames", 1), "frames")
        im.load()  # decode everything here, so truncated files fail inside the caller's try
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("1", "L", "RGB") and im.info.get("transparency") is not None:  # tRNS: a colour made transparent
            im = im.convert("RGBA" if mode == "RGB" else "LA")
        elif mode == "1":
            im = im.convert("L")
        elif mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode == "I" or mode.startswith("I;16"):
            arr = np.asarray(im)
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
                raise ImageReadError(f"cannot read image {path}: 32-bit integer data is not supported")
            return np.ascontiguousarray(arr.astype(np.uint16))[..., None]
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            raise ImageReadError(f"cannot read image {path}: unsupported image mode {mode}")
        arr = np.asarray(im)
    return arr[..., None] if arr.ndim == 2 else arr


def _refuse_16bit_colour_png(path: Path) -> None:
    # Pillow silently reduces 16-bit RGB(A)/grey+alpha PNGs to 8 bits; refuse rather than lose data.
    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6):
        raise ImageReadError(f"cannot read image {path}: 16-bit colour PNG is not supported "
                             "(Pillow would reduce it to 8 bits); save it as 16-bit TIFF")


def _decode_tiff(path: Path, limit: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_pixels(path, page.imagewidth, page.imagelength * page.imagedepth, limit)
        _check_single(path, sum(1 for p in tif.pages if not p.is_reduced), "pages")  # a thumbnail is no page
        _check_tiff_colour(path, page)
        arr = page.asarray()
        axes = page.axes
        photometric = page.photometric
        tag = page.tags.get(274)  # Orientation, as EXIF
        orientation = int(tag.value) if tag is not None else 1
    if arr.ndim == 3 and axes.startswith("S"):  # planar (separate) configuration
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4, 5):
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF layout {arr.shape} ({axes})")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF sample type {arr.dtype}")
    if photometric == _P.SEPARATED:
        arr = _cmyk_to_rgb(arr)
    elif photometric == _P.MINISWHITE:
        arr = np.concatenate([np.iinfo(arr.dtype).max - arr[..., :1], arr[..., 1:]], axis=2)
    elif arr.shape[2] == 5:
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF layout {arr.shape} ({axes})")
    return np.ascontiguousarray(_orient(arr, orientation))


def _check_tiff_colour(path: Path, page) -> None:
    """Refuse colour models whose samples tifffile returns unconverted (palette indices, Lab, ...)."""
    photometric = page.photometric
    if photometric == _P.SEPARATED:
        tag = page.tags.get(332)  # InkSet: 1 = CMYK (the default)
        inkset = int(tag.value) if tag is not None else 1
        if inkset != 1 or page.samplesperpixel not in (4, 5):
            raise ImageReadError(f"cannot read image {path}: separated TIFF with ink set {inkset} and "
                                 f"{page.samplesperpixel} samples is not supported (only CMYK)")
    # tifffile's JPEG decoder returns YCbCr as RGB; uncompressed or subsampled YCbCr it does not.
    elif photometric not in (_P.MINISWHITE, _P.MINISBLACK, _P.RGB) and not (
            photometric == _P.YCBCR and page.compression in (6, 7)):
        name = getattr(photometric, "name", photometric)
        raise ImageReadError(f"cannot read image {path}: TIFF photometric {name} is not supported "
                             "(grey, RGB and CMYK are)")


def _cmyk_to_rgb(arr: np.ndarray) -> np.ndarray:
    """CMYK(+alpha) -> RGB(+alpha) as Pillow converts: R = (max - C) * (max - K) / max, rounded."""
    peak = np.uint32(np.iinfo(arr.dtype).max)  # peak**2 + peak // 2 fits uint32 for 16-bit data
    rgb = (peak - arr[..., :3]) * (peak - arr[..., 3:4].astype(np.uint32))
    rgb += peak // 2
    rgb //= peak
    return np.concatenate([rgb.astype(arr.dtype), arr[..., 4:]], axis=2)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply a TIFF/EXIF orientation to an HxWxC array (as Pillow's ``ImageOps.exif_transpose``)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return ops[orientation](arr) if orientation in ops else arr


def _split_alpha(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha or None) from an HxWx{1,2,3,4} array."""
    if img.shape[2] in (2, 4):
        return img[..., :-1], img[..., -1:]
    return img, None


def _convert_channels(img: np.ndarray, channels: int | None) -> np.ndarray:
    if channels is None or img.shape[2] == channels:
        return img
    if channels == 3:
        return np.repeat(img, 3, axis=2)
    luma = np.round(np.dot(img.astype(np.float64), _LUMA_601))
    return luma.astype(img.dtype)[..., None]


def write_image(path, img: np.ndarray, alpha: np.ndarray | None = None, icc_profile: bytes | None = None) -> None:
    """Write a uint8/uint16 HxW, HxWx1 or HxWx3 image atomically; format from the extension.

    ``alpha`` (HxW or HxWx1, the image's dtype) is appended as an alpha channel: PNG (8-bit),
    TIFF (8/16-bit, unassociated alpha); JPEG and BMP cannot. ``icc_profile`` (from
    ``read_icc_profile``) is embedded in PNG, JPEG and TIFF when its colour space is the image's
    (RGB for colour, GRAY for grey), and left out otherwise. JPEG: quality 95, 4:4:4.
    """
    path = Path(path)
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_image needs uint8 or uint16 data, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"write_image needs an HxW, HxWx1 or HxWx3 image, got shape {img.shape}")
    ext = path.suffix.lower()
    icc = _matching_icc(icc_profile, img.ndim == 3)
    if alpha is not None:
        _write_with_alpha(path, img, np.asarray(alpha), ext, icc)
        return
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write {path}: unsupported extension "
                         f"(use one of {', '.join(IMAGE_EXTENSIONS)})")
    if img.dtype == np.uint16 and ext != ".png" and ext not in _TIFF_EXTENSIONS:
        raise ValueError(f"cannot write {path}: 16-bit images need .png (grey) or .tif")
    if img.dtype == np.uint16 and img.ndim == 3 and ext == ".png":
        raise ValueError(f"cannot write {path}: Pillow cannot write 16-bit colour PNG; use .tif")

    if ext in _TIFF_EXTENSIONS:
        photometric = "rgb" if img.ndim == 3 else "minisblack"
        _atomic(path, lambda f: tifffile.imwrite(f, img, photometric=photometric, iccprofile=icc))
    else:
        _save_pillow(path, Image.fromarray(np.ascontiguousarray(img)), ext, icc)


def storable_path(path, img: np.ndarray, alpha: np.ndarray | None = None) -> Path:
    """``path``, or the same name with .tif (16-bit) or .png (8-bit with alpha) where ``write_image``
    cannot store ``img`` (and ``alpha``) in the format of ``path``'s extension."""
    path = Path(path)
    img = np.asarray(img)
    ext = path.suffix.lower()
    if ext in _TIFF_EXTENSIONS or ext not in IMAGE_EXTENSIONS:
        return path
    colour = img.ndim == 3 and img.shape[2] == 3
    if img.dtype == np.uint16 and (ext != ".png" or colour or alpha is not None):
        return path.with_suffix(".tif")
    if alpha is not None and ext != ".png":
        return path.with_suffix(".png")
    return path


def _matching_icc(icc: bytes | None, colour: bool) -> bytes | None:
    """The profile if it describes the data (header bytes 16-19: data colour space), else None."""
    if icc is None:
        return None
    if not isinstance(icc, (bytes, bytearray)):
        raise ValueError(f"icc_profile must be bytes, got {type(icc).__name__}")
    return bytes(icc) if icc[16:20] == (b"RGB " if colour else b"GRAY") else None


def _save_pillow(path: Path, im: Image.Image, ext: str, icc: bytes | None) -> None:
    fmt = Image.registered_extensions()[ext]
    options = dict(_PILLOW_SAVE.get(fmt, {}))
    if icc is not None and fmt in ("PNG", "JPEG"):
        options["icc_profile"] = icc
    _atomic(path, lambda f: im.save(f, format=fmt, **options))


def _write_with_alpha(path: Path, img: np.ndarray, alpha: np.ndarray, ext: str, icc: bytes | None) -> None:
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[..., 0]
    if alpha.dtype != img.dtype or alpha.shape != img.shape[:2]:
        raise ValueError(f"cannot write {path}: alpha {alpha.dtype} {alpha.shape} does not match the image "
                         f"{img.dtype} {img.shape[:2]}")
    colour = img[..., None] if img.ndim == 2 else img
    data = np.ascontiguousarray(np.concatenate([colour, alpha[..., None]], axis=2))
    if ext in _TIFF_EXTENSIONS:
        photometric = "rgb" if colour.shape[2] == 3 else "minisblack"
        _atomic(path, lambda f: tifffile.imwrite(f, data, photometric=photometric, planarconfig="contig",
                                                 extrasamples=["unassalpha"], iccprofile=icc))
        return
    if ext in (".jpg", ".jpeg"):
        raise ValueError(f"cannot write {path}: JPEG has no alpha channel; use .png or .tif")
    if data.dtype == np.uint16:
        raise ValueError(f"cannot write {path}: 16-bit images with alpha need .tif")
    if ext == ".bmp":
        raise ValueError(f"cannot write {path}: BMP with alpha is not supported; use .png or .tif")
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write {path}: unsupported extension "
                         f"(use one of {', '.join(IMAGE_EXTENSIONS)})")
    _save_pillow(path, Image.fromarray(data, mode="RGBA" if colour.shape[2] == 3 else "LA"), ext, icc)


def _atomic(path: Path, write) -> None:
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, fill)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8/uint16 HxW or HxWxC -> (1, C, H, W) float32 in [0, 1]."""
    import torch  # here, not at import: reading images needs no torch (restore-quantize runs without it)

    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.dtype == np.uint8:
        peak = 255.0
    elif img.dtype == np.uint16:
        peak = 65535.0
    else:
        raise ValueError(f"to_tensor needs uint8 or uint16 data, got {img.dtype}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(peak).unsqueeze(0)


def from_float(x, dtype=np.uint8) -> np.ndarray:
    """Float image in [0, 1] (HxW(xC) array or (1,)C,H,W tensor) -> HxWxC uint, clipped, rounded."""
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().float().cpu()
        if x.dim() == 4:
            if x.shape[0] != 1:
                raise ValueError(f"from_float takes one image, got a batch of {x.shape[0]}")
            x = x[0]
        x = x.numpy()
        if x.ndim == 3:
            x = x.transpose(1, 2, 0)
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"from_float needs an HxW or HxWxC image, got shape {x.shape}")
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        peak = 255.0
    elif dtype == np.uint16:
        peak = 65535.0
    else:
        raise ValueError(f"from_float converts to uint8 or uint16, not {dtype}")
    return (x.clip(0, 1) * peak).round().astype(dtype)
