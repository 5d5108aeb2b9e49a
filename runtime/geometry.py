"""The one staff-crop geometry that training renders and the runtime reproduces.

A model cannot transfer across crop proportions, so every crop fed to a recognizer, engraved
or photographed, is brought to this layout first: the five staff lines span STAFF_FRACTION of
the image height, centred vertically, with SIDE_MARGIN_SPACES interline spaces of paper left and
right of the staff lines.
"""

from __future__ import annotations

from dataclasses import dataclass

# Real Camera-PrIMuS crops put the staff lines at about half the image height; 0.45 keeps room
# for three ledger lines above and below. Training varies around it (see training/augment.py).
STAFF_FRACTION = 0.45
SIDE_MARGIN_SPACES = 1.0


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
