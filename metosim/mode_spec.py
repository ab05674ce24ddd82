"""``ModeSpec``: which waveguide modes to solve for on a plane, and the plane checks
that sources, monitors and the solver share. A model: imports no solver."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Finite, MetoModel, PositiveFinite, _as_tuple


class ModeSpec(MetoModel):
    """Which modes to solve for on a plane (Tidy3D's names).

    ``target_neff``: the effective index the search starts from (default: the largest
    index in the plane). ``filter_pol``: put "te" (``te_fraction`` ≥ ½: most of |E|² in
    the first tangential component, axes in x, y, z order) or "tm" modes first.
    ``num_pml``: PML cells on (first, second) tangential axis edges; PEC walls
    otherwise. Modes come ordered by decreasing n_eff with strongly lossy ones
    (|k_eff| > 1% of n_eff: the PML's own modes) last; for a tight, leaky bend in a
    PML plane check the profile, since a whispering mode of the outer cladding can
    rank first. ``bend_radius`` (µm, signed: positive bends towards +radial) with
    ``bend_axis`` (0 or 1: the tangential axis the guide bends about) solves a bent
    guide; its n_eff is per unit arc length at the plane centre.

    ``angle_theta`` (rad, 0 ≤ θ < π/2) with ``angle_phi`` (rad): a guide crossing the
    plane at an angle. Its modes travel along n̂·cos θ + t̂·sin θ, where t̂ is the first
    tangential axis for ``angle_phi`` = 0, the second for π/2, and their opposites for π
    and 3π/2 (the only azimuths taken: the guide tilts along one tangential axis). The
    mode is solved on the guide's own cross-section (the plane's cut of a straight guide,
    shortened by cos θ along the tilt) and carries the phase e^{iβ sin θ t} across the
    plane; n_eff is along the guide. Sources at an angle drive real fields with a
    quadrature pair of waveforms.

    ``track_freq``: with several frequencies, the modes are ordered as above at the
    "lowest", "central" (default) or "highest" one and followed from there to the
    others by their profiles' overlap, so ``mode_index`` names the same mode at every
    frequency even where two modes' n_eff cross; None orders each frequency on its own.

    ``interp_freqs``: where a monitor (or source) asks for more frequencies than this,
    the modes are solved at this many Chebyshev points spanning them and interpolated
    (barycentric, after aligning each mode's phase from point to point) to the rest,
    then normalised to unit power again: a 3D monitor of 100 frequencies costs about
    ``interp_freqs`` mode solves. The modes are tracked across the points whatever
    ``track_freq`` says. Measured on a silicon strip over 1.5–1.6 µm (±3%): 5 points give
    errors of 2e-7 in n_eff and 5e-7 of the peak field, 7 points 6e-10 and 1.5e-9, 9
    points 2e-12 and 4e-12 (``tests/test_modes.py``); a wider band needs more points.
    """

    type: Literal["ModeSpec"] = "ModeSpec"
    num_modes: Annotated[int, Field(ge=1, le=20)] = 1
    target_neff: PositiveFinite | None = None
    filter_pol: Literal["te", "tm"] | None = None
    num_pml: tuple[Annotated[int, Field(ge=0, le=64)], Annotated[int, Field(ge=0, le=64)]] = (0, 0)
    bend_radius: Finite | None = None
    bend_axis: Literal[0, 1] | None = None
    precision: Literal["single", "double"] = "double"
    track_freq: Literal["lowest", "central", "highest"] | None = "central"
    interp_freqs: Annotated[int, Field(ge=3, le=64)] | None = None
    angle_theta: Annotated[Finite, Field(ge=0.0, lt=math.pi / 2)] = 0.0
    angle_phi: Finite = 0.0

    @field_validator("num_pml", mode="before")
    @classmethod
    def _tuple(cls, value: Any) -> Any:
        return _as_tuple(value)

    @model_validator(mode="after")
    def _check_bend(self) -> "ModeSpec":
        if self.bend_radius is not None:
            if self.bend_radius == 0:
                raise ValueError("bend_radius must not be 0 (µm; None for a straight guide)")
            if self.bend_axis is None:
                raise ValueError("bend_radius needs bend_axis (0 or 1: the tangential axis the guide bends about)")
        if self.angle_theta > 0:
            quarter = self.angle_phi / (math.pi / 2)
            if abs(quarter - round(quarter)) > 1e-9:
                raise ValueError(f"angle_phi = {self.angle_phi:g} rad tilts the guide off the tangential axes: give 0, π/2, π or 3π/2")
            if self.bend_radius is not None:
                raise ValueError("angle_theta and bend_radius together: an angled plane across a bent guide is not supported")
        return self

    @property
    def tilt(self) -> tuple[int, int] | None:
        """(tangential axis 0/1 in x, y, z order, ±1) the guide tilts towards, or None."""
        if self.angle_theta == 0:
            return None
        quarter = round(self.angle_phi / (math.pi / 2)) % 4
        return quarter % 2, 1 if quarter < 2 else -1


def plane_normal(size: tuple[float, float, float]) -> int:
    """The normal axis of a plane: its one zero-size axis (models check there is one)."""
    return size.index(0.0)


def check_plane(size: tuple[float, float, float]) -> None:
    """A mode plane is flat along exactly one axis."""
    flat = [a for a in range(3) if size[a] == 0]
    if len(flat) != 1:
        raise ValueError(
            "a mode plane needs size 0 along exactly one axis (its normal); "
            f"this one is flat along {len(flat)} — give the transverse axes a size > 0 (inf spans the domain)"
        )


__all__ = ["ModeSpec", "check_plane", "plane_normal"]
