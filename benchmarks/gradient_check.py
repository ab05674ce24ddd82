"""The inverse-design gradient against central finite differences on whatever device
JAX uses (the test suite checks the same on CPU): a coarse float64 bend, the full
chain ρ → filter → projection → ε → solve → mode objective, 5 random directions.

    python benchmarks/gradient_check.py
"""

from __future__ import annotations

import time

import jax
import numpy as np

import metosim as ms
from metosim.inverse.examples import waveguide_bend


def main() -> None:
    problem = waveguide_bend(region=1.0, wavelengths=(1.55,), steps_per_wvl=8, pixel_size=0.1, filter_radius=0.15, run_time=120e-15, precision="float64")
    evaluator = ms.inverse.Evaluator(problem)
    rng = np.random.default_rng(7)
    rho = rng.uniform(0.3, 0.7, problem.shape)
    start = time.perf_counter()
    loss, grad, _ = evaluator.value_and_grad(rho, 4.0)
    print(f"device {jax.devices()[0]}: loss {loss:.10f}, gradient in {time.perf_counter() - start:.2f} s (with compilation)")
    worst = 0.0
    for _ in range(5):
        v = rng.normal(size=rho.shape)
        v /= np.linalg.norm(v)
        h = 1e-4
        fd = (evaluator.loss(rho + h * v, 4.0)[0] - evaluator.loss(rho - h * v, 4.0)[0]) / (2 * h)
        ad = float(np.sum(grad * v))
        worst = max(worst, abs(ad - fd) / abs(fd))
        print(f"adjoint {ad:+.10e}  central difference {fd:+.10e}  relative error {abs(ad - fd) / abs(fd):.2e}")
    print(f"worst relative error {worst:.2e}")


if __name__ == "__main__":
    main()
