"""Source time dependences and sources. Frequencies in Hz, positions in µm."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from .base import Coordinate, E_COMPONENTS, FIELD_COMPONENTS, Finite, MetoModel, PositiveFinite, Size
from .grid import C_0, MICROMETRE
from .mode_spec import ModeSpec, check_plane, plane_normal

Component = Literal["Ex", "Ey", "Ez", "Hx", "Hy", "Hz"]
Direction = Literal["+x", "-x", "+y", "-y", "+z", "-z"]


class _SourceTime(MetoModel):
    """A sine at ``freq0`` (Hz) under a Gaussian of width τ = 1/(2π fwidth), centred at
    t0 = offset · τ."""

    type: str
    freq0: PositiveFinite
    fwidth: PositiveFinite
    offset: Annotated[PositiveFinite, Field(ge=2.0)] = 5.0

    @property
    def tau(self) -> float:
        """Pulse width τ (s)."""
        return 1.0 / (2 * math.pi * self.fwidth)

    @property
    def max_freq(self) -> float:
        """Highest frequency (Hz) with significant spectral content (f0 + 3·fwidth)."""
        return self.freq0 + 3 * self.fwidth


class GaussianPulse(_SourceTime):
    """sin(2π f0 (t − t0)) · exp(−(t − t0)² / 2τ²) with τ = 1/(2π fwidth), t0 = offset · τ
    (no DC content)."""

    type: Literal["GaussianPulse"] = "GaussianPulse"

    @property
    def end_time(self) -> float:
        """Time (s) after which the pulse is off (envelope below exp(−offset²/2))."""
        return 2 * self.offset * self.tau


class ContinuousWave(_SourceTime):
    """sin(2π f0 (t − t0)) switched on over a Gaussian ramp of width τ = 1/(2π fwidth); never off."""

    type: Literal["ContinuousWave"] = "ContinuousWave"

    @property
    def end_time(self) -> float:
        return math.inf


SourceTime = Annotated[Union[GaussianPulse, ContinuousWave], Field(discriminator="type")]


class PointDipole(MetoModel):
    """Soft point current along ``polarization`` (E* electric, H* magnetic) at ``center``."""

    type: Literal["PointDipole"] = "PointDipole"
    center: Coordinate
    polarization: Component = "Ez"
    source_time: SourceTime
    name: str | None = None


class _PlanarSource(MetoModel):
    """Shared checks of plane-injected sources (plane wave, Gaussian beam)."""

    center: Coordinate
    size: Size
    direction: Direction
    polarization: Literal["Ex", "Ey", "Ez"]
    source_time: SourceTime
    name: str | None = None

    @property
    def axis(self) -> int:
        """Propagation axis (0, 1, 2)."""
        return "xyz".index(self.direction[1])

    @property
    def sign(self) -> int:
        return 1 if self.direction[0] == "+" else -1

    @model_validator(mode="after")
    def _check_plane(self) -> "_PlanarSource":
        if self.size[self.axis] != 0:
            raise ValueError(f"size along the propagation axis {self.direction[1]} must be 0 (a plane)")
        if E_COMPONENTS.index(self.polarization) == self.axis:
            raise ValueError(
                f"polarization {self.polarization} is along the propagation direction; "
                "choose an E component transverse to it"
            )
        return self


class PlaneWave(_PlanarSource):
    """Plane wave injected from a plane (total-field/scattered-field), travelling
    along ``direction`` only.

    Oblique incidence: ``angle_theta`` (rad, 0 ≤ θ < π/2) tilts the wavevector away
    from the ``direction`` axis towards azimuth ``angle_phi`` (rad, measured in the
    injection plane from its first axis in x, y, z order: y for ±x, x for ±y and ±z).
    E is then the ``polarization`` axis made transverse to k (its projection on the
    plane ⟂ k): Ez on a wave tilted in the xy plane stays s-polarised (TE), Ex becomes
    p-polarised (TM). An oblique wave needs :class:`~metosim.BlochBoundary` on the
    tilted axes with the matching phase (``BlochBoundary.from_source``) and a plane
    spanning them; k is fixed by ``freq0``, so at frequency f the angle is
    asin(sin θ · freq0 / f).
    """

    type: Literal["PlaneWave"] = "PlaneWave"
    angle_theta: Annotated[Finite, Field(ge=0.0, lt=math.pi / 2)] = 0.0
    angle_phi: Finite = 0.0

    @property
    def direction_vector(self) -> tuple[float, float, float]:
        """Unit wavevector k̂ (x, y, z)."""
        first, second = (b for b in range(3) if b != self.axis)
        k = [0.0, 0.0, 0.0]
        k[self.axis] = self.sign * math.cos(self.angle_theta)
        k[first] = math.sin(self.angle_theta) * math.cos(self.angle_phi)
        k[second] = math.sin(self.angle_theta) * math.sin(self.angle_phi)
        return tuple(k)  # type: ignore[return-value]

    @property
    def polarization_vector(self) -> tuple[float, float, float]:
        """Unit E direction (x, y, z): the ``polarization`` axis projected transverse to k̂."""
        k = self.direction_vector
        p = E_COMPONENTS.index(self.polarization)
        e = [(1.0 if a == p else 0.0) - k[p] * k[a] for a in range(3)]
        norm = math.sqrt(sum(x * x for x in e))
        return tuple(x / norm for x in e)  # type: ignore[return-value]

    def wavevector(self, permittivity: float = 1.0) -> tuple[float, float, float]:
        """k (rad/µm, x, y, z) at ``freq0`` in a background of relative ``permittivity``."""
        k0 = 2 * math.pi * self.source_time.freq0 * MICROMETRE / C_0
        return tuple(k0 * math.sqrt(permittivity) * x for x in self.direction_vector)  # type: ignore[return-value]


class GaussianBeam(_PlanarSource):
    """Gaussian beam with its waist (1/e field radius ``waist_radius``, µm) on the
    injection plane, travelling along ``direction``."""

    type: Literal["GaussianBeam"] = "GaussianBeam"
    waist_radius: PositiveFinite


class ModeSource(MetoModel):
    """Injects one waveguide mode, travelling along ``direction`` ("+" or "−" along the
    plane's normal) only.

    The mode (``mode_index`` of ``mode_spec``) is solved on the simulation's own grid
    in the plane, with the leapfrog's discrete ω and β, and injected as equivalent
    electric and magnetic current sheets (a total-field/scattered-field surface).

    Frequency dependence of the profile: with ``num_freqs=1`` the profile at
    ``freq0`` is used over the whole pulse bandwidth (β(f) follows the group index);
    at other frequencies the true mode differs slightly from it and the difference
    goes into other modes and radiation (measured: 1% of the power at ±fwidth on a
    coarse 3D silicon wire). ``num_freqs=K`` (up to 9) solves the mode at K Chebyshev
    nodes over freq0 ± 2·fwidth and interpolates profile and β between them
    (Lagrange polynomials applied to the pulse as FFT filters), so the launched field
    follows the mode across the band at K times the source's (small) cost.
    A ``ContinuousWave`` has one frequency and takes ``num_freqs=1``.
    """

    type: Literal["ModeSource"] = "ModeSource"
    center: Coordinate
    size: Size
    direction: Literal["+", "-"] = "+"
    mode_spec: ModeSpec = ModeSpec()
    mode_index: Annotated[int, Field(ge=0)] = 0
    source_time: SourceTime
    num_freqs: Annotated[int, Field(ge=1, le=9)] = 1
    name: str | None = None

    @property
    def axis(self) -> int:
        """The plane's normal (0, 1, 2): the propagation axis."""
        return plane_normal(self.size)

    @property
    def sign(self) -> int:
        return 1 if self.direction == "+" else -1

    @model_validator(mode="after")
    def _check(self) -> "ModeSource":
        check_plane(self.size)
        if isinstance(self.source_time, ContinuousWave) and self.num_freqs != 1:
            raise ValueError("a ContinuousWave has one frequency: num_freqs must be 1")
        if self.mode_index >= self.mode_spec.num_modes:
            raise ValueError(f"mode_index {self.mode_index} needs mode_spec.num_modes ≥ {self.mode_index + 1} (it is {self.mode_spec.num_modes})")
        return self


Source = Annotated[Union[PointDipole, PlaneWave, GaussianBeam, ModeSource], Field(discriminator="type")]

__all__ = [
    "FIELD_COMPONENTS",
    "ContinuousWave",
    "GaussianBeam",
    "GaussianPulse",
    "ModeSource",
    "PlaneWave",
    "PointDipole",
    "Source",
    "SourceTime",
]
