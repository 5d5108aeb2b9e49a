"""One input read into one Score: a page image, a PDF's pages, or standard input's bytes; or
several inputs read as one piece's pages (`read_piece`, `omr-run --join`).

A PDF's pages become one Score: the pages' staves in page order, each page's system numbers
offset past the previous page's, so that every MIDI and MusicXML writer reads a multi-page
score as one piece whose systems stay distinct; the later pages, which print no time
signature, keep the earlier pages' (omr.page_metre). A page with no staff (a title page, a blank
verso) is skipped with a warning; a PDF none of whose pages has a staff is an error. A piece
scanned page by page into images is read the same way when its images are joined.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import image as img
from . import pdf
from .page_metre import Metres

if TYPE_CHECKING:
    from .recognize import Recognizer, Score

STDIN = "-"


@dataclass(frozen=True)
class Page:
    """What one page gave: its Score, or why it was skipped, and its warnings."""

    label: str  # the input's name, or "score.pdf#page=3" (the PDF open parameter)
    score: Score | None
    error: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    name: str
    score: Score  # every page read, merged in page order
    pages: tuple[Page, ...]

    @property
    def warnings(self) -> list[str]:
        """Each page's warnings, and a line for each page skipped."""
        out = []
        for page in self.pages:
            out += [f"{page.label}: {w}" for w in page.warnings]
            if page.error is not None:
                out.append(f"{page.label}: skipped: {page.error}")
        return out


def load_bytes(name: str) -> bytes:
    """The bytes of input `name`: a file, or standard input for "-"."""
    if name == STDIN:
        data = sys.stdin.buffer.read()
        if not data:
            raise img.ImageError("standard input is empty")
        return data
    path = _existing(name)
    try:
        return path.read_bytes()
    except OSError as err:
        raise img.ImageError(f"cannot read {path}: {err.strerror or err}") from err


def _existing(name: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise img.ImageError(f"no such file: {path}")
    if path.is_dir():
        raise img.ImageError(f"is a directory, not an image: {path}")
    return path


def read_document(recognizer: Recognizer, name: str, data: bytes | None = None,
                  single_staff: bool = False, pages: str | None = None,
                  preview: Path | None = None) -> Document:
    """Read input `name` (its bytes `data`, loaded when not given) into one Score.

    `pages` picks a PDF's pages ("2-5"); an image ignores it. `preview` draws what was read
    (one picture per page of a PDF, `preview-p3.png`)."""
    clock = time.perf_counter()
    data = load_bytes(name) if data is None else data
    if pdf.is_pdf(data) or name.lower().endswith(".pdf"):
        return _read_pages(recognizer, name, _pdf_pages(name, data, pages), single_staff,
                           preview)
    gray = img.decode_gray(data)
    page = _read_page(recognizer, name, gray, single_staff, clock, preview, strict=True)
    return Document(name, page.score, (page,))


def read_piece(recognizer: Recognizer, names: Sequence[str], single_staff: bool = False,
               pages: str | None = None, preview: Path | None = None) -> Document:
    """Several inputs read as one piece's pages, in the order given (`omr-run --join`): a PDF's
    pages in turn, the time signatures carried from page to page as within one PDF, the pages
    numbered through the piece. A page with no staff is skipped with a warning; an input that
    cannot be loaded or decoded is an error, so that no page goes missing unsaid."""
    for name in names:  # a missing page fails the piece before any page is read
        _existing(name)

    def sources() -> Iterator[_Source]:
        number = 0
        for name in names:
            data = load_bytes(name)
            if pdf.is_pdf(data) or name.lower().endswith(".pdf"):
                try:
                    for page in _pdf_pages(name, data, pages):
                        number += 1
                        yield replace(page, number=number)
                except pdf.PdfError as err:  # the whole file: say which of the piece's
                    raise pdf.PdfError(f"{name}: {err}") from err
            else:
                number += 1
                yield _Source(name, number, _decoded(name, data))

    return _read_pages(recognizer, names[0], sources(), single_staff, preview)


@dataclass(frozen=True)
class _Source:
    """One page to read: its label, its number in the document, and its pixels (None: the
    page could not be rendered, and `error` says why)."""

    label: str
    number: int
    gray: np.ndarray | None
    error: str | None = None


def _pdf_pages(name: str, data: bytes, pages: str | None) -> Iterator[_Source]:
    for page in pdf.render_pages(data, pages):
        yield _Source(f"{name}#page={page.number}", page.number, page.gray, page.error)


def _decoded(name: str, data: bytes) -> np.ndarray:
    try:
        return img.decode_gray(data)
    except img.ImageError as err:
        raise img.ImageError(f"{name}: {err}") from err


def _read_pages(recognizer: Recognizer, name: str, sources: Iterable[_Source],
                single_staff: bool, preview: Path | None) -> Document:
    """Pages read in turn into one Document; the metres of a page carry to the next."""
    from .staves import StaffError

    read, metres = [], Metres()
    clock = time.perf_counter()
    for page in sources:
        if page.gray is None:
            read.append(Page(page.label, None, page.error))
            continue
        shown = preview.with_name(f"{preview.stem}-p{page.number}.png") if preview else None
        done = _read_page(recognizer, page.label, page.gray, single_staff, clock, shown,
                          strict=False, metres=metres)
        if done.score is not None:  # each staff says which page its box is on
            done = replace(done, score=replace(done.score, staves=tuple(
                replace(s, page=page.number) for s in done.score.staves)))
        read.append(done)
        clock = time.perf_counter()
    scores = [p.score for p in read if p.score is not None]
    if not scores:
        plural = "s" * (len(read) != 1)
        first = read[0].label.rsplit("#", 1)[-1]
        raise StaffError(f"no staff found on any of its {len(read)} page{plural} "
                         f"({first}: {read[0].error})")
    return Document(name, merge(scores), tuple(read))


def _read_page(recognizer: Recognizer, label: str, gray, single_staff: bool, clock: float,
               preview: Path | None, strict: bool, metres: Metres | None = None) -> Page:
    """One page read; unless `strict`, a page that is blank or has no staff is skipped.
    `metres`: the document's time signatures so far (Recognizer.read_array)."""
    from .staves import StaffError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            score = recognizer.read_array(gray, single_staff,
                                          {"load": time.perf_counter() - clock}, metres)
        except (img.ImageError, StaffError) as err:
            if strict:
                raise
            return Page(label, None, str(err))
    if preview is not None:
        from .preview import save_preview

        save_preview(preview, gray, score)
    return Page(label, score, None, tuple(str(w.message) for w in caught))


def merge(scores: Iterable[Score]) -> Score:
    """Pages' scores as one: staves in page order, system numbers kept distinct."""
    from .recognize import Score

    scores = list(scores)
    staves, offset, timings = [], 0, {}
    for score in scores:
        staves += [replace(s, system=s.system + offset) for s in score.staves]
        offset += max((s.system for s in score.staves), default=-1) + 1
        for key, value in score.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    if len(scores) == 1:
        return scores[0]
    return Score(tuple(staves), scores[0].image_size, timings)
