"""The dock widget end to end in a real viewer (run under xvfb-run)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_sam2.engine import Segmenter
from napari_sam2.engine.backends import ClassicalBackend
from widget_helpers import TIMEOUT, click, mouse_click, ready_widget
from widget_helpers import discs as _discs
from widget_helpers import make_widget as _widget
from widget_helpers import segment_and_wait as _segment


@pytest.fixture
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16.tif")
    gt = tifffile.imread(shared_data / "nuclei2d_dsb2018_uint16_labels.tif")
    return img, gt


def test_click_on_real_nucleus_with_scale_and_translate(make_napari_viewer, qtbot, nuclei):
    img, gt = nuclei
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, img, scale=(0.5, 0.5), translate=(10.0, -4.0))
    # an isolated nucleus of median size (nothing else within 3 px); click at its
    # innermost pixel, in world coordinates
    sizes = np.bincount(gt.ravel())
    ids = [i for i in np.argsort(sizes) if i and sizes[i]]
    isolated = [
        i
        for i in ids
        if set(np.unique(gt[ndi.binary_dilation(gt == i, iterations=3)])) <= {0, int(i)}
    ]
    target = int(isolated[len(isolated) // 2])
    m = gt == target
    r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(m)), m.shape)
    world = np.asarray(layer.data_to_world((r, c)))
    assert np.allclose(world, (10 + 0.5 * r, -4 + 0.5 * c))
    click(w.session.points_layer, world)
    _segment(qtbot, w)
    w.commit()
    labels = w.session.labels_layer.data
    assert labels.shape == img.shape and labels.dtype == np.uint16
    assert set(np.unique(labels)) == {0, 1}
    obj = labels == 1
    iou = (obj & m).sum() / (obj | m).sum()
    assert iou >= 0.5, iou
    # the same click transposed would have hit something else: exactness of (row, col)
    assert not obj[c, r] or gt[c, r] == target


def test_negative_point_excludes_and_two_boxes_give_two_ids(make_napari_viewer, qtbot):
    img = _discs()
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, img)
    pts = w.session.points_layer
    click(pts, (40, 30))
    click(pts, (40, 80), positive=False)
    _segment(qtbot, w)
    w.commit()
    lab = w.session.labels_layer.data
    assert lab[40, 30] == 1 and lab[40, 80] == 0
    assert lab[40, 45] == 1 and lab[40, 70] == 0

    w.next_object()
    assert len(pts.data) == 0
    w.new_shapes()
    shapes = w.session.shapes_layer
    shapes.add_rectangles([[[15, 15], [65, 50]], [[15, 58], [65, 95]]])
    n_first = int((lab == 1).sum())
    w.overwrite_check.setChecked(True)
    _segment(qtbot, w)
    w.commit()
    lab = w.session.labels_layer.data
    assert lab[40, 40] == 2 and lab[40, 75] == 3  # one batched call, two new IDs
    assert (lab == 1).sum() < n_first / 2  # overwrite: the box object took those pixels


def test_keep_others_policy_and_undo(make_napari_viewer, qtbot):
    img = _discs()
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, img)
    labels = w.session.labels_layer
    labels.data[30:50, 35:45] = 7  # an existing object inside the left disc
    before = labels.data.copy()
    click(w.session.points_layer, (40, 30))
    _segment(qtbot, w)
    w.commit()
    after = labels.data.copy()
    assert (after[30:50, 35:45] == 7).all()  # other object's pixels kept
    assert after[40, 25] == 8  # new ID = max + 1
    labels.undo()  # one commit = one undo step
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    np.testing.assert_array_equal(labels.data, after)


def test_zstack_writes_only_viewed_plane_and_refine_keeps_id(make_napari_viewer, qtbot):
    plane = _discs()
    stack = np.stack([plane] * 5)
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, stack, scale=(3.0, 0.5, 0.5), translate=(2.0, 1.0, -1.0))
    viewer.dims.set_point(0, layer.data_to_world((3, 0, 0))[0])
    assert w.session.viewed_plane() == (3,)
    pts = w.session.points_layer
    pts.add([[3, 40, 30], [1, 40, 75]])  # second point is on another plane: ignored
    _segment(qtbot, w)
    w.commit()
    lab = w.session.labels_layer.data
    assert lab.shape == stack.shape
    assert (lab[[0, 1, 2, 4]] == 0).all()
    assert lab[3, 40, 30] == 1 and lab[3, 40, 75] == 0

    # refine: the right disc's pixels become object 1 (same ID), old ones cleared
    w.next_object()
    w.session.labels_layer.selected_label = 1
    w.refine_check.setChecked(True)
    w.overwrite_check.setChecked(True)
    pts.add([[3, 40, 75]])
    w.new_shapes()
    _segment(qtbot, w)
    w.commit()
    lab = w.session.labels_layer.data
    assert lab[3, 40, 75] == 1
    assert lab.max() == 1


def test_worker_exception_leaves_labels_unchanged(make_napari_viewer, qtbot, monkeypatch):
    class Broken(ClassicalBackend):
        def predict(self, *a, **k):
            raise RuntimeError("boom")

    viewer = make_napari_viewer()
    viewer.add_image(_discs())
    w = _widget(viewer, Segmenter(predictor=Broken()))
    before = w.session.labels_layer.data.copy()
    errors = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_error", errors.append)
    click(w.session.points_layer, (40, 30))
    w.segment()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert errors and "boom" in errors[0]
    assert w.session.result is None
    w.commit()  # nothing to commit: a warning, no write
    np.testing.assert_array_equal(w.session.labels_layer.data, before)


def test_bad_input_gives_message_and_writes_nothing(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(_discs())
    w = _widget(viewer)
    warnings = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_warning", warnings.append)
    w.segment()  # empty prompt layer
    assert "No prompt" in warnings[-1]
    wrong = viewer.add_labels(np.zeros((10, 10), np.int32))
    w.labels_combo.set_value(wrong)
    click(w.session.points_layer, (40, 30))
    _segment(qtbot, w)
    w.commit()
    assert "shape" in warnings[-1] and (wrong.data == 0).all()
    w.session.points_layer.add([[500, 500]])  # outside the image
    w.segment()
    assert "outside" in warnings[-1]


def test_real_sam2_random_weights_in_background(make_napari_viewer, qtbot, sam2_random_segmenter):
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _discs(), sam2_random_segmenter)
    click(w.session.points_layer, (40, 30))
    w.segment()
    assert w.busy  # runs in a worker thread
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    masks = w.session.result.masks()
    assert masks[0].shape == (80, 120) and masks[0].dtype == bool
    assert len(w.session.result.predictions[0].candidates) == 3  # single click: multimask
    # the seeded random weights give masks; commit the largest candidate
    areas = [int(c.sum()) for c in w.session.result.predictions[0].candidates]
    while w.session.result.candidate != int(np.argmax(areas)):
        w.next_candidate()
    assert max(areas) > 0, areas
    w.commit()
    lab = w.session.labels_layer.data
    assert lab.dtype == np.uint16 and set(np.unique(lab)) == {0, 1}
    assert int((lab == 1).sum()) == max(areas)  # empty labels: keep writes every pixel
    assert "sam2" in w.status.text()


def test_polarity_keys_and_shift_click_on_own_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(_discs())
    w = _widget(viewer)
    pts = w.session.points_layer
    assert {"S", "C", "N", "T"} <= {str(k) for k in pts.keymap}
    assert "S" not in {str(k) for k in viewer.layers[0].keymap}  # not bound on others

    pts.mode = "add"
    mouse_click(pts, (10.0, 12.0), ["Shift"])
    qtbot.waitUntil(lambda: bool(pts.feature_defaults["positive"][0]), timeout=5000)
    assert len(pts.data) == 1 and not bool(pts.features["positive"][0])  # negative point
    next(f for k, f in pts.keymap.items() if str(k) == "T")(pts)  # toggle: new points negative
    pts.add([20, 20])
    assert not bool(pts.features["positive"].iloc[-1])


def test_export_masks_and_cutouts(make_napari_viewer, qtbot, tmp_path):
    from PIL import Image

    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, _discs())
    click(w.session.points_layer, (40, 30))
    _segment(qtbot, w)
    w.commit()
    paths = w.export(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["cutout_0001.png", "object_0001.png"]
    mask = np.asarray(Image.open(tmp_path / "object_0001.png"))
    np.testing.assert_array_equal(mask > 0, w.session.labels_layer.data == 1)
    cut = np.asarray(Image.open(tmp_path / "cutout_0001.png"))
    assert cut.ndim == 3 and cut.shape[2] == 4


class _SlowBackend(ClassicalBackend):
    """Classical, with an encode that stays in progress until ``gate`` is set or it is
    cancelled (checks every 10 ms)."""

    def __init__(self):
        super().__init__()
        self.started, self.cancelled, self.finished = 0, 0, 0
        self.gate = threading.Event()

    def encode(self, image, cancel=None):
        from napari_sam2.engine.errors import Cancelled

        self.started += 1
        while not self.gate.wait(0.01):
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                raise Cancelled("Encoding cancelled.")
        self.finished += 1
        return super().encode(image)


def test_cancel_stops_running_encode(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([_discs()] * 3))
    slow = _SlowBackend()
    w = _widget(viewer, Segmenter(predictor=slow))
    errors = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_error", errors.append)
    before = w.session.labels_layer.data.copy()
    w.session.points_layer.add([0, 40, 30])
    viewer.dims.set_point(0, 0)
    w.segment()
    qtbot.waitUntil(lambda: slow.started == 1, timeout=TIMEOUT)
    w.cancel()
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    assert slow.cancelled == 1 and slow.finished == 0  # stopped inside the encode
    assert not errors  # a cancel is not an error
    assert w.status.text() == "Cancelled."
    assert w.session.result is None
    np.testing.assert_array_equal(w.session.labels_layer.data, before)

    # moving to another plane and segmenting there stops the old plane's encode
    w.segment()
    qtbot.waitUntil(lambda: slow.started == 2, timeout=TIMEOUT)
    viewer.dims.set_point(0, 2)
    w.session.points_layer.add([2, 40, 75])
    w.segment()
    qtbot.waitUntil(lambda: slow.cancelled == 2, timeout=TIMEOUT)
    assert slow.finished == 0
    slow.gate.set()  # the plane-2 request may finish now
    qtbot.waitUntil(lambda: not w.busy and w.session.result is not None, timeout=TIMEOUT)
    assert w.session.result.request.plane == (2,)
    assert slow.finished == 1 and not errors


def test_live_mode_reruns_debounced_on_prompt_change(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _discs())
    calls = []
    compute = w.session.compute
    w.session.compute = lambda req: calls.append(req.token) or compute(req)
    fired = []  # the live timer's timeouts, with the number of points then
    pts = w.session.points_layer
    w.live_timer.timeout.connect(lambda: fired.append(len(pts.data)))
    w.live_check.setChecked(True)

    def shown(n):  # a finished run on n points is the preview
        res = w.session.result
        return not w.busy and res is not None and len(_points(res)) == n

    click(pts, layer.data_to_world((40, 30)))
    click(pts, layer.data_to_world((45, 30)))  # within the debounce interval
    qtbot.waitUntil(lambda: shown(2), timeout=TIMEOUT)
    assert w.preview.layer is not None and w.preview.layer.data[40, 30]
    # a third change: the next run, and the only one after the first, has all three
    # points (a run left over from the quick pair would come first and count)
    click(pts, layer.data_to_world((40, 50)))
    qtbot.waitUntil(lambda: shown(3), timeout=TIMEOUT)
    assert fired == [2, 3] and len(calls) == 2  # two quick changes, one run

    w.live_check.setChecked(False)
    w.session.result = None
    click(pts, layer.data_to_world((40, 75)))
    assert not w.live_timer.isActive()  # live off: no run is scheduled
    w.segment()  # the user's own Segment runs (and nothing else)
    qtbot.waitUntil(lambda: shown(4), timeout=TIMEOUT)
    assert fired == [2, 3] and len(calls) == 3


def _points(res):
    return res.request.prompts.objects[0].points.coords


def test_labels_widen_past_uint16_and_preview_is_light(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _discs(), units=("um", "um"), scale=(0.5, 0.5))
    labels = w.session.labels_layer
    assert labels.data.dtype == np.uint16
    labels.data[0, 0] = 65535  # the largest uint16 ID is taken
    w.session.invalidate_max()
    infos = []
    monkeypatch.setattr("napari_sam2.widget._notify.show_info", infos.append)
    click(w.session.points_layer, layer.data_to_world((40, 30)))
    _segment(qtbot, w)
    prev = w.preview.layer
    assert prev.data.dtype == np.uint8 and prev.visible
    assert tuple(str(u) for u in prev.units) == ("micrometer", "micrometer")
    w.commit()
    assert labels.data.dtype == np.uint32
    assert labels.data[40, 30] == 65536 and labels.data[0, 0] == 65535
    assert any("widened to uint32" in m for m in infos)
    assert not prev.visible and w.preview.data is None  # cleared = hidden


def test_undo_key_forgets_cached_max_so_ids_never_collide(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, w = ready_widget(viewer, _discs(centers=((20, 20), (40, 60), (60, 100)), r=8))
    labels = w.session.labels_layer
    labels.data[2:5, 2:5] = 10  # an object with a high ID, then erased by the user
    labels.data_setitem(tuple(np.nonzero(labels.data == 10)), 0)
    for rc in ((20, 20), (40, 60)):  # two new objects: IDs 1 and 2
        click(w.session.points_layer, layer.data_to_world(rc))
        _segment(qtbot, w)
        w.commit()
        w.next_object()
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer.layers.selection.active = labels
    canvas = viewer.window._qt_viewer.canvas.native
    for _ in range(3):  # Ctrl-Z on the canvas, dispatched by napari's keymap as by a user
        QTest.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        qtbot.wait(20)
    # three undos: both commits and the erase; object 10 is back
    assert labels.data[3, 3] == 10 and labels.data.max() == 10
    click(w.session.points_layer, layer.data_to_world((60, 100)))
    _segment(qtbot, w)
    w.commit()
    assert labels.data[60, 100] == 11  # not 3: the restored 10 is seen
    assert (labels.data == 10).sum() == 9  # and object 10 is left alone
