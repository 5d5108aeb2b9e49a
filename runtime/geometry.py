"""The one staff-crop geometry that training renders and the runtime reproduces.

A model cannot transfer across crop proportions, so every crop fed to a recognizer, engraved
or photographed, is brought to this layout first: the five staff lines span a fixed fraction of
the image height (STAFF_FRACTION unless the model's metadata names its own), centred
vertically, with SIDE_MARGIN_SPACES interline spaces of paper left and right of the staff lines.
"""

from __future__ import annotations

from dataclasses import dataclass

# Real Camera-PrIMuS crops put the staff lines at about half the image height; 0.45 keeps room
# for three ledger lines above and below. Training varies around it (see training/augment.py).
STAFF_FRACTION = 0.45
SIDE_MARGIN_SPACES = 1.0


def flattening_size(height: int, fraction: float = STAFF_FRACTION) -> int:
    """Kernel of the illumination flattening for a crop: a quarter of the height a crop with
    the same staff would have at STAFF_FRACTION, so that a taller window around the same staff
    (a model that sees further above and below) flattens its ink the same way."""
    return round(height * fraction / STAFF_FRACTION) // 4


@dataclass(frozen=True)
class StaffBox:
    """Where a staff's lines lie in an image: top and bottom line y, left and right x."""

    top: float
    bottom: float
    left: float
    right: float

    @property
    def space(self) -> float:
        """Distance between two neighbouring staff lines."""
        return (self.bottom - self.top) / 4.0


def crop_window(box: StaffBox, fraction: float = STAFF_FRACTION,
                side_spaces: float = SIDE_MARGIN_SPACES) -> tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) window, in image coordinates, that gives `box` the canonical layout."""
    span = box.bottom - box.top
    height = span / fraction
    centre = (box.top + box.bottom) / 2.0
    margin = side_spaces * box.space
    return (box.left - margin, centre - height / 2.0, box.right + margin, centre + height / 2.0)
