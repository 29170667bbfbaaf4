"""Injected faults (issue 9): out of memory, exceptions and cancels in workers, bad
checkpoints, pickles, damaged downloads, output paths.  Labels are hashed before and
after: a fault never changes a committed pixel."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_sam2.engine import (
    Cancelled,
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    DeviceMemoryError,
    Segmenter,
)
from napari_sam2.engine.model import checkpoints, load, registry, state_dict
from napari_sam2.engine.runtime import devices
from widget_helpers import click, discs, ready_widget, segment_and_wait

torch = pytest.importorskip("torch")

LEFT, RIGHT = (40, 40), (40, 75)
SRC = Path(__file__).resolve().parents[1] / "src" / "napari_sam2"


def digest(array) -> str:
    """SHA-256 of a labels array's bytes, shape and dtype."""
    a = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(repr((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()


def _oom_once(monkeypatch, obj, name):
    """Make ``obj.name`` raise torch.OutOfMemoryError once, then work again."""
    real = getattr(obj, name)
    calls = {"n": 0}

    def fake(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*a, **k)

    monkeypatch.setattr(obj, name, fake)
    return calls


def _notices(monkeypatch):
    from napari_sam2.widget import _notify

    seen = []
    for name in ("show_info", "show_warning", "show_error"):
        monkeypatch.setattr(_notify, name, seen.append)
    return seen


# ------------------------------------------------------------------ out of memory
def _advice_ok(msg: str) -> bool:
    """Advice for tiny fp32 on the CPU (this machine): bf16, and tiny is the smallest."""
    return "bf16" in msg and "already the smallest model" in msg


@pytest.mark.parametrize(
    "size, device, precision, want, unwanted",
    [
        ("large", "cuda:0", "fp32", ["tiny, small, base_plus", "bf16", "device cpu"], []),
        ("small", "cuda", "bf16", ["smaller model (tiny)", "device cpu"], ["bf16"]),
        ("tiny", "cpu", "fp32", ["already the smallest", "bf16"], ["device cpu"]),
    ],
)
def test_memory_advice_suggests_what_is_not_in_use(size, device, precision, want, unwanted):
    """Out-of-memory advice: a smaller model, bf16, the CPU — each only when not in use."""
    msg = devices.memory_advice(size, device, precision)
    assert all(w in msg for w in want) and not any(u in msg for u in unwanted), msg


def test_oom_in_the_encoder_suggests_remedies_and_model_stays_usable(
    sam2_random_segmenter, monkeypatch
):
    """torch.OutOfMemoryError from the image encoder: a DeviceMemoryError suggesting a
    smaller model, bf16 or the CPU; nothing cached; the next predict works."""
    seg = sam2_random_segmenter
    img = discs(value=2345)  # content no other test uses: not in the cache
    seg.set_image(img)
    calls = _oom_once(monkeypatch, seg.backend.loaded.model, "forward_image")
    encodes = seg.stats.encodes
    with pytest.raises(DeviceMemoryError) as info:
        seg.predict(points=[LEFT])
    assert _advice_ok(str(info.value)), str(info.value)
    assert "still loaded" in str(info.value)
    assert seg.stats.encodes == encodes and not seg.is_encoded()
    assert not seg.backend._lock.locked()
    [pred] = seg.predict(points=[LEFT])  # the model is usable afterwards
    assert pred.candidates.shape[1:] == img.shape and calls["n"] == 2


def test_oom_in_the_decoder_is_the_same_error(sam2_random_segmenter, monkeypatch):
    """torch.OutOfMemoryError from the mask decoder: DeviceMemoryError, then it works."""
    seg = sam2_random_segmenter.set_image(discs())
    seg.predict(points=[LEFT])
    _oom_once(monkeypatch, seg.backend.loaded.model.sam_mask_decoder, "forward")
    with pytest.raises(DeviceMemoryError, match="decoding 1 object"):
        seg.predict(points=[LEFT])
    assert len(seg.predict(points=[LEFT])) == 1


def test_oom_while_moving_the_model_to_the_device(monkeypatch):
    """torch.OutOfMemoryError while loading onto the device: DeviceMemoryError naming the
    model, and no model is returned (nothing half-loaded)."""

    class Net:
        def to(self, dev):
            raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(load, "build_model", lambda spec, image_size=None: Net())
    with pytest.raises(DeviceMemoryError) as info:
        load.load_sam2("large", random_weights=True, device="cpu")
    msg = str(info.value)
    assert "sam2.1-large" in msg and "smaller model (tiny, small, base_plus)" in msg


def test_oom_in_the_widget_worker_leaves_labels_and_says_what_to_do(
    make_napari_viewer, qtbot, monkeypatch, sam2_random_checkpoint
):
    """OOM inside the widget's segment worker (real SAM 2 architecture): an error notice
    with the remedies, labels byte-identical, and the next Segment works."""
    seg = Segmenter("tiny", sam2_random_checkpoint, backend="sam2", device="cpu", image_size=256)
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs(), segmenter=seg)
    seen = _notices(monkeypatch)
    labels = w.session.labels_layer
    labels.data[:5, :5] = 9
    before = digest(labels.data)
    _oom_once(monkeypatch, seg.backend.loaded.model, "forward_image")
    click(w.session.points_layer, LEFT)
    w.segment()
    qtbot.waitUntil(lambda: not w.busy and any("Out of memory" in m for m in seen), timeout=60_000)
    assert any(_advice_ok(m) for m in seen), seen
    assert digest(labels.data) == before and w.session.result is None
    segment_and_wait(qtbot, w)
    assert w.session.result is not None


# ------------------------------------------------------ worker exceptions and cancels
def _committed_widget(viewer, qtbot):
    _, w = ready_widget(viewer, discs())
    click(w.session.points_layer, LEFT)
    segment_and_wait(qtbot, w)
    w.commit()
    w.next_object()
    return w


@pytest.mark.parametrize("where", ["set_image", "embedding", "predict"])
def test_exception_in_the_worker_leaves_labels_byte_identical(
    make_napari_viewer, qtbot, monkeypatch, where
):
    """An exception at each step of the segment worker: an error notice, the labels hash
    unchanged, no preview kept, the widget idle and usable."""
    viewer = make_napari_viewer()
    w = _committed_widget(viewer, qtbot)
    seen = _notices(monkeypatch)
    before = digest(w.session.labels_layer.data)
    seg = w.session.segmenter
    w.session.forget_image()  # force set_image in the worker

    def boom(*a, **k):
        raise RuntimeError(f"injected fault in {where}")

    monkeypatch.setattr(seg, where, boom)
    click(w.session.points_layer, RIGHT)
    w.segment()
    qtbot.waitUntil(
        lambda: not w.busy and any("injected fault" in m for m in seen), timeout=60_000
    )
    assert digest(w.session.labels_layer.data) == before
    assert w.session.result is None
    w.commit()  # nothing to commit: a warning, still no change
    assert digest(w.session.labels_layer.data) == before
    monkeypatch.undo()
    segment_and_wait(qtbot, w)
    w.commit()
    assert w.session.labels_layer.data[RIGHT] == 2


@pytest.mark.parametrize("when", ["before_start", "during_encode", "while_queued"])
def test_cancel_at_any_point_leaves_labels_byte_identical(
    make_napari_viewer, qtbot, monkeypatch, when
):
    """Cancel before the worker runs, inside the encode, or with a second request queued:
    no preview is accepted and the labels hash is unchanged."""
    viewer = make_napari_viewer()
    w = _committed_widget(viewer, qtbot)
    before = digest(w.session.labels_layer.data)
    seg = w.session.segmenter
    w.session.forget_image()
    seg.cache.clear()
    real_encode = seg.backend.encode
    entered, gate = threading.Event(), threading.Event()

    def slow_encode(image, **k):
        entered.set()
        gate.wait(10)
        return real_encode(image)

    monkeypatch.setattr(seg.backend, "encode", slow_encode)
    click(w.session.points_layer, RIGHT)
    w.segment()
    if when != "before_start":
        qtbot.waitUntil(entered.is_set, timeout=10_000)
    if when == "while_queued":
        w.segment()  # a second request waits for the first
    w.cancel()
    gate.set()
    qtbot.waitUntil(lambda: not w.busy, timeout=60_000)
    qtbot.wait(200)
    assert w.session.result is None
    assert digest(w.session.labels_layer.data) == before


def test_engine_cancel_event_stops_before_anything_is_written(classical_segmenter):
    """segment_into with a set cancel event raises Cancelled and leaves the array as it was."""
    seg = classical_segmenter.set_image(discs())
    labels = np.zeros((80, 120), np.int32)
    labels[LEFT] = 4
    before = digest(labels)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        seg.predict(points=[RIGHT], cancel=ev)
    assert digest(labels) == before


def test_failed_write_of_a_batch_is_rolled_back(make_napari_viewer, qtbot, monkeypatch):
    """The second of two object writes fails inside napari: the first is put back, the
    labels are byte-identical, the error propagates, no ID is recorded."""
    viewer = make_napari_viewer()
    _, w = ready_widget(viewer, discs(centers=((40, 25), (40, 60), (40, 95)), r=12))
    s = w.session
    labels = s.labels_layer
    labels.data[:3, :3] = 7
    before = digest(labels.data)
    w.new_shapes()
    s.shapes_layer.add_rectangles([[[25, 45], [55, 75]], [[25, 80], [55, 110]]])
    segment_and_wait(qtbot, w)
    assert len(s.result.predictions) == 2
    real = labels.data_setitem
    calls = {"n": 0}

    def flaky(indices, value, refresh=True):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("injected fault in data_setitem")
        return real(indices, value, refresh)

    monkeypatch.setattr(labels, "data_setitem", flaky)
    with pytest.raises(MemoryError):
        s.commit()
    assert digest(labels.data) == before and calls["n"] == 4  # 2 writes + 1 put back
    assert "napari_sam2" not in labels.metadata


# ------------------------------------------------------------------ checkpoints
def _no_build(monkeypatch):
    monkeypatch.setattr(load, "build_model", lambda *a, **k: pytest.fail("model built"))


def test_missing_checkpoint(tmp_path, monkeypatch):
    """A checkpoint path that does not exist: CheckpointNotFoundError with the URL."""
    _no_build(monkeypatch)
    with pytest.raises(CheckpointNotFoundError, match="does not exist.*dl.fbaipublicfiles"):
        load.load_sam2("tiny", checkpoint=tmp_path / "nope.pt", device="cpu")


def test_truncated_checkpoint_fails_before_building(tmp_path, monkeypatch, sam2_random_checkpoint):
    """A half-downloaded checkpoint: CheckpointCorruptError, nothing built."""
    data = sam2_random_checkpoint.read_bytes()
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(data[: len(data) // 3])
    _no_build(monkeypatch)
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        load.load_sam2("tiny", checkpoint=path, device="cpu", image_size=256)


def test_corrupt_checkpoint_fails_before_building(tmp_path, monkeypatch, sam2_random_checkpoint):
    """A checkpoint with flipped bytes in its middle: CheckpointCorruptError, nothing built."""
    data = bytearray(sam2_random_checkpoint.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4096] = bytes(4096)
    data[:64] = bytes(64)  # the zip header too
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    path.write_bytes(bytes(data))
    _no_build(monkeypatch)
    with pytest.raises(CheckpointCorruptError, match="Download it again"):
        load.load_sam2("tiny", checkpoint=path, device="cpu", image_size=256)


def test_checkpoint_of_another_size_fails_before_building(
    tmp_path, monkeypatch, sam2_random_checkpoint
):
    """A tiny checkpoint loaded as 'large': CheckpointMismatchError naming both, nothing built."""
    _no_build(monkeypatch)
    with pytest.raises(CheckpointMismatchError) as info:
        load.load_sam2("large", checkpoint=sam2_random_checkpoint, device="cpu")
    msg = str(info.value)
    assert "'large'" in msg and "looks like a SAM 2.1 'tiny' checkpoint" in msg


def test_checkpoint_of_another_model_family(tmp_path, monkeypatch):
    """A Segment Anything (SAM 1) state dict: CheckpointMismatchError saying so, nothing built."""
    sd = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
        "image_encoder.blocks.0.attn.qkv.weight": torch.zeros(24, 8),
        "mask_decoder.iou_token.weight": torch.zeros(1, 8),
    }
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sd, path)
    _no_build(monkeypatch)
    with pytest.raises(CheckpointMismatchError, match=r"Segment Anything \(SAM 1\)"):
        load.load_sam2("tiny", checkpoint=path, device="cpu")


class _Payload:
    """A pickle that would run code when unpickled without weights_only."""

    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_pickled_code_in_a_checkpoint_is_not_run(tmp_path):
    """A checkpoint that carries a code-running pickle: CheckpointCorruptError and the code
    did not run (torch.load weights_only=True)."""
    _Payload.target = str(tmp_path / "pwned")
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "evil": _Payload()}, path)
    with pytest.raises(CheckpointCorruptError):
        state_dict.read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_no_unsafe_deserialisation_in_the_source():
    """Every torch.load has weights_only=True, every np.load allow_pickle=False, and nothing
    imports pickle loaders, yaml.load or eval on data."""
    bad = []
    for f in SRC.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                bad.append(f"{f.name}: {m.group(0)}")
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            if "allow_pickle=False" not in m.group(1):
                bad.append(f"{f.name}: {m.group(0)}")
        for pat in (r"pickle\.loads?\(", r"yaml\.load\(", r"(?<![.\w])eval\(", r"marshal\.loads"):
            if re.search(pat, text):
                bad.append(f"{f.name}: {pat}")
    assert not bad, bad


# ------------------------------------------------------------------ downloads
def _fake_hub(tmp_path, content: bytes, blob_name: str):
    blob = tmp_path / "blobs" / blob_name
    blob.parent.mkdir()
    blob.write_bytes(content)
    snap = tmp_path / "snapshots" / "abc"
    snap.mkdir(parents=True)
    link = snap / "sam2.1_hiera_tiny.pt"
    link.symlink_to(blob)
    return link, blob


def test_damaged_download_is_detected_and_deleted(tmp_path, monkeypatch):
    """The hub hands back a file whose content does not match its SHA-256 blob name: a
    CheckpointCorruptError, and the damaged file is gone so that a retry downloads again."""
    hub = pytest.importorskip("huggingface_hub")
    good = b"the real checkpoint bytes"
    link, blob = _fake_hub(tmp_path, good[:-5], hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: str(link))
    with pytest.raises(CheckpointCorruptError, match="damaged.*deleted"):
        checkpoints.download_checkpoint(registry.get_spec("tiny"))
    assert not blob.exists() and not link.is_symlink()


def test_verified_download_is_returned(tmp_path, monkeypatch):
    """A download whose content matches its SHA-256 blob name is returned as is."""
    hub = pytest.importorskip("huggingface_hub")
    good = b"the real checkpoint bytes"
    link, blob = _fake_hub(tmp_path, good, hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: str(link))
    assert checkpoints.download_checkpoint(registry.get_spec("tiny")) == link
    assert blob.read_bytes() == good


# ------------------------------------------------------------------ output paths
@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "sub/dir", "..", "a\\..\\b"])
def test_export_prefix_cannot_leave_the_folder(tmp_path, prefix):
    """An export file-name prefix with a separator or '..': ValueError, nothing written
    outside (or inside) the chosen folder."""
    from napari_sam2.io.exports.objects import export_object_masks

    out = tmp_path / "out"
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    with pytest.raises(ValueError, match="Unsafe output file name"):
        export_object_masks(labels, out, prefix=prefix)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_export_does_not_write_through_a_symlink(tmp_path):
    """A symbolic link planted in the export folder under an output name is refused: the
    file it points to (outside the folder) is untouched."""
    from napari_sam2.io.exports.objects import export_object_masks

    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "object_0001.png").symlink_to(victim)
    labels = np.zeros((8, 8), np.int32)
    labels[2:4, 2:4] = 1
    with pytest.raises(ValueError, match="symbolic link"):
        export_object_masks(labels, out)
    assert victim.read_text() == "keep me"


def test_session_export_names_stay_in_the_folder(make_napari_viewer, qtbot, tmp_path):
    """The widget's export writes only plain files directly inside the chosen folder."""
    viewer = make_napari_viewer()
    w = _committed_widget(viewer, qtbot)
    out = tmp_path / "chosen"
    paths = w.session.export(out)
    assert paths and all(Path(p).parent == out for p in paths)
    assert {p.name for p in tmp_path.rglob("*") if p.is_file()} == {Path(p).name for p in paths}


def test_cli_refuses_to_overwrite_its_input(tmp_path, capsys):
    """napari-sam2 segment -o <the input image>: a usage error, the image unchanged."""
    import tifffile

    from napari_sam2.cli import main

    img = tmp_path / "img.tif"
    tifffile.imwrite(img, discs())
    before = img.read_bytes()
    rc = main(["segment", str(img), "--points", "40,40", "-o", str(tmp_path / "." / "img.tif")])
    assert rc == 2
    assert "--output is the input image" in capsys.readouterr().err
    assert img.read_bytes() == before


def test_failed_model_load_in_the_widget_keeps_the_old_model(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, sam2_random_checkpoint
):
    """Loading a truncated checkpoint from the Model panel (its worker fails): one error
    notice saying to download it again, the previous model stays in use, labels unchanged."""
    from napari_sam2.widget import _notify

    viewer = make_napari_viewer()
    w = _committed_widget(viewer, qtbot)
    seen = []
    monkeypatch.setattr(_notify, "show_error", seen.append)
    old = w.session.segmenter
    before = digest(w.session.labels_layer.data)
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(sam2_random_checkpoint.read_bytes()[:100_000])
    panel = w.model_panel
    panel.backend_combo.setCurrentText("sam2")
    panel.device_combo.setCurrentText("cpu")
    panel.ckpt_edit.setText(str(bad))
    panel.load()
    qtbot.waitUntil(lambda: bool(seen) and panel.load_btn.isEnabled(), timeout=60_000)
    assert len(seen) == 1 and "Download it again" in seen[0], seen
    assert w.session.segmenter is old
    assert digest(w.session.labels_layer.data) == before
    click(w.session.points_layer, RIGHT)
    segment_and_wait(qtbot, w)
    w.commit()
    assert w.session.labels_layer.data[RIGHT] == 2
