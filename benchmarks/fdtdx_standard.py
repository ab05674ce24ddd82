"""The standard problem of ``benchmarks/engine.py`` in fdtdx, for a same-run comparison.

Runs under an interpreter that has fdtdx (its own venv: ``pip install fdtdx==0.6.3``),
not MetoSim's: ``engine.py --compare fdtdx --fdtdx-python VENV/bin/python`` starts it
between its own runs. 100³ cells of 0.02 µm with 12 PML cells on every side, a sphere of
ε = 4 and r = 0.4 µm, an Ez dipole at (0.3, 0.2, 0.1) µm, 500 steps at Courant 0.99, one
phasor (DFT) plane at z = 0 with 3 frequencies, float32. Prints one line ending in
the Mcells/s of the best of ``--repeat`` compiled runs (compilation
excluded, as for MetoSim).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import fdtdx
from fdtdx.constants import c as C_0

DL = 0.02e-6  # m
N = 100
STEPS = 500
FREQS = (1.5e14, 2e14, 2.5e14)  # Hz


def scene(steps: int):
    dt = 0.99 * DL / (C_0 * np.sqrt(3))
    config = fdtdx.SimulationConfig(time=steps * dt * (1 - 1e-9), grid=fdtdx.UniformGrid(spacing=DL), backend="cpu", dtype=jnp.float32, courant_factor=0.99)
    volume = fdtdx.SimulationVolume(partial_real_shape=(N * DL,) * 3, material=fdtdx.Material(permittivity=1.0))
    objects, constraints = [volume], []
    bounds, pml_constraints = fdtdx.boundary_objects_from_config(fdtdx.BoundaryConfig.from_uniform_bound(thickness=12), volume)
    objects += list(bounds.values())
    constraints += pml_constraints
    sphere = fdtdx.Sphere(radius=0.4e-6, materials={"glass": fdtdx.Material(permittivity=4.0)}, material_name="glass")
    constraints.append(sphere.place_at_center(volume))
    objects.append(sphere)
    dipole = fdtdx.PointDipoleSource(
        partial_grid_shape=(1, 1, 1),
        polarization=2,
        wave_character=fdtdx.WaveCharacter(frequency=2e14),
        temporal_profile=fdtdx.GaussianPulseProfile(spectral_width=fdtdx.WaveCharacter(frequency=5e13), center_wave=fdtdx.WaveCharacter(frequency=2e14)),
    )
    constraints += [dipole.set_grid_coordinates(axes=(0, 1, 2), sides=("-", "-", "-"), coordinates=(N // 2 + 15, N // 2 + 10, N // 2 + 5))]
    objects.append(dipole)
    plane = fdtdx.PhasorDetector(name="field", partial_grid_shape=(None, None, 1), wave_characters=[fdtdx.WaveCharacter(frequency=f) for f in FREQS], plot=False)
    constraints += [plane.same_size(volume, axes=(0, 1)), plane.place_at_center(volume, axes=(0, 1)), plane.set_grid_coordinates(axes=(2,), sides=("-",), coordinates=(N // 2,))]
    objects.append(plane)
    return objects, constraints, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    key = jax.random.PRNGKey(0)
    objects, constraints, config = scene(args.steps)
    container, arrays, params, config, _ = fdtdx.place_objects(object_list=objects, config=config, constraints=constraints, key=key)
    arrays, container, _ = fdtdx.apply_params(arrays, container, params, key)
    steps = config.time_steps_total
    shape = arrays.inv_permittivities.shape[-3:]
    # fdtdx's documented use: the simulation wrapped in jax.jit by the caller.
    run = jax.jit(lambda a: fdtdx.run_fdtd(arrays=a, objects=container, config=config, key=key, show_progress=False)[1])
    rates = []
    for _ in range(args.repeat + 1):  # the first run compiles
        start = time.perf_counter()
        jax.block_until_ready(run(arrays))
        rates.append(int(np.prod(shape)) * steps / (time.perf_counter() - start) / 1e6)
    from importlib.metadata import version

    print(f"fdtdx {version('fdtdx')}, {shape} cells, {steps} steps, Mcells/s: {max(rates[1:]):.1f}")


if __name__ == "__main__":
    main()
