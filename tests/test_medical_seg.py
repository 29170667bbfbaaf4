"""DICOM SEG export (optional extra ``medical-seg``: highdicom) referencing the source series."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_sam2.io import LabelsWriteError
from napari_sam2.io.medical.dicom import read_dicom
from test_medical_dicom import write_series

hd = pytest.importorskip("highdicom")

from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg  # noqa: E402


def _source_uid_by_slice(folder) -> dict[int, str]:
    """SOPInstanceUID of each slice k (by position along the normal, which points down)."""
    by_z = {}
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_z[float(ds.ImagePositionPatient[2])] = ds.SOPInstanceUID
    return {k: by_z[z] for k, z in enumerate(sorted(by_z, reverse=True))}  # k=0 top


def test_seg_segments_sit_on_the_right_source_pixels(shared_data, tmp_path):
    write_series(shared_data, tmp_path / "series")
    ((data, kwargs, _),) = read_dicom(tmp_path / "series")
    labels = np.zeros(data.shape, np.uint16)
    labels[3, 10:14, 20:25] = 7  # display (z, y, x)
    labels[20, 30, 5] = 300
    out = save_labels_dicom_seg(
        tmp_path / "seg.dcm",
        labels,
        medical=kwargs["metadata"]["medical"],
        provenance={"backend": "classical"},
    )
    seg = hd.seg.segread(out)
    assert seg.Modality == "SEG"
    assert [seg.get_segment_description(n).SegmentLabel for n in (1, 2)] == [
        "label 7",
        "label 300",
    ]
    assert seg.ContentDescription == "napari-sam2 classical"
    uids = _source_uid_by_slice(tmp_path / "series")
    n = data.shape[0]
    cols = data.shape[2]
    # display z=3 is stack slice k = n-1-3; display x is column cols-1-x (rows run right)
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[uids[n - 1 - 3]], segment_numbers=[1]
    )[0, :, :, 0]
    expected = np.zeros(mask.shape, bool)
    expected[10:14, cols - 25 : cols - 20] = True
    np.testing.assert_array_equal(mask.astype(bool), expected)
    point = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[uids[n - 1 - 20]], segment_numbers=[2]
    )[0, :, :, 0]
    assert np.argwhere(point).tolist() == [[30, cols - 1 - 5]]
    # the SEG belongs to the source study and references the series
    source = pydicom.dcmread(next((tmp_path / "series").iterdir()))
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID


def test_seg_from_enhanced_ct_and_errors(shared_data, tmp_path):
    ((data, kwargs, _),) = read_dicom(shared_data / "medical/eCT_Supplemental.dcm")
    labels = np.zeros(data.shape, np.uint8)
    labels[0, 100:110, 200:220] = 1
    out = save_labels_dicom_seg(
        tmp_path / "ect.dcm", labels, medical=kwargs["metadata"]["medical"]
    )
    seg = hd.seg.segread(out)
    assert seg.NumberOfFrames == 1  # empty frames omitted
    with pytest.raises(LabelsWriteError, match="empty"):
        save_labels_dicom_seg(
            tmp_path / "e.dcm", labels * 0, medical=kwargs["metadata"]["medical"]
        )
    with pytest.raises(LabelsWriteError, match="planes"):
        save_labels_dicom_seg(
            tmp_path / "e.dcm", labels[:1].repeat(3, 0), medical=kwargs["metadata"]["medical"]
        )
