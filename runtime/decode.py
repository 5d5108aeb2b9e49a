"""From the network's log-probabilities to tokens: CTC best path, then a metre check.

The best path reads each symbol on its own, and two classes of its mistakes break the metre
that the rest of the staff makes plain: a time signature read with the wrong numerator
(3/8 as 6/8, 6/4 as 3/4) and notes or rests read with the wrong duration (a missing dot, a
sixteenth read as a thirty-second). Both are fixed the way a reader fixes them: when the
complete measures of the staff (those with a barline on both sides; the first and last may be
partial) disagree with what was read, and close runners-up at the same frames agree, take the
runners-up, at most a few in one measure. A staff that prints no time signature (a page's
later systems) is held to the length most of its measures have, its first measure included
(a later system starts on a measure's first beat). Nothing changes where the measures cannot
tell. TrOMR's readings get the same check (omr.readers), the runners-up being the other
rhythms its decoder weighed at each token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import semantic as sem
from .vocab import Vocabulary

EPS = 1e-6
# Below this probability a staff's first clef is one the network could not see (smeared, cut
# off, under a thumb): the user is warned, and the staff is read again (omr.clef). Chosen for
# the shipped model (crnn-lite-tall) on the augmented synthetic test (`omr-eval models/crnn.pt
# data/synth --split test --augment 1 --limit 600`): it flags as few of the clefs read right
# there as 0.9 does (5 of 597; the next one read right is at 0.939), and more of those it
# cannot see: 178 of the 254 read wrong where the staff's start is damaged (`--damaged-start
# 1`; 160 at 0.9).
CLEF_DOUBT = 0.93
# On its page's word alone (omr.page_metre), a measure is held to the page's length only when
# it is read within this share of it: one read further off has lost notes or a barline. An
# eighth did as well on SER and a little worse on note F1 (engraved photographed test pages by
# default 8.11 against 8.08 %, 70.2 against 70.3 %; those pages cut in two 7.50 against 7.55 %,
# 73.3 against 73.4 %; held-out polyphonic staves printing no signature, TrOMR, F1 0.1-0.5
# points lower; data/scratch/reach.py, outside git). No limit made a real page's last measure,
# read 8.75 quarters long, fit four with thirty-seconds.
PAGE_REACH = 1 / 4


@dataclass(frozen=True)
class DecodeOptions:
    metre: bool = True
    # Runner-ups within this many nats of the best class at the token's frames: a time
    # signature, backed by whole measures, may go further than a single note's duration.
    max_cost: float = 6.0
    max_duration_cost: float = 4.0
    alternatives: int = 8
    # A metre is trusted only when this many complete measures back it.
    min_measures: int = 2
    # At most this many durations mended in one measure (a run of sixteenths read with two
    # thirty-seconds needs two).
    max_changes: int = 3
    # Mend durations on a staff that prints no time signature too (a page's later systems),
    # by the length most of its measures have.
    unmetred: bool = True
    # A staff whose clef is read below CLEF_DOUBT is read again with a treble clef painted
    # before it (omr.clef; the Recognizer and omr-eval do it, having the network at hand).
    paint_clef: bool = True
    # A note after a clef change inside a staff, read through the staff's first clef, moved to
    # where the new clef puts it (omr.clef.after_changes; the autoregressive reader's readings).
    clef_changes: bool = True
    # A TrOMR note's alteration taken as its key and measure imply where the decoder weighed
    # that one within this many nats of the one it read (omr.accidentals); 0 turns it off.
    # Chosen on held-out polyphonic staves beyond those the bars are set on (staves 1,400 to
    # 2,000 of data/poly-test-gootville-v5, step 31,000; data/scratch/lift_ab.py): off / 0.5 /
    # 1 / 1.5 / 2 / 2.5 nats gave 3.96 / 3.86 / 3.84 / 3.84 / 3.86 / 3.97 % SER clean and
    # 5.46 / 5.23 / 5.20 / 5.12 / 5.16 / 5.27 % photographed.
    max_lift_cost: float = 1.5
    # A TrOMR staff whose mean log-probability per token is under this is read again, moved
    # up and down by this share of the crop's height, and its likeliest reading kept
    # (omr.second_look); -inf turns it off. Chosen on staves 1,400 to 1,800 of
    # data/poly-test-gootville-v5 (step 37,000; data/scratch/tta_ab.py, tta_thresh.py): read
    # again below -0.1 / -0.05 / -0.03 / -0.02 / always: 11 / 22 / 37 / 50 / 100 % of the
    # clean staves, SER 3.71 % -> 3.39 / 3.39 / 3.34 / 3.31 / 3.29 %; photographed, 17 / 30 /
    # 45 / 60 / 100 % of them, 4.69 % -> 4.52 / 4.43 / 4.42 / 4.43 / 4.42 %. Shifts of 2 rows
    # in 96, or a crop 8 % wider, did less.
    second_look_below: float = -0.03
    second_look_shift: float = 3 / 96  # 3 rows of the shipped TrOMR's 96
    # A page's staves that print no time signature held to the measure length of the one
    # printed above them in their part (omr.page_metre; the Recognizer does it, having the page).
    page_metre: bool = True


@dataclass(frozen=True)
class Decoded:
    tokens: list[str]
    confidence: float
    corrections: int = 0  # tokens the metre check replaced
    clef: str = ""  # the first clef the network read ("" if none)
    clef_confidence: float = 1.0  # its probability at its frames (1.0: none read)
    clef_assumed: str = ""  # the clef painted before the staff, when its own was doubtful (omr.clef)
    clef_end: float = 0.0  # where the first clef's frames end, as a share of the staff's width
    # The tokens again with the measures held to a length where the staff prints no time
    # signature (fix_metre's page_length; omr.page_metre); None where that cannot be done.
    remetre: Callable[[float], list[str]] | None = field(default=None, repr=False, compare=False)


def greedy_decode(log_probs: np.ndarray) -> tuple[list[int], float]:
    """Best class per frame, repeats collapsed, blanks dropped; confidence of what was emitted.

    Confidence is the mean probability of the winning class over the non-blank frames
    (1.0 for an empty result: nothing was claimed).
    """
    ids, _, confidence = best_path(log_probs)
    return ids, confidence


def best_path(log_probs: np.ndarray) -> tuple[list[int], np.ndarray, float]:
    """Collapsed best path, each emitted id's run of frames (rows [start, end)), confidence."""
    best = log_probs.argmax(axis=1)
    emitted = best != 0
    if not emitted.any():
        return [], np.zeros((0, 2), int), 1.0
    changes = np.flatnonzero(np.diff(best)) + 1
    starts = np.concatenate(([0], changes))
    ends = np.concatenate((changes, [len(best)]))
    runs = best[starts] != 0
    spans = np.stack([starts[runs], ends[runs]], axis=1)
    confidence = float(np.exp(log_probs[emitted, best[emitted]]).mean())
    return [int(c) for c in best[starts[runs]]], spans, confidence


def decode(log_probs: np.ndarray, vocab: Vocabulary, opt: DecodeOptions = DecodeOptions(),
           page_length: float | None = None) -> Decoded:
    """Tokens of one staff from its log-probabilities [T, C] (valid frames only); `page_length`
    as fix_metre takes it."""
    ids, spans, confidence = best_path(log_probs)
    tokens = vocab.decode(ids)
    clef, clef_confidence, clef_end = _first_clef(log_probs, ids, spans, tokens)
    fixed = tokens
    if opt.metre and tokens:
        alts = RunnerUps(log_probs, ids, spans, vocab, opt)
        fixed = fix_metre(tokens, alts, opt.min_measures, opt.max_duration_cost,
                          opt.max_changes, opt.unmetred, page_length)
    changed = sum(a != b for a, b in zip(tokens, fixed))
    remetre = (lambda n: decode(log_probs, vocab, opt, n).tokens) if opt.metre and tokens else None
    return Decoded(fixed, confidence, changed, clef, clef_confidence, clef_end=clef_end,
                   remetre=remetre)


def _first_clef(log_probs: np.ndarray, ids: list[int], spans: np.ndarray,
                tokens: list[str]) -> tuple[str, float, float]:
    """The first clef, its probability at its frames, and where those frames end (a share of
    the staff's width: omr.clef paints over it). Every pitch after a clef is read
    through it, so a doubtful clef puts the whole staff in doubt: a clef smeared or cut off by
    the photo is read with a low probability, where a visible one reads above 0.98."""
    for i, token in enumerate(tokens):
        if token.startswith("clef-"):
            start, end = spans[i]
            probability = float(np.exp(log_probs[start:end, ids[i]].max()))
            return token, probability, float(end / len(log_probs))
    return "", 1.0, 0.0


class RunnerUps:
    """runner_ups[i]: other tokens at token i's frames, cheapest first, with their cost in nats
    against the token read. Computed only for the tokens the metre check asks about."""

    def __init__(self, log_probs: np.ndarray, ids: list[int], spans: np.ndarray,
                 vocab: Vocabulary, opt: DecodeOptions):
        self.log_probs, self.ids, self.spans, self.vocab, self.opt = log_probs, ids, spans, vocab, opt
        self._cache: dict[int, list[tuple[str, float]]] = {}

    def __getitem__(self, i: int) -> list[tuple[str, float]]:
        if i not in self._cache:
            self._cache[i] = self._compute(i)
        return self._cache[i]

    def _compute(self, i: int) -> list[tuple[str, float]]:
        start, end = self.spans[i]
        best = self.log_probs[start:end].max(axis=0)
        best[0] = -np.inf
        k = min(self.opt.alternatives + 1, len(best) - 1)
        top_k = np.argpartition(-best, k)[:k + 1]
        order = top_k[np.argsort(-best[top_k])]
        top = best[self.ids[i]]
        return [(self.vocab.tokens[c - 1], float(top - best[c])) for c in order
                if c != self.ids[i] and top - best[c] <= self.opt.max_cost]


def fix_metre(tokens: list[str], alts: list[list[tuple[str, float]]], min_measures: int = 2,
              max_duration_cost: float = 4.0, max_changes: int = 3,
              unmetred: bool = True, page_length: float | None = None) -> list[str]:
    """Time signatures first (they set what a measure holds), then the durations of each
    measure that does not add up.

    Durations are only touched on a staff whose complete measures mostly agree on a length:
    one that the signature allows, or, on a staff that prints none (a page's later systems),
    the length most of its measures have. Where they do not agree, the metre itself is in
    doubt (a misread signature, or music that does not keep to it), and a change would as
    likely add an error as remove one.

    `page_length`: for a staff that prints no time signature, the length its page's signature
    sets (omr.page_metre). Its measures are held to it unless more of them agree on another.
    """
    out = list(tokens)
    symbols = [sem.parse_token(t) for t in out]
    for i, s in enumerate(symbols):
        if isinstance(s, sem.TimeSignature):
            _fix_time_signature(out, symbols, alts, i, min_measures)
    measures = complete_measures(symbols, unmetred)
    for metred in (True, False):
        region = [(a, b, ts) for a, b, ts in measures if (ts is not None) == metred]
        page = None if metred else page_length
        for start, end, usual in _measures_to_mend(out, region, min_measures, metred, page):
            _fix_duration(out, symbols, alts, start, end, usual, max_duration_cost, max_changes)
    return out


def _measures_to_mend(out: list[str], measures: list, min_measures: int,
                      metred: bool, page: float | None = None) -> list[tuple]:
    """(start, end, expected length) of the measures whose length the others contradict.

    Under a signature, the usual length is the commonest one the signature allows, and the
    measures that fit it must outnumber the ones to mend; with no signature, the commonest
    length must be held by most measures, and by at least `min_measures` of them, or else
    the page's length (`page`) sets it unless another length a metre could set (a whole
    number of eighths) is held by more measures, and by `min_measures`: a page's later
    systems keep its first system's metre, and a run of sixteenths read as thirty-seconds in
    two measures is no new metre. Only measures within a quarter of that length are held to
    it on the page's word alone: one read far longer is most often two with their barline
    missed, and one far shorter has lost notes, not durations. Where the staff's own measures
    back the length, every measure is, as without the page.
    """
    lengths = [measure_length(out[a:b]) for a, b, _ in measures]
    if page is not None and measures:
        held = Counter(round(x, 6) for x in lengths)
        other = max((n for x, n in held.items() if abs(x - page) >= EPS and _metric(x)),
                    default=0)
        agree = held[round(page, 6)]
        if other < min_measures or other <= agree:
            own = agree >= max(min_measures, len(lengths) - agree + 1)
            return [(a, b, page) for (a, b, _), x in zip(measures, lengths)
                    if abs(x - page) >= EPS and (own or abs(x - page) <= page * PAGE_REACH + EPS)]
    fitting = [x for x, (_, _, ts) in zip(lengths, measures) if not metred or fits(x, ts)]
    if not fitting:
        return []
    usual, agree = Counter(round(x, 6) for x in fitting).most_common(1)[0]
    wrong = [(a, b) for (a, b, ts), x in zip(measures, lengths)
             if abs(x - usual) >= EPS and (not metred or fits(usual, ts))]
    backed, needed = (len(fitting), len(wrong)) if metred else (agree, len(wrong) + 1)
    if backed < max(min_measures, needed):
        return []
    return [(a, b, usual) for a, b in wrong]


def _metric(length: float) -> bool:
    """Whether a time signature in use could make a measure this long: a whole number of
    eighths (7/8, 5/8; sixteenth metres are too rare to count)."""
    return abs(length * 2 - round(length * 2)) < EPS


def fits(length: float, ts: sem.TimeSignature) -> bool:
    """Whether a measure of `length` quarters keeps to `ts`.

    The signs C and C/ do not fix a length: in older music (and in RISM incipits) they head
    breve-long measures as often as 4/4 and 2/2 ones.
    """
    allowed = (4.0, 8.0) if ts.symbol else (ts.measure,)
    return any(abs(length - x) < EPS for x in allowed)


def complete_measures(symbols: list, unmetred: bool = False
                      ) -> list[tuple[int, int, sem.TimeSignature | None]]:
    """(first, last + 1, time signature) of each measure with a barline on both sides.

    Measures holding a multirest are left out, and so are those read before any time
    signature unless `unmetred` (then with None for their signature). With `unmetred`, a staff
    that prints no time signature is a page's later system, which starts on a measure's
    first beat (a pickup opens a piece, under its signature): its first measure is complete.
    """
    found, metre, opened = [], None, None
    for i, s in enumerate(symbols):
        if isinstance(s, sem.TimeSignature):
            metre = s
        elif unmetred and metre is None and opened is None and isinstance(s, (sem.Note, sem.Rest)):
            opened = i - 1  # the first measure of a later system opens at its first sound
        elif isinstance(s, sem.Barline):
            if opened is not None and (metre is not None or unmetred) and i > opened + 1 and \
                    not any(isinstance(x, sem.MultiRest) for x in symbols[opened + 1:i]):
                found.append((opened + 1, i, metre))
            opened = i
    return found


def measure_length(tokens: list[str]) -> float:
    """Quarter notes from a measure's first onset to where its last sound ends: by the time rule
    (omr.semantic), so a chord counts once and two voices side by side count once."""
    return sem.layout(tokens).length


def _fix_time_signature(out: list[str], symbols: list, alts, i: int, min_measures: int) -> None:
    """Take the runner-up metre when more complete measures that follow it agree with it.

    Only numeric signatures: C and C/ allow more than one measure length (see `fits`).
    """
    if symbols[i].symbol:
        return
    end = next((j for j in range(i + 1, len(symbols)) if isinstance(symbols[j], sem.TimeSignature)),
               len(symbols))
    region = out[i:end]
    lengths = [measure_length(region[a:b]) for a, b, _ in complete_measures(symbols[i:end])]

    def fit(ts: sem.TimeSignature) -> int:
        return sum(fits(x, ts) for x in lengths)

    best, best_fit = None, fit(symbols[i])
    for token, _cost in alts[i]:  # cheapest first
        s = sem.parse_token(token)
        if isinstance(s, sem.TimeSignature) and not s.symbol and fit(s) > best_fit:
            best, best_fit = (token, s), fit(s)
    # A majority of the measures must back the change.
    if best and best_fit >= min_measures and best_fit * 2 > len(lengths):
        out[i], symbols[i] = best


def _fix_duration(out: list[str], symbols: list, alts, start: int, end: int, expected: float,
                  max_cost: float, max_changes: int = 3) -> None:
    """The cheapest runner-up durations, at most `max_changes` of them, that make a measure
    add up. A sixteenth run read with two thirty-seconds is short by two, not one.

    Without a chord or a second voice a measure's length is the sum of its durations, so the
    choice is a small knapsack; with them the time rule decides, and one change is tried at
    a time against the measure's whole layout.
    """
    options = _duration_options(symbols, alts, start, end, max_cost)
    if not options:
        return
    if any(isinstance(s, sem.Join) for s in symbols[start:end]):
        picks = _one_change(out, options, start, end, expected)
    else:
        picks = _cheapest_changes(options, expected - measure_length(out[start:end]), max_changes)
    for j, token, symbol in picks:
        out[j], symbols[j] = token, symbol


def _duration_options(symbols: list, alts, start: int, end: int,
                      max_cost: float) -> list[tuple[int, float, list[tuple[float, str, object]]]]:
    """For each note or rest of a measure: its token, its duration as read, and its runner-ups
    that differ from it in duration alone."""
    options = []
    for j in range(start, end):
        s = symbols[j]
        if not isinstance(s, (sem.Note, sem.Rest)) or (isinstance(s, sem.Note) and s.grace):
            continue
        mine = []
        for token, cost in alts[j]:
            r = sem.parse_token(token)
            if cost <= max_cost and _same_but_duration(s, r) and abs(r.duration - s.duration) >= EPS:
                mine.append((cost, token, r))
        if mine:
            options.append((j, s.duration, mine))
    return options


def _cheapest_changes(options, missing: float, max_changes: int) -> list[tuple[int, str, object]]:
    """The cheapest set of at most `max_changes` options whose durations add `missing`."""
    best: dict[tuple[int, float], tuple[float, tuple]] = {(0, 0.0): (0.0, ())}
    for j, read, mine in options:
        for (k, gained), (cost, picks) in list(best.items()):
            if k == max_changes:
                continue
            for c, token, r in mine:
                key = (k + 1, round(gained + r.duration - read, 6))
                new = (cost + c, (*picks, (j, token, r)))
                if key not in best or new[0] < best[key][0]:
                    best[key] = new
    hits = [v for (k, gained), v in best.items() if k and abs(gained - missing) < EPS]
    return list(min(hits, key=lambda v: v[0])[1]) if hits else []


def _one_change(out: list[str], options, start: int, end: int,
                expected: float) -> list[tuple[int, str, object]]:
    """The cheapest single runner-up after which the measure's layout has the expected length."""
    choice = None
    for j, _, mine in options:
        for cost, token, r in mine:
            trial = out[start:end]
            trial[j - start] = token
            if abs(measure_length(trial) - expected) < EPS and (choice is None or cost < choice[0]):
                choice = (cost, j, token, r)
    return [choice[1:]] if choice else []


def _same_but_duration(a, b) -> bool:
    if isinstance(a, sem.Rest):
        return isinstance(b, sem.Rest)
    return isinstance(b, sem.Note) and not b.grace and b.pitch == a.pitch and b.step == a.step
