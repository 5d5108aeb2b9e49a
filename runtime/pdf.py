"""PDF pages rendered to grayscale images with PDFium (pypdfium2), one page at a time.

The resolution: 200 dpi, the lowest at which the smallest normal print is never enlarged.
Printed staff spaces run from 1.2 to 2.3 mm; at 200 dpi the smallest is 9.4 pixels, about the
10 pixels a space the staff finder works at, and above the 7.2 that the model's input gives a
space (a 96-pixel crop, the staff over 0.30 of it), so both only ever reduce the page. At
150 dpi the smallest print falls under the model's scale. On eight engraved A4 pages embedded
at 300 dpi (1,399 tokens, the packaged model; `python benchmarks/bench_pdf_dpi.py`), SER is
1.57 / 2.00 / 1.79 % rendered at 150 / 200 / 300 dpi, and 1.57 / 1.64 / 1.79 % with every
page in the smallest print (`--space-mm 1.2`): the same within noise, while 300 dpi has 2.25
times the pixels of 200 to render, hold and crop from (1.1 to 1.2 times the time a page, on
a loaded machine). A page whose declared size is odd (a scan saved at one point per
pixel is a metre tall) is rendered with its long side kept between MIN_SIDE and MAX_SIDE
pixels: a page of music is a page, whatever the PDF says it measures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .image import ImageError

DPI = 200.0
MIN_SIDE = 2000  # pixels: a page declared tiny is still read at a useful size
MAX_SIDE = 4200  # pixels: 12 megapixels at A4's shape, the size of a phone's photo
POINTS_PER_INCH = 72.0


class PdfError(ImageError):
    """A PDF that cannot be read (encrypted, broken, truncated); shown to the user."""


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based, as a reader counts them
    gray: np.ndarray | None  # 8-bit grayscale, paper white; None when the page is broken
    error: str | None = None  # why a broken page could not be rendered


def is_pdf(data: bytes) -> bool:
    """PDF readers accept the header anywhere in the first kilobyte."""
    return b"%PDF-" in data[:1024]


def parse_pages(spec: str | None, count: int) -> list[int]:
    """The 1-based page numbers `spec` names ("2-5", "1,3,7-", "-4"), in the order given."""
    if spec is None or not spec.strip():
        return list(range(1, count + 1))
    pages: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d*)\s*(-?)\s*(\d*)\s*", part)
        if not match or not (match.group(1) or match.group(3)):
            raise PdfError(f"--pages {spec!r}: use page numbers and ranges such as 2-5 or 1,3,7-")
        first = int(match.group(1) or 1)
        last = int(match.group(3) or count) if match.group(2) else first
        if first < 1 or last < first:
            raise PdfError(f"--pages {spec!r}: {part.strip()} is not a range of pages")
        if last > count:
            raise PdfError(f"--pages {spec!r}: the PDF has {count} page{'s' * (count != 1)}")
        pages += [p for p in range(first, last + 1) if p not in pages]
    return pages


def render_pages(data: bytes, pages: str | None = None, dpi: float = DPI) -> Iterator[PdfPage]:
    """The pages `pages` names (all by default), rendered in grayscale, one at a time so that
    a long score never holds more than one page in memory."""
    document = _open(data)
    try:
        for number in parse_pages(pages, len(document)):
            try:  # a damaged page costs only itself
                yield PdfPage(number, _render(_page(document, number), dpi, number))
            except PdfError as err:
                yield PdfPage(number, None, str(err))
    finally:
        document.close()


def page_count(data: bytes) -> int:
    document = _open(data)
    try:
        return len(document)
    finally:
        document.close()


def _open(data: bytes):
    import pypdfium2 as pdfium

    if not data:
        raise PdfError("file is empty")
    if not is_pdf(data):
        raise PdfError("not a PDF (no %PDF- header)")
    # PDFium rebuilds a damaged cross-reference table and would read what is left of a cut-off
    # file as if it were whole: a PDF ends with %%EOF, in its last kilobyte.
    if b"%%EOF" not in data[-1024:]:
        raise PdfError("truncated PDF (no %%EOF at its end)")
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as err:
        if "password" in str(err).lower():
            raise PdfError("PDF is encrypted (a password is needed to open it)") from err
        raise PdfError(f"broken PDF ({_reason(err)})") from err
    if len(document) == 0:
        document.close()
        raise PdfError("PDF has no pages")
    return document


def _page(document, number: int):
    import pypdfium2 as pdfium

    try:
        return document[number - 1]
    except pdfium.PdfiumError as err:
        raise PdfError(f"page {number} is broken (PDFium cannot load it)") from err


def _render(page, dpi: float, number: int) -> np.ndarray:
    import pypdfium2 as pdfium

    width, height = page.get_size()
    if min(width, height) <= 0:
        raise PdfError(f"page {number} has no size")
    long_side = max(width, height) * dpi / POINTS_PER_INCH
    scale = dpi / POINTS_PER_INCH * min(max(long_side, MIN_SIDE), MAX_SIDE) / long_side
    try:
        bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=False)
        gray = bitmap.to_numpy()
    except pdfium.PdfiumError as err:
        raise PdfError(f"page {number} cannot be rendered ({_reason(err)})") from err
    finally:
        page.close()
    # Grayscale renders are one channel; other builds give BGR(A): keep the first.
    return np.ascontiguousarray(gray if gray.ndim == 2 else gray[:, :, 0], np.uint8)


def _reason(err: Exception) -> str:
    text = str(err)
    match = re.search(r"PDFium: ([^)]*)", text)
    return match.group(1).strip().rstrip(".").lower() if match else text.splitlines()[0]
