"""PACS panel: find a series on a DICOMweb server, open it, send the labels back as SEG.

Everything goes through :mod:`napari_sam2.io.dicomweb` in a background worker (progress,
Cancel). The password and token stay in this panel's fields: they are never logged, never
written into a layer's metadata. The opened image layer's ``metadata["medical"]["dicomweb"]``
names the series (server, study, series UIDs), which is what *Send labels as DICOM SEG*
needs. A refusal leaves the labels untouched; *Save SEG locally…* writes the same SEG to a
``.dcm`` file instead.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..engine.errors import Cancelled
from . import _notify
from ._runner import BackgroundRun, run_controls

COLUMNS = (
    ("study_date", "Date"),
    ("modality", "Modality"),
    ("description", "Series"),
    ("instances", "Images"),
    ("study_description", "Study"),
)
SEARCH_FIELDS = (
    ("patient_id", "Patient ID"),
    ("accession", "Accession"),
    ("modality", "Modality"),
    ("description", "Description"),
    ("study_date", "Study date"),
)


def _line(placeholder: str = "", secret: bool = False) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    if secret:
        edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


class PacsPanel(QGroupBox):
    """Server, credentials, search fields, a results table, Open and Send."""

    OPEN_BY_DEFAULT = False  # a sectioned dock keeps it collapsed until asked for

    def __init__(self, dock):
        super().__init__("PACS (DICOMweb)", dock)
        self.dock = dock
        self.results: list[dict] = []
        self.refused_seg = None  # the SEG the server refused, to save locally
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.url_edit = _line("http://host:8042/dicom-web")
        self.user_edit = _line("user (HTTP basic)")
        self.password_edit = _line("password", secret=True)
        self.token_edit = _line("bearer token file (or $NAPARI_SAM2_DICOMWEB_TOKEN)")
        self.ca_edit = _line("CA bundle .pem (hospital certificates)")
        for label, edit in (
            ("Server", self.url_edit),
            ("User", self.user_edit),
            ("Password", self.password_edit),
            ("Token file", self.token_edit),
            ("CA bundle", self.ca_edit),
        ):
            form.addRow(label, edit)
        self.copy_edit = _line("folder for a local copy (optional: none is written)")
        form.addRow("Local copy", self.copy_edit)
        self.search_edits = {key: _line() for key, _ in SEARCH_FIELDS}
        for key, label in SEARCH_FIELDS:
            form.addRow(label, self.search_edits[key])
        self.search_edits["study_date"].setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        outer.addLayout(form)
        self.search_btn = QPushButton("Search")
        outer.addWidget(self.search_btn)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        outer.addWidget(self.table)
        row, self.open_btn, self.cancel_btn, self.bar = run_controls(
            "Open series", "Retrieve the chosen series (WADO-RS) into a new image layer"
        )
        outer.addLayout(row)
        outer.addWidget(self.bar)
        sends = QHBoxLayout()
        self.send_btn = QPushButton("Send labels as DICOM SEG")
        self.send_btn.setToolTip("Store the Labels layer on the server as a new SEG series")
        self.save_btn = QPushButton("Save SEG locally…")
        sends.addWidget(self.send_btn, 1)
        sends.addWidget(self.save_btn)
        outer.addLayout(sends)
        self.runner = BackgroundRun(
            self, dock.set_status, self.open_btn, self.cancel_btn, self.bar,
            on_finished=self._idle,
        )  # fmt: skip
        self.search_btn.clicked.connect(lambda *_: self.search())
        self.open_btn.clicked.connect(lambda *_: self.open_selected())
        self.send_btn.clicked.connect(lambda *_: self.send())
        self.save_btn.clicked.connect(lambda *_: self.save_local())

    # -------------------------------------------------------------- settings
    def connection(self) -> dict:
        """Keyword arguments of the io.dicomweb calls (the secrets are not kept)."""
        from ..io.dicomweb import TOKEN_ENV, read_secret

        auth: dict = {"ca_bundle": self.ca_edit.text().strip() or None}
        user = self.user_edit.text().strip()
        if user:
            auth.update(username=user, password=self.password_edit.text())
        else:
            token_file = self.token_edit.text().strip()
            token = read_secret(file=token_file) if token_file else read_secret(env=TOKEN_ENV)
            auth["token"] = token
        return auth

    def _auth(self) -> dict | None:
        """:meth:`connection`, or ``None`` after a warning when the token file is unreadable."""
        try:
            return self.connection()
        except OSError as e:
            self._warn(f"Token file not read: {e}")
            return None

    def _url(self) -> str | None:
        url = self.url_edit.text().strip()
        if not url:
            self._warn("Give the DICOMweb address of the server first.")
        return url or None

    def _warn(self, message: str) -> None:
        _notify.show_warning(message)
        self.dock.set_status(message)

    def _busy(self) -> bool:
        if self.runner.busy:
            self._warn("The PACS panel is still busy: wait or Cancel.")
        return self.runner.busy

    def _idle(self) -> None:
        for button in (self.search_btn, self.send_btn, self.save_btn):
            button.setEnabled(True)

    def _start(self, fn, on_done, **kwargs) -> None:
        for button in (self.search_btn, self.send_btn, self.save_btn):
            button.setEnabled(False)
        self.runner.start(fn, on_done, **kwargs)

    # ---------------------------------------------------------------- search
    def search(self) -> None:
        """Query the server (QIDO-RS) in the background and fill the table."""
        from ..io.dicomweb import search_series

        url = self._url()
        auth = None if url is None or self._busy() else self._auth()
        if auth is None:
            return
        criteria = {k: e.text().strip() or None for k, e in self.search_edits.items()}

        def job(cancel, progress):
            return search_series(url, **criteria, **auth)

        self._start(job, self._show_results, failed="Search failed", reports_progress=False,
                    cancellable=False, status="Searching…")  # fmt: skip

    def _show_results(self, results: list[dict]) -> None:
        self.results = list(results)
        self.table.setRowCount(len(self.results))
        for r, item in enumerate(self.results):
            for c, (key, _) in enumerate(COLUMNS):
                self.table.setItem(r, c, QTableWidgetItem(str(item.get(key, ""))))
        if self.results:
            self.table.selectRow(0)
        self.dock.set_status(f"{len(self.results)} series found.")

    # ------------------------------------------------------------------ open
    def open_selected(self) -> None:
        """Retrieve the selected series (WADO-RS) and add it as an image layer."""
        from ..io.dicomweb import DicomWebCancelled, open_series

        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        url = self._url()
        if url is None or self._busy():
            return
        if not rows:
            self._warn("Search, then choose a series in the table.")
            return
        chosen = self.results[rows[0]]
        auth = self._auth()
        if auth is None:
            return
        save_to = self.copy_edit.text().strip() or None

        def job(cancel, progress):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    layers = open_series(
                        url, chosen["study_uid"], chosen["series_uid"],
                        cancel=cancel, progress=progress, save_to=save_to, **auth,
                    )  # fmt: skip
                except DicomWebCancelled as e:
                    raise Cancelled(str(e)) from None
            return layers, [str(w.message) for w in caught if w.category is not DeprecationWarning]

        self._start(job, self._add_layers, failed="Series not opened",
                    cancelled="Retrieval cancelled: nothing opened.",
                    status=f"Retrieving {chosen.get('description') or 'series'}…")  # fmt: skip

    def _add_layers(self, result) -> None:
        layers, notes = result
        for message in notes:
            _notify.show_warning(message)
        for data, kwargs, kind in layers:
            getattr(self.dock.viewer, f"add_{kind}")(data, **kwargs)
        names = ", ".join(kwargs["name"] for _, kwargs, _ in layers)
        self.dock.set_status(f"Opened {names} from the PACS.")

    # ------------------------------------------------------------------ send
    def _labels_and_source(self):
        session = self.dock.session
        image, labels = session.image_layer, session.labels_layer
        medical = (getattr(image, "metadata", None) or {}).get("medical") or {}
        if labels is None or not medical.get("dicomweb"):
            self._warn("Open a series from the PACS and draw labels on it first.")
            return None
        provenance = (labels.metadata or {}).get("napari_sam2")
        segments = (labels.metadata or {}).get("segments")  # from 'Segment names…'
        return np.array(labels.data), dict(medical), provenance, segments

    def send(self) -> None:
        """Store the Labels layer as a new DICOM SEG series on the server (STOW-RS)."""
        from ..io.dicomweb import DicomWebRefusedError, send_seg

        url = self._url()
        found = None if url is None or self._busy() else self._labels_and_source()
        if found is None:
            return
        labels, medical, provenance, segments = found
        auth = self._auth()
        if auth is None:
            return
        self.refused_seg = None

        def job(cancel, progress):
            try:  # a refusal is returned, not raised (a worker re-raises returned errors)
                return send_seg(url, labels, medical=medical, provenance=provenance,
                                segments=segments, **auth), None  # fmt: skip
            except DicomWebRefusedError as e:
                return None, e

        self._start(job, self._sent, failed="DICOM SEG not sent", reports_progress=False,
                    cancellable=False, status="Sending the DICOM SEG…")  # fmt: skip

    def _sent(self, result) -> None:
        uid, refusal = result
        if refusal is not None:  # refused: keep its SEG for a local save
            self.refused_seg = refusal.seg
            msg = f"{refusal} (Save SEG locally… writes it to a file)"
            _notify.show_error(msg)
            self.dock.set_status(msg)
            return
        _notify.show_info(f"DICOM SEG stored on the server ({uid}).")
        self.dock.set_status(f"DICOM SEG {uid} stored on the server.")

    def save_local(self, path: str | None = None) -> None:
        """Write the SEG (the refused one, else a new one made in the background from the
        server's source headers) to a local ``.dcm`` file."""
        from ..io.dicomweb import save_seg

        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save DICOM SEG", "", "DICOM SEG (*.dcm)")
            if not path:
                return
        path = os.fspath(path)
        if self.refused_seg is not None:
            try:
                self.refused_seg.save_as(path)
            except OSError as e:
                self._warn(f"DICOM SEG not saved: {e}")
                return
            self._saved(path)
            return
        url = self._url()
        found = None if url is None or self._busy() else self._labels_and_source()
        if found is None:
            return
        labels, medical, provenance, segments = found
        auth = self._auth()
        if auth is None:
            return

        def job(cancel, progress):
            save_seg(path, url, labels, medical=medical, provenance=provenance,
                     segments=segments, **auth)  # fmt: skip
            return path

        self._start(job, self._saved, failed="DICOM SEG not saved", reports_progress=False,
                    cancellable=False, status="Writing the DICOM SEG…")  # fmt: skip

    def _saved(self, path: str) -> None:
        self.dock.set_status(f"DICOM SEG saved to {path}")

    def close_panel(self) -> None:
        """Stop a retrieval in progress; nothing else is connected outside the panel."""
        self.runner.close()
