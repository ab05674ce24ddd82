"""Boundary conditions on the six faces of the simulation box."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from .base import Finite, MetoModel, NonNegativeFinite, PositiveFinite


class PML(MetoModel):
    """Convolutional PML (CPML) with polynomial grading of order ``sigma_order``:
    σ rises to ``sigma_scale`` × the optimal σ, κ to ``kappa_max``; α (in units of
    2π·c/µm) falls linearly from ``alpha_max`` to 0 towards the outer wall."""

    type: Literal["PML"] = "PML"
    num_layers: Annotated[int, Field(ge=1, le=256)] = 12
    sigma_order: Annotated[PositiveFinite, Field(le=6)] = 3.0
    sigma_scale: PositiveFinite = 1.0
    kappa_max: Annotated[PositiveFinite, Field(ge=1.0)] = 2.0
    alpha_max: NonNegativeFinite = 0.05


class Periodic(MetoModel):
    type: Literal["Periodic"] = "Periodic"


class BlochBoundary(MetoModel):
    """Periodic with a phase: the field one period on equals the field here times
    exp(i·2π·``bloch_vec``), i.e. a Bloch wavevector k = 2π·bloch_vec / L along the
    axis (L its simulation size). Set on both sides of an axis; fields become complex.
    :meth:`from_source` matches an oblique :class:`~metosim.PlaneWave`."""

    type: Literal["BlochBoundary"] = "BlochBoundary"
    bloch_vec: Finite

    @classmethod
    def from_source(cls, source: Any, axis: int, domain_size: float, medium: Any = None) -> "BlochBoundary":
        """The Bloch boundary along ``axis`` (0, 1, 2) for the oblique plane wave
        ``source`` at its ``freq0`` in a background ``medium`` (default vacuum), for
        a domain ``domain_size`` µm long along that axis."""
        eps = 1.0 if medium is None else medium.permittivity
        return cls(bloch_vec=float(source.wavevector(eps)[axis]) * domain_size / (2 * math.pi))


class PECBoundary(MetoModel):
    """Perfect electric conductor wall (tangential E = 0)."""

    type: Literal["PECBoundary"] = "PECBoundary"


class PMCBoundary(MetoModel):
    """Perfect magnetic conductor wall (tangential H = 0). On the minus side the wall
    is exactly the domain face; on the plus side it sits half a cell inside it, on
    the last tangential-H node of the Yee grid."""

    type: Literal["PMCBoundary"] = "PMCBoundary"


BoundaryKind = Annotated[Union[PML, Periodic, BlochBoundary, PECBoundary, PMCBoundary], Field(discriminator="type")]


class Boundary(MetoModel):
    """The two faces normal to one axis."""

    type: Literal["Boundary"] = "Boundary"
    minus: BoundaryKind = PML()
    plus: BoundaryKind = PML()

    @property
    def is_periodic(self) -> bool:
        """Periodic or Bloch-periodic (on both sides, once validated)."""
        return isinstance(self.minus, (Periodic, BlochBoundary)) or isinstance(self.plus, (Periodic, BlochBoundary))

    @property
    def bloch_phase(self) -> float:
        """Phase (rad) the field gains over one period: 2π·bloch_vec, 0 if not Bloch."""
        return 2 * math.pi * self.minus.bloch_vec if isinstance(self.minus, BlochBoundary) else 0.0


class BoundarySpec(MetoModel):
    """Boundaries along x, y, z. Axes of zero simulation size ignore theirs."""

    type: Literal["BoundarySpec"] = "BoundarySpec"
    x: Boundary = Boundary()
    y: Boundary = Boundary()
    z: Boundary = Boundary()

    @classmethod
    def all_sides(cls, kind: PML | Periodic | BlochBoundary | PECBoundary | PMCBoundary) -> "BoundarySpec":
        side = Boundary(minus=kind, plus=kind)
        return cls(x=side, y=side, z=side)

    def __getitem__(self, axis: int) -> Boundary:
        return (self.x, self.y, self.z)[axis]


__all__ = ["PML", "BlochBoundary", "Boundary", "BoundarySpec", "PECBoundary", "PMCBoundary", "Periodic"]
