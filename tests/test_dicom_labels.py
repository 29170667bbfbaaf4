"""DICOM SEG with named, coded segments, and SEG / RTSTRUCT read back onto their source
series: write -> read gives the identical voxels and IDs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_sam2.io.medical.dicom import DicomReadError, read_dicom
from napari_sam2.io.medical.dicom_labels import labels_on_source
from napari_sam2.io.medical.segment_codes import (
    SegmentSpecError,
    code_of,
    parse_segments,
    read_segment_file,
)
from test_medical_dicom import write_series

hd = pytest.importorskip("highdicom")

from napari_sam2.adapter.medical_writers import write_labels_dicom_seg  # noqa: E402
from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg  # noqa: E402


def _labels(shape) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    labels[3, 10:14, 20:25] = 7
    labels[4, 11:13, 21:23] = 7
    labels[20, 30, 5] = 300  # one voxel, a large ID
    labels[10, 0:5, 0:3] = 2  # touches the border
    return labels


@pytest.fixture
def series(shared_data, tmp_path):
    write_series(shared_data, tmp_path / "study" / "ct")
    ((data, kwargs, _),) = read_dicom(tmp_path / "study" / "ct")
    return tmp_path / "study", data, kwargs


def test_named_seg_round_trip_is_exact(series):
    study, data, kwargs = series
    labels = _labels(data.shape)
    medical = kwargs["metadata"]["medical"]
    out = save_labels_dicom_seg(
        study / "seg" / "seg.dcm",
        labels,
        medical=medical,
        segments={7: "Liver", "300": {"label": "Lesion A", "type": "Neoplasm"}},
    )
    seg = hd.seg.segread(out)
    first, second, third = (seg.get_segment_description(n) for n in (1, 2, 3))
    assert [d.segment_label for d in (first, second, third)] == ["label 2", "Liver", "Lesion A"]
    assert second.segmented_property_type.value == "10200004"  # SCT Liver
    assert third.segmented_property_type.value == "108369006"  # SCT Neoplasm
    assert first.segmented_property_type.meaning == "Tissue"
    # folder with both: image layer + labels layer on the same grid
    layers = read_dicom(study)
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (img, img_kw, _), (back, lab_kw, _) = layers
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.int32
    for key in ("scale", "translate"):
        np.testing.assert_allclose(lab_kw[key], img_kw[key])
    segments = lab_kw["metadata"]["segments"]
    assert segments[7]["label"] == "Liver" and segments[7]["type"] == "SCT:10200004:Liver"
    assert segments[300]["label"] == "Lesion A"
    assert list(lab_kw["features"]["index"]) == [2, 7, 300]
    # the SEG alone, its source in a sibling folder of the study
    ((alone, alone_kw, kind),) = read_dicom(study / "seg" / "seg.dcm")
    assert kind == "labels"
    np.testing.assert_array_equal(alone, labels)


def test_resave_keeps_names_through_layer_metadata(series, tmp_path):
    study, data, kwargs = series
    labels = _labels(data.shape)
    medical = kwargs["metadata"]["medical"]
    save_labels_dicom_seg(study / "a.dcm", labels, medical=medical, segments={7: "Liver"})
    ((back, lab_kw, _),) = [layer for layer in read_dicom(study) if layer[2] == "labels"]
    (again,) = write_labels_dicom_seg(str(tmp_path / "b.dcm"), back, lab_kw)
    seg = hd.seg.segread(again)
    assert seg.get_segment_description(2).segment_label == "Liver"
    (study / "a.dcm").unlink()
    shutil.copy(again, study / "b.dcm")
    ((back2, _, _),) = [layer for layer in read_dicom(study) if layer[2] == "labels"]
    np.testing.assert_array_equal(back2, labels)


def test_enhanced_multiframe_source_round_trip(shared_data, tmp_path):
    src = shared_data / "medical/eCT_Supplemental.dcm"
    ((data, kwargs, _),) = read_dicom(src)
    labels = np.zeros(data.shape, np.int32)
    labels[0, 100:110, 200:220] = 4
    labels[-1, 5, 7] = 9
    shutil.copy(src, tmp_path / "ct.dcm")
    save_labels_dicom_seg(tmp_path / "seg.dcm", labels, medical=kwargs["metadata"]["medical"])
    back, segments = labels_on_source(
        tmp_path / "seg.dcm", kwargs["metadata"]["medical"], data.shape
    )
    np.testing.assert_array_equal(back, labels)
    assert sorted(segments) == [4, 9]


def test_unknown_code_is_a_typed_error_and_writes_nothing(series):
    study, data, kwargs = series
    with pytest.raises(SegmentSpecError, match="not a SNOMED CT concept"):
        save_labels_dicom_seg(
            study / "x.dcm",
            _labels(data.shape),
            medical=kwargs["metadata"]["medical"],
            segments={7: {"label": "x", "type": "Florbleglorp"}},
        )
    assert not (study / "x.dcm").exists()
    with pytest.raises(SegmentSpecError, match="label IDs start at 1"):
        parse_segments({0: "background"})


def test_codes_and_segment_files(tmp_path):
    assert code_of("Anatomical Structure") == ("SCT", "91723000", "Anatomical Structure")
    assert code_of("SCT:108369006:Neoplasm") == ("SCT", "108369006", "Neoplasm")
    # the DICOM CID 7150 name and the SNOMED CT name of the same category
    assert code_of("Morphologically Altered Structure")[1] == "49755003"
    assert code_of("morphologically abnormal structure")[1] == "49755003"
    (tmp_path / "s.json").write_text(json.dumps({"1": "Cell", "2": {"label": "Nuclei"}}))
    specs = read_segment_file(tmp_path / "s.json")
    assert specs[1].type == ("SCT", "4421005", "Cell") and specs[2].label == "Nuclei"
    (tmp_path / "s.csv").write_text("id,label,type\n3,Tumour,Neoplasm\n5,Kidney,\n")
    specs = read_segment_file(tmp_path / "s.csv")
    assert specs[3].type[1] == "108369006" and specs[5].label == "Kidney"
    (tmp_path / "bad.csv").write_text("name\nx\n")
    with pytest.raises(SegmentSpecError, match="bad.csv: a CSV with the columns"):
        read_segment_file(tmp_path / "bad.csv")


def _rtstruct(source_folder, rois) -> Dataset:
    """A minimal RTSTRUCT referencing the series in ``source_folder``; ``rois`` is
    ``[(number, name, [contour points (N, 3) in LPS mm, ...]), ...]``."""
    ref = pydicom.dcmread(next(source_folder.iterdir()), stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID = ref.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = "Structures"
    series = Dataset()
    series.SeriesInstanceUID = ref.SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ref.get("FrameOfReferenceUID", generate_uid())
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, name, contours in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence()
        for points in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(points).ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    return ds


def test_rtstruct_contours_rasterise_on_the_source_grid(series):
    from test_medical_dicom import _lps

    study, data, kwargs = series
    n, rows, cols = data.shape

    def square(k, r0, r1, c0, c1):  # voxel centres r0..r1, c0..c1 (inclusive) of slice k
        corners = [
            (r0 - 0.5, c0 - 0.5),
            (r0 - 0.5, c1 + 0.5),
            (r1 + 0.5, c1 + 0.5),
            (r1 + 0.5, c0 - 0.5),
        ]
        return np.array([_lps(k, r, c) for r, c in corners])

    rs = _rtstruct(
        study / "ct",
        [
            (3, "GTV", [square(5, 10, 19, 4, 13), square(5, 13, 15, 7, 9)]),
            (8, "Cord", [square(7, 2, 3, 2, 3)]),
        ],
    )
    rs.save_as(study / "rs.dcm", enforce_file_format=True)
    ((back, kw, kind),) = [layer for layer in read_dicom(study) if layer[2] == "labels"]
    assert kw["metadata"]["segments"][3]["label"] == "GTV"
    # source slice k, row r, column c is display (n-1-k, r, cols-1-c) (see test_medical_dicom)
    expected = np.zeros(data.shape, np.int32)
    expected[n - 1 - 5, 10:20, cols - 14 : cols - 4] = 3
    expected[n - 1 - 5, 13:16, cols - 10 : cols - 7] = 0  # the inner contour is a hole
    expected[n - 1 - 7, 2:4, cols - 4 : cols - 2] = 8
    np.testing.assert_array_equal(back, expected)


def test_object_without_its_series_says_what_to_open(series, tmp_path):
    study, data, kwargs = series
    save_labels_dicom_seg(
        study / "s.dcm", _labels(data.shape), medical=kwargs["metadata"]["medical"]
    )
    lonely = tmp_path / "elsewhere" / "deeper"
    lonely.mkdir(parents=True)
    shutil.copy(study / "s.dcm", lonely / "s.dcm")
    with pytest.raises(DicomReadError, match="open the image series and the segmentation"):
        read_dicom(lonely / "s.dcm")


def test_save_panel_names_segments_and_a_seg_reopens_named(
    make_napari_viewer, series, tmp_path
):
    from napari_sam2.widget._save_panel import SavePanel
    from widget_helpers import make_widget

    study, data, kwargs = series
    viewer = make_napari_viewer()
    viewer.open(study / "ct", plugin="napari-sam2")
    w = make_widget(viewer)
    [panel] = [p for p in w.panels if isinstance(p, SavePanel)]
    w.session.labels_layer.data[3, 10:14, 20:25] = 5
    dialog = panel.edit_names(show=False)
    assert dialog.table.rowCount() == 1 and dialog.table.item(0, 0).text() == "5"
    dialog.table.item(0, 1).setText("Tumour")
    dialog.table.item(0, 3).setText("Bogus code")
    dialog.accept()  # refused: the type is not a SNOMED CT concept; nothing stored
    assert "segments" not in w.session.labels_layer.metadata
    dialog.table.item(0, 3).setText("Neoplasm")
    dialog.accept()
    assert w.session.labels_layer.metadata["segments"][5]["type"] == "SCT:108369006:Neoplasm"
    out = panel.save(str(tmp_path / "named.dcm"))
    seg = hd.seg.segread(out)
    assert seg.get_segment_description(1).segment_label == "Tumour"
    shutil.copy(out, study / "named.dcm")
    (labels,) = [layer for layer in viewer.open(study / "named.dcm", plugin="napari-sam2")]
    np.testing.assert_array_equal(labels.data, w.session.labels_layer.data)
    assert labels.metadata["segments"][5]["label"] == "Tumour"
