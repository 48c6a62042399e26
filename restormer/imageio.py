"""Image files <-> HxWxC uint8/uint16 arrays <-> (1, C, H, W) float tensors in [0, 1].

Pillow reads and writes PNG/JPEG/BMP, tifffile reads and writes TIFF.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image, ImageOps

from restormer.fileio import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF_EXTENSIONS = (".tif", ".tiff")
# ITU-R BT.601 luma (what Pillow's and OpenCV's RGB -> grey conversions approximate).
_LUMA_601 = np.array([0.299, 0.587, 0.114])


class ImageReadError(ValueError):
    """A file that exists but cannot be decoded as an image."""


def list_images(folder) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.name)


def read_image(path, channels: int | None = None) -> np.ndarray:
    """Read an image as HxWxC uint8 (uint16 for 16-bit files), C in {1, 3}.

    channels=1: grey (colour converted with BT.601 luma, rounded); 3: RGB (grey replicated);
    None: as stored. Alpha is dropped.
    """
    img, _alpha = read_image_alpha(path, channels)
    return img


def read_image_alpha(path, channels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """As ``read_image``, but also return the alpha channel (HxWx1, same dtype) or None.

    EXIF orientation is applied (Pillow formats) to both colour and alpha.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected an image file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty")
    try:
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            img = _decode_tiff(path)
        else:
            img = _decode_pillow(path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, struct.error, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"cannot read image {path}: {reason}") from exc
    img, alpha = _split_alpha(img)
    return _convert_channels(img, channels), alpha


def _decode_pillow(path: Path) -> np.ndarray:
    _refuse_16bit_colour_png(path)
    with Image.open(path) as im:
        im.load()  # decode everything here, so truncated files fail inside the caller's try
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode == "1":
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


def _decode_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray()
        axes = page.axes
        tag = page.tags.get(274)  # Orientation, as EXIF
        orientation = int(tag.value) if tag is not None else 1
    if arr.ndim == 3 and axes.startswith("S"):  # planar (separate) configuration
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF layout {arr.shape} ({axes})")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"cannot read image {path}: unsupported TIFF sample type {arr.dtype}")
    return np.ascontiguousarray(_orient(arr, orientation))


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


def write_image(path, img: np.ndarray, alpha: np.ndarray | None = None) -> None:
    """Write a uint8/uint16 HxW, HxWx1 or HxWx3 image atomically; format from the extension.

    ``alpha`` (HxW or HxWx1, the image's dtype) is appended as an alpha channel: PNG (8-bit),
    TIFF (8/16-bit, unassociated alpha); JPEG and BMP cannot.
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
    if alpha is not None:
        _write_with_alpha(path, img, np.asarray(alpha), ext)
        return
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write {path}: unsupported extension "
                         f"(use one of {', '.join(IMAGE_EXTENSIONS)})")
    if img.dtype == np.uint16 and ext != ".png" and ext not in _TIFF_EXTENSIONS:
        raise ValueError(f"cannot write {path}: 16-bit images need .png (grey) or .tif")
    if img.dtype == np.uint16 and img.ndim == 3 and ext == ".png":
        raise ValueError(f"cannot write {path}: Pillow cannot write 16-bit colour PNG; use .tif")

    if ext in _TIFF_EXTENSIONS:
        _atomic(path, lambda f: tifffile.imwrite(f, img, photometric="rgb" if img.ndim == 3 else "minisblack"))
    else:
        fmt = Image.registered_extensions()[ext]
        _atomic(path, lambda f: Image.fromarray(np.ascontiguousarray(img)).save(f, format=fmt))


def _write_with_alpha(path: Path, img: np.ndarray, alpha: np.ndarray, ext: str) -> None:
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
                                                 extrasamples=["unassalpha"]))
        return
    if ext in (".jpg", ".jpeg"):
        raise ValueError(f"cannot write {path}: JPEG has no alpha channel; use .png or .tif")
    if data.dtype == np.uint16:
        raise ValueError(f"cannot write {path}: 16-bit images with alpha need .tif")
    if ext == ".bmp":
        raise ValueError(f"cannot write {path}: BMP with alpha is not supported; use .png or .tif")
    mode = "RGBA" if colour.shape[2] == 3 else "LA"
    fmt = Image.registered_extensions()[ext]
    _atomic(path, lambda f: Image.fromarray(data, mode=mode).save(f, format=fmt))


def _atomic(path: Path, write) -> None:
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, fill)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8/uint16 HxW or HxWxC -> (1, C, H, W) float32 in [0, 1]."""
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
    if isinstance(x, torch.Tensor):
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
