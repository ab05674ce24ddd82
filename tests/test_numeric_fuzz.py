"""Every numeric field of every model, replaced by extremes (denormals, ±0, ±1e308,
NaN, ±inf, ±2⁶³, 2⁶⁴) and by hypothesis's own numbers: validation either accepts the
value, and then the grid, the estimate and a JSON round trip work, or raises a
ValidationError — never anything else (over REST anything else is a 500)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import metosim as ms
from metosim.inverse.examples import waveguide_bend

from .conftest import F_UNIT
from .test_bloch import half_space, oblique
from .test_engine import PULSE, kitchen_sink

EXTREMES = (5e-324, -5e-324, 0.0, -0.0, 1e308, -1e308, math.nan, math.inf, -math.inf, 2**63, -(2**63), 2**64)


def everything_3d() -> ms.Simulation:
    """3D, the models the 2D kitchen sink lacks: an auto grid with an override box,
    a Drude–Lorentz medium, symmetry, a mode source and monitor, a far-field box."""
    guide = ms.Structure(geometry=ms.Box(size=(ms.inf, 0.5, 0.22)), medium=ms.Medium(permittivity=12.0))
    return ms.Simulation(
        size=(3.0, 2.0, 1.5),
        grid_spec=ms.GridSpec.auto(wavelength=1.0, min_steps_per_wvl=8, override_structures=[ms.MeshOverride(size=(0.4, 0.4, 0.4), dl=0.05)]),
        run_time=20e-15,
        structures=[guide, ms.Structure(geometry=ms.Sphere(center=(0.8, 0, 0.3), radius=0.2), medium=ms.material_library["Au"].medium)],
        sources=[ms.ModeSource(center=(-1.0, 0, 0), size=(0, 1.5, 1.2), mode_spec=ms.ModeSpec(num_modes=2, target_neff=3.0), source_time=PULSE)],
        monitors=[
            ms.ModeMonitor(name="out", center=(1.0, 0, 0), size=(0, 1.5, 1.2), freqs=[F_UNIT], mode_spec=ms.ModeSpec(num_modes=2)),
            ms.FieldProjectionAngleMonitor(name="far", size=(1.0, 1.0, 1.0), freqs=[F_UNIT], theta=[0.3, 1.2], phi=[0.0, 2.0]),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=6)),
        symmetry=(0, -1, 0),
    )


def check_simulation(sim: ms.Simulation) -> None:
    sim.grid, sim.estimate()
    assert type(sim).model_validate_json(sim.model_dump_json()).model_dump_json() == sim.model_dump_json()


def check_problem(problem: Any) -> None:
    check_simulation(problem.simulation)
    problem.shape
    assert type(problem).model_validate_json(problem.model_dump_json()).model_dump_json() == problem.model_dump_json()


CASES: dict[str, tuple[BaseModel, Callable[[Any], None]]] = {
    "2D kitchen sink": (kitchen_sink(), check_simulation),
    "3D everything else": (everything_3d(), check_simulation),
    "oblique plane wave, Bloch": (half_space(oblique(30.0, "Ex"), (0.04, 5.0, 0.0), 0.02), check_simulation),
    "inverse problem": (waveguide_bend(region=1.0, wavelengths=(1.5, 1.6), steps_per_wvl=8), check_problem),
}


def numeric_paths(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths to every int or float (not bool) leaf of a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from numeric_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from numeric_paths(value, (*path, index))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path


def replaced(document: Any, path: tuple, value: Any) -> Any:
    """A deep copy of ``document`` with ``value`` at ``path``."""
    copy = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def only_validation_errors(name: str, path: tuple, value: Any) -> None:
    model, check = CASES[name]
    document = replaced(json.loads(model.model_dump_json()), path, value)
    for parse in (lambda: type(model).model_validate(document), lambda: type(model).model_validate_json(json.dumps(document))):
        try:
            accepted = parse()
        except ValidationError:
            continue
        check(accepted)  # anything raised here fails the test: it would be a 500


@pytest.mark.parametrize("name", list(CASES))
def test_every_numeric_field_at_every_extreme(name: str) -> None:
    model, _ = CASES[name]
    paths = list(numeric_paths(json.loads(model.model_dump_json())))
    assert len(paths) > 15  # the case really has numbers to replace
    for path in paths:
        for value in EXTREMES:
            try:
                only_validation_errors(name, path, value)
            except Exception as error:  # noqa: BLE001 - name the field and value that broke
                raise AssertionError(f"{name}: {'.'.join(map(str, path))} = {value!r} raised {type(error).__name__}: {error}") from error


@st.composite
def field_and_value(draw: st.DrawFn) -> tuple[str, tuple, Any]:
    name = draw(st.sampled_from(list(CASES)))
    path = draw(st.sampled_from(list(numeric_paths(json.loads(CASES[name][0].model_dump_json())))))
    value = draw(st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.floats(-1e-3, 1e-3), st.integers(-3, 3)))
    return name, path, value


@given(field_and_value())
@settings(max_examples=300, deadline=None)
def test_any_number_in_any_numeric_field(case: tuple[str, tuple, Any]) -> None:
    only_validation_errors(*case)
