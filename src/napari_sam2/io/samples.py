"""Sample data: small real microscopy images shipped with napari-sam2.

The files live in ``napari_sam2/io/data`` (see ``ATTRIBUTION.md`` there and
``docs/sample-data.md``). In napari they appear under *File > Open Sample >
SAM 2 segmentation*; from a script use :func:`sample_path` or the loaders::

    from napari_sam2.io.samples import nuclei_3d, sample_path
    (data, kwargs, layer_type), = nuclei_3d()
    path = sample_path("nuclei_3d")
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .tiff.reader import read_tiff

__all__ = ["SAMPLES", "SampleInfo", "bacteria_timelapse", "nuclei_2d", "nuclei_3d", "sample_path"]


@dataclass(frozen=True)
class SampleInfo:
    """One sample image: its file, layer name and attribution.

    Attributes
    ----------
    filename : str
        File name in ``napari_sam2/io/data``.
    name : str
        Layer name shown in napari.
    description : str
        What the image shows.
    source : str
        Where it came from (repository, commit, path).
    licence : str
        Licence of the file.
    citation : str
        What to cite when using it.
    """

    filename: str
    name: str
    description: str
    source: str
    licence: str
    citation: str


SAMPLES: dict[str, SampleInfo] = {
    "nuclei_2d": SampleInfo(
        filename="nuclei2d_dsb2018_uint16.tif",
        name="nuclei 2D (DSB 2018)",
        description="2D fluorescence nuclei, 512x512, uint16; pixel size unknown",
        source="stardist/stardist@650d3a19 stardist/data/images/img2d.tif",
        licence="CC0 (image, BBBC038); repository BSD-3-Clause",
        citation="Caicedo et al., Nature Methods 16, 1247-1253 (2019), BBBC038",
    ),
    "nuclei_3d": SampleInfo(
        filename="nuclei3d_ovule_zyx_uint8.tif",
        name="nuclei 3D (ovule)",
        description="Confocal Z-stack of Arabidopsis ovule nuclei, 100x100x100, uint8, "
        "voxel 0.2837 x 0.1268 x 0.1268 um",
        source="kreshuklab/plant-seg@9d748063 tests/resources/data/train/1135_mini.h5",
        licence="MIT (c) 2024 EMBL",
        citation="Vijayan et al., Development 151 (2024), doi:10.1242/dev.202800",
    ),
    "bacteria_timelapse": SampleInfo(
        filename="bacteria_phase_tyx_uint8_t0-9.tif",
        name="bacteria time-lapse (phase)",
        description="Phase-contrast time-lapse of an E. coli micro-colony, 10 frames of "
        "320x320, uint8; frame interval and pixel size unknown",
        source="bentaculum/divisualisation@8b55d184 data/bacteria/img/t000020-t000029.tif",
        licence="MIT (c) 2025 Benjamin Gallusser",
        citation="van Vliet et al., Cell Systems 6 (2018), doi:10.1016/j.cels.2018.03.009",
    ),
}
"""The shipped samples, keyed like the ``sample_data`` keys in ``napari.yaml``."""


def sample_path(key: str) -> Path:
    """Return the path of a sample file.

    Parameters
    ----------
    key : str
        ``"nuclei_2d"``, ``"nuclei_3d"`` or ``"bacteria_timelapse"``.

    Returns
    -------
    pathlib.Path
        The TIFF file inside the installed package.

    Raises
    ------
    KeyError
        If ``key`` is not a known sample.
    FileNotFoundError
        If the package was installed without its data files.
    """
    if key not in SAMPLES:
        raise KeyError(f"unknown sample {key!r}; choose one of {sorted(SAMPLES)}")
    path = Path(str(files("napari_sam2.io").joinpath("data", SAMPLES[key].filename)))
    if not path.is_file():
        raise FileNotFoundError(f"sample file missing from the installation: {path}")
    return path


def _load(key: str) -> list[tuple]:
    info = SAMPLES[key]
    layers = read_tiff(sample_path(key), lazy=False)
    out = []
    for data, kwargs, layer_type in layers:
        kwargs = {
            **kwargs,
            "name": info.name,
            "colormap": "gray",
            "metadata": {
                "sample": {
                    "key": key,
                    "source": info.source,
                    "licence": info.licence,
                    "citation": info.citation,
                }
            },
        }
        out.append((data, kwargs, layer_type))
    return out


def nuclei_2d() -> list[tuple]:
    """2D fluorescence nuclei (uint16, 512x512), for a first click-to-segment.

    Returns
    -------
    list of tuple
        One image LayerData tuple with axis labels ``("y", "x")``.
    """
    return _load("nuclei_2d")


def nuclei_3d() -> list[tuple]:
    """3D confocal nuclei stack (ZYX, uint8) with its physical voxel size in µm.

    Returns
    -------
    list of tuple
        One image LayerData tuple, scale ≈ (0.2837, 0.1268, 0.1268) micrometer,
        axis labels ``("z", "y", "x")``.
    """
    return _load("nuclei_3d")


def bacteria_timelapse() -> list[tuple]:
    """Phase-contrast E. coli time-lapse (TYX, 10 frames, uint8), for propagation in T.

    Returns
    -------
    list of tuple
        One image LayerData tuple with axis labels ``("t", "y", "x")``.
    """
    return _load("bacteria_timelapse")
