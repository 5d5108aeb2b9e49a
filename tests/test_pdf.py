"""PDF input: pages the engine engraved, put into a real PDF, read back as one score."""

from __future__ import annotations

import difflib
import io
import json
import re
from pathlib import Path

import cv2
import mido
import numpy as np
import pytest
from click.testing import CliRunner
from omr.cli import cli
from omr.midi import notes_from_midi
from omr.pdf import PdfError, parse_pages
from omr.recognize import Score, Staff

pytest.importorskip("verovio")
STAFF_COUNTS = (2, 3, 4)  # staves on pages 1, 2 and 3: each page is told by its count


def run(*args: str, stdin: bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def pdf_of(pages: list[np.ndarray]) -> bytes:
    """A PDF with each grayscale image as one A4 page, as a scanner writes it (JPEG inside)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for gray in pages:
        picture = pdfium.PdfImage.new(doc)
        picture.load_jpeg(io.BytesIO(cv2.imencode(".jpg", gray)[1].tobytes()), inline=True)
        width, height = 595.0, 595.0 * gray.shape[0] / gray.shape[1]
        picture.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page = doc.new_page(width, height)
        page.insert_obj(picture)
        page.gen_content()
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def engraved():
    """Three single-staff-system pages engraved by the engine, and their true labels."""
    from omr_train.synth.layout import PageLayout, engrave_page

    pages, truth = [], []
    for k, systems in enumerate(STAFF_COUNTS):
        layout = PageLayout(width_px=1654, systems=systems, measures=3, title=k == 0)
        page, staves, _ = engrave_page(layout, np.random.default_rng(k))
        assert len(staves) == systems
        pages.append(page)
        truth.append([s.tokens for s in staves])
    return pages, truth


@pytest.fixture(scope="module")
def score_pdf(engraved, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "score.pdf"
    path.write_bytes(pdf_of(engraved[0]))
    return path


def _pitches(score: Score) -> list[int]:
    return [n.pitch for n in sorted(score.notes, key=lambda n: (n.onset, n.pitch))]


def test_three_page_pdf_becomes_one_midi_with_every_staff_in_page_order(tmp_path, engraved,
                                                                         score_pdf):
    _, truth = engraved
    midi, listing = tmp_path / "score.mid", tmp_path / "score.json"
    assert run(str(score_pdf), "-o", str(midi)).exit_code == 0
    result = run(str(score_pdf), "--format", "json", "-o", str(listing))
    assert result.exit_code == 0, result.stderr
    staves = json.loads(listing.read_text())["staves"]
    flat = [t for page in truth for t in page]
    assert len(staves) == len(flat) == sum(STAFF_COUNTS)
    assert [s["system"] for s in staves] == list(range(len(flat)))  # each page's systems kept
    assert [s["page"] for s in staves] == [k + 1 for k, n in enumerate(STAFF_COUNTS)
                                           for _ in range(n)]  # where each box is
    # Each staff read is nearest to the true staff at its own place, pages in order.
    for k, staff in enumerate(staves):
        near = [difflib.SequenceMatcher(None, staff["tokens"], t).ratio() for t in flat]
        assert int(np.argmax(near)) == k and near[k] > 0.8, (k, near)
    # The MIDI plays the three pages one after the other: its pitches follow the truth's.
    played = [n.pitch for n in notes_from_midi(midi.read_bytes())]
    expected = Score(tuple(Staff((0, 0, 1, 1), tokens, 1.0, system=k)
                           for k, tokens in enumerate(flat)))
    backwards = Score(tuple(Staff((0, 0, 1, 1), tokens, 1.0, system=k)
                            for k, tokens in enumerate(t for page in truth[::-1] for t in page)))
    forward = difflib.SequenceMatcher(None, played, _pitches(expected)).ratio()
    assert forward > 0.9 > difflib.SequenceMatcher(None, played, _pitches(backwards)).ratio()
    assert len(mido.MidiFile(str(midi)).tracks) >= 1
    # The MusicXML holds the same piece: a pitched <note> for every note the MIDI plays.
    xml = tmp_path / "score.musicxml"
    assert run(str(score_pdf), "--format", "musicxml", "-o", str(xml)).exit_code == 0
    text = xml.read_text()
    pitched = sum(1 for n in text.split("<note>")[1:] if "<pitch>" in n and "<tie type=\"stop"
                  not in n and "<grace/>" not in n)
    assert pitched == len(played)


def test_pages_option_reads_only_those_pages(tmp_path, score_pdf):
    result = run(str(score_pdf), "--pages", "2-3", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [f"{score_pdf}#page=2", f"{score_pdf}#page=3"]
    assert [len(r["staves"]) for r in records] == list(STAFF_COUNTS[1:])


def test_page_range_beyond_the_pdf_is_one_line(tmp_path, score_pdf):
    out = tmp_path / "x.mid"
    result = run(str(score_pdf), "--pages", "3-9", "-o", str(out))
    assert result.exit_code == 1 and "has 3 pages" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not out.exists()


def test_parse_pages_reads_ranges_lists_and_open_ends():
    assert parse_pages("2-5", 9) == [2, 3, 4, 5]
    assert parse_pages("1,3,7-", 9) == [1, 3, 7, 8, 9]
    assert parse_pages("-2", 9) == [1, 2]
    assert parse_pages(None, 3) == [1, 2, 3]
    for bad in ("0", "5-2", "a", "2-3-4", "1,,2"):
        with pytest.raises(PdfError):
            parse_pages(bad, 9)


def test_pages_without_staves_are_skipped_with_a_warning(tmp_path, engraved):
    text = np.full((2339, 1654), 255, np.uint8)
    cv2.putText(text, "Sonatina in G", (200, 600), cv2.FONT_HERSHEY_SIMPLEX, 4, 0, 8)
    blank = np.full((2339, 1654), 255, np.uint8)
    path = tmp_path / "with-title.pdf"
    path.write_bytes(pdf_of([text, engraved[0][0], blank]))
    listing = tmp_path / "out.json"
    result = run(str(path), "--format", "json", "-o", str(listing))
    assert result.exit_code == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "#page=1" in skipped[0] and "#page=3" in skipped[1]
    assert len(json.loads(listing.read_text())["staves"]) == STAFF_COUNTS[0]


def test_a_broken_page_costs_only_itself(tmp_path, engraved):
    whole = pdf_of(engraved[0][:2] + [engraved[0][0]])
    second = [m.start() for m in re.finditer(rb"/Type/Page\b", whole)][1]
    path = tmp_path / "damaged.pdf"
    path.write_bytes(whole[:second] + b"/Type/Xage" + whole[second + 10:])  # same length
    result = run(str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(r["staves"]) for r in records] == [STAFF_COUNTS[0], 0, STAFF_COUNTS[0]]
    assert "page 2 is broken" in records[1]["error"]
    assert [line for line in result.stderr.splitlines() if "skipped" in line] == [
        f"omr-run: warning: {path}#page=2: skipped: page 2 is broken (PDFium cannot load it)"]


def _bad_pdfs(tmp_path: Path, good: bytes) -> dict[str, Path]:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(good)))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    locked = io.BytesIO()
    writer.write(locked)
    text = np.full((842, 595), 255, np.uint8)
    cv2.putText(text, "no music here", (60, 400), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 0, 3)
    cases = {"random": np.random.default_rng(0).bytes(5000), "truncated": good[: len(good) // 2],
             "encrypted": locked.getvalue(), "broken": b"%PDF-1.7\n" + b"\x00garbage" * 99
             + b"\n%%EOF\n", "empty": b"", "no staff": pdf_of([text])}
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / f"{name.replace(' ', '-')}.pdf"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize("case, says", [("random", "not a PDF"), ("truncated", "truncated"),
                                        ("encrypted", "encrypted"), ("broken", "broken"),
                                        ("empty", "empty"), ("no staff", "no staff")])
def test_bad_pdf_gives_one_error_line_and_no_file(tmp_path, score_pdf, case, says):
    made = _bad_pdfs(tmp_path, score_pdf.read_bytes())
    result = run(str(made[case]), "--format", "musicxml" if case == "truncated" else "midi")
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("omr-run: error: ") and says in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert sorted(tmp_path.iterdir()) == sorted(made.values())  # nothing written


def test_pdf_on_standard_input_writes_midi_to_standard_output(score_pdf):
    result = run("-", "--pages", "1", "-o", "-", stdin=score_pdf.read_bytes())
    assert result.exit_code == 0, result.stderr
    midi = mido.MidiFile(file=io.BytesIO(result.stdout_bytes))
    assert sum(m.type == "note_on" for t in midi.tracks for m in t) > 10


def test_damaged_pdfs_give_pdf_errors_or_pages_never_anything_else():
    from omr.pdf import render_pages

    page = np.full((400, 300), 255, np.uint8)
    page[100:102, 20:280] = 0
    good = pdf_of([page, page])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(150):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[:int(rng.integers(10, len(data)))] + b"\n%%EOF\n"
        try:
            for rendered in render_pages(bytes(data), dpi=50):
                assert (rendered.gray is None) != (rendered.error is None)
                seen.add("page" if rendered.error is None else "broken page")
        except PdfError:
            seen.add("error")
    assert seen == {"page", "broken page", "error"}


def test_joined_images_read_as_one_piece_like_a_pdf(tmp_path, engraved, score_pdf):
    """A piece scanned page by page: the images, joined, read as the PDF of them does, in
    natural order (page9 before page10), one output named after the first page."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for number, page in zip((9, 10, 11), engraved[0]):
        cv2.imwrite(str(folder / f"page{number}.png"), page)
    result = run(str(folder), "--join", "--format", "json", "--preview",
                 str(tmp_path / "look.png"))
    assert result.exit_code == 0, result.stderr
    joined = json.loads((folder / "page9.json").read_text())["staves"]
    assert sorted(p.name for p in folder.iterdir()) == ["page10.png", "page11.png",
                                                       "page9.json", "page9.png"]
    assert [s["page"] for s in joined] == [k + 1 for k, n in enumerate(STAFF_COUNTS)
                                           for _ in range(n)]
    assert [s["system"] for s in joined] == list(range(sum(STAFF_COUNTS)))
    assert sorted(p.name for p in tmp_path.glob("look-p*.png")) == [
        "look-p1.png", "look-p2.png", "look-p3.png"]
    flat = [t for page in engraved[1] for t in page]
    for k, staff in enumerate(joined):
        near = [difflib.SequenceMatcher(None, staff["tokens"], t).ratio() for t in flat]
        assert int(np.argmax(near)) == k and near[k] > 0.8, (k, near)
    # The PDF of the same pages and the same pages joined with it: one piece, pages in turn.
    result = run(str(score_pdf), str(folder / "page9.png"), "--join", "--pages", "2",
                 "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [f"{score_pdf}#page=2", str(folder / "page9.png")]
    assert [len(r["staves"]) for r in records] == [STAFF_COUNTS[1], STAFF_COUNTS[0]]


def test_a_joined_page_without_staves_is_skipped_and_a_missing_one_fails_the_piece(
        tmp_path, engraved):
    blank, first = tmp_path / "p1.png", tmp_path / "p2.png"
    cv2.imwrite(str(blank), np.full((2339, 1654), 255, np.uint8))
    cv2.imwrite(str(first), engraved[0][0])
    out = tmp_path / "piece.mid"
    result = run(str(blank), str(first), "--join", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "skipped" in line][0].startswith(
        f"omr-run: warning: {blank}: skipped: ")
    before = out.read_bytes()
    result = run(str(first), str(tmp_path / "p3.png"), "--join", "-o", str(out))
    assert_error = result.stderr.splitlines()
    assert result.exit_code == 1 and assert_error == [
        f"omr-run: error: --join: no such file: {tmp_path / 'p3.png'}"]
    assert out.read_bytes() == before  # what was written before is kept
    broken = tmp_path / "p4.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 99)
    result = run(str(first), str(broken), "--join", "-o", str(out))
    assert result.exit_code == 1 and result.stderr.startswith(f"omr-run: error: --join: {broken}: ")
    assert out.read_bytes() == before
    result = run(str(first), str(first), "--join", "--jobs", "2")
    assert result.exit_code == 2 and "--join" in result.stderr
