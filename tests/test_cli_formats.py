"""Every command reads every format through the one reader (io.formats): ``precompute``,
``evaluate`` and ``finetune`` on NIfTI volumes and DICOM series, ground truth as TIFF,
NIfTI or DICOM SEG, and a typed one-line error for a file none of the readers takes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from napari_sam2.cli import main
from napari_sam2.io.errors import ImageReadError
from napari_sam2.io.formats import read_image, read_labels

SHAPE = (6, 40, 48)  # (slice, row, column)
BLOCKS = {
    1: (slice(1, 5), slice(8, 20), slice(10, 26)),
    2: (slice(1, 5), slice(26, 35), slice(30, 42)),
}


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) in (slice, row, column) order: two bright blocks, IDs 1 and 2."""
    img = np.full(SHAPE, 100, np.uint16) + 10 * np.arange(SHAPE[0], dtype=np.uint16)[:, None, None]
    lab = np.zeros(SHAPE, np.uint16)  # each plane differs (a cache would merge equal ones)
    for lid, box in BLOCKS.items():
        img[box] = 2000
        lab[box] = lid
    return img, lab


def _nifti(tmp_path) -> tuple:
    """scan.nii.gz and scan_gt.nii.gz with an oblique-free but flipped affine (the reader
    reorders the voxels for display: image and labels must come out the same way)."""
    img, lab = _volume()
    affine = np.array([[-0.8, 0, 0, 30], [0, 0.7, 0, -20], [0, 0, 2.5, 5], [0, 0, 0, 1.0]])
    vol, gt = tmp_path / "scan.nii.gz", tmp_path / "scan_gt.nii.gz"
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), affine), vol)  # (x, y, z) on disk
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), affine), gt)
    return vol, gt


def _dicom_series(shared_data, folder) -> None:
    """The volume as a CT series (template CT_small.dcm), slices in shuffled file order."""
    img, _ = _volume()
    template = pydicom.dcmread(shared_data / "medical/CT_small.dcm")
    series = generate_uid()
    folder.mkdir()
    for k in np.random.default_rng(3).permutation(len(img)):
        ds = template.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = int(k) + 1
        ds.ImagePositionPatient = ["0", "0", f"{-2.0 * k:.1f}"]  # slice k below k-1
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.7", "0.8"]
        ds.SliceThickness = "2"
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
        ds.Rows, ds.Columns = img.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = img[k].tobytes()
        ds.save_as(folder / f"IM{k:03d}", enforce_file_format=True)


def _evaluate(image, labels, out, capsys) -> dict:
    rc = main(["evaluate", str(image), "--labels", str(labels), "--plane", "2", "--clicks", "2",
               "--backend", "classical", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr()
    assert rc == 0, text.err
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {"mean": doc["mean_iou"], "objects": doc["images"][0]["objects"]}


def _tiff_twin(tmp_path, image: np.ndarray, labels: np.ndarray, capsys) -> dict:
    """The same evaluation on TIFFs holding the expected display-ordered arrays."""
    import tifffile

    tifffile.imwrite(tmp_path / "twin.tif", image, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "twin_gt.tif", labels, metadata={"axes": "ZYX"})
    return _evaluate(tmp_path / "twin.tif", tmp_path / "twin_gt.tif", tmp_path / "ev_tif", capsys)


def test_evaluate_on_nifti_with_nifti_ground_truth(tmp_path, capsys):
    vol, gt = _nifti(tmp_path)
    img, lab = _volume()
    # the affine runs j anterior: display (S, P, L) flips the rows, keeps slices and columns
    np.testing.assert_array_equal(read_image(vol).data, img[:, ::-1, :])
    got = _evaluate(vol, gt, tmp_path / "ev", capsys)
    assert sorted(got["objects"]) == ["1", "2"]  # both blocks found on the plane
    assert got == _tiff_twin(tmp_path, img[:, ::-1, :], lab[:, ::-1, :], capsys)
    assert min(got["mean"]) > 0.75  # a misaligned ground truth would score far lower


def test_evaluate_on_dicom_with_seg_ground_truth(shared_data, tmp_path, capsys):
    pytest.importorskip("highdicom")
    from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg

    _dicom_series(shared_data, tmp_path / "ct")
    img, lab = _volume()
    series = read_image(tmp_path / "ct")
    assert series.extra["reader"] == "dicom"
    # slice k lies 2 mm below slice k-1: display (inferior → superior) reverses the slices
    np.testing.assert_array_equal(series.data, img[::-1])
    seg = save_labels_dicom_seg(tmp_path / "gt.dcm", lab[::-1], medical=series.extra["medical"])
    np.testing.assert_array_equal(read_labels(seg, series), lab[::-1])  # exact round trip
    got = _evaluate(tmp_path / "ct", seg, tmp_path / "ev", capsys)
    assert sorted(got["objects"]) == ["1", "2"]
    assert got == _tiff_twin(tmp_path, img[::-1], lab[::-1], capsys)


def test_seg_ids_come_back_and_foreign_grids_are_refused(shared_data, tmp_path):
    pytest.importorskip("highdicom")
    from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg

    _dicom_series(shared_data, tmp_path / "ct")
    img = read_image(tmp_path / "ct")
    labels = np.zeros(SHAPE, np.int32)
    labels[0, 0, 0] = 300  # a corner voxel and a large ID
    labels[5, 39, 47] = 7
    labels[2, 10:12, 20:30] = 41
    seg = save_labels_dicom_seg(tmp_path / "gt.dcm", labels, medical=img.extra["medical"])
    back = read_labels(seg, img)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
    tif_gt = tmp_path / "small_labels.tif"
    import tifffile

    tifffile.imwrite(tif_gt, np.zeros((4, 5), np.uint16))
    with pytest.raises(ImageReadError, match=r"small_labels.tif has shape \(4, 5\) but the image"):
        read_labels(tif_gt, img)


def test_precompute_reads_nifti_and_dicom(shared_data, tmp_path, capsys):
    vol, _ = _nifti(tmp_path)
    _dicom_series(shared_data, tmp_path / "ct")
    for image in (vol, tmp_path / "ct"):
        cache = tmp_path / f"cache_{image.name}"
        args = [str(image), "--disk-cache", str(cache), "--backend", "classical"]
        assert main(["precompute", *args]) == 0, capsys.readouterr().err
        assert (
            f"{SHAPE[0]} planes: {SHAPE[0]} encoded, 0 already cached" in capsys.readouterr().out
        )
        assert main(["precompute", *args]) == 0
        assert (
            f"{SHAPE[0]} planes: 0 encoded, {SHAPE[0]} already cached" in capsys.readouterr().out
        )


@pytest.mark.parametrize("command", ["precompute", "evaluate", "finetune", "segment"])
def test_unreadable_input_is_a_one_line_error_for_every_command(tmp_path, capsys, command):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image napari-sam2 reads")
    args = {
        "precompute": [str(bad), "--disk-cache", str(tmp_path / "c")],
        "evaluate": [str(bad), "--labels", str(bad), "--out", str(tmp_path / "e")],
        "finetune": [str(bad), "--labels", str(bad), "--out", str(tmp_path / "f.pt")],
        "segment": [str(bad), "--points", "3,3", "-o", str(tmp_path / "l.tif")],
    }[command]
    assert main([command, *args, "--backend", "classical"] if command != "finetune" else
                [command, *args]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"napari-sam2 {command}: error: photo.png is not an image napari-sam2 reads: "
        "TIFF/OME-TIFF (.tif), NIfTI (.nii, .nii.gz) or DICOM (.dcm files, DICOM folders, "
        "DICOMDIR)"
    ]


@pytest.mark.slow
def test_finetune_on_nifti_and_dicom(shared_data, sam2_random_checkpoint, tmp_path, capsys):
    pytest.importorskip("highdicom")
    from napari_sam2.io.medical.dicom_seg import save_labels_dicom_seg

    vol, gt = _nifti(tmp_path)
    _dicom_series(shared_data, tmp_path / "ct")
    img = read_image(tmp_path / "ct")
    seg = save_labels_dicom_seg(
        tmp_path / "gt.dcm", read_labels(gt, read_image(vol)), medical=img.extra["medical"]
    )  # the same blocks, so the two inputs agree
    out = tmp_path / "tuned.pt"
    rc = main(["finetune", str(vol), str(tmp_path / "ct"), "--labels", str(gt), str(seg),
               "--out", str(out), "--checkpoint", str(sam2_random_checkpoint),
               "--image-size", "256", "--device", "cpu", "--epochs", "1", "--plane", "2"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    card = json.loads(out.with_suffix(".card.json").read_text(encoding="utf-8"))
    assert [d["name"] for d in card["data"]] == ["scan.nii.gz", "ct"]
    assert card["n_objects"] == 4  # two blocks on plane 2 of each input
