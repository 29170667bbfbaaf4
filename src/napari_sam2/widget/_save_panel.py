"""Save labels panel: the output Labels layer through napari-sam2's own writers.

napari's *File > Save Selected Layers…* offers every writer for a Labels layer, and its
dialog preselects the first one, *napari builtins*, which writes a bare TIFF: no voxel
size, no axes, no provenance (a new user's ovule labels came back with scale 1).  This
button always uses our writers: TIFF / OME-TIFF with scale, units, axes and provenance,
NIfTI aligned with the source scan for medical images, DICOM SEG for DICOM series.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QPushButton

from ..io.formats import LABELS_SUFFIXES, labels_kind
from . import _notify
from ._segment_names import SegmentNamesDialog

TIFF_FILTER = "TIFF with voxel size and provenance (*.tif *.tiff)"
OME_FILTER = "OME-TIFF (*.ome.tif *.ome.tiff)"
NIFTI_FILTER = "NIfTI aligned with the source scan (*.nii.gz *.nii)"
SEG_FILTER = "DICOM SEG (*.dcm)"


def _writer(path: str):
    """The npe2 writer for the labels file kind the name asks for (io.formats)."""
    kind = labels_kind(path)
    if kind == "nifti":
        from ..adapter.medical_writers import write_labels_nifti

        return write_labels_nifti
    if kind == "seg":
        from ..adapter.medical_writers import write_labels_dicom_seg

        return write_labels_dicom_seg
    from ..io.tiff.writer import write_labels

    return write_labels


def _is_medical(layer) -> bool:
    meta = getattr(layer, "metadata", None)
    return isinstance(meta, dict) and bool(meta.get("medical"))


class SavePanel(QGroupBox):
    """One button: save the dock's Labels layer with scale, axes and provenance."""

    def __init__(self, dock):
        super().__init__("Save labels", dock)
        self.dock = dock
        row = QHBoxLayout(self)
        self.save_btn = QPushButton("Save labels…")
        self.save_btn.setToolTip(
            "Save the output Labels layer as TIFF/OME-TIFF with its voxel size, axes and "
            "provenance (NIfTI/DICOM SEG for medical images). napari's own Save dialog "
            "preselects a writer that drops the voxel size."
        )
        row.addWidget(self.save_btn)
        self.save_btn.clicked.connect(lambda: self.save())
        self.names_btn = QPushButton("Segment names…")
        self.names_btn.setToolTip(
            "Name and code each label ID (SNOMED CT) for DICOM SEG; kept in the Labels "
            "layer's metadata and read back from a SEG."
        )
        row.addWidget(self.names_btn)
        self.names_btn.clicked.connect(lambda: self.edit_names())

    def edit_names(self, *, show: bool = True):
        """Open the segment names dialog of the Labels layer (returns it; None if no layer)."""
        layer = self.dock.session.labels_layer
        if layer is None:
            _notify.show_warning("No Labels layer chosen: nothing to name.")
            return None
        dialog = SegmentNamesDialog(layer, self)
        if show:
            dialog.open()
        return dialog

    def _filters(self) -> list[str]:
        session = self.dock.session
        if _is_medical(session.labels_layer) or _is_medical(session.image_layer):
            return [NIFTI_FILTER, SEG_FILTER, TIFF_FILTER, OME_FILTER]
        return [TIFF_FILTER, OME_FILTER, NIFTI_FILTER]

    def save(self, path: str | None = None) -> str | None:
        """Write the Labels layer to ``path`` (asked for when None); returns the path."""
        layer = self.dock.session.labels_layer
        if layer is None:
            _notify.show_warning("No Labels layer chosen: nothing to save.")
            return None
        if path is None:
            filters = self._filters()
            path, chosen = QFileDialog.getSaveFileName(
                self, "Save labels", layer.name, ";;".join(filters), filters[0]
            )
            if not path:
                return None
            if not path.lower().endswith(LABELS_SUFFIXES):  # the dialog's filter names the type
                path += {NIFTI_FILTER: ".nii.gz", SEG_FILTER: ".dcm", OME_FILTER: ".ome.tif"}.get(
                    chosen, ".tif"
                )
        if not str(path).lower().endswith(LABELS_SUFFIXES):
            msg = f"{Path(path).name}: choose a .tif, .ome.tif, .nii.gz or .dcm name."
            _notify.show_warning(msg)
            self.dock.set_status(msg)
            return None
        data, attributes, _ = layer.as_layer_data_tuple()
        try:
            (written,) = _writer(str(path))(str(path), data, attributes)
        except (ValueError, OSError, ImportError) as e:  # LabelsWriteError is a ValueError
            msg = f"Labels not saved: {e}"
            _notify.show_warning(msg)
            self.dock.set_status(msg)
            return None
        self.dock.set_status(f"Labels '{layer.name}' saved to {written}")
        return written

    def close_panel(self) -> None:
        """Nothing connected outside the panel."""
