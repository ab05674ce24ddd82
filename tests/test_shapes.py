"""Shape gradients (``ms.inverse.shape_solve``): a slab's thickness derivative against
the Airy formula's, a box's, cylinders' and a polygon's parameters against central
differences, the pixels against a plain solve, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metosim as ms
from metosim.kernels.solver import EngineInputError

from .conftest import F_UNIT
from .test_inverse import airy_reflection
from .test_physics import BAND, slab_line


def test_slab_thickness_derivative_matches_the_transfer_matrix() -> None:
    """dR/d(size) of a Box slab (n = 1.5, d ≈ 0.5 µm) against the Airy formula's dR/dd;
    dR/d(center) is 0 in a lossless surrounding."""
    dz, eps, d = 0.005, 1.5**2, 0.5025
    slab = ms.Structure(name="slab", geometry=ms.Box(center=(0.3, 0, 0), size=(d, ms.inf, ms.inf)), medium=ms.Medium(permittivity=eps))
    shapes = ms.inverse.shape_solve(slab_line([slab], dl=dz, precision="float64", shutoff=0), ["slab"], pixel_size=dz)
    with jax.enable_x64(True):
        engine = jax.jacrev(lambda p: shapes(p)["R"])(shapes.parameters)["slab"]
        exact = np.asarray(jax.jacrev(airy_reflection, argnums=1)(eps, d, BAND / F_UNIT))
    error = np.max(np.abs(np.asarray(engine["size"])[:, 0] - exact)) / np.max(np.abs(exact))
    drift = np.max(np.abs(np.asarray(engine["center"]))) / np.max(np.abs(exact))
    print(f"dR/dd: max error {error:.2e} of the largest derivative; dR/dx0 {drift:.1e} of it")
    # Measured 0.21% and 7e-5 at 200 cells per wavelength in the slab.
    assert error < 5e-3
    assert drift < 1e-3


def scatterers() -> ms.Simulation:
    """2D (TM): a plane wave past a box, a post with an off-centre hole and a triangular
    prism, transmitted flux at two frequencies."""
    f0 = F_UNIT
    return ms.Simulation(
        size=(3.0, 3.0, 0),
        grid_spec=ms.GridSpec.uniform(0.04),
        run_time=40e-15,
        precision="float64",
        shutoff=0,
        structures=[
            ms.Structure(name="block", geometry=ms.Box(center=(0.1, -0.6, 0), size=(0.5, 0.4, ms.inf)), medium=ms.Medium(permittivity=3.0)),
            ms.Structure(name="post", geometry=ms.Cylinder(center=(0.0, 0.2, 0), radius=0.35, length=ms.inf), medium=ms.Medium(permittivity=4.0)),
            ms.Structure(name="hole", geometry=ms.Cylinder(center=(0.05, 0.25, 0), radius=0.12, length=ms.inf), medium=ms.Medium(permittivity=1.0)),
            ms.Structure(name="prism", geometry=ms.PolySlab(vertices=[(0.3, -0.1), (0.75, 0.05), (0.45, 0.5)], slab_bounds=(-1, 1)), medium=ms.Medium(permittivity=2.5)),
        ],
        sources=[ms.PlaneWave(center=(-1.0, 0, 0), size=(0, ms.inf, 0), direction="+x", polarization="Ez", source_time=ms.GaussianPulse(freq0=f0, fwidth=0.3 * f0))],
        monitors=[ms.FluxMonitor(name="T", center=(1.0, 0, 0), size=(0, 1.0, 0), freqs=[0.9 * f0, 1.1 * f0])],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML()),
    )


def test_shape_gradients_match_central_differences() -> None:
    """Box centre and size, cylinder centre and radius (a hole painted over a post),
    polygon vertices: directional derivatives of the transmitted power against central
    differences of the same pixels. The fill's slope changes where a pixel enters or
    leaves a surface's ramp (every ~10⁻⁴ µm of motion here), so the differences take
    steps of 10⁻⁷ µm, in float64."""
    sim = scatterers()
    shapes = ms.inverse.shape_solve(sim, ["block", "post", "hole", "prism"], pixel_size=0.02)

    def objective(outputs: dict) -> jnp.ndarray:
        return jnp.sum(outputs["T"])

    value, grad = shapes.value_and_grad(objective)
    assert 0.2 < value < 2.0
    p0 = shapes.parameters
    rng = np.random.default_rng(1)
    directions = {
        "box": {"block": {"center": [1, 1, 0], "size": [1, 1, 0]}},
        "cylinders": {"post": {"center": [1, 1, 0], "radius": 1}, "hole": {"radius": 1}},
        "polygon": {"prism": {"vertices": np.ones((3, 2))}},
    }
    with jax.enable_x64(True):
        loss = jax.jit(lambda p: objective(shapes(p)))
        for kind, mask in directions.items():
            v = {n: {k: rng.normal(size=np.shape(m)) * np.asarray(m) for k, m in keys.items()} for n, keys in mask.items()}
            h = 1e-7

            def at(s: float, v: dict = v) -> float:
                return float(loss({n: {k: x + s * h * v.get(n, {}).get(k, 0.0) for k, x in keys.items()} for n, keys in p0.items()}))

            fd = (at(1) - at(-1)) / (2 * h)
            ad = sum(float(np.sum(grad[n][k] * x)) for n, keys in v.items() for k, x in keys.items())
            print(f"{kind}: adjoint {ad:.8e}, central difference {fd:.8e}, relative {abs(ad - fd) / abs(fd):.1e}")
            assert abs(ad) > 1e-3
            assert abs(ad - fd) < 1e-5 * abs(fd)
        # The pixels are the forward model: a plain solve of them gives the same power.
        plain = ms.solve(shapes.simulation())["T"].values
        np.testing.assert_allclose(plain, np.asarray(shapes(p0)["T"]), rtol=1e-9)


def test_bad_shape_requests_name_the_structure() -> None:
    sim = scatterers()
    with pytest.raises(EngineInputError, match="no structure named \\['ring'\\]"):
        ms.inverse.shape_solve(sim, ["ring"], pixel_size=0.02)
    lossy = sim.updated_copy(structures=(*sim.structures[:3], sim.structures[3].updated_copy(medium=ms.Medium(permittivity=2.5, conductivity=1e4))))
    with pytest.raises(EngineInputError, match="structure 'prism' has a Medium with conductivity"):
        ms.inverse.shape_solve(lossy, ["post"], pixel_size=0.02)
    bus = ms.Structure(name="bus", geometry=ms.Box(center=(0, 0, 0), size=(ms.inf, 0.4, ms.inf)), medium=ms.Medium(permittivity=4.0))
    with pytest.raises(EngineInputError, match="'bus' reaches to infinity along x"):
        ms.inverse.shape_solve(sim.updated_copy(structures=(bus,)), ["bus"], pixel_size=0.02)
    with pytest.raises(EngineInputError, match="'post' reaches outside the region"):
        ms.inverse.shape_solve(sim, ["post"], pixel_size=0.02, region=ms.Box(center=(0, 0, 0), size=(0.4, 0.4, ms.inf)))
    with pytest.raises(EngineInputError, match="reaches into the PML"):
        ms.inverse.shape_solve(sim, ["post"], pixel_size=0.02, margin=1.0)
