"""Loading a page image safely, and the pixel-level preparation every crop gets.

The header is read before decoding so that a small file claiming a gigantic image (a
decompression bomb) is refused without allocating it. Files are read as bytes and decoded with
cv2.imdecode, which works for any path (unicode included) and honours the EXIF orientation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MAX_PIXELS = 80_000_000  # a 24-bit photo this large is 240 MB decoded; phones give 12-50 MP


class ImageError(ValueError):
    """An input that cannot be read as a page image; the message is shown to the user."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    alpha: bool = False


def read_header(data: bytes) -> ImageHeader:
    """Format and size from the first bytes of a file, without decoding the pixels."""
    if len(data) == 0:
        raise ImageError("file is empty")
    for parse in (_png, _jpeg, _bmp, _webp, _tiff):
        header = parse(data)
        if header is not None:
            if header.width <= 0 or header.height <= 0:
                raise ImageError(f"{header.format} header gives an empty image")
            return header
    raise ImageError("not a supported image (JPEG, PNG, TIFF, BMP or WebP)")


def _png(data: bytes) -> ImageHeader | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise ImageError("truncated PNG header")
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("PNG", width, height, alpha=data[25] in (4, 6))


def _jpeg(data: bytes) -> ImageHeader | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos += 1  # tolerate fill bytes between segments
            continue
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        # Start-of-frame markers carry the size; C4, C8 and CC are not frames.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return ImageHeader("JPEG", width, height)
        pos += 2 + length
    raise ImageError("truncated or corrupt JPEG (no frame header)")


def _bmp(data: bytes) -> ImageHeader | None:
    if not data.startswith(b"BM"):
        return None
    if len(data) < 26:
        raise ImageError("truncated BMP header")
    width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("BMP", abs(width), abs(height))


def _webp(data: bytes) -> ImageHeader | None:
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None
    if len(data) < 30:
        raise ImageError("truncated WebP header")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("WebP", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ImageHeader("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, alpha=True)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("WebP", width, height, alpha=bool(data[20] & 0x10))
    raise ImageError("unsupported WebP variant")


def _tiff(data: bytes) -> ImageHeader | None:
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        size: dict[int, int] = {}
        for k in range(count):
            entry = data[offset + 2 + 12 * k: offset + 14 + 12 * k]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag in (256, 257):
                fmt = "H" if kind == 3 else "I"
                size[tag] = struct.unpack(order + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
        return ImageHeader("TIFF", size[256], size[257])
    except (struct.error, KeyError) as err:
        raise ImageError("truncated or corrupt TIFF header") from err


def load_gray(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A page image file as an 8-bit grayscale array, EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"is a directory, not an image: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"cannot read {path}: {err.strerror or err}") from err
    return decode_gray(data, max_pixels)


def decode_gray(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise ImageError(f"image too large: {header.width}x{header.height} pixels "
                         f"(limit {max_pixels / 1e6:.0f} megapixels)")
    buffer = np.frombuffer(data, np.uint8)
    if header.alpha:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        gray = _flatten_alpha(image) if image is not None else None
    else:
        gray = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        raise ImageError(f"cannot decode {header.format} image (truncated or corrupt)")
    if gray.dtype != np.uint8:
        gray = cv2.convertScaleAbs(gray, alpha=255.0 / max(float(gray.max()), 1.0))
    return gray


def _flatten_alpha(image: np.ndarray) -> np.ndarray:
    """Composite a transparent image on white paper: transparent pixels decode as black."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        rgb = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        image = rgb.astype(np.uint8)
    if image.shape[2] == 2:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def is_blank(gray: np.ndarray) -> bool:
    """True when the image has (almost) no contrast: nothing could be printed on it."""
    small = cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA) if gray.size > 65536 else gray
    low, high = np.percentile(small, [1, 99])
    return bool(high - low < 24)


def flatten_illumination(gray: np.ndarray, ink_size: int) -> np.ndarray:
    """Divide out uneven lighting and stretch ink to black, paper to white.

    A grey closing with a kernel wider than any ink stroke removes the ink and leaves the paper
    brightness; dividing by it evens out shadows and vignetting in phone photos.
    """
    k = max(3, int(ink_size) | 1)
    background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(
        cv2.MORPH_RECT, (k, k)))
    background = cv2.blur(background, (k, k))
    flat = gray.astype(np.float32) / np.maximum(background.astype(np.float32), 1.0)
    # Map the darkest ink to 0; the cap keeps a near-empty crop from amplifying noise.
    ink = min(float(np.percentile(flat, 1.0)), 0.6)
    flat = (flat - ink) / max(1.0 - ink, 1e-3)
    return np.clip(flat * 255.0, 0, 255).astype(np.uint8)


def model_input(gray: np.ndarray) -> np.ndarray:
    """The network's input scale: ink = 1, paper = 0, float32."""
    return (255.0 - gray.astype(np.float32)) / 255.0
