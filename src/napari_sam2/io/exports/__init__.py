"""Exports of a labels image: per-object masks and RGBA cut-outs (:mod:`.objects`), and
object tables, napari Tracks and Cell Tracking Challenge files (:mod:`.tracks`)."""
