"""Design regions: density parameters ρ ∈ [0, 1] per pixel → filter → projection →
permittivity, the chain Meep's adjoint module uses to impose a minimum feature size
and drive designs to binary.

    ρ̃ = conic (or Gaussian) filter of ρ, radius r (µm)
    ρ̂ = [tanh(βη) + tanh(β(ρ̃ − η))] / [tanh(βη) + tanh(β(1 − η))]
    ε = ε_min + (ε_max − ε_min)·ρ̂

Each function takes the array namespace (NumPy, or jax.numpy under a gradient).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..base import Finite, MetoModel, NonNegativeFinite, PositiveFinite
from ..geometry import Box
from ..medium import CustomMedium
from ..simulation import Structure
from .length_scale import length_violation

#: More design pixels, along one axis or in all, than any optimiser here could use.
MAX_PIXELS_PER_AXIS = 100_000
MAX_DESIGN_PIXELS = 1_000_000


def filter_kernel(radius_px: tuple[float, float, float], kind: str) -> np.ndarray:
    """Normalised filter weights on the pixel lattice; ``radius_px`` per axis in pixels
    (0 on an axis: no filtering along it). Conic: w = max(0, 1 − r/R); Gaussian:
    σ = R/2, cut at R."""
    half = [int(np.ceil(r)) if r > 0 else 0 for r in radius_px]
    grids = np.meshgrid(*[np.arange(-h, h + 1) / (r if r > 0 else 1.0) for h, r in zip(half, radius_px)], indexing="ij")
    rho = np.sqrt(sum(g**2 for g in grids))
    w = np.maximum(0.0, 1.0 - rho) if kind == "conic" else np.where(rho <= 1.0, np.exp(-2.0 * rho**2), 0.0)
    return w / w.sum()


def apply_filter(rho: Any, kernel: np.ndarray, xp: ModuleType = np, surround: np.ndarray | None = None) -> Any:
    """Convolve ``rho`` (nx, ny, nz) with ``kernel``, padding by edge values (so a
    waveguide entering the region keeps its width at the edge), or by ``surround``:
    densities beyond the edge, an array of the padded shape whose interior is ignored."""
    if kernel.size == 1:
        return rho
    half = [(k // 2, k // 2) for k in kernel.shape]
    if surround is None:
        padded = xp.pad(rho, half, mode="edge")
    else:
        inside = np.zeros(surround.shape, dtype=bool)
        inside[tuple(slice(h, h + n) for (h, _), n in zip(half, rho.shape))] = True
        padded = xp.where(inside, xp.pad(rho, half), xp.asarray(surround))
    if xp is np:
        from scipy.signal import fftconvolve

        return fftconvolve(padded, kernel, mode="valid")
    from jax.scipy.signal import convolve

    return convolve(padded, xp.asarray(kernel, dtype=padded.dtype), mode="valid")


def tanh_projection(x: Any, beta: float, eta: float, xp: ModuleType = np) -> Any:
    """Smoothed threshold at ``eta`` with steepness ``beta`` (β → ∞: a step)."""
    if isinstance(beta, float) and np.isinf(beta):
        return xp.where(x > eta, 1.0, 0.0)
    return (xp.tanh(beta * eta) + xp.tanh(beta * (x - eta))) / (xp.tanh(beta * eta) + xp.tanh(beta * (1 - eta)))


class DesignRegion(MetoModel):
    """A box whose permittivity an optimiser chooses, pixel by pixel, between
    ``eps_min`` and ``eps_max``. ``pixel_size`` (µm) sets the pixels (one pixel along
    an axis the simulation is invariant in); ``filter_radius`` (µm) the minimum
    feature scale; ``eta`` the projection threshold.

    ``robust`` (δ, 0 to turn it off): the objective becomes the worst of three
    designs projected at η − δ (dilated), η and η + δ (eroded) — the robust
    formulation (Wang, Lazarov and Sigmund 2011): every feature must work with its
    edges moved either way, which keeps solid and void features from shrinking
    below a length scale set by ``filter_radius`` and δ. It costs three solves per
    evaluation.

    ``length_penalty`` (a weight, 0 to turn it off): adds weight × (solid + void
    violation) to the loss to minimise (:func:`~metosim.inverse.length_scale.length_violation`,
    the geometric constraints of Zhou et al. 2015): solid features and gaps narrower
    than about ``filter_radius`` (conic filter) are penalised, at no extra solve. The
    violations are means over pixels, of order 10⁻⁵ for a design with
    a few too-thin features, so useful weights are of order 10³. Most useful from a
    nearly binary design (large β), as Meep's adjoint tutorial applies it.

    ``straight_through``: the objective sees the thresholded design (β = ∞, what is
    fabricated and scored) while its gradient takes the β projection's slope (a
    straight-through estimator). At large β the projected design's edges keep
    intermediate permittivity over about a pixel, and thresholding them can move the
    objective by more than the last iterations gained; this closes that gap, at the
    price of a gradient that is only an estimate.

    ``surround``: what the filter sees beyond the region's edge — ``"edge"``, the edge
    pixels repeated (a feature touching the edge runs on outside), or
    ``"structures"``, the simulation's own structures there (solid where what lies
    outside is at least halfway from ``eps_min`` to ``eps_max``): a guide entering the
    region runs on, and a feature touching the edge ends there, as in the device. Its
    length scale is then held, and measured, where it meets the surroundings."""

    type: Literal["DesignRegion"] = "DesignRegion"
    name: str = "design"
    geometry: Box
    eps_min: Annotated[Finite, Field(ge=1.0)] = 1.0
    eps_max: Annotated[Finite, Field(ge=1.0)]
    pixel_size: PositiveFinite
    filter_radius: NonNegativeFinite = 0.0
    filter: Literal["conic", "gaussian"] = "conic"
    eta: Annotated[Finite, Field(gt=0.0, lt=1.0)] = 0.5
    robust: Annotated[Finite, Field(ge=0.0, lt=0.5)] = 0.0
    length_penalty: NonNegativeFinite = 0.0
    straight_through: bool = False
    surround: Literal["edge", "structures"] = "edge"

    @model_validator(mode="after")
    def _check(self) -> "DesignRegion":
        if self.eps_min > self.eps_max:
            raise ValueError(f"eps_min ({self.eps_min}) must not exceed eps_max ({self.eps_max})")
        if self.length_penalty and not (self.filter == "conic" and self.filter_radius > 0):
            raise ValueError("length_penalty needs a conic filter with filter_radius > 0: the radius sets the length scale it holds")
        if self.robust and not 0 < self.eta - self.robust < self.eta + self.robust < 1:
            raise ValueError(f"robust ({self.robust}) must keep eta ± robust within (0, 1) (eta is {self.eta})")
        return self

    @property
    def etas(self) -> tuple[float, ...]:
        """The thresholds the objective is evaluated at: η, or (η − δ, η, η + δ) when robust."""
        return (self.eta - self.robust, self.eta, self.eta + self.robust) if self.robust else (self.eta,)

    @field_validator("pixel_size")
    @classmethod
    def _check_pixels(cls, pixel_size: float, info: ValidationInfo) -> float:
        geometry = info.data.get("geometry")
        if geometry is not None and any(0 < s < math.inf and s / pixel_size > MAX_PIXELS_PER_AXIS for s in geometry.size):
            raise ValueError(f"{pixel_size:.3g} µm gives over {MAX_PIXELS_PER_AXIS:,} pixels along an axis of the region")
        return pixel_size

    def shape(self, active: tuple[bool, bool, bool]) -> tuple[int, int, int]:
        """Pixels along x, y, z in a simulation with these ``active`` axes."""
        return tuple(max(1, int(round(s / self.pixel_size))) if on else 1 for s, on in zip(self.geometry.size, active))  # type: ignore[return-value]

    def steps(self, active: tuple[bool, bool, bool]) -> tuple[float, float, float]:
        """Pixel size along x, y, z (µm; 0 along an axis the simulation is invariant in)."""
        return tuple(s / n if on else 0.0 for s, n, on in zip(self.geometry.size, self.shape(active), active))  # type: ignore[return-value]

    def kernel(self, active: tuple[bool, bool, bool]) -> np.ndarray:
        return filter_kernel(tuple(self.filter_radius / d if d else 0.0 for d in self.steps(active)), self.filter)  # type: ignore[arg-type]

    def project(self, rho: Any, beta: float, active: tuple[bool, bool, bool], xp: ModuleType = np, eta: float | None = None, surround: np.ndarray | None = None) -> Any:
        """ρ → ρ̂ ∈ [0, 1]: filtered (``surround``: see :meth:`surroundings`), then
        projected (at ``eta``, default the region's); thresholded, with the
        projection's gradient, when ``straight_through``."""
        eta = self.eta if eta is None else eta
        rho_tilde = apply_filter(rho, self.kernel(active), xp, surround)
        rho_hat = tanh_projection(rho_tilde, beta, eta, xp)
        if not self.straight_through:
            return rho_hat
        step = xp.where(rho_tilde > eta, 1.0, 0.0) - rho_hat
        if xp is not np:
            import jax

            step = jax.lax.stop_gradient(step)
        return rho_hat + step

    def length_violation(self, rho: Any, beta: float, active: tuple[bool, bool, bool], xp: ModuleType = np, surround: np.ndarray | None = None) -> Any:
        """Solid plus void violation of the length scale the filter radius sets, for
        density ``rho`` projected with ``beta`` (see ``length_penalty``)."""
        rho_tilde = apply_filter(rho, self.kernel(active), xp, surround)
        solid, void = length_violation(rho_tilde, tanh_projection(rho_tilde, beta, self.eta, xp), self.filter_radius, self.steps(active), xp)
        return solid + void

    def permittivity(self, rho: Any, beta: float, active: tuple[bool, bool, bool], xp: ModuleType = np, eta: float | None = None, surround: np.ndarray | None = None) -> Any:
        """ρ → ε per pixel."""
        return self.eps_min + (self.eps_max - self.eps_min) * self.project(rho, beta, active, xp, eta, surround)

    def surroundings(self, structures: Any, background: Any, active: tuple[bool, bool, bool], width: int | None = None) -> np.ndarray | None:
        """For ``surround="structures"``: the density the filter sees around the
        region (the padded pixel array; 1 where the topmost of ``structures``, else the
        ``background`` medium, at a pixel's centre is at least halfway from ``eps_min``
        to ``eps_max``). None for ``"edge"`` or without a filter. ``width``: a ring of
        that many pixels along each active axis instead, whatever ``surround`` says."""
        kernel = self.kernel(active)
        if width is None and (self.surround == "edge" or kernel.size == 1):
            return None
        shape, steps, (lo, _) = self.shape(active), self.steps(active), self.geometry.bounds()
        half = [k // 2 for k in kernel.shape] if width is None else [width if on else 0 for on in active]
        axes = [lo[k] + (np.arange(-half[k], shape[k] + half[k]) + 0.5) * steps[k] if active[k] else np.array([self.geometry.center[k]]) for k in range(3)]
        x, y, z = np.meshgrid(*axes, indexing="ij")
        middle = (self.eps_min + self.eps_max) / 2
        solid = np.full(x.shape, background.eps_max >= middle)
        for structure in structures:  # later structures paint over earlier ones, as in meshing
            solid = np.where(structure.geometry.inside(x, y, z), structure.medium.eps_max >= middle, solid)
        return solid.astype(float)

    def structure(self, eps: Any) -> Structure:
        """The region filled with the pixel permittivity ``eps`` as a structure."""
        return Structure(name=self.name, geometry=self.geometry, medium=CustomMedium.from_array(np.asarray(eps, dtype=float)))


def binarisation(rho_hat: Any) -> float:
    """Share of pixels within 0.05 of 0 or 1."""
    x = np.asarray(rho_hat)
    return float(np.mean((x < 0.05) | (x > 0.95)))
