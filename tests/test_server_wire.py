"""The wire format of napari-sam2 serve (engine/backends/remote/wire.py): exact round trips,
and every malformed message refused with a WireError before any of it is used."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

pytest.importorskip("zstandard")

from napari_sam2.engine.backends.remote import wire  # noqa: E402
from napari_sam2.engine.backends.remote.errors import WireError  # noqa: E402
from napari_sam2.engine.errors import NapariSam2Error  # noqa: E402


def _rebuild(header: dict, body: bytes) -> bytes:
    h = json.dumps(header).encode()
    return wire.MAGIC + struct.pack("<I", len(h)) + h + body


def _split(msg: bytes) -> tuple[dict, bytes]:
    header, start = wire.read_header(msg)
    return header, msg[start:]


def test_arrays_round_trip_exactly_with_meta():
    rng = np.random.default_rng(0)
    arrays = {
        "f": rng.random((5, 7, 3), dtype=np.float32),
        "h": rng.random((4,)).astype(np.float16),
        "b": rng.random((6, 2)) > 0.5,
        "i": np.arange(12, dtype=np.int64).reshape(3, 4),
        "empty": np.zeros((0, 3), np.uint8),
    }
    msg = wire.pack(arrays, {"x": 1, "s": "a"})
    out, meta, dtypes = wire.unpack(msg)
    assert meta == {"x": 1, "s": "a"}
    assert dtypes == {"f": "float32", "h": "float16", "b": "bool", "i": "int64", "empty": "uint8"}
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)


def test_big_endian_input_travels_little_endian():
    a = np.arange(6, dtype=">f4")
    out, _, _ = wire.unpack(wire.pack({"a": a}))
    np.testing.assert_array_equal(out["a"], np.arange(6, dtype=np.float32))
    header, _ = _split(wire.pack({"a": a}))
    assert header["arrays"][0]["dtype"] == "float32"


def test_bad_magic_header_and_version_are_refused():
    msg = wire.pack({"a": np.ones(3, np.float32)})
    with pytest.raises(WireError, match="magic"):
        wire.unpack(b"XXXX" + msg[4:])
    with pytest.raises(WireError, match="too large or truncated"):
        wire.unpack(msg[:4] + struct.pack("<I", 1 << 30) + msg[8:])
    with pytest.raises(WireError, match="JSON"):
        wire.unpack(wire.MAGIC + struct.pack("<I", 3) + b"{{{")
    header, body = _split(msg)
    with pytest.raises(WireError, match="version"):
        wire.unpack(_rebuild({**header, "v": 2}, body))


def test_object_and_unknown_dtypes_are_refused_both_ways():
    """Never pickle: an object array cannot be packed, and a header naming one is refused."""
    with pytest.raises(WireError, match="cannot travel"):
        wire.pack({"o": np.array([{"a": 1}], dtype=object)})
    header, body = _split(wire.pack({"a": np.ones(3, np.float32)}))
    header["arrays"][0]["dtype"] = "object"
    with pytest.raises(WireError, match="not allowed"):
        wire.unpack(_rebuild(header, body))


def test_shape_size_checksum_and_body_mismatches_are_refused():
    header, body = _split(wire.pack({"a": np.arange(8, dtype=np.float32)}))
    bad = json.loads(json.dumps(header))
    bad["arrays"][0]["shape"] = [9]
    with pytest.raises(WireError, match="size or checksum"):
        wire.unpack(_rebuild(bad, body))
    bad = json.loads(json.dumps(header))
    bad["arrays"][0]["shape"] = [-8]
    with pytest.raises(WireError, match="bad shape"):
        wire.unpack(_rebuild(bad, body))
    bad = json.loads(json.dumps(header))
    bad["arrays"][0]["sha256"] = "0" * 64
    with pytest.raises(WireError, match="checksum mismatch"):
        wire.unpack(_rebuild(bad, body))
    with pytest.raises(WireError, match="zstd"):
        wire.unpack(_rebuild(header, b"not zstd at all"))


def test_size_cap_is_checked_before_decompressing():
    """A small message announcing a huge array (a zip bomb) is refused from its header."""
    big = np.zeros((2048, 2048), np.float32)  # 16 MB of zeros: a few KB compressed
    msg = wire.pack({"a": big})
    assert len(msg) < 100_000
    with pytest.raises(WireError, match="over the 1 MB limit"):
        wire.unpack(msg, max_bytes=1_000_000)
    header, body = _split(msg)
    header["raw_nbytes"] = 10  # lies about the raw size
    with pytest.raises(WireError, match="raw size"):
        wire.unpack(_rebuild(header, body))


def test_gray_images_travel_as_one_channel_and_come_back_equal():
    rng = np.random.default_rng(1)
    g = rng.random((30, 40), dtype=np.float32)
    img = np.repeat(g[..., None], 3, axis=-1)
    msg = wire.pack_image(img, {"k": 1})
    arrays, meta, _ = wire.unpack(msg)
    assert set(arrays) == {"gray"} and meta == {"k": 1}
    back = wire.image_from_arrays(arrays, max_pixels=10_000)
    assert back.dtype == np.float32 and back.shape == (30, 40, 3)
    np.testing.assert_array_equal(back, img)
    assert wire.image_digest(back) == wire.image_digest(img)
    rgb = rng.random((30, 40, 3), dtype=np.float32)
    arrays, _, _ = wire.unpack(wire.pack_image(rgb, {}))
    assert set(arrays) == {"image"}
    np.testing.assert_array_equal(wire.image_from_arrays(arrays, max_pixels=10_000), rgb)


def test_image_requests_are_checked():
    with pytest.raises(WireError, match="limit of 100 pixels"):
        wire.image_from_arrays({"gray": np.zeros((11, 10), np.float32)}, max_pixels=100)
    with pytest.raises(WireError, match="float32"):
        wire.image_from_arrays({"image": np.zeros((4, 4, 3), np.float64)}, max_pixels=100)
    with pytest.raises(WireError, match="float32"):
        wire.image_from_arrays({"image": np.zeros((4, 4, 4), np.float32)}, max_pixels=100)
    with pytest.raises(WireError, match="exactly one array"):
        wire.image_from_arrays(
            {"gray": np.zeros((4, 4), np.float32), "x": np.zeros(1)}, max_pixels=100
        )
    assert issubclass(WireError, NapariSam2Error) and issubclass(WireError, ValueError)


def test_embeddings_travel_in_fp16_bf16_or_fp32():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    emb = {
        "image_embed": torch.randn(1, 8, 4, 4, generator=g),
        "high_res_feats": [
            torch.randn(1, 2, 16, 16, generator=g),
            torch.randn(1, 4, 8, 8, generator=g),
        ],
        "orig_hw": (64, 48),
        "encode_s": 0.5,
        "smooth": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
    }
    for dtype, cast in (
        ("fp32", torch.float32),
        ("fp16", torch.float16),
        ("bf16", torch.bfloat16),
    ):
        back, meta = wire.unpack_embedding(wire.pack_embedding(emb, dtype, {"sha256": "s"}))
        assert meta["sha256"] == "s" and meta["embedding_dtype"] == dtype
        assert back["orig_hw"] == (64, 48) and back["encode_s"] == 0.5
        assert back["image_embed"].dtype == torch.float32
        torch.testing.assert_close(
            back["image_embed"], emb["image_embed"].to(cast).float(), rtol=0, atol=0
        )
        for a, b in zip(back["high_res_feats"], emb["high_res_feats"], strict=True):
            torch.testing.assert_close(a, b.to(cast).float(), rtol=0, atol=0)
        np.testing.assert_array_equal(back["smooth"], emb["smooth"])  # arrays stay exact
    header, _ = _split(wire.pack_embedding(emb, "fp16"))
    assert {a["dtype"] for a in header["arrays"]} == {"float16", "float32"}  # smooth: float32
    huge = {"t": torch.full((2,), 1e6)}  # over fp16's range: kept float32, not inf
    back, _ = wire.unpack_embedding(wire.pack_embedding(huge, "fp16"))
    assert torch.equal(back["t"], huge["t"])
    with pytest.raises(WireError, match="cannot travel"):
        wire.pack_embedding({"x": object()})


def test_engine_never_imports_the_server_stack():
    """engine/ (the remote backend included) imports no fastapi/uvicorn/starlette at all,
    and httpx/zstandard only when a server is used."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import napari_sam2.engine

    engine_dir = Path(napari_sam2.engine.__file__).parent
    for f in engine_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])  # fmt: skip
            for n in names:
                assert n.split(".")[0] not in ("fastapi", "uvicorn", "starlette"), (f, n)
    code = (
        "import sys, napari_sam2.engine; from napari_sam2.engine import Segmenter; "
        "bad = [m for m in ('httpx', 'zstandard', 'fastapi', 'uvicorn') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
