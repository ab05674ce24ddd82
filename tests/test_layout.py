"""GDS layouts: polygons read through gdstk from a file the test writes itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import metosim as ms

import gdstk  # noqa: E402

F0 = ms.C_0 / 1.55e-6


@pytest.fixture()
def gds_file(tmp_path: Path) -> Path:
    """TOP (units of 1 nm): a 2 × 0.5 µm guide on layer 1 and, through a reference to
    RING, a ring (R 1.0–1.5 µm) on layer 2 centred at (3, 0) µm."""
    library = gdstk.Library(unit=1e-9, precision=1e-12)
    top, ring = library.new_cell("TOP"), library.new_cell("RING")
    top.add(gdstk.rectangle((-1000, -250), (1000, 250), layer=1))
    ring.add(gdstk.ellipse((0, 0), 1500, inner_radius=1000, layer=2, tolerance=2))
    top.add(gdstk.Reference(ring, (3000, 0)))
    path = tmp_path / "device.gds"
    library.write_gds(str(path))
    return path


def test_polygons_come_back_in_micrometres_with_references_flattened(gds_file: Path) -> None:
    (guide,) = ms.PolySlab.from_gds(gds_file, cell=None, layer=1, slab_bounds=(-0.11, 0.11))
    lo, hi = guide.bounds()
    np.testing.assert_allclose(lo, (-1.0, -0.25, -0.11))
    np.testing.assert_allclose(hi, (1.0, 0.25, 0.11))
    (ring,) = ms.PolySlab.from_gds(gds_file, cell="TOP", layer=2, slab_bounds=(0, 0.22))
    x = np.array([3.0, 3.0 + 1.25, 3.0 + 0.5, 3.0 + 1.6])
    inside = ring.inside(x, np.zeros(4), np.full(4, 0.1))
    assert list(inside) == [False, True, False, False]  # the hole, the ring, the hole, outside


def test_a_drawn_guide_has_the_mode_of_the_same_guide_built_from_a_box(gds_file: Path) -> None:
    (drawn,) = ms.PolySlab.from_gds(gds_file, cell="TOP", layer=1, slab_bounds=(-1, 1))
    def n_eff(geometry: object) -> float:
        sim = ms.Simulation(
            size=(1.0, 3.0, 0), grid_spec=ms.GridSpec.auto(wavelength=1.55, min_steps_per_wvl=20), run_time=1e-15,
            medium=ms.material_library["SiO2"].medium,
            structures=[ms.Structure(geometry=geometry, medium=ms.material_library["Si"].medium)],
        )
        return float(ms.ModeSolver(sim, ms.Box(size=(0, ms.inf, ms.inf)), ms.ModeSpec(filter_pol="te"), [F0]).solve().n_eff[0, 0])

    box = ms.Box(size=(2.0, 0.5, ms.inf))
    # The same meshing of the same shape: equal to rounding.
    assert abs(n_eff(drawn) - n_eff(box)) < 1e-9


def test_layout_errors_name_what_is_there(gds_file: Path) -> None:
    with pytest.raises(ValueError, match=r"no cell 'NOPE'.*\['TOP', 'RING'\]"):
        ms.PolySlab.from_gds(gds_file, cell="NOPE", layer=1, slab_bounds=(0, 1))
    with pytest.raises(ValueError, match="no polygon on layer 7/0"):
        ms.PolySlab.from_gds(gds_file, cell="TOP", layer=7, slab_bounds=(0, 1))
    missing = gds_file.parent / "no-such-chip.gds"
    with pytest.raises(FileNotFoundError, match=f"no GDS file at '{missing}'"):
        ms.PolySlab.from_gds(missing, cell="TOP", layer=1, slab_bounds=(0, 1))
    garbage = gds_file.parent / "garbage.gds"
    garbage.write_bytes(b"not a layout")
    with pytest.raises(OSError, match=f"cannot read the GDS file '{garbage}'"):
        ms.PolySlab.from_gds(garbage, cell="TOP", layer=1, slab_bounds=(0, 1))
