"""The SAM 2 model registry: sizes, versions, config paths, checkpoint names and hub ids.

A leaf module (no imports of the rest of the package but :mod:`..errors`), so anything
that needs a :class:`ModelSpec` or :data:`ARCH` imports it without pulling in loading.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownModelError

SIZES = ("tiny", "small", "base_plus", "large")
VERSIONS = ("2.1", "2.0")
_DL_BASE = {
    "2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
    "2.0": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
}
# (trunk embed_dim, number of trunk blocks) identifies a size in a state dict
ARCH = {"tiny": (96, 12), "small": (96, 16), "base_plus": (112, 24), "large": (144, 48)}
_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
_HF = {"tiny": "tiny", "small": "small", "base_plus": "base-plus", "large": "large"}


@dataclass(frozen=True)
class ModelSpec:
    """One SAM 2 model: size, version, config, checkpoint file name and hub id."""

    size: str
    version: str = "2.1"

    @property
    def config(self) -> str:
        """Config path inside the ``sam2`` package (the name ``build_sam2`` takes)."""
        if self.version == "2.1":
            return f"configs/sam2.1/sam2.1_hiera_{_SHORT[self.size]}.yaml"
        return f"configs/sam2/sam2_hiera_{_SHORT[self.size]}.yaml"

    @property
    def checkpoint_name(self) -> str:
        prefix = "sam2.1" if self.version == "2.1" else "sam2"
        return f"{prefix}_hiera_{self.size}.pt"

    @property
    def hf_id(self) -> str:
        prefix = "sam2.1" if self.version == "2.1" else "sam2"
        return f"facebook/{prefix}-hiera-{_HF[self.size]}"

    @property
    def url(self) -> str:
        return _DL_BASE[self.version] + self.checkpoint_name

    @property
    def name(self) -> str:
        return f"sam{self.version}-{self.size}"


def get_spec(model: str = "tiny", version: str | None = None) -> ModelSpec:
    """Parse ``"tiny"``, ``"base_plus"``, ``"base-plus"``, ``"sam2.1-small"``, a hub id..."""
    name = str(model).strip().lower().replace("-", "_").replace("+", "_plus")
    ver = version
    for prefix, v in (
        ("facebook/sam2.1_hiera_", "2.1"),
        ("facebook/sam2_hiera_", "2.0"),
        ("sam2.1_hiera_", "2.1"),
        ("sam2_hiera_", "2.0"),
        ("sam2.1_", "2.1"),
        ("sam2_", "2.0"),
        ("sam2.0_", "2.0"),
    ):
        if name.startswith(prefix):
            name, ver = name[len(prefix) :], ver or v
            break
    name = {
        "t": "tiny",
        "s": "small",
        "b_plus": "base_plus",
        "b": "base_plus",
        "base": "base_plus",
        "l": "large",
    }.get(name, name)
    ver = ver or "2.1"
    if name not in SIZES or ver not in VERSIONS:
        raise UnknownModelError(
            f"Unknown SAM 2 model {model!r}: choose a size among {', '.join(SIZES)} "
            f"and a version among {', '.join(VERSIONS)}."
        )
    return ModelSpec(name, ver)
