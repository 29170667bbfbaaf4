"""A private Orthanc server (with its DICOMweb plugin) for the PACS tests.

Each instance gets its own storage folder, a free loopback HTTP port (and a free DICOM
port, though its DICOM server is off), HTTP basic authentication with a test user, and
is stopped afterwards. ``scripts/setup.sh`` installs the Debian packages ``orthanc`` and
``orthanc-dicomweb``; the Debian service itself is never needed.

Without the Orthanc binary the fixture fails with a message saying how to install it;
only ``NAPARI_SAM2_SKIP_ORTHANC=1`` turns that into a skip (for machines where apt is not
available; CI must not set it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ORTHANC_BINARY = os.environ.get("NAPARI_SAM2_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = os.environ.get(
    "NAPARI_SAM2_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
)
SKIP_ENV = "NAPARI_SAM2_SKIP_ORTHANC"
USER, PASSWORD = "sam2test", "s3cret-pacs"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_orthanc() -> None:
    """Fail (or, with NAPARI_SAM2_SKIP_ORTHANC=1, skip) when Orthanc is not installed."""
    binary = shutil.which(ORTHANC_BINARY) or (
        ORTHANC_BINARY if os.access(ORTHANC_BINARY, os.X_OK) else None
    )
    missing = [p for p in (binary, DICOMWEB_PLUGIN) if not p or not Path(p).exists()]
    if binary is None or missing:
        msg = (
            f"Orthanc with its DICOMweb plugin is needed ({ORTHANC_BINARY}, {DICOMWEB_PLUGIN}): "
            "run scripts/setup.sh (apt-get install orthanc orthanc-dicomweb)"
        )
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(msg + f"; skipped because {SKIP_ENV}=1")
        pytest.fail(msg, pytrace=False)


@dataclass
class Orthanc:
    """A running private Orthanc: ``url`` is its DICOMweb root."""

    folder: Path
    port: int
    extra: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.folder / "orthanc.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/dicom-web"

    def _session(self):
        import requests

        session = requests.Session()
        session.auth = (USER, PASSWORD)
        return session

    def upload(self, paths) -> list[str]:
        """POST each file to /instances; returns the Orthanc ids."""
        ids = []
        with self._session() as session:
            for path in paths:
                reply = session.post(f"{self.base}/instances", data=Path(path).read_bytes())
                reply.raise_for_status()
                ids.append(reply.json()["ID"])
        return ids

    def upload_bytes(self, blobs) -> None:
        with self._session() as session:
            for blob in blobs:
                session.post(f"{self.base}/instances", data=blob).raise_for_status()

    def start(self) -> Orthanc:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "napari-sam2-test",
            "HttpPort": self.port,
            "DicomPort": _free_port(),
            "DicomServerEnabled": False,
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            **self.extra,
        }
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=1), encoding="utf-8")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [ORTHANC_BINARY, str(cfg)], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Poll /system until it answers (the process dying ends the wait at once)."""
        import requests

        deadline = time.monotonic() + START_TIMEOUT_S
        with self._session() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited: {self.log.read_text(errors='replace')}")
                try:
                    system = session.get(f"{self.base}/system", timeout=2).status_code
                    if system == 200 and session.get(f"{self.url}/studies").status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
                time.sleep(0.1)  # polling interval of a readiness wait, not a test assert
        self.stop()
        raise RuntimeError(f"Orthanc did not start in {START_TIMEOUT_S} s: see {self.log}")

    def stop(self, grace: float = 30.0) -> None:
        """Terminate; kill after ``grace`` seconds (open keep-alive connections can hold
        Orthanc's HTTP server that long)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def start_orthanc(folder: Path, extra: dict | None = None) -> Orthanc:
    """A started private Orthanc in ``folder``; ``extra``: more configuration keys."""
    require_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    return Orthanc(folder, _free_port(), dict(extra or {})).start()
