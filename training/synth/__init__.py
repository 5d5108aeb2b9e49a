"""The score synthesis engine: melodies engraved into labelled, camera-like staff images."""
