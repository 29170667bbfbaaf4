"""``python -m napari_sam2.cli``: the ``napari-sam2`` console script."""

import sys

from . import main

sys.exit(main())
