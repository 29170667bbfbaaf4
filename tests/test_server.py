"""napari-sam2 serve + the remote backend, over a real uvicorn on 127.0.0.1.

Masks through the server equal local masks (classical and random-weight SAM 2), tokens are
required and checked, malformed or oversized requests get typed JSON errors, and many
clients at once lose no reply.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.backends.classical import ClassicalBackend  # noqa: E402
from napari_sam2.engine.backends.remote import (  # noqa: E402
    RemoteBackend,
    ServerAuthError,
    ServerBusyError,
    ServerModelChangedError,
    ServerRequestError,
    connect,
    wire,  # noqa: E402
)
from napari_sam2.engine.errors import NapariSam2Error  # noqa: E402
from napari_sam2.server import Limits, ServerSettings  # noqa: E402
from server_helpers import TOKEN, running_server  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _blobs(seed=0, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.2, 0.05, shape).astype(np.float32)
    img[10:30, 12:34] += 0.6
    img[40:58, 45:70] += 0.5
    return img


@pytest.fixture(scope="module")
def classical_server():
    with running_server(ClassicalBackend()) as (url, built):
        yield url, built


def test_classical_masks_through_the_server_equal_local_masks(classical_server):
    url, _ = classical_server
    img = np.stack([_blobs(1), _blobs(2)])
    remote = Segmenter(server=url, token=TOKEN).set_image(img)
    local = Segmenter(backend="classical").set_image(img)
    assert isinstance(remote.backend, RemoteBackend) and remote.backend.name == "classical"
    assert remote.describe()["server_backend"] == "classical"
    assert remote.describe()["backend"] == "remote"
    for plane in [(0,), (1,)]:
        for prompts in (dict(points=[(20, 20)]), dict(boxes=[(38, 40, 60, 75)]),
                        dict(points=[(20, 20), (50, 60)], point_labels=[1, 0])):  # fmt: skip
            a = remote.predict(plane, **prompts)
            b = local.predict(plane, **prompts)
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x.candidates, y.candidates)
                np.testing.assert_array_equal(x.scores, y.scores)
            assert a[0].mask[20, 20] or "boxes" in prompts
    labels = np.zeros(img.shape, np.int32)
    ids = remote.segment_into(labels, (1,), points=[(20, 20)])
    assert ids == [1] and labels[1, 20, 20] == 1 and labels[0].max() == 0


def test_env_vars_select_the_server(classical_server, monkeypatch):
    url, _ = classical_server
    monkeypatch.setenv("NAPARI_SAM2_SERVER", url)
    monkeypatch.setenv("NAPARI_SAM2_TOKEN", TOKEN)
    assert isinstance(Segmenter().backend, RemoteBackend)
    assert not isinstance(Segmenter(backend="classical").backend, RemoteBackend)  # explicit
    assert not isinstance(Segmenter(server=False).backend, RemoteBackend)


def test_missing_or_wrong_token_gives_401_and_a_typed_error(classical_server):
    url, _ = classical_server
    for token in (None, "wrong-" + "y" * 30):
        with pytest.raises(ServerAuthError, match="Missing or wrong token"):
            Segmenter(server=url, token=token)
    r = httpx.get(f"{url}/v1/info", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(f"{url}/v1/encode", content=b"x")
    assert r.status_code == 401
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}  # no token, no model facts


def test_info_describes_model_device_queue_and_limits(classical_server):
    url, _ = classical_server
    info = httpx.get(f"{url}/v1/info", headers=AUTH).json()
    assert info["backend"] == "classical" and info["device"] == "cpu"
    assert info["decoder"] == {"params": {"sigma": 1.0, "split_touching": True}}
    assert info["queue"] == 0 and info["limits"]["max_queue"] == 64
    assert len(info["model_id"]) == 24 and info["embedding_dtypes"] == ["fp16", "bf16", "fp32"]


def _encode_request(url, body, headers=AUTH):
    r = httpx.post(f"{url}/v1/encode", content=body, headers=headers)
    return r.status_code, r.json()["error"]


def test_malformed_requests_get_typed_json_errors(classical_server):
    url, built = classical_server
    mid = httpx.get(f"{url}/v1/info", headers=AUTH).json()["model_id"]
    meta = {"model_id": mid, "embedding_dtype": "fp16"}
    assert _encode_request(url, b"garbage")[0] == 400
    status, err = _encode_request(url, b"NS2W\x05\x00\x00\x00{bad}")
    assert (status, err["code"]) == (400, "bad_request") and "JSON" in err["message"]
    img = np.zeros((8, 8), np.uint8)
    status, err = _encode_request(url, wire.pack({"gray": img}, meta))
    assert status == 422 and "float32" in err["message"]
    status, err = _encode_request(url, wire.pack({"gray": np.zeros((8, 8), np.float32)},
                                                 {**meta, "model_id": "other"}))  # fmt: skip
    assert (status, err["code"]) == (409, "model_changed")
    status, err = _encode_request(url, wire.pack({"gray": np.zeros((8, 8), np.float32)},
                                                 {**meta, "embedding_dtype": "int8"}))  # fmt: skip
    assert status == 422 and "embedding_dtype" in err["message"]
    status, err = _encode_request(url, wire.pack({"gray": np.zeros((8, 8), np.float32)},
                                                 {**meta, "sha256": "0" * 64}))  # fmt: skip
    assert status == 422 and "sha256" in err["message"]
    status, err = _encode_request(url, wire.pack({}, {**meta, "lookup": True, "sha256": "a" * 64}))
    assert (status, err["code"]) == (404, "not_cached")
    r = httpx.get(f"{url}/v1/nothing", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert built.scheduler.counters.encodes == built.scheduler.counters.encodes  # still alive
    assert httpx.get(f"{url}/health").status_code == 200


def test_oversized_requests_are_refused_before_reading():
    settings = ServerSettings(max_request_bytes=50_000, max_pixels=64 * 64)
    with running_server(ClassicalBackend(), settings=settings) as (url, built):
        be = connect(url, TOKEN)
        mid = be.info["model_id"]
        rng = np.random.default_rng(0)
        noise = rng.random((100, 100), dtype=np.float32)  # ~40 KB compressed: under the cap
        status, err = _encode_request(url, wire.pack({"gray": noise}, {"model_id": mid,
                                      "embedding_dtype": "fp16"}))  # fmt: skip
        assert (status, err["code"]) == (422, "bad_request") and "4096 pixels" in err["message"]
        status, err = _encode_request(url, b"\0" * 60_000)
        assert (status, err["code"]) == (413, "too_large")
        big = np.repeat(rng.random((200, 200), dtype=np.float32)[..., None], 3, -1)
        with pytest.raises(ServerRequestError, match="limit"):
            be.encode(big)
        assert built.scheduler.counters.encodes == 0


def test_model_change_after_connect_is_a_typed_error(classical_server):
    url, _ = classical_server
    be = connect(url, TOKEN)
    be.info = {**be.info, "model_id": "0" * 24}  # as if the server restarted with another model
    with pytest.raises(ServerModelChangedError, match="another model"):
        be.encode(np.zeros((8, 8, 3), np.float32))
    assert issubclass(ServerModelChangedError, NapariSam2Error)


def test_eight_clients_lose_no_reply_and_share_one_encode_per_plane():
    planes = [_blobs(s, (48, 56)) for s in range(4)]
    with running_server(ClassicalBackend()) as (url, built):

        def client(i):
            seg = Segmenter(server=url, token=TOKEN).set_image(np.stack(planes))
            out = []
            for p in range(len(planes)):
                [pred] = seg.predict((p,), points=[(20, 22)])
                out.append(pred.mask)
            return out

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(client, range(8)))
        counters = built.scheduler.counters
    local = Segmenter(backend="classical").set_image(np.stack(planes))
    expected = [local.predict((p,), points=[(20, 22)])[0].mask for p in range(len(planes))]
    assert len(results) == 8
    for masks in results:
        for m, e in zip(masks, expected, strict=True):
            np.testing.assert_array_equal(m, e)
    assert counters.encodes == len(planes)  # 32 requests, 4 encodes: the cache is shared
    assert counters.memory_hits + counters.joined == 8 * len(planes) - len(planes)


def test_rate_limit_gives_429_and_a_typed_busy_error():
    with running_server(ClassicalBackend(), limits=Limits(rate=0.01, burst=2)) as (url, built):
        be = connect(url, TOKEN, retries=0)
        img = np.repeat(_blobs(3)[..., None], 3, -1)
        be.encode(img)  # lookup + upload: the burst of two
        with pytest.raises(ServerBusyError, match="Too many requests"):
            be.encode(img)
        assert built.scheduler.counters.rejected_rate == 1


def test_full_queue_gives_503_not_a_hang():
    gate = threading.Event()
    started = threading.Event()

    class Blocking(ClassicalBackend):
        def encode(self, image, cancel=None):
            started.set()
            gate.wait(30)
            return super().encode(image, cancel=cancel)

    with running_server(Blocking(), limits=Limits(max_queue=1)) as (url, built):
        a, b, c = (connect(url, TOKEN, retries=0) for _ in range(3))
        imgs = [np.repeat(_blobs(s)[..., None], 3, -1) for s in range(3)]
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(a.encode, imgs[0])
            assert started.wait(30)  # the worker holds job 1; the queue is empty again
            second = pool.submit(b.encode, imgs[1])
            for _ in range(600):  # until job 2 waits in the queue
                if built.scheduler.queued == 1:
                    break
                threading.Event().wait(0.02)
            assert built.scheduler.queued == 1
            with pytest.raises(ServerBusyError, match="queue is full"):
                c.encode(imgs[2])
            gate.set()
            assert first.result(30)["orig_hw"] == (64, 80)
            assert second.result(30)["orig_hw"] == (64, 80)
        assert built.scheduler.counters.rejected_busy == 1


def test_cancel_aborts_the_request_and_the_server_job():
    from napari_sam2.engine.errors import Cancelled

    started, stopped = threading.Event(), threading.Event()

    class Waits(ClassicalBackend):
        def encode(self, image, cancel=None):
            started.set()
            cancel.wait(30)  # stops only when the client's cancel reaches the server
            stopped.set()
            raise Cancelled("Encoding cancelled.")

    with running_server(Waits()) as (url, built):
        seg = Segmenter(server=url, token=TOKEN).set_image(_blobs())
        cancel = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(seg.predict, (), points=[(20, 20)], cancel=cancel)
            assert started.wait(30)
            cancel.set()
            with pytest.raises(Cancelled):
                fut.result(30)
        assert stopped.wait(30)
        assert built.scheduler.counters.cancelled == 1
        assert seg.stats.encodes == 0


# ------------------------------------------------------------------------- SAM 2
@pytest.fixture(scope="module")
def sam2_server(sam2_random_segmenter):
    with running_server(sam2_random_segmenter.backend) as (url, built):
        yield url, built


def test_sam2_masks_through_the_server_equal_local_masks(sam2_server, sam2_random_segmenter):
    """fp32 embeddings: exactly the local masks; fp16: exactly the local decoder's masks
    on the fp16-rounded embedding (what travelled)."""
    torch = pytest.importorskip("torch")
    url, built = sam2_server
    img = _blobs(5, (96, 112))
    local = sam2_random_segmenter.set_image(img)
    prompts = [dict(points=[(20, 22)]), dict(boxes=[(40, 45, 58, 70)]),
               dict(points=[(20, 22), (50, 60)], point_labels=[1, 1], boxes=[(5, 5, 35, 40)])]  # fmt: skip
    exact = Segmenter(predictor=connect(url, TOKEN, embedding_dtype="fp32")).set_image(img)
    assert exact.describe()["server_backend"] == "sam2"
    for p in prompts:
        for x, y in zip(exact.predict(**p), local.predict(**p), strict=True):
            np.testing.assert_array_equal(x.candidates, y.candidates)
            np.testing.assert_allclose(x.scores, y.scores, rtol=0, atol=1e-6)
    half = Segmenter(server=url, token=TOKEN).set_image(img)  # default: fp16 on the wire
    emb = local.embedding()
    rounded = {k: (v.half().float() if torch.is_tensor(v) else
                   [t.half().float() for t in v] if isinstance(v, list) else v)
               for k, v in emb.items()}  # fmt: skip
    for p in prompts:
        got = half.predict(**p)
        objects = [g.prompt for g in got]
        want = local.backend.predict(rounded, objects)
        for x, y in zip(got, want, strict=True):
            np.testing.assert_array_equal(x.candidates, y.candidates)
    assert built.scheduler.counters.encodes == 1  # fp32 and fp16 clients: one encode
    info = half.describe()
    assert info["device"].startswith("server ") and "cpu" in info["device"]


def test_sam2_decoder_weights_are_checked(sam2_server, monkeypatch):
    from napari_sam2.engine.backends.remote import ServerProtocolError
    from napari_sam2.engine.backends.remote import client as client_mod

    url, _ = sam2_server
    real = client_mod.ServerClient.request

    def tampered(self, method, path, *a, **k):
        body = real(self, method, path, *a, **k)
        return body[:-1] + bytes([body[-1] ^ 1]) if path == "/v1/decoder" else body

    monkeypatch.setattr(client_mod.ServerClient, "request", tampered)
    with pytest.raises(ServerProtocolError, match="SHA-256"):
        connect(url, TOKEN)


def test_everything_propagation_and_precompute_work_through_the_server(classical_server, tmp_path):
    """Segment everything and projection propagation give the local results; precompute
    through the server fills the client's disk cache, so a later session sends nothing."""
    url, built = classical_server
    stack = np.stack([_blobs(7), _blobs(11), _blobs(8)])
    remote = Segmenter(server=url, token=TOKEN, disk_cache=tmp_path / "cache").set_image(stack)
    local = Segmenter(backend="classical").set_image(stack)
    np.testing.assert_array_equal(
        remote.segment_everything(plane=(0,)), local.segment_everything(plane=(0,))
    )
    labels_r = np.zeros(stack.shape, np.int32)
    labels_l = np.zeros(stack.shape, np.int32)
    for seg, lab in ((remote, labels_r), (local, labels_l)):
        seg.segment_into(lab, (0,), points=[(20, 20)])
        seg.propagate(lab, (0,), axis=0)
    np.testing.assert_array_equal(labels_r, labels_l)
    assert labels_r[1, 20, 20] == 1

    assert remote.precompute() == 3
    later = Segmenter(server=url, token=TOKEN, disk_cache=tmp_path / "cache").set_image(stack)
    uploads, hits = later.backend.uploads, later.backend.server_hits
    later.precompute()
    assert later.stats.encodes == 0 and later.stats.disk_hits == 3
    assert (later.backend.uploads, later.backend.server_hits) == (uploads, hits) == (0, 0)


def test_sam2_segment_everything_through_the_server(sam2_server, sam2_random_segmenter):
    url, _ = sam2_server
    img = _blobs(9, (80, 96))
    local = sam2_random_segmenter.set_image(img)
    remote = Segmenter(predictor=connect(url, TOKEN, embedding_dtype="fp32")).set_image(img)
    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    np.testing.assert_array_equal(remote.segment_everything(**kw), local.segment_everything(**kw))


def test_malformed_reply_and_no_answer_are_typed_errors(classical_server, monkeypatch):
    from napari_sam2.engine.backends.remote import ServerProtocolError, ServerTimeoutError
    from napari_sam2.engine.backends.remote import client as client_mod

    url, _ = classical_server
    be = connect(url, TOKEN)
    img = np.repeat(_blobs(12)[..., None], 3, -1)
    real = client_mod.ServerClient.request
    monkeypatch.setattr(client_mod.ServerClient, "request",
                        lambda self, *a, **k: b"NS2W garbage")  # fmt: skip
    with pytest.raises(ServerProtocolError, match="Malformed reply"):
        be.encode(img)
    monkeypatch.setattr(client_mod.ServerClient, "request", real)
    gate = threading.Event()

    class Stuck(ClassicalBackend):
        def encode(self, image, cancel=None):
            gate.wait(60)
            return super().encode(image, cancel=cancel)

    with running_server(Stuck()) as (slow_url, _):
        stuck = connect(slow_url, TOKEN, timeout=1.0)
        try:
            with pytest.raises(ServerTimeoutError, match="did not answer in time"):
                stuck.encode(img)
        finally:
            gate.set()


def test_replicas_and_restarts_share_the_cache_folder(tmp_path):
    """Two servers on one --cache-dir: a plane encoded by one is not encoded by the other
    (and is not even uploaded again) — as after a restart."""
    img = np.repeat(_blobs(13)[..., None], 3, -1)
    with running_server(ClassicalBackend(), cache_dir=tmp_path) as (url_a, a):
        first = connect(url_a, TOKEN).encode(img)
        with running_server(ClassicalBackend(), cache_dir=tmp_path) as (url_b, b):
            be = connect(url_b, TOKEN)
            again = be.encode(img)
            assert (be.uploads, be.server_hits) == (0, 1)
            assert (b.scheduler.counters.encodes, b.scheduler.counters.disk_hits) == (0, 1)
    assert a.scheduler.counters.encodes == 1
    np.testing.assert_array_equal(first["smooth"], again["smooth"])
    assert first["threshold"] == again["threshold"]
    assert len(list(tmp_path.glob("*.npz"))) == 1
