"""Where a run's images come from, declared once: the ``--data``, ``--resolution``, ``--channels`` and
``--limit`` flags, the ``data`` of a run's config.json and :func:`neurosql.data.load_data` are all checked
by :func:`neurosql.engine.config.check_config` against these declarations."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..engine.config import check_config, option

MAX_RESOLUTION = 4096  # largest resize target: bounds the memory of one image before any is read


@dataclass
class DataConfig:
    """A data source and how its images are shaped."""

    spec: str | None = option(None, "data spec: KIND:PATH, a bare PATH, or None for the embedded digits", type=str)
    resolution: int | None = option(None, "square side after the center crop; None = the layout's", type=int,
                                    within=f"[1, {MAX_RESOLUTION}]")
    channels: int | None = option(None, "1 (gray) or 3 (RGB); None = the layout's", type=int, choices=(1, 3))
    limit: int | None = option(None, "seeded stratified cap on the number of images", type=int, within="[1, inf)")
    options: dict | None = option(None, "layout options: axis, volumes, folds, window, pad_square", type=dict)

    @classmethod
    def checked(cls, spec=None, resolution=None, channels=None, limit=None, options=None) -> "DataConfig":
        """The settings, refused with a NeuroSQLError unless each fits its declaration (a path may be a PathLike)."""
        config = cls(os.fspath(spec) if isinstance(spec, os.PathLike) else spec, resolution, channels, limit, options)
        check_config(config)
        return config
