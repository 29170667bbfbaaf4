"""Faults between the remote backend and napari-sam2 serve: a server killed in the middle of
a request gives a typed error (no hang), a restarted server is picked up by the same
client, and the command line refuses unsafe settings."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from napari_sam2.cli import main  # noqa: E402
from napari_sam2.engine import Segmenter  # noqa: E402
from napari_sam2.engine.backends.remote import ServerUnavailableError, connect  # noqa: E402
from napari_sam2.server import ServerConfigError, check_bind, load_tokens  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
TOKEN = "fault-token-" + "z" * 24

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    import uvicorn
    from napari_sam2.engine.backends.classical import ClassicalBackend
    from napari_sam2.server import build

    port, marker, mode = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    class Hangs(ClassicalBackend):
        def encode(self, image, cancel=None):
            marker.touch()  # the request reached the encoder
            threading.Event().wait(300)  # until the process is killed

    backend = Hangs() if mode == "hang" else ClassicalBackend()
    built = build(backend, tokens=[sys.argv[4]])
    uvicorn.run(built.app, host="127.0.0.1", port=port, log_level="warning")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path, port, mode):
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    marker = tmp_path / f"started-{mode}"
    proc = subprocess.Popen([sys.executable, str(script), str(port), str(marker), mode, TOKEN],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(1200):  # wait for /health (model-free start: a few seconds)
        if proc.poll() is not None:
            raise RuntimeError("the server process ended before it listened")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc, marker
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)
    proc.kill()
    raise RuntimeError("the server process did not start")


def test_server_killed_mid_request_gives_a_typed_error_and_a_restart_is_picked_up(tmp_path):
    port = _free_port()
    proc, marker = _start(tmp_path, port, "hang")
    try:
        be = connect(f"http://127.0.0.1:{port}", TOKEN, retries=2, timeout=60)
        seg = Segmenter(predictor=be)
        img = np.zeros((40, 50), np.float32)
        img[10:30, 10:30] = 1.0
        seg.set_image(img)
        labels = np.zeros(img.shape, np.int32)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(seg.segment_into, labels, points=[(20, 20)])
            for _ in range(1200):  # until the server's encoder holds the request
                if marker.exists() or fut.done():
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.05)
            assert marker.exists()
            proc.kill()
            proc.wait(30)
            with pytest.raises(ServerUnavailableError, match="unreachable or disconnected"):
                fut.result(60)
        assert labels.max() == 0  # nothing written
        proc, _ = _start(tmp_path, port, "ok")  # same address, same model: the same client
        assert seg.segment_into(labels, points=[(20, 20)]) == [1]
        assert labels[20, 20] == 1 and labels[0, 0] == 0
    finally:
        proc.kill()
        proc.wait(30)


def test_unreachable_server_is_a_typed_error():
    port = _free_port()  # nothing listens there
    with pytest.raises(ServerUnavailableError, match="tried 4 time"):
        Segmenter(server=f"http://127.0.0.1:{port}", token=TOKEN).backend  # noqa: B018
    with pytest.raises(ServerUnavailableError):
        connect(f"http://127.0.0.1:{port}", TOKEN, retries=1)


def test_no_auth_binds_loopback_only(capsys):
    check_bind("127.0.0.1", auth=False)
    check_bind("::1", auth=False)
    check_bind("0.0.0.0", auth=True)
    for host in ("0.0.0.0", "192.168.1.20", "gpu-lab-1"):
        with pytest.raises(ServerConfigError, match="only binds loopback"):
            check_bind(host, auth=False)
    assert main(["serve", "--no-auth", "--host", "0.0.0.0", "--backend", "classical"]) == 2
    assert "only binds loopback" in capsys.readouterr().err


def test_token_file_is_created_owner_only_and_checked(tmp_path):
    path = tmp_path / "cfg" / "token"
    tokens, created = load_tokens(path)
    assert created and len(tokens) == 1 and len(tokens[0]) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_tokens(path)
    assert again == tokens and not created
    path.write_text("# comment\n\nshort\n")
    with pytest.raises(ServerConfigError, match="shorter than 16"):
        load_tokens(path)
    path.write_text("# only a comment\n")
    with pytest.raises(ServerConfigError, match="holds no token"):
        load_tokens(path)


def test_constant_time_token_check():
    from napari_sam2.server import TokenSet

    ts = TokenSet(["a" * 20, "b" * 20])
    assert ts.check("Bearer " + "b" * 20) == ts.check("Bearer " + "b" * 20) is not None
    assert ts.check("Bearer " + "a" * 20) != ts.check("Bearer " + "b" * 20)
    assert ts.check("Bearer " + "c" * 20) is None
    assert ts.check("b" * 20) is None and ts.check(None) is None
