"""The Model panel's Server and Token fields: the model then runs on a napari-sam2 server,
the status line says so, a wrong token is reported in one line, and the token is only
held in memory (a password field, nothing saved)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from napari_sam2.engine.backends.classical import ClassicalBackend  # noqa: E402
from server_helpers import TOKEN, running_server  # noqa: E402


@pytest.fixture
def panel(qtbot, monkeypatch):
    from napari_sam2.widget import _model_panel, _notify

    errors = []
    monkeypatch.setattr(_notify, "show_error", errors.append)
    p = _model_panel.ModelPanel()
    qtbot.addWidget(p)
    p.errors = errors
    return p


def test_server_field_loads_a_remote_model_and_the_status_says_where(panel, qtbot):
    from qtpy.QtWidgets import QLineEdit

    from napari_sam2.widget._model_panel import describe_model

    assert panel.options().get("server") is None  # empty field: local
    assert panel.token_edit.echoMode() == QLineEdit.EchoMode.Password
    with running_server(ClassicalBackend()) as (url, _):
        got = []
        panel.loaded.connect(got.append)
        panel.server_edit.setText(url)
        panel.token_edit.setText(TOKEN)
        assert panel.options()["server"] == url and panel.options()["token"] == TOKEN
        panel.load()
        qtbot.waitUntil(lambda: bool(got) and panel.worker is None, timeout=60_000)
        [seg] = got
        assert seg.describe()["backend"] == "remote" and seg.describe()["server"] == url
        assert "· server " in describe_model(seg)


def test_wrong_token_is_one_line_in_the_status(panel, qtbot):
    with running_server(ClassicalBackend()) as (url, _):
        lines = []
        panel.status.connect(lines.append)
        panel.server_edit.setText(url)
        panel.token_edit.setText("wrong-" + "t" * 30)
        panel.load()
        qtbot.waitUntil(lambda: panel.worker is None and bool(panel.errors), timeout=60_000)
    assert lines[-1].startswith("Model not loaded: ") and "wrong token" in lines[-1]
    assert "\n" not in lines[-1] and "wrong-" not in lines[-1]  # the token is not echoed
