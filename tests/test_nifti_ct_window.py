"""A CT saved as NIfTI has no modality tag: its Hounsfield units are recognised, so it opens
with the soft tissue window (as a DICOM CT without a stored window does) and the window
panel lists the CT presets first; MR and other volumes keep robust percentiles."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_sam2.io.medical.nifti import read_nifti
from napari_sam2.io.medical.windowing import looks_like_hu, preset_names, robust_limits


def _ct_volume(dtype=np.int16) -> np.ndarray:
    vol = np.full((40, 48, 12), -1024, dtype=dtype)  # air around the body
    vol[8:32, 10:38, :] = 40  # soft tissue
    vol[18:22, 20:26, :] = 900  # bone
    vol[12:16, 12:16, 3:6] = -700  # lung
    return vol


def _save(tmp_path, data, name, **header):
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]))
    for key, value in header.items():
        img.header[key] = value
    path = tmp_path / name
    nib.save(img, path)
    return path


def test_ct_in_hu_opens_with_the_soft_tissue_window(tmp_path):
    [(data, kwargs, kind)] = read_nifti(_save(tmp_path, _ct_volume(), "ct.nii.gz"))
    assert kind == "image" and data.dtype == np.int16
    assert kwargs["contrast_limits"] == [-160.0, 240.0]  # W 400 / L 40
    medical = kwargs["metadata"]["medical"]
    assert medical["units"] == "HU" and medical["modality"] == "CT"
    assert medical["modality_inferred"] is True
    assert preset_names(kwargs["metadata"])[:4] == ["soft tissue", "lung", "bone", "brain"]


def test_scaled_ct_is_recognised_too(tmp_path):
    """Stored as unsigned values with intercept -1024, as many converters write CT."""
    raw = (_ct_volume(np.int32) + 1024).astype(np.uint16)
    path = _save(tmp_path, raw, "ct_scaled.nii", scl_slope=1.0, scl_inter=-1024.0)
    [(data, kwargs, _)] = read_nifti(path)
    assert int(data.min()) == -1024 and int(data.max()) == 900
    assert kwargs["contrast_limits"] == [-160.0, 240.0]


def test_mr_keeps_robust_limits(tmp_path):
    rng = np.random.default_rng(0)
    mr = rng.integers(0, 3000, size=(40, 48, 12)).astype(np.uint16)
    [(data, kwargs, _)] = read_nifti(_save(tmp_path, mr, "t1.nii.gz"))
    assert kwargs["contrast_limits"] == robust_limits(data)
    assert "units" not in kwargs["metadata"]["medical"]
    assert preset_names(kwargs["metadata"])[0] != "soft tissue"


def test_real_mr_file_is_not_taken_for_ct(shared_data):
    [(data, kwargs, _)] = read_nifti(shared_data / "medical" / "anatomical.nii")
    assert not looks_like_hu(data)
    assert kwargs["contrast_limits"] == robust_limits(data)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.zeros(1000), False),  # constant
        (np.linspace(-3, 3, 1000), False),  # z-scored MR
        (np.r_[np.full(50, -1000.0), np.full(950, 300.0)], True),  # 5 % air
        (np.r_[np.full(5, -1000.0), np.full(995, 300.0)], False),  # 0.5 % air: not CT-like
        (np.r_[np.full(100, np.nan), np.full(100, -1000.0), np.full(800, 300.0)], True),
        (np.full(10, np.nan), False),
        (np.r_[np.full(500, -1000.0), np.full(500, 50.0)].astype(np.float32), False),
    ],
    ids=["zeros", "zscore", "ct", "little-air", "nan-ct", "all-nan", "no-tissue-above-100"],
)
def test_looks_like_hu(values, expected):
    assert looks_like_hu(values) is expected
