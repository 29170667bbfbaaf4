"""``napari-sam2 segment`` on series of a PACS (DICOMweb), outputs sent back by ``--stow``.

``segment dicomweb://host/root/studies/UID[/series/UID] …`` or ``segment --dicomweb URL
--study UID [--series-uid UID] …``: each image series of the study (or the one given)
is retrieved into a temporary folder (removed at the end; ``--keep-copy DIR`` keeps it)
and segmented by the batch like a DICOM folder (same prompts, ``--auto``,
``--propagate``). Outputs go to ``--out DIR`` as usual; with ``--stow`` they are DICOM
SEGs, each stored on the server as a new SEG series of its study.

Credentials: ``--user`` with the password from ``--password-file`` or
``$NAPARI_SAM2_DICOMWEB_PASSWORD``; or a bearer token from ``--token-file`` or
``$NAPARI_SAM2_DICOMWEB_TOKEN``. They are never printed. ``--ca-bundle`` for a hospital CA.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ._common import UsageError

_SCHEMES = ("dicomweb://", "dicomweb+http://", "dicomweb+https://")
_NON_IMAGE = {"SEG", "SR", "RTSTRUCT", "RTPLAN", "PR", "KO", "DOC", "REG"}


def add_arguments(parser) -> None:
    """The PACS options of the ``segment`` sub-parser."""
    g = parser.add_argument_group(
        "PACS (DICOMweb; see docs/medical.md)",
        "IMAGE may be dicomweb://host/root/studies/UID[/series/UID] (dicomweb+http:// "
        "for plain HTTP), or give --dicomweb URL --study UID.",
    )
    g.add_argument("--dicomweb", metavar="URL", help="DICOMweb service root")
    g.add_argument("--study", metavar="UID", help="StudyInstanceUID to segment")
    g.add_argument("--series-uid", metavar="UID", help="only this SeriesInstanceUID")
    g.add_argument(
        "--stow", action="store_true", help="send each output back as a DICOM SEG (STOW-RS)"
    )
    g.add_argument("--user", metavar="NAME", help="HTTP basic user name")
    g.add_argument("--password-file", metavar="FILE", help="file holding the password")
    g.add_argument("--token-file", metavar="FILE", help="file holding a bearer token")
    g.add_argument("--ca-bundle", metavar="PEM", help="CA certificates to verify TLS with")
    g.add_argument("--keep-copy", metavar="DIR", help="keep the retrieved series in DIR")


def wants_dicomweb(args) -> bool:
    """True for ``--dicomweb`` or a ``dicomweb://`` IMAGE."""
    images = getattr(args, "image", None) or []
    return bool(getattr(args, "dicomweb", None)) or any(
        str(i).startswith(_SCHEMES) for i in images
    )


def _credentials(args) -> dict:
    from ..io.dicomweb import PASSWORD_ENV, TOKEN_ENV, read_secret

    auth: dict = {"ca_bundle": args.ca_bundle}
    if args.user:
        password = read_secret(file=args.password_file) if args.password_file else None
        password = password or read_secret(env=PASSWORD_ENV)
        if password is None:
            raise UsageError(f"--user needs --password-file FILE or ${PASSWORD_ENV}")
        auth.update(username=args.user, password=password)
    else:
        token = read_secret(file=args.token_file) if args.token_file else None
        auth["token"] = token or read_secret(env=TOKEN_ENV)
    return auth


def _target(args):
    from ..io.dicomweb import parse_address

    if args.dicomweb and args.image:
        raise UsageError("give --dicomweb URL or a dicomweb:// IMAGE, not both")
    if len(args.image) > 1:
        raise UsageError("one dicomweb:// address at a time")
    try:
        address = parse_address(args.dicomweb or args.image[0])
    except ValueError as e:
        raise UsageError(str(e)) from None
    study = args.study or address.study
    if not study:
        raise UsageError("name the study: --study UID or …/studies/UID in the address")
    return address.url, study, args.series_uid or address.series


def _progress(label: str):
    def report(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rretrieving {label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report


def run(args, batch_run) -> int:
    """Retrieve, segment with ``batch_run(args)``, send back; the batch's exit code."""
    from ..io import dicomweb

    url, study, series = _target(args)
    auth = _credentials(args)
    if series:
        chosen = [{"series_uid": series, "series_number": None}]
    else:
        found = dicomweb.search_series(url, study_uid=study, **auth)
        chosen = [s for s in found if s["modality"].upper() not in _NON_IMAGE]
        if not chosen:
            raise UsageError(f"study {study} has no image series on the server")
    with tempfile.TemporaryDirectory(prefix="napari-sam2-dicomweb-") as tmp:
        root = Path(args.keep_copy) if args.keep_copy else Path(tmp)
        inputs = []
        for k, item in enumerate(chosen, start=1):
            folder = root / f"series-{item['series_number'] or k}"
            dicomweb.download_series(
                url, study, item["series_uid"], folder, progress=_progress(folder.name), **auth
            )
            inputs.append(str(folder))
        args.image, args.dicomweb = inputs, None
        if args.stow:
            args.dicom_seg = True
            if args.output is None and args.out_dir is None:
                args.out_dir = str(Path(tmp) / "out")
        code = batch_run(args)
        if args.stow:
            _send(url, inputs, args, auth)
    return code


def _send(url: str, inputs: list[str], args, auth: dict) -> None:
    from ..io import dicomweb

    out = Path(args.output) if args.output else None
    for folder in inputs:
        name = Path(folder).name
        seg = out if out is not None else Path(args.out_dir) / f"{name}_labels.dcm"
        if not seg.is_file():
            print(f"not sent  {name}: no DICOM SEG was written", file=sys.stderr)
            continue
        uid = dicomweb.send_seg_file(url, seg, **auth)
        print(f"sent      {name} -> DICOM SEG {uid}")
