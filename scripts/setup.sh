#!/usr/bin/env bash
# Full set-up of napari-sam2 on a fresh Debian machine (run as root, or with sudo available).
# Idempotent: a second run only checks that everything is present.
#   bash scripts/setup.sh            # system packages + .venv + package with test and docs extras
# Environment:
#   VENV=path      where the virtual environment goes (default: .venv in the repo)
#   SKIP_APT=1     do not touch system packages
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
VENV="${VENV:-$here/.venv}"
PY="${PYTHON:-python3}"

apt_pkgs=(xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libfontconfig1 libxkbcommon-x11-0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
  libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1 libdbus-1-3 libglib2.0-0
  orthanc orthanc-dicomweb)  # a private Orthanc PACS for tests/test_dicomweb.py (its service is not used)

if [ "${SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "[setup] installing system packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the tests start private Orthanc instances: the package's own service is not needed
    if [[ " ${missing[*]} " == *" orthanc "* ]] && [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now orthanc >/dev/null 2>&1 || true
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch first (pinned), so nothing else pulls a different build.
if ! "$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  echo "[setup] installing torch==2.14.1 torchvision==0.29.1"
  "${pip[@]}" install "torch==2.14.1" "torchvision==0.29.1"
fi
"${pip[@]}" install "setuptools>=61" "setuptools-scm>=8" wheel

# sam2 is an sdist whose build would compile CUDA code and pull its own torch:
# build it against the torch above, without the CUDA extension.
if ! "$VENV/bin/python" -c "import sam2" 2>/dev/null; then
  echo "[setup] installing sam2 (SAM2_BUILD_CUDA=0)"
  SAM2_BUILD_CUDA=0 "${pip[@]}" install --no-build-isolation "sam2>=1.0,<1.2"
fi

echo "[setup] installing napari-sam2 with test and docs extras"
SAM2_BUILD_CUDA=0 "${pip[@]}" install --no-build-isolation -e ".[testing,all,docs]"
echo "[setup] done. Activate with: source $VENV/bin/activate"
