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
from sharded_runs import differences, guide  # noqa: E402
from test_polarisation import PULSE, TE, TM, scatterer  # noqa: E402

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
    sim = scatterer([ms.PointDipole(center=(0.1, 0.13, 0), polarization=polarization, source_time=PULSE)]).model_copy(update={"precision": "float64"})
    diffs, _, info = compare(sim)
    assert info["stepped_components"] == stepped
    assert max(diffs.values()) < 1e-12, diffs


def test_fused_kernels_lower_to_triton_for_cuda() -> None:
    """What can be checked of the GPU path without a GPU: the whole step, both kernels,
    lowers for CUDA through Pallas's Triton backend (Triton's own checks on the kernel
    IR, e.g. power-of-two block shapes, run at this lowering)."""
    problem = _setup(guide().model_copy(update={"precision": "float32"}))
    layout = single_polarisation(problem.layout)
    layout, state, params, _ = fused.prepare(layout, problem.state, problem.params, problem.eps)
    step = fused.make_step(layout, interpret=False)
    lowered = jax.jit(lambda s, p: step(s, p, jnp.int32(0))).trace(state, params).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("__gpu$xla.gpu.triton") == 2


def test_fused_state_converts_back_exactly() -> None:
    """Checkpoints and results hold the XLA step's state: ghost planes off, ψ in slabs."""
    problem = _setup(standard_small())
    rng = np.random.default_rng(0)
    state = {**problem.state, "psi": {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in problem.state["psi"].items()}}
    layout, fused_state, _, _ = fused.prepare(problem.layout, state, problem.params, problem.eps)
    assert fused_state["E"][0].shape == (31, 30, 30)
    back = fused.restore(layout, fused_state)
    assert back["psi"].keys() == state["psi"].keys()
    for key in state["psi"]:
        np.testing.assert_array_equal(back["psi"][key], state["psi"][key])


def test_fused_refusals_name_the_reason() -> None:
    sim = standard_small(20)
    with pytest.raises(EngineInputError, match="kernel must be 'xla' or 'fused'"):
        solve(sim, kernel="triton")
    with pytest.raises(EngineInputError, match="needs the JAX backend"):
        solve(sim, backend="numpy", kernel="fused")
    periodic = sim.model_copy(update={"boundary_spec": ms.BoundarySpec(x=ms.Boundary(minus=ms.Periodic(), plus=ms.Periodic()), y=sim.boundary_spec.y, z=sim.boundary_spec.z)})
    with pytest.raises(EngineInputError, match=r"cannot step this simulation yet \(periodic or Bloch boundaries\); use kernel='xla'"):
        solve(periodic, kernel="fused")
    mirrored = dipole_problem((0.6, 0.6, 0.6), ms.Sphere(radius=0.12), (0.0, 0.06, 0.03), "Ez", 20).model_copy(update={"symmetry": (1, 0, 0)})
    with pytest.raises(EngineInputError, match="PMC boundaries or mirror symmetry"):
        solve(mirrored, kernel="fused")
