"""Many files in one go, in-process or on dask.distributed (see docs/batch.md).

>>> from napari_sam2.batch import segment_files
>>> summary = segment_files("data/*.tif", "out/", prompts="prompts.csv")
>>> summary.counts
{'done': 12, 'skipped': 0, 'failed': 1}
>>> summary.write("out/summary.json")

``napari-sam2 segment FILES... --out DIR`` is the command-line front of this package.
"""

from ._api import segment_files
from ._files import InputError, expand_inputs, read_image
from ._napari import layer_files, segment_layers
from ._planes import is_single, parse_plane_spec
from ._prompts import PlanePrompts, PromptFileError, PromptTable
from ._prompts import from_lists as prompts_from_lists
from ._results import FileResult, Summary
from ._work import Job, ModelOptions, Settings, run_job

__all__ = [
    "FileResult",
    "InputError",
    "expand_inputs",
    "Job",
    "ModelOptions",
    "PlanePrompts",
    "PromptFileError",
    "PromptTable",
    "Settings",
    "Summary",
    "is_single",
    "layer_files",
    "parse_plane_spec",
    "prompts_from_lists",
    "read_image",
    "run_job",
    "segment_files",
    "segment_layers",
]
