"""Private: the transfers of :mod:`napari_sam2.io.dicomweb`.

* :func:`fetch_instances`: WADO-RS retrieval of many instances, a bounded number in
  flight, with progress and cancel; any failure ends it with a typed error.
* :func:`store_checked`: STOW-RS of one instance, then a check that the server really
  holds it: some servers answer success and drop it (Orthanc's Lua filters do), others
  list it in FailedSOPSequence with a reason code.
"""

from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ._dicomweb_session import (
    DicomWebAuthError,
    DicomWebCancelled,
    DicomWebConnectionError,
    DicomWebError,
    DicomWebRefusedError,
    request_errors,
    translate,
)

# DICOM PS3.18/PS3.7 Failure Reason (0008,1197) codes a STOW-RS reply may give
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class-instance conflict",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0x0211: "unrecognized operation",
    0xA700: "out of resources",
    0xA770: "out of resources: unable to store",
    0xA900: "data set does not match SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}
SEG_SERIES_NUMBER = 9000  # the first SEG series number; each send takes the next free one
_KEEP = "; the labels are kept and can be saved as a local .dcm"
_WADO_MEDIA = (("application/dicom", "*"),)  # as stored: no transcoding on the server


def _first_value(item: dict, tag: str):
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def is_cancelled(cancel) -> bool:
    """``cancel`` is None, an Event-like object (``is_set``) or a callable."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def fetch_instances(client, study, series, uids, *, workers, cancel, progress) -> list:
    """Every instance of ``uids`` (pydicom datasets, in order), at most ``workers``
    requests at a time. ``progress(done, total)`` runs in the calling thread."""
    workers = max(1, int(workers))
    results: list = [None] * len(uids)
    total, done = len(uids), 0
    queue = iter(enumerate(uids))
    pending: dict = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            while True:
                while len(pending) < workers and not is_cancelled(cancel):
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    args = (study, series, nxt[1], _WADO_MEDIA)
                    pending[pool.submit(client.retrieve_instance, *args)] = nxt[0]
                if is_cancelled(cancel):
                    raise DicomWebCancelled(f"retrieval cancelled after {done} of {total}")
                if not pending:
                    return results
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    index = pending.pop(fut)
                    try:
                        results[index] = fut.result()
                    except request_errors() as exc:
                        raise translate(exc, f"instance {index + 1} of {total}") from None
                    done += 1
                    if progress is not None:
                        progress(done, total)
        finally:  # the pool's exit waits for what is in flight (at most `workers`)
            for fut in pending:
                fut.cancel()


def failure_reasons(reply) -> list[str]:
    """The FailedSOPSequence reasons of a STOW-RS reply (a pydicom dataset, or the DICOM
    JSON text of an HTTP error's body), as ``"0x0110 processing failure"``."""
    codes = []
    if isinstance(reply, str):
        try:
            item = json.loads(reply)
        except ValueError:
            return []
        for failed in (item.get("00081198") or {}).get("Value") or ():
            codes += (failed.get("00081197") or {}).get("Value") or [None]
    elif reply is not None:
        codes = [i.get("FailureReason") for i in reply.get("FailedSOPSequence") or ()]
    out = []
    for code in codes:
        if code is None:
            out.append("no reason given")
            continue
        code = int(code)
        out.append(f"{code:#06x} {FAILURE_REASONS.get(code, 'failure')}".strip())
    return out


def _refused(reason: str, seg) -> DicomWebRefusedError:
    return DicomWebRefusedError(
        f"the server refused the DICOM SEG: {reason}{_KEEP}", reason=reason, seg=seg
    )


def store_checked(client, seg, study: str) -> None:
    """STOW-RS ``seg`` into ``study``; :class:`DicomWebRefusedError` unless the server
    then holds it."""
    uid = str(seg.SOPInstanceUID)
    try:
        reply = client.store_instances([seg], study_instance_uid=study)
    except request_errors() as exc:
        error = translate(exc, "storing the DICOM SEG")
        if isinstance(error, (DicomWebAuthError, DicomWebConnectionError)):
            raise error from None
        response = getattr(exc, "response", None)
        reasons = failure_reasons(getattr(response, "text", "") or "")
        reason = "; ".join(reasons) if reasons else str(error).split(": ", 1)[-1]
        status = f"HTTP {response.status_code}: " if response is not None else ""
        raise _refused(status + reason, seg) from None
    reasons = failure_reasons(reply)
    if reasons:
        raise _refused("; ".join(reasons), seg)
    try:
        found = client.search_for_instances(
            study, search_filters={"SOPInstanceUID": uid}, fields=["SOPInstanceUID"]
        )
    except request_errors() as exc:
        raise translate(exc, "checking the stored DICOM SEG") from None
    if not found:
        raise _refused(
            "the server answered success but does not hold the SEG (dropped by its "
            "storage rules or filters)",
            seg,
        )


def source_reader(client, study: str, series: str):
    """``read_source(SOPInstanceUID)`` → the instance's header, from the series metadata."""
    import pydicom

    try:
        metadata = client.retrieve_series_metadata(study, series)
    except request_errors() as exc:
        raise translate(exc, "source series metadata") from None
    headers = {}
    for item in metadata:
        ds = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *args: None)
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)
        headers[str(ds.get("SOPInstanceUID", ""))] = ds

    def read_source(uid):
        try:
            return headers[str(uid)]
        except KeyError:
            raise DicomWebError(
                f"source instance {uid} is not on the server any more: reopen the series"
            ) from None

    return read_source


def next_seg_series_number(client, study: str) -> int:
    try:
        found = client.search_for_series(
            study, search_filters={"Modality": "SEG"}, fields=["SeriesNumber"]
        )
    except request_errors() as exc:
        raise translate(exc, "SEG series search") from None
    numbers = [int(n) for n in (_first_value(i, "00200011") for i in found) if n not in (None, "")]
    return max([SEG_SERIES_NUMBER - 1, *numbers]) + 1


def instance_uids(client, study: str, series: str) -> list[str]:
    try:  # QIDO, not the series metadata: that is as big as the headers themselves
        found = client.search_for_instances(
            study, series, fields=["SOPInstanceUID"], get_remaining=True
        )
    except request_errors() as exc:
        raise translate(exc, "instance search") from None
    uids = [str(_first_value(item, "00080018") or "") for item in found]
    uids = [u for u in dict.fromkeys(uids) if u]
    if not uids:
        raise DicomWebError(f"series {series} has no instance on the server")
    return uids
