"""Microscopy TIFF: the reader (TIFF, OME-TIFF, ImageJ hyperstacks, pyramids, several
series) and the labels TIFF writer with voxel size, axes and provenance."""
