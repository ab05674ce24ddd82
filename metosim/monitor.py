"""Monitors: what the engine records. Each has a unique ``name``."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from .base import Coordinate, FIELD_COMPONENTS, Finite, Frequencies, MetoModel, NonNegativeFinite, PositiveFinite, Size, _as_tuple
from .mode_spec import ModeSpec, check_plane

Component = Literal["Ex", "Ey", "Ez", "Hx", "Hy", "Hz"]
def _not_only_dots(name: str) -> str:
    # A name is a path segment in a results store (its group): "." and ".." are not.
    if not name.strip("."):
        raise ValueError("a monitor name must not be only dots")
    return name


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$"), AfterValidator(_not_only_dots)]


def _components(value: object) -> object:
    value = _as_tuple(value)
    if isinstance(value, tuple) and len(set(value)) != len(value):
        raise ValueError("field components must not repeat")
    return value


Components = Annotated[tuple[Component, ...], Field(min_length=1)]


class _Monitor(MetoModel):
    name: Name
    center: Coordinate = (0.0, 0.0, 0.0)
    size: Size


class FieldMonitor(_Monitor):
    """Frequency-domain fields (running DFT) at ``freqs`` (Hz) in a box, plane, line or point."""

    type: Literal["FieldMonitor"] = "FieldMonitor"
    freqs: Frequencies
    fields: Components = FIELD_COMPONENTS

    _fields = field_validator("fields", mode="before")(_components)


class FieldTimeMonitor(_Monitor):
    """Time-domain snapshots every ``interval`` time steps between ``start`` and ``stop`` (s)."""

    type: Literal["FieldTimeMonitor"] = "FieldTimeMonitor"
    interval: Annotated[int, Field(ge=1)] = 1
    start: NonNegativeFinite = 0.0
    stop: NonNegativeFinite | None = None
    fields: Components = FIELD_COMPONENTS

    _fields = field_validator("fields", mode="before")(_components)

    @model_validator(mode="after")
    def _check_window(self) -> "FieldTimeMonitor":
        if self.stop is not None and self.stop < self.start:
            raise ValueError("stop must not be before start")
        return self


class FluxMonitor(_Monitor):
    """Power flux through a plane at ``freqs`` (Hz), along ``normal_dir`` of the plane's
    normal, normalised to the power spectrum of the first source (a plane wave through
    vacuum reads 1.0)."""

    type: Literal["FluxMonitor"] = "FluxMonitor"
    freqs: Frequencies
    normal_dir: Literal["+", "-"] = "+"


class ModeMonitor(_Monitor):
    """Complex amplitudes of the modes of ``mode_spec`` passing a plane at ``freqs`` (Hz).

    Result (an ``xarray.Dataset``): ``amps`` on (direction "+"/"-", mode_index, f) and
    ``n_eff`` on (mode_index, f). |amp|² is the power in that mode, along that
    direction of the plane's normal, relative to the power the first source injects
    (as for ``FluxMonitor``). Phase reference: when the first source is a
    ``ModeSource``, ``amps`` is the mode's complex amplitude at this plane divided by
    the injected mode's amplitude at the source plane (both in the same unit-power
    mode normalisation, each mode's largest E component real and positive at its
    peak), so it is directly the S-parameter S(out, in) from the source plane to this
    plane; move a reference plane by a distance L along a guide by multiplying by
    exp(−i·2π·n_eff·f·L/c). For other sources the amplitude is relative to the
    source's power only (no phase reference).

    ``store_fields``: also keep the modes themselves — ``n_complex``, ``te_fraction``,
    ``n_group`` on (mode_index, f) and the six field components on (mode_index, f and
    the plane's two axes), as ``ms.ModeSolver`` returns them, but the modes the
    amplitudes project on: solved at the time step's ω̃, at unit power as the grid
    carries it (the continuum power is 1/cos(βΔn/2), Δn the step along the normal).
    """

    type: Literal["ModeMonitor"] = "ModeMonitor"
    freqs: Frequencies
    mode_spec: ModeSpec = ModeSpec()
    store_fields: bool = False

    @model_validator(mode="after")
    def _check(self) -> "ModeMonitor":
        check_plane(self.size)
        return self


Angles = Annotated[tuple[Annotated[Finite, Field(ge=-7.0, le=7.0)], ...], BeforeValidator(_as_tuple), Field(min_length=1)]


class FieldProjectionAngleMonitor(_Monitor):
    """Far fields at angles ``theta`` (from +z) and ``phi`` (from +x in the xy plane),
    both in rad, at ``freqs`` (Hz), by a near-to-far-field transformation of the fields
    on the closed surface ``center``/``size``: the six faces of a box in 3D; in a 2D
    simulation invariant along z (size z = 0), the four sides of a rectangle (size 0
    along z, ``theta`` = (π/2,): the far field lies in the xy plane). The surface
    encloses every source and scatterer and lies in a homogeneous, non-dispersive
    background.

    Result (dims f, theta, phi): ``Etheta``, ``Ephi``, ``Htheta``, ``Hphi`` — the far
    field at ``proj_distance`` (µm) from the centre, in the units of field monitors
    (including the spreading e^{ikr}/r in 3D, e^{ikr}/√r in 2D) — and ``power``: the
    radiated power per steradian (3D) or per radian (2D, per unit length along z)
    over the power the first source injects (so ∮ power dΩ is the radiated fraction).
    ``SimulationData.plot_far_field`` draws it on a polar plot.
    """

    type: Literal["FieldProjectionAngleMonitor"] = "FieldProjectionAngleMonitor"
    freqs: Frequencies
    theta: Angles
    phi: Angles
    proj_distance: PositiveFinite = 1e6

    @model_validator(mode="after")
    def _check_box(self) -> "FieldProjectionAngleMonitor":
        if not (all(0 < s < float("inf") for s in self.size[:2]) and 0 <= self.size[2] < float("inf")):
            raise ValueError("the projection surface is a closed box: give a finite size > 0 along x, y and z (along z, 0 for a rectangle in a 2D simulation)")
        return self

    @property
    def planar(self) -> bool:
        """A rectangle in the xy plane (2D simulations), not a box."""
        return self.size[2] == 0


Monitor = Annotated[Union[FieldMonitor, FieldTimeMonitor, FluxMonitor, ModeMonitor, FieldProjectionAngleMonitor], Field(discriminator="type")]

__all__ = ["FieldMonitor", "FieldProjectionAngleMonitor", "FieldTimeMonitor", "FluxMonitor", "ModeMonitor", "Monitor"]
