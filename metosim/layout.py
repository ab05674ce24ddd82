"""Layouts: GDS polygons as ``PolySlab`` structures (through gdstk, the ``layout``
extra). ``PolySlab.from_gds`` is the entry point."""

from __future__ import annotations

import os
from typing import Any

from .geometry import PolySlab


def polyslabs_from_gds(
    gds: str | os.PathLike[str] | Any,
    cell: str | None,
    layer: int,
    slab_bounds: tuple[float, float],
    datatype: int = 0,
    axis: int = 2,
) -> list[PolySlab]:
    """Every polygon on (``layer``, ``datatype``) of ``cell`` (default: the single top
    cell), with references flattened, extruded over ``slab_bounds`` (µm) along
    ``axis``. ``gds``: a file path or a ``gdstk.Library``. Coordinates are converted
    from the file's user unit to µm."""
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
    return [
        PolySlab(vertices=[(float(x) * scale, float(y) * scale) for x, y in polygon.points], slab_bounds=slab_bounds, axis=axis)  # type: ignore[arg-type]
        for polygon in polygons
    ]


__all__ = ["polyslabs_from_gds"]
