"""Medical images: NIfTI and DICOM readers in patient (LPS) geometry, labels written as
NIfTI aligned with the source scan or as DICOM SEG, and CT/MR intensity windows."""
