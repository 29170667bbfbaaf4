"""Open series from a PACS over DICOMweb and send labels back as DICOM SEG.

Uses ``dicomweb-client`` (``pip install 'napari-sam2[pacs]'``): QIDO-RS to find series,
WADO-RS to retrieve them, STOW-RS to store the SEG. Nothing here imports napari or Qt.

* :func:`search_series` lists series (UIDs, description, modality, number of instances),
  never pixel data.
* :func:`open_series` retrieves a series' instances into memory (concurrently, a bounded
  number at a time, with progress and cancel) and reads them through the same code as a
  DICOM folder (:func:`napari_sam2.io.medical.dicom.open_datasets`): same slice order, spacing,
  Hounsfield units, windows and warnings. Nothing is written to disk unless ``save_to``
  names a folder. The layer metadata gets ``medical["dicomweb"]`` (the service root and
  the study/series UIDs: the series' address, as a path is a file's), never credentials.
* :func:`send_seg` writes the labels with the DICOM SEG writer of
  :mod:`napari_sam2.io.medical.dicom_seg` (source headers read from the server) and stores it with
  STOW-RS: every send is a new SEG instance in a new series with the next free series
  number, in the source's study and Frame of Reference. A refusal raises
  :class:`DicomWebRefusedError` with the server's reason and the SEG, which
  :func:`save_seg` (or ``error.seg.save_as``) can still write to a local ``.dcm``.

Authentication is HTTP basic (``username``/``password``) or a bearer ``token``; TLS
certificates are verified, against ``ca_bundle`` when given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._dicomweb_session import (
    PASSWORD_ENV,
    TOKEN_ENV,
    Address,
    DicomWebAuthError,
    DicomWebCancelled,
    DicomWebConnectionError,
    DicomWebError,
    DicomWebRefusedError,
    make_client,
    parse_address,
    read_secret,
    request_errors,
    translate,
)
from ._dicomweb_transfer import (
    SEG_SERIES_NUMBER,
    fetch_instances,
    instance_uids,
    next_seg_series_number,
    source_reader,
    store_checked,
)

__all__ = [
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "Address",
    "DicomWebAuthError",
    "DicomWebCancelled",
    "DicomWebConnectionError",
    "DicomWebError",
    "DicomWebRefusedError",
    "make_client",
    "open_series",
    "parse_address",
    "read_secret",
    "download_series",
    "save_seg",
    "search_series",
    "send_seg",
    "send_seg_file",
]

DEFAULT_WORKERS = 4
_SUMMARY_TAGS = {
    "study_uid": "0020000D",
    "series_uid": "0020000E",
    "description": "0008103E",
    "modality": "00080060",
    "series_number": "00200011",
    "instances": "00201209",
    "study_date": "00080020",
    "study_description": "00081030",
}


def _value(item: dict, tag: str):
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def search_series(
    url: str,
    *,
    patient_id: str | None = None,
    accession: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    study_date: str | None = None,
    study_uid: str | None = None,
    limit: int | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> list[dict]:
    """The series matching every given criterion (QIDO-RS), as summaries.

    Parameters
    ----------
    url : str
        The DICOMweb service root (``http(s)://host/dicom-web`` or ``dicomweb://…``).
    patient_id, accession, modality, study_date : str, optional
        Exact matches (DICOM wildcards ``*``/``?`` and date ranges ``YYYYMMDD-YYYYMMDD``
        pass through).
    description : str, optional
        Part of the series description, any case (matched here, not by the server:
        servers differ in how they match wildcards; Orthanc 1.10 ignores ``%2A``).
    username, password : str, optional
        HTTP basic authentication.
    token : str, optional
        A bearer token (see :func:`read_secret`), instead of a user name.
    ca_bundle : path, optional
        The CA certificates to verify the server with (``verify=False`` turns checks off).

    Returns
    -------
    list of dict
        ``study_uid``, ``series_uid``, ``description``, ``modality``, ``series_number``,
        ``instances``, ``study_date``, ``study_description`` of each series.

    Raises
    ------
    DicomWebAuthError, DicomWebConnectionError, DicomWebError
    """
    filters = {
        "PatientID": patient_id,
        "AccessionNumber": accession,
        "Modality": modality,
        "StudyDate": study_date,
        "StudyInstanceUID": study_uid,
    }
    filters = {k: v for k, v in filters.items() if v}
    client = _client(url, username, password, token, ca_bundle, verify)
    fields = [
        "SeriesDescription",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "StudyDate",
        "StudyDescription",
    ]
    try:
        found = client.search_for_series(
            search_filters=filters, fields=fields, limit=limit, get_remaining=limit is None
        )
    except request_errors() as exc:
        raise translate(exc, "series search") from None
    out = []
    for item in found:
        summary = {key: _value(item, tag) for key, tag in _SUMMARY_TAGS.items()}
        summary["instances"] = int(summary["instances"] or 0)
        for key in ("description", "modality", "study_date", "study_description"):
            summary[key] = str(summary[key] or "")
        if description and description.casefold() not in summary["description"].casefold():
            continue
        out.append(summary)
    return out


def _address(url: str) -> Address:
    return parse_address(url)


def _client(url, username, password, token, ca_bundle, verify):
    return make_client(
        _address(url).url,
        username=username,
        password=password,
        token=token,
        ca_bundle=ca_bundle,
        verify=verify,
    )


def _save_all(folder, uids, datasets) -> list[Path]:
    folder = Path(os.fspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{uid}.dcm" for uid in uids]
    for path, ds in zip(paths, datasets, strict=True):
        ds.save_as(path, enforce_file_format=True)
    return paths


def download_series(
    url: str,
    study_uid: str,
    series_uid: str,
    folder: str | os.PathLike,
    *,
    cancel: Callable[[], bool] | threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = DEFAULT_WORKERS,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> list[Path]:
    """Retrieve a series into ``folder`` as ``<SOPInstanceUID>.dcm`` files (a local copy,
    for the batch command); the files are written once every instance has arrived.
    Raises as :func:`open_series`."""
    client = _client(url, username, password, token, ca_bundle, verify)
    uids = instance_uids(client, study_uid, series_uid)
    datasets = fetch_instances(
        client, study_uid, series_uid, uids, workers=workers, cancel=cancel, progress=progress
    )
    return _save_all(folder, uids, datasets)


def open_series(
    url: str,
    study_uid: str,
    series_uid: str,
    *,
    cancel: Callable[[], bool] | threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = DEFAULT_WORKERS,
    save_to: str | os.PathLike | None = None,
    include_identifiers: bool = False,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> list[tuple]:
    """Retrieve a series (WADO-RS) and read it as napari LayerData tuples.

    The tuples are those :func:`napari_sam2.io.medical.dicom.read_dicom` gives for the series'
    folder (data, kwargs with ``scale``/``translate``/``affine``, ``metadata["medical"]``,
    ``"image"``), plus ``medical["dicomweb"]`` = ``{"url", "study", "series"}``.

    Parameters
    ----------
    cancel : callable or threading.Event, optional
        Polled between instances; when true (set), the retrieval stops.
    progress : callable, optional
        ``progress(done, total)`` after each instance (from the calling thread).
    workers : int
        Requests in flight at a time.
    save_to : path, optional
        Also write each instance as ``<SOPInstanceUID>.dcm`` into this folder.

    Raises
    ------
    DicomWebCancelled
        ``cancel`` fired; nothing is returned or kept.
    DicomWebAuthError, DicomWebConnectionError, DicomWebError
        The server refused or went away; nothing is returned or kept.
    DicomReadError
        The instances are not an image series napari-sam2 can show.
    """
    from .medical.dicom import layer_tuples, open_datasets

    root = _address(url).url
    client = _client(root, username, password, token, ca_bundle, verify)
    uids = instance_uids(client, study_uid, series_uid)
    datasets = fetch_instances(
        client, study_uid, series_uid, uids, workers=workers, cancel=cancel, progress=progress
    )
    if save_to is not None:
        _save_all(save_to, uids, datasets)
    opened = open_datasets(datasets, include_identifiers=include_identifiers)
    del datasets
    layers = layer_tuples(opened)
    for _, kwargs, _ in layers:
        kwargs["metadata"]["medical"]["dicomweb"] = {
            "url": root,
            "study": study_uid,
            "series": series_uid,
        }
    return layers


def _build_seg(client, labels, medical, provenance, series_number: int, segments=None):
    from .medical.dicom_seg import segmentation_dataset

    source = medical.get("dicomweb") or {}
    if not source.get("study") or not source.get("series"):
        raise DicomWebError(
            "these labels were not drawn on a series opened over DICOMweb: save them locally"
        )
    reader = source_reader(client, source["study"], source["series"])
    seg = segmentation_dataset(
        labels,
        medical=medical,
        provenance=provenance,
        segments=segments,
        read_source=reader,
        series_number=series_number,
    )
    seg.SeriesDescription = f"napari-sam2 SEG {series_number}"  # told apart in viewers
    return seg


def send_seg(
    url: str,
    labels: Any,
    *,
    medical: dict,
    provenance: dict | None = None,
    segments: dict | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> str:
    """Store the labels as a new DICOM SEG on the server (STOW-RS).

    ``medical`` is the image layer's ``metadata["medical"]`` from :func:`open_series`;
    ``labels`` are in that layer's display orientation. Returns the SEG's SOP Instance
    UID. Each call makes a new SEG series (next free series number from 9000 on).
    ``segments`` names and codes the segments as in
    :func:`napari_sam2.io.medical.dicom_seg.save_labels_dicom_seg`.

    Raises
    ------
    DicomWebRefusedError
        The server refused the SEG: ``reason`` is its reason, ``seg`` the dataset.
    LabelsWriteError
        The labels cannot be written as a SEG of this series (empty, wrong shape).
    DicomWebAuthError, DicomWebConnectionError, DicomWebError
    """
    client = _client(url, username, password, token, ca_bundle, verify)
    study = (medical.get("dicomweb") or {}).get("study")
    number = next_seg_series_number(client, study)
    seg = _build_seg(client, labels, medical, provenance, number, segments)
    store_checked(client, seg, study)
    return str(seg.SOPInstanceUID)


def send_seg_file(
    url: str,
    path: str | os.PathLike,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> str:
    """Store a DICOM SEG file (the batch command's ``--dicom-seg`` output) with STOW-RS
    into the study it references, as a new series (new Series/SOP Instance UIDs, the
    next free series number). Returns the SOP Instance UID. Raises as :func:`send_seg`."""
    import pydicom
    from pydicom.uid import generate_uid

    seg = pydicom.dcmread(os.fspath(path))
    if str(seg.get("Modality", "")) != "SEG":
        raise DicomWebError(f"{Path(path).name} is not a DICOM SEG")
    client = _client(url, username, password, token, ca_bundle, verify)
    study = str(seg.StudyInstanceUID)
    seg.SeriesInstanceUID, seg.SOPInstanceUID = generate_uid(), generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.SeriesNumber = next_seg_series_number(client, study)
    seg.SeriesDescription = f"napari-sam2 SEG {seg.SeriesNumber}"
    store_checked(client, seg, study)
    return str(seg.SOPInstanceUID)


def save_seg(
    path: str | os.PathLike,
    url: str,
    labels: Any,
    *,
    medical: dict,
    provenance: dict | None = None,
    segments: dict | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Write the SEG :func:`send_seg` would send to a local ``.dcm`` file instead (the
    source headers are read from the server)."""
    client = _client(url, username, password, token, ca_bundle, verify)
    seg = _build_seg(client, labels, medical, provenance, SEG_SERIES_NUMBER, segments)
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path
