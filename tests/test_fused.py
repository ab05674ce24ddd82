"""The fused time step (``kernel="fused"``, :mod:`metosim.kernels.fused`): each half
step as one Pallas kernel. Here, without a GPU, the kernels run in Pallas's interpreter
and must equal the XLA step — to float64 rounding on a 3D guide with a mode source,
a dispersive block and every monitor kind, to float32 rounding on the standard
problem (scaled down), and in 2D with one polarisation stepped; the same kernels lower
to Triton for CUDA; what they do not support yet is refused by name."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metosim as ms
from metosim.kernels import fused
from metosim.kernels.solver import EngineInputError, _setup, solve
from metosim.kernels.yee import single_polarisation

sys.path.insert(0, str(Path(__file__).parent))
from sharded_runs import FREQS, OXIDE, PULSE, bloch, differences, guide, symmetric  # noqa: E402
from test_polarisation import PULSE as PULSE_2D, TE, TM, scatterer  # noqa: E402

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from engine import dipole_problem  # noqa: E402


def standard_small(steps: int = 300) -> ms.Simulation:
    """The standard problem (ε = 4 sphere, Ez dipole, 12-cell CPML, a 3-frequency DFT
    plane, float32) on 30³ cells: 4 kernel programs in the interpreter, the last partial."""
    return dipole_problem((0.6, 0.6, 0.6), ms.Sphere(radius=0.12), (0.09, 0.06, 0.03), "Ez", steps)


def compare(sim: ms.Simulation) -> tuple[dict[str, float], dict, dict]:
    xla, fast = solve(sim, backend="jax"), solve(sim, backend="jax", kernel="fused")
    assert (xla.info["kernel"], fast.info["kernel"]) == ("xla", "fused")
    assert fast.info["time_steps"] == xla.info["time_steps"]
    return differences(xla, fast), xla.info, fast.info


def test_fused_equals_xla_on_a_dispersive_guide() -> None:
    """Mode source (TFSF sheets), Lorentz block, CPML on every face, mode, flux, field,
    time and far-field monitors, float64: the same arithmetic cell for cell."""
    diffs, _, _ = compare(guide())
    print(max(diffs.values()), diffs)
    assert len(diffs) >= 15
    assert max(diffs.values()) < 1e-12, diffs  # measured 1.5e-13 (a near-zero component), most ≤ 4e-14


def test_fused_equals_xla_on_the_standard_problem_in_float32() -> None:
    diffs, _, info = compare(standard_small())
    print(max(diffs.values()), diffs)
    assert info["num_cells"] == 30**3
    # float32 sums in another order (fused multiply-adds) over 300 steps; measured 4.8e-6.
    assert max(diffs.values()) < 2e-5, diffs


@pytest.mark.parametrize(("polarization", "stepped"), [("Ez", TM), ("Hz", TE)])
def test_fused_steps_one_polarisation_in_2d(polarization: str, stepped: list[str]) -> None:
    sim = scatterer([ms.PointDipole(center=(0.1, 0.13, 0), polarization=polarization, source_time=PULSE_2D)]).model_copy(update={"precision": "float64"})
    diffs, _, info = compare(sim)
    assert info["stepped_components"] == stepped
    assert max(diffs.values()) < 1e-12, diffs


def test_fused_equals_xla_with_periodic_faces() -> None:
    """A plane wave at normal incidence onto glass with a Drude block, periodic in x and
    z: the wrap reads the opposite face; x periodic needs 6 ghost planes here (a block
    of 1024 cells over planes of 24 × 8)."""
    source = ms.PlaneWave(center=(0, -0.4, 0), size=(ms.inf, 0, ms.inf), direction="+y", polarization="Ez", source_time=PULSE)
    periodic = ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic())
    sim = ms.Simulation(
        size=(0.8, 1.2, 0.4), grid_spec=ms.GridSpec.uniform(0.05), run_time=30e-15, precision="float64",
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, 1, 0), size=(ms.inf, 2, ms.inf)), medium=OXIDE),
            ms.Structure(geometry=ms.Box(center=(0.1, 0.3, 0), size=(0.3, 0.2, ms.inf)), medium=ms.Drude(poles=[(1.5 * ms.C_0 / 1.55e-6, 0.05 * ms.C_0 / 1.55e-6)])),
        ],
        sources=[source],
        monitors=[
            ms.FluxMonitor(name="R", center=(0, -0.5, 0), size=(ms.inf, 0, ms.inf), freqs=FREQS, normal_dir="-"),
            ms.FluxMonitor(name="T", center=(0, 0.45, 0), size=(ms.inf, 0, ms.inf), freqs=FREQS),
            ms.FieldMonitor(name="plane", center=(0, 0, 0), size=(ms.inf, ms.inf, 0), freqs=[FREQS[1]]),
        ],
        boundary_spec=ms.BoundarySpec(x=periodic, y=ms.Boundary(minus=ms.PML(num_layers=8), plus=ms.PML(num_layers=8)), z=periodic),
    )
    layout = _setup(sim).layout
    assert fused.plan(layout, interpret=True) == fused.Plan(block=1024, planes=6)
    diffs, _, _ = compare(sim)
    print(max(diffs.values()), diffs)
    assert max(diffs.values()) < 1e-12, diffs


def test_fused_equals_xla_with_mirror_symmetry_and_pmc_walls() -> None:
    """A dipole in a glass cylinder with symmetry in x and y (the halved grid's minus
    faces are PMC walls: the odd image of H), and the same with PMC plus faces along z
    (tangential H zeroed on the last node)."""
    sim = symmetric()
    diffs, _, info = compare(sim)
    print(max(diffs.values()), diffs)
    assert info["symmetry"] == [1, 1, 0] and max(diffs.values()) < 1e-12, diffs
    pmc = ms.Boundary(minus=ms.PML(num_layers=6), plus=ms.PMCBoundary())
    walled = sim.model_copy(update={"symmetry": (0, 0, 0), "boundary_spec": sim.boundary_spec.model_copy(update={"z": pmc})})
    xla, fast = solve(walled, backend="jax"), solve(walled, backend="jax", kernel="fused")
    # Over the whole grid the components the mirror planes make zero are rounding noise
    # (1e-14 of the field): compare each monitor against its largest component.
    for name, data in xla.monitors.items():
        values = {v: (np.asarray(data[v]), np.asarray(fast.monitors[name][v])) for v in data.data_vars} if hasattr(data, "data_vars") else {"": (np.asarray(data), np.asarray(fast.monitors[name]))}
        scale = max(float(np.abs(a).max()) for a, _ in values.values())
        worst = max(float(np.abs(a - b).max()) for a, b in values.values()) / scale
        assert worst < 1e-12, (name, worst)  # measured ≤ 4.7e-16


def test_fused_equals_xla_on_a_graded_grid() -> None:
    """The standard problem (scaled down, float64) on cells grading from 17 to 26 nm and
    back along every axis: 1/step per node, gathered like the CPML profiles."""
    xi = np.linspace(-0.3, 0.3, 29)
    coords = xi + 0.02 * np.sin(np.pi * xi / 0.3)
    sim = standard_small(200).model_copy(update={"grid_spec": ms.GridSpec.custom(x=coords, y=coords, z=coords), "precision": "float64"})
    diffs, _, info = compare(sim)
    print(max(diffs.values()), diffs)
    assert info["num_cells"] == 28**3 and max(diffs.values()) < 1e-12, diffs


def test_fused_kernels_lower_to_triton_for_cuda() -> None:
    """What can be checked of the GPU path without a GPU: the whole step, both kernels,
    lowers for CUDA through Pallas's Triton backend (Triton's own checks on the kernel
    IR, e.g. power-of-two block shapes, run at this lowering)."""
    problem = _setup(guide().model_copy(update={"precision": "float32"}))
    layout = single_polarisation(problem.layout)
    plan = fused.plan(layout, interpret=False)
    layout, state, params, _ = fused.prepare(layout, problem.state, problem.params, problem.eps, plan)
    step = fused.make_step(layout, plan, interpret=False)
    lowered = jax.jit(lambda s, p: step(s, p, jnp.int32(0))).trace(state, params).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("__gpu$xla.gpu.triton") == 2


def test_fused_state_converts_back_exactly() -> None:
    """Checkpoints and results hold the XLA step's state: ghost planes off, ψ in slabs."""
    problem = _setup(standard_small())
    rng = np.random.default_rng(0)
    state = {**problem.state, "psi": {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in problem.state["psi"].items()}}
    plan = fused.Plan(block=1024, planes=2)
    layout, fused_state, _, _ = fused.prepare(problem.layout, state, problem.params, problem.eps, plan)
    assert fused_state["E"][0].shape == (32, 30, 30)
    back = fused.restore(layout, fused_state, plan)
    assert back["psi"].keys() == state["psi"].keys()
    for key in state["psi"]:
        np.testing.assert_array_equal(back["psi"][key], state["psi"][key])


def test_fused_refusals_name_the_reason() -> None:
    sim = standard_small(20)
    with pytest.raises(EngineInputError, match="kernel must be 'xla' or 'fused'"):
        solve(sim, kernel="triton")
    with pytest.raises(EngineInputError, match="needs the JAX backend"):
        solve(sim, backend="numpy", kernel="fused")
    with pytest.raises(EngineInputError, match=r"cannot step this simulation yet \(Bloch boundaries \(complex fields\)\); use kernel='xla'"):
        solve(bloch(), kernel="fused")
