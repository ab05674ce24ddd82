"""Boundary conditions on the six faces of the simulation box."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from .base import MetoModel, NonNegativeFinite, PositiveFinite


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


class PECBoundary(MetoModel):
    """Perfect electric conductor wall (tangential E = 0)."""

    type: Literal["PECBoundary"] = "PECBoundary"


class PMCBoundary(MetoModel):
    """Perfect magnetic conductor wall (tangential H = 0). On the minus side the wall
    is exactly the domain face; on the plus side it sits half a cell inside it, on
    the last tangential-H node of the Yee grid."""

    type: Literal["PMCBoundary"] = "PMCBoundary"


BoundaryKind = Annotated[Union[PML, Periodic, PECBoundary, PMCBoundary], Field(discriminator="type")]


class Boundary(MetoModel):
    """The two faces normal to one axis."""

    type: Literal["Boundary"] = "Boundary"
    minus: BoundaryKind = PML()
    plus: BoundaryKind = PML()

    @property
    def is_periodic(self) -> bool:
        return isinstance(self.minus, Periodic) or isinstance(self.plus, Periodic)


class BoundarySpec(MetoModel):
    """Boundaries along x, y, z. Axes of zero simulation size ignore theirs."""

    type: Literal["BoundarySpec"] = "BoundarySpec"
    x: Boundary = Boundary()
    y: Boundary = Boundary()
    z: Boundary = Boundary()

    @classmethod
    def all_sides(cls, kind: PML | Periodic | PECBoundary | PMCBoundary) -> "BoundarySpec":
        side = Boundary(minus=kind, plus=kind)
        return cls(x=side, y=side, z=side)

    def __getitem__(self, axis: int) -> Boundary:
        return (self.x, self.y, self.z)[axis]


__all__ = ["PML", "Boundary", "BoundarySpec", "PECBoundary", "PMCBoundary", "Periodic"]
