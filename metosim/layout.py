"""Layouts: the polygons of a GDS cell in µm (through gdstk, the ``layout`` extra).
Imports no model: ``PolySlab.from_gds``, the entry point, extrudes them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def gds_polygons(gds: str | os.PathLike[str] | Any, cell: str | None, layer: int, datatype: int = 0) -> list[np.ndarray]:
    """Every polygon on (``layer``, ``datatype``) of ``cell`` (default: the single top
    cell), references flattened, as (N, 2) vertex arrays in µm (converted from the
    file's user unit). ``gds``: a file path or a ``gdstk.Library``."""
    try:
        import gdstk
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("reading GDS needs gdstk: pip install 'metosim[layout]'") from exc
    if isinstance(gds, gdstk.Library):
        library = gds
    else:
        path = os.fspath(gds)
        try:
            library = gdstk.read_gds(path)
        except OSError as exc:  # gdstk's own message names no file
            if not os.path.exists(path):
                raise FileNotFoundError(f"no GDS file at {path!r}") from exc
            raise OSError(f"cannot read the GDS file {path!r}: {exc}") from exc
    scale = library.unit / 1e-6  # user unit → µm
    if cell is None:
        tops = library.top_level()
        if len(tops) != 1:
            raise ValueError(f"the layout has {len(tops)} top cells ({[c.name for c in tops]}); name the cell")
        found = tops[0]
    else:
        matches = [c for c in library.cells if c.name == cell]
        if not matches:
            raise ValueError(f"no cell {cell!r} in the layout; it has {[c.name for c in library.cells]}")
        found = matches[0]
    polygons = found.get_polygons(layer=layer, datatype=datatype)
    if not polygons:
        raise ValueError(f"cell {found.name!r} has no polygon on layer {layer}/{datatype}")
    return [np.asarray(polygon.points, dtype=float) * scale for polygon in polygons]


__all__ = ["gds_polygons"]
