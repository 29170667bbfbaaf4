"""The batch from napari: run it on the files of the open image layers, add the results
as Labels layers.  napari is imported by the caller (this module only uses the viewer)."""

from __future__ import annotations

from pathlib import Path

from ._api import segment_files


def layer_files(viewer, layers=None) -> dict:
    """``{file path: [image layers]}`` of the image layers opened from a file."""
    out: dict = {}
    for layer in layers if layers is not None else list(viewer.layers):
        path = getattr(getattr(layer, "source", None), "path", None)
        if path and type(layer).__name__ == "Image":
            out.setdefault(str(Path(path)), []).append(layer)
    return out


def segment_layers(viewer, out_dir=None, *, layers=None, add: bool = True, **kwargs):
    """Segment the files behind the open image layers; add each output as a Labels layer.

    Parameters
    ----------
    viewer : napari.Viewer (or ViewerModel)
    out_dir : path, optional
        Output folder (default: next to each file).
    layers : list of layers, optional
        Only these (default: every image layer with ``layer.source.path``).
    add : bool
        Add the written (and the skipped, already complete) outputs as Labels layers,
        with the image layer's scale and translate and the provenance in
        ``layer.metadata["napari_sam2"]``.
    **kwargs
        Passed to :func:`segment_files` (``prompts``, ``auto``, ``backend``, ``client``...).

    Returns
    -------
    Summary
        The batch summary (the layers added are in ``summary.layers``).

    Runs in the calling thread: from the napari console this blocks the window while it
    runs; for long batches call it inside ``napari.qt.threading.thread_worker`` and add
    the layers on return (see docs/batch.md).
    """
    files = layer_files(viewer, layers)
    if not files:
        raise ValueError("no open image layer comes from a file (layer.source.path is empty)")
    summary = segment_files(list(files), out_dir, **kwargs)
    summary.layers = []
    if add:
        from ._outputs import load_output

        by_input = {r.input: r for r in summary.results}
        for path, images in files.items():
            res = by_input.get(path)
            if (
                res is None
                or res.status == "failed"
                or not res.output
                or not Path(res.output).is_file()
            ):
                continue
            loaded = load_output(Path(res.output))
            if loaded is None:  # DICOM SEG
                continue
            labels, prov = loaded
            ref = images[0]
            n = ref.ndim
            extra = {"affine": ref.affine} if labels.ndim == n else {}
            layer = viewer.add_labels(
                labels,
                name=f"{ref.name} labels",
                scale=tuple(ref.scale)[-labels.ndim :] if labels.ndim <= n else None,
                translate=tuple(ref.translate)[-labels.ndim :] if labels.ndim <= n else None,
                metadata={"napari_sam2": prov},
                **extra,
            )
            summary.layers.append(layer)
    return summary
