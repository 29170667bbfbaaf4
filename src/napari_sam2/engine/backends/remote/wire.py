"""The wire format shared by ``napari-sam2 serve`` and the remote backend.

A message is::

    b"NS2W" | header length (uint32, little-endian) | header (UTF-8 JSON) | body

The header is ``{"v": 1, "meta": {...}, "codec": "zstd" | "none", "raw_nbytes": N,
"arrays": [{"name", "dtype", "shape", "nbytes", "sha256"}, ...]}`` and the body is the
arrays' raw little-endian bytes, one after the other in that order, compressed as a whole
with zstd.  Only plain numeric dtypes are accepted (``WIRE_DTYPES``; ``bfloat16`` travels as
its 16 raw bits).  Nothing is ever pickled, in either direction: a message is data, and
:func:`unpack` checks everything before any of it is used — the magic, the header's size
and JSON, each dtype and shape, the total size against a cap (before decompressing, so a
small message cannot inflate into gigabytes), the decompressed size, and each array's
SHA-256.  Any failure is a :class:`~.errors.WireError`.

Embeddings travel in fp16 or bf16 (half the bytes; ``fp32`` on request for exact parity);
numpy arrays of an embedding (the classical backend's smoothed plane) always travel as they
are.  torch is imported only when tensors are packed or unpacked.
"""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np

from .errors import WireError

MAGIC = b"NS2W"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
DEFAULT_MAX_BYTES = 512 * 1024**2  # decompressed arrays of one message
MAX_NDIM = 8
WIRE_DTYPES = ("float32", "float16", "bfloat16", "uint8", "uint16", "bool", "int32", "int64")
EMBEDDING_DTYPES = ("fp16", "bf16", "fp32")
_FP16_MAX = 60000.0  # a tensor with larger values travels as float32 (fp16 tops out at 65504)


def _np_dtype(name: str) -> np.dtype:
    return np.dtype("<u2") if name == "bfloat16" else np.dtype(name).newbyteorder("<")


def _compress(raw: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(raw)


def _decompress(body: bytes, raw_nbytes: int) -> bytes:
    import zstandard

    try:
        out = zstandard.ZstdDecompressor().decompress(body, max_output_size=max(raw_nbytes, 1))
    except zstandard.ZstdError as e:
        raise WireError(f"The message body is not valid zstd data ({e}).") from None
    return out


# ------------------------------------------------------------------------- messages
def pack(arrays: dict, meta: dict | None = None, *, level: int = 1) -> bytes:
    """One message of ``arrays`` (name → numpy array, or ``("bfloat16", uint16 array)``)
    and the JSON-able ``meta``."""
    entries, chunks = [], []
    for name, value in arrays.items():
        wire_dtype, arr = value if isinstance(value, tuple) else (None, value)
        arr = np.ascontiguousarray(arr)
        if wire_dtype is None:
            wire_dtype = arr.dtype.name
        if wire_dtype not in WIRE_DTYPES:
            raise WireError(f"Array {name!r}: dtype {wire_dtype} cannot travel.")
        arr = np.ascontiguousarray(arr, dtype=_np_dtype(wire_dtype))
        raw = arr.tobytes()
        entries.append(
            {
                "name": str(name),
                "dtype": wire_dtype,
                "shape": [int(s) for s in arr.shape],
                "nbytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            }
        )
        chunks.append(raw)
    raw = b"".join(chunks)
    header = {
        "v": VERSION,
        "meta": meta or {},
        "codec": "zstd",
        "raw_nbytes": len(raw),
        "arrays": entries,
    }
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(hbytes)) + hbytes + _compress(raw, level)


def read_header(data: bytes) -> tuple[dict, int]:
    """The checked header of a message and where its body starts."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireError("Not a napari-sam2 wire message (bad magic).")
    (n,) = struct.unpack("<I", data[4:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise WireError(f"Wire header of {n} bytes is too large or truncated.")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("The wire header is not valid JSON.") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise WireError(f"Unsupported wire header (version {header.get('v')!r}, expected 1)."
                        if isinstance(header, dict) else "The wire header is not an object.")  # fmt: skip
    if header.get("codec") not in ("zstd", "none"):
        raise WireError(f"Unknown wire codec {header.get('codec')!r}.")
    if not isinstance(header.get("meta", {}), dict) or not isinstance(header.get("arrays"), list):
        raise WireError("The wire header needs a 'meta' object and an 'arrays' list.")
    return header, 8 + n


def _check_entry(e) -> tuple[str, np.dtype, tuple, int]:
    if not isinstance(e, dict) or not isinstance(e.get("name"), str):
        raise WireError("Each wire array needs a name.")
    name, dtype, shape = e["name"], e.get("dtype"), e.get("shape")
    if dtype not in WIRE_DTYPES:
        raise WireError(f"Array {name!r}: dtype {dtype!r} is not allowed ({WIRE_DTYPES}).")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise WireError(f"Array {name!r}: bad shape {shape!r}.")
    npd = _np_dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * npd.itemsize if shape else npd.itemsize
    if e.get("nbytes") != nbytes or not isinstance(e.get("sha256"), str):
        raise WireError(f"Array {name!r}: size or checksum field does not match its shape.")
    return name, npd, tuple(shape), nbytes


def unpack(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict, dict, dict]:
    """``(arrays, meta, wire_dtypes)`` of a checked message.

    ``bfloat16`` arrays come back as float32 (exact); every other array in its own dtype.
    """
    header, start = read_header(data)
    checked = [_check_entry(e) for e in header["arrays"]]
    total = sum(c[3] for c in checked)
    if len({c[0] for c in checked}) != len(checked):
        raise WireError("Two wire arrays have the same name.")
    if total > max_bytes:
        raise WireError(f"The message holds {total / 1e6:.1f} MB of arrays, over the "
                        f"{max_bytes / 1e6:.0f} MB limit.")  # fmt: skip
    if header.get("raw_nbytes") != total:
        raise WireError("The wire header's raw size does not match its arrays.")
    body = data[start:]
    raw = _decompress(body, total) if header["codec"] == "zstd" else body
    if len(raw) != total:
        raise WireError(f"The message body holds {len(raw)} bytes, its header says {total}.")
    arrays, dtypes, offset = {}, {}, 0
    for entry, (name, npd, shape, nbytes) in zip(header["arrays"], checked, strict=True):
        chunk = raw[offset : offset + nbytes]
        offset += nbytes
        if hashlib.sha256(chunk).hexdigest() != entry["sha256"]:
            raise WireError(f"Array {name!r}: checksum mismatch (corrupted in transit).")
        arr = np.frombuffer(chunk, dtype=npd).reshape(shape).copy()
        if entry["dtype"] == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        arrays[name] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        dtypes[name] = entry["dtype"]
    return arrays, header.get("meta", {}), dtypes


# -------------------------------------------------------------------------- images
def image_digest(image: np.ndarray) -> str:
    """SHA-256 of a SAM input image's bytes, its shape and dtype (the server's cache key)."""
    h = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def pack_image(image: np.ndarray, meta: dict) -> bytes:
    """A float32 (H, W, 3) image as a request; a gray image (three equal channels, what
    single-channel data gives) travels as one channel, a third of the bytes."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if (
        image.ndim == 3
        and image.shape[-1] == 3
        and (
            np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 0], image[..., 2])
        )
    ):
        return pack({"gray": image[..., 0]}, meta)
    return pack({"image": image}, meta)


def image_from_arrays(arrays: dict, *, max_pixels: int) -> np.ndarray:
    """The float32 (H, W, 3) image of a request's arrays (checked: names, dtype, shape)."""
    names = set(arrays)
    if names not in ({"gray"}, {"image"}):
        raise WireError("An encode request holds exactly one array, 'image' or 'gray'.")
    (name,) = names
    arr = arrays[name]
    want = 2 if name == "gray" else 3
    if arr.dtype != np.float32 or arr.ndim != want or (want == 3 and arr.shape[-1] != 3):
        raise WireError(f"'{name}' must be float32 {'(H, W)' if want == 2 else '(H, W, 3)'}, "
                        f"got {arr.dtype} {arr.shape}.")  # fmt: skip
    h, w = arr.shape[:2]
    if h < 1 or w < 1 or h * w > max_pixels:
        raise WireError(f"A {h}×{w} plane is outside the server's limit of {max_pixels} pixels.")
    return np.repeat(arr[..., None], 3, axis=-1) if want == 2 else arr


# ---------------------------------------------------------------------- embeddings
def _is_tensor(x) -> bool:
    return hasattr(x, "detach") and hasattr(x, "dtype") and hasattr(x, "device")


def _tensor_out(t, dtype: str):
    import torch

    t = t.detach()
    if t.dtype.is_floating_point and dtype == "bf16":
        bits = t.to(torch.bfloat16).contiguous().cpu().view(torch.int16).numpy()
        return ("bfloat16", bits.view(np.uint16))
    if t.dtype.is_floating_point and dtype == "fp16":
        t32 = t.float()
        if not t32.numel() or float(t32.abs().max()) <= _FP16_MAX:
            return t.to(torch.float16).cpu().numpy()
    return t.float().cpu().numpy() if t.dtype.is_floating_point else t.cpu().numpy()


def pack_embedding(emb: dict, dtype: str = "fp16", meta: dict | None = None) -> bytes:
    """An embedding dict (tensors, tensor lists, arrays, numbers, int tuples) as a message;
    float tensors in ``dtype`` (``fp16``/``bf16``/``fp32``)."""
    if dtype not in EMBEDDING_DTYPES:
        raise WireError(f"Embedding dtype must be one of {EMBEDDING_DTYPES}, not {dtype!r}.")
    arrays, entries = {}, {}
    for name, v in emb.items():
        if _is_tensor(v):
            arrays[name] = _tensor_out(v, dtype)
            entries[name] = {"kind": "tensor"}
        elif isinstance(v, (list, tuple)) and v and all(_is_tensor(t) for t in v):
            for i, t in enumerate(v):
                arrays[f"{name}.{i}"] = _tensor_out(t, dtype)
            entries[name] = {"kind": "tensor_list", "n": len(v)}
        elif isinstance(v, np.ndarray):
            arrays[name] = v
            entries[name] = {"kind": "array"}
        elif isinstance(v, tuple) and all(isinstance(x, (int, np.integer)) for x in v):
            entries[name] = {"kind": "tuple", "value": [int(x) for x in v]}
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) or v is None:
            entries[name] = {"kind": "value", "value": v.item() if hasattr(v, "item") else v}
        else:
            raise WireError(f"Embedding entry {name!r} of type {type(v).__name__} cannot travel.")
    return pack(arrays, {**(meta or {}), "entries": entries, "embedding_dtype": dtype})


def unpack_embedding(data: bytes, *, device="cpu", max_bytes: int = DEFAULT_MAX_BYTES):
    """``(embedding, meta)`` of a message from :func:`pack_embedding`; tensors come back as
    float32 torch tensors on ``device``."""
    arrays, meta, _ = unpack(data, max_bytes=max_bytes)
    entries = meta.get("entries")
    if not isinstance(entries, dict):
        raise WireError("An embedding message needs its 'entries'.")

    def tensor(key):
        import torch

        if key not in arrays:
            raise WireError(f"Embedding array {key!r} is missing.")
        a = arrays[key]
        a = a.astype(np.float32) if a.dtype.kind == "f" else a
        return torch.from_numpy(a).to(device)

    emb: dict = {}
    for name, spec in entries.items():
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind == "tensor":
            emb[name] = tensor(name)
        elif kind == "tensor_list" and isinstance(spec.get("n"), int) and 0 < spec["n"] <= 16:
            emb[name] = [tensor(f"{name}.{i}") for i in range(spec["n"])]
        elif kind == "array" and name in arrays:
            emb[name] = arrays[name]
        elif kind == "tuple" and isinstance(spec.get("value"), list):
            emb[name] = tuple(int(x) for x in spec["value"])
        elif kind == "value":
            emb[name] = spec.get("value")
        else:
            raise WireError(f"Embedding entry {name!r} is malformed.")
    return emb, meta
