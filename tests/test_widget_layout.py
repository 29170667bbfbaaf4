"""The dock's layout: the daily controls in sight at 1400x900, the other panels in
collapsible sections (remembered between sessions) that say why they do not apply."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QScrollArea

from napari_sam2.engine import ClassicalBackend, Segmenter
from napari_sam2.widget import SAM2Widget
from napari_sam2.widget._sections import GROUP, settings
from widget_helpers import make_widget

CT_META = {"medical": {"modality": "CT", "units": "HU", "format": "nifti"}}
NO_AXIS = "the image has no Z or T axis"


def _image(viewer, kind):
    """Add one image of ``kind`` the way a user's file would come in."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 3000, (64, 64)).astype(np.uint16)
    if kind == "2d":
        return viewer.add_image(gray, name="cells")
    if kind == "z":
        stack = np.stack([gray] * 6)
        return viewer.add_image(stack, name="stack", axis_labels=("z", "y", "x"))
    if kind == "t":
        return viewer.add_image(np.stack([gray] * 5), name="movie", axis_labels=("t", "y", "x"))
    if kind == "ct":
        vol = (np.stack([gray] * 6).astype(np.int16) - 1024).astype(np.int16)
        return viewer.add_image(
            vol, name="ct", scale=(2.5, 0.7, 0.7), units=("mm",) * 3, metadata=CT_META
        )
    if kind == "rgb":
        return viewer.add_image(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), name="photo")
    if kind == "multiscale":
        levels = [np.tile(gray, (2, 2)), gray]
        return viewer.add_image(levels, multiscale=True, name="slide")
    raise AssertionError(kind)


# kind -> (sections that do not apply: reason part, open sections, layers rows shown)
RULES = {
    "2d": ({"PropagatePanel": NO_AXIS}, {"SavePanel"}, set()),
    "z": ({}, {"PropagatePanel", "SavePanel"}, set()),
    "t": ({}, {"PropagatePanel", "SavePanel"}, set()),
    "ct": ({}, {"WindowPanel", "PropagatePanel", "SavePanel", "MeasurePanel"}, set()),
    "rgb": (
        {"PropagatePanel": NO_AXIS, "WindowPanel": "RGB images are used as they are"},
        {"SavePanel"},
        set(),
    ),
    "multiscale": ({"PropagatePanel": NO_AXIS}, {"SavePanel"}, {"Resolution"}),
}


@pytest.mark.parametrize("kind", list(RULES))
def test_sections_show_what_applies_per_image_kind(make_napari_viewer, kind):
    viewer = make_napari_viewer()
    _image(viewer, kind)
    w = make_widget(viewer)
    not_applying, open_ones, rows = RULES[kind]
    sections = w.sections.sections
    assert list(sections) == [
        "WindowPanel",
        "EverythingPanel",
        "PropagatePanel",
        "SavePanel",
        "MeasurePanel",
        "FinetunePanel",
        "PerformancePanel",
        "PacsPanel",
    ]
    for key, section in sections.items():
        if key in not_applying:
            assert not_applying[key] in section.reason
            assert not section.panel.isEnabled()
            assert not_applying[key] in section.header.text()
        else:
            assert section.reason == "" and section.panel.isEnabled(), key
        assert section.is_open() == (key in open_ones), key
        assert section.panel.isHidden() != (key in open_ones), key
    # the Layers panel's Channels/Resolution rows only where there is a choice
    form = w.layers_panel.form
    shown = {
        form.itemAt(r, form.ItemRole.LabelRole).widget().text()
        for r in (w.layers_panel.CHANNELS_ROW, w.layers_panel.LEVELS_ROW)
        if form.isRowVisible(r)
    }
    assert shown == rows
    # the hidden helper panel has no section
    assert all(p.isHidden() for p in w.panels if not getattr(p, "SECTION", True))


def test_a_section_that_does_not_apply_says_why_and_comes_back(make_napari_viewer):
    viewer = make_napari_viewer()
    flat = _image(viewer, "2d")
    w = make_widget(viewer)
    prop = w.sections.section("PropagatePanel")
    assert not prop.is_open() and not prop.panel.isEnabled()
    prop.header.click()  # the user looks inside: the reason, the controls greyed out
    assert prop.is_open() and not prop.note.isHidden()
    assert prop.note.text() == "Propagate through Z / T: the image has no Z or T axis."
    assert settings().value(f"{GROUP}/PropagatePanel") is None  # no lasting choice
    stack = _image(viewer, "z")
    w.image_combo.set_value(stack)
    assert prop.reason == "" and prop.panel.isEnabled() and prop.is_open()
    assert prop.note.isHidden()
    assert w.sections.section("PropagatePanel").panel.axis_combo.currentData() == 0
    w.image_combo.set_value(flat)
    assert not prop.is_open() and "no Z or T" in prop.header.text()


def test_open_and_closed_sections_are_remembered_between_sessions(
    make_napari_viewer, isolated_settings
):
    viewer = make_napari_viewer()
    _image(viewer, "z")
    w = make_widget(viewer)
    fine, perf = w.sections.section("FinetunePanel"), w.sections.section("PerformancePanel")
    assert not fine.is_open() and not perf.is_open()  # collapsed by default
    fine.header.click()
    w.sections.section("SavePanel").set_open(False)
    assert fine.is_open() and not fine.panel.isHidden()
    assert isolated_settings.is_file()
    # the next session (a new viewer and dock reading the same settings file)
    viewer2 = make_napari_viewer()
    _image(viewer2, "z")
    w2 = make_widget(viewer2)
    assert w2.sections.section("FinetunePanel").is_open()
    assert not w2.sections.section("SavePanel").is_open()
    assert not w2.sections.section("PerformancePanel").is_open()


def _fully_visible(widget, window) -> bool:
    """Is all of ``widget`` drawn inside ``window`` (nothing clipped by a parent)?"""
    if not widget.isVisible():
        return False
    region = widget.visibleRegion().boundingRect()
    if region != widget.rect():
        return False
    bottom = widget.mapTo(window, QPoint(0, widget.height()))
    return 0 <= bottom.y() <= window.height()


@pytest.mark.parametrize("kind", ["multiscale", "ct"])
def test_daily_controls_fit_a_1400x900_window_without_scrolling(make_napari_viewer, qtbot, kind):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1400, 900)
    _image(viewer, kind)
    w = make_widget(viewer)
    qtbot.waitUntil(lambda: w.isVisible() and w.height() > 0)
    qtbot.waitUntil(lambda: window.height() <= 900 and window.width() <= 1400)
    # a long status text (two lines), the Segment everything section opened
    w.set_status("Wrote label 12 (4 planes). " * 6)
    w.sections.section("EverythingPanel").set_open(True)
    daily = [
        w.image_combo,
        w.labels_combo,
        w.model_panel.load_btn,
        w.segment_btn,
        w.commit_btn,
        w.next_btn,
        w.cancel_btn,
        w.status,
    ]
    qtbot.waitUntil(lambda: all(_fully_visible(x, window) for x in daily))
    assert not _fully_visible(w.sections.section("FinetunePanel").panel, window)  # collapsed
    for x in daily:  # none of them is inside a scroll area: no scrolling can hide them
        parent = x.parentWidget()
        while parent is not None and parent is not w:
            assert not isinstance(parent, QScrollArea), x
            parent = parent.parentWidget()
    # the sections below them scroll, and their headers start inside the window
    assert w.sections_area.isAncestorOf(w.sections)
    first = w.sections.section("WindowPanel").header
    assert first.mapTo(window, QPoint(0, first.height())).y() <= window.height()


def test_no_section_row_is_clipped_on_the_right(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.uint16), name="img")
    w = SAM2Widget(viewer, segmenter=Segmenter(predictor=ClassicalBackend()))
    viewer.window.add_dock_widget(w, area="right")
    scroll = w.sections_area
    content = scroll.widget()
    qtbot.waitUntil(lambda: 0 < content.width() <= scroll.viewport().width())
    assert content.minimumSizeHint().width() <= scroll.viewport().width()
    # a panel growing wider (a long text in a row) widens the dock instead of clipping it
    save = w.sections.section("SavePanel")
    assert save.is_open()
    save.panel.setMinimumWidth(content.width() + 80)
    want = save.panel.minimumWidth()
    qtbot.waitUntil(lambda: scroll.minimumWidth() > want)
    assert scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
