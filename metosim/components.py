"""gdsfactory components as simulations: structures from the layout and its layer stack,
a domain around them, and ports at the component's optical ports.

    import gdsfactory as gf
    gf.gpdk.PDK.activate()
    device = ms.from_gdsfactory(gf.components.mmi1x2())
    sim = device.simulation(grid_spec=ms.GridSpec.uniform(0.04), run_time=2e-13)
    s = ms.SMatrix(sim, device.ports, freqs).run_local()
    device.sax(s)                     # {("o1", "o2"): array over wavelength, ...}

Each level of the layer stack (gdsfactory's ``LayerStack``: ``zmin`` and ``thickness`` in
µm, a material name) that has shapes in the component becomes one ``PolySlab`` per
polygon (holes resolved into the outline by zero-width cuts), drawn in the stack's mesh
order (a lower ``mesh_order`` wins where levels overlap). The optical ports' waveguides
are extended straight out through the padding and the PML (``gf.components.extend_ports``),
and each port becomes a :class:`~metosim.smatrix.Port` at the component's edge, facing
in. A level's ``sidewall_angle`` (degrees) becomes the ``PolySlab``'s (radians), the mask
being its bottom cross-section (as gplugins hands levels to Meep); in 2D there are no
sidewalls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .geometry import PolySlab
from .grid import C_0, MICROMETRE
from .materials import material_library
from .mode_spec import ModeSpec
from .simulation import Simulation, Structure
from .smatrix import Port, SMatrix

#: gdsfactory's material names → the library's.
MATERIALS = {"si": "Si", "sio2": "SiO2", "sin": "Si3N4", "si3n4": "Si3N4", "au": "Au", "ag": "Ag", "al": "Al"}


@dataclass
class ComponentDevice:
    """A component ready to simulate: ``structures``, the domain (``center``, ``size``,
    µm), the ``background`` medium and the optical ``ports`` (facing in)."""

    name: str
    structures: list[Structure]
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    background: Any
    ports: list[Port]

    def simulation(self, **fields: Any) -> Simulation:
        """The device as a :class:`Simulation` (no sources or monitors), the other
        fields (``grid_spec``, ``run_time``, ``boundary_spec`` …) as given."""
        return Simulation(center=self.center, size=self.size, medium=self.background, structures=self.structures, **fields)

    def smatrix(self, wavelengths: Any, **fields: Any) -> SMatrix:
        """The device's :class:`SMatrix` between all its ports at ``wavelengths`` (µm),
        on :meth:`simulation` with ``fields`` (``grid_spec``, ``run_time`` …); ``.run(client)``
        or ``.run_local()`` computes it, :meth:`sax` hands it to a circuit solver."""
        return SMatrix(self.simulation(**fields), self.ports, C_0 / (np.asarray(wavelengths, float) * MICROMETRE))

    def sax(self, s: xr.DataArray, mode_index: int = 0) -> dict[tuple[str, str], np.ndarray]:
        """An S-matrix (``SMatrix`` output) as SAX and gplugins take it:
        ``{(out_port, in_port): complex array over wavelength}`` for one mode, the
        wavelengths ascending (µm: ``sax_wavelengths``)."""
        order = np.argsort(C_0 / s["f"].values)
        return {(o, i): s.sel(port_out=o, mode_out=mode_index, port_in=i, mode_in=mode_index).values[order] for o in s["port_out"].values for i in s["port_in"].values}

    @staticmethod
    def sax_wavelengths(s: xr.DataArray) -> np.ndarray:
        """The wavelengths (µm, ascending) of :meth:`sax`'s arrays."""
        return np.sort(C_0 / s["f"].values / MICROMETRE)


def _medium(name: str | None, level: str, materials: Mapping[str, Any]) -> Any:
    if name is None:
        raise ValueError(f"layer_stack level {level!r} names no material")
    if name in materials:
        return materials[name]
    key = MATERIALS.get(name.lower(), name)
    if key in material_library:
        return material_library[key].medium
    raise ValueError(f"layer_stack level {level!r}: no medium for material {name!r}; pass materials={{{name!r}: ms.Medium(...)}} (library: {sorted(material_library)})")


def _polygons(region: Any, dbu: float) -> list[np.ndarray]:
    """A KLayout region's polygons as (N, 2) vertex arrays in µm, holes cut into the
    outline; touching polygons merged first (a port's extension and the component's
    guide are one shape: apart, a slanted sidewall would open a groove between them)."""
    return [np.array([(p.x * dbu, p.y * dbu) for p in polygon.resolved_holes().each_point_hull()]) for polygon in region.merged().each()]


def _orientation(port: Any) -> tuple[int, float]:
    """The port's orientation as the nearest of 0, 90, 180, 270° and the angle (°,
    within ±45) it turns from there anticlockwise."""
    angle = float(port.orientation) % 360
    nearest = round(angle / 90) * 90
    return nearest % 360, angle - nearest


def _extend_ports(component: Any, length: float) -> Any:
    """``component`` with each optical port's waveguide run on ``length`` µm: gdsfactory's
    ``extend_ports``, or by hand where a port is at an angle to x and y (``extend_ports``,
    a kfactory cell, refuses the off-grid instance such a port needs)."""
    import gdsfactory as gf

    ports = [p for p in component.ports if p.port_type == "optical"]
    if all(abs(_orientation(p)[1]) < 1e-6 for p in ports):
        return gf.components.extend_ports(component, length=length, port_type="optical")
    extended = gf.Component()
    extended << component
    for p in ports:
        section = gf.cross_section.cross_section(width=float(p.width), layer=p.layer)
        (extended << gf.components.straight(length=length, cross_section=section)).connect("o1", p)
    extended.flatten()
    return extended


def _side_margins(ports: list[Any], margin: float) -> dict[str, float]:
    """Per port, the mode plane's margin beside its waveguide: ``margin``, or less where
    a parallel port on the same edge is near, so no plane reaches a neighbour's core
    (half the gap between the two waveguides)."""
    out = {}
    for p in ports:
        out[p.name] = margin
        for q in ports:
            if q is p or _orientation(q)[0] != _orientation(p)[0]:
                continue
            along = 0 if _orientation(p)[0] % 180 == 0 else 1  # the ports' normal axis
            if abs(float(p.center[along]) - float(q.center[along])) > 1e-6:
                continue
            gap = abs(float(p.center[1 - along]) - float(q.center[1 - along])) - 0.5 * (float(p.width) + float(q.width))
            out[p.name] = min(out[p.name], 0.5 * gap)
    return out


def _port(port: Any, z: tuple[float, float] | None, margin: float, side: float) -> Port:
    """A gdsfactory port (its orientation points out of the component) as a Port, its
    plane ``side`` µm wider than the waveguide each side, ``margin`` above and below.
    A port turned δ from x or y gets the plane normal to that axis, widened by 1/cos δ,
    and a mode spec at angle |δ| (``ModeSpec.angle_theta``)."""
    angle, turn = _orientation(port)
    axis = 0 if angle in (0, 180) else 1
    outward_plus = angle in (0, 90)
    x, y = (float(v) for v in port.center)
    width = (float(port.width) + 2 * side) / math.cos(math.radians(turn))
    size = [0.0, 0.0, math.inf if z is None else z[1] - z[0] + 2 * margin]
    size[1 - axis] = width
    centre = (x, y, 0.0 if z is None else 0.5 * (z[0] + z[1]))
    # Followed along +normal the guide leans towards +y (x normal) or −x (y normal) for a
    # positive turn; ModeSpec's angle_phi 0 names the first tangential axis (y, resp. x).
    leans_plus = turn > 0 if axis == 0 else turn < 0
    spec = ModeSpec(angle_theta=math.radians(abs(turn)), angle_phi=0.0 if leans_plus else math.pi) if abs(turn) > 1e-6 else ModeSpec()
    return Port(name=port.name, center=centre, size=tuple(size), direction="-" if outward_plus else "+", mode_spec=spec)


def from_gdsfactory(
    component: Any,
    layer_stack: Any = None,
    materials: Mapping[str, Any] | None = None,
    background: Any = None,
    padding: float = 1.0,
    extension: float = 3.0,
    port_margin: float = 1.0,
    two_d: bool = False,
) -> ComponentDevice:
    """``component`` (a gdsfactory ``Component``) as a :class:`ComponentDevice`.

    ``layer_stack``: gdsfactory's ``LayerStack`` (default: the active PDK's);
    ``materials``: media by the stack's material names (default: the library's Si, SiO2,
    Si3N4, Au, Ag, Al); ``background``: the medium around the structures (default SiO2);
    ``padding``: µm of background around the component's box (x, y, and z beyond the
    stack's levels); ``extension``: how far (µm) the port waveguides run on past the
    component, through the padding into the PML; ``port_margin``: µm of mode plane each
    side of a port's waveguide (less beside a near parallel port: half the gap). ``two_d``: a 2D device in the xy plane (structures
    infinite along z; give the core an effective index through ``materials``).

    Raises ``ValueError`` naming the component, layer, level or port: no optical ports,
    shapes on a layer no level of the stack draws, levels of different materials that
    overlap, a material without a medium. A port at an angle to x and y gets a mode
    plane normal to the nearer axis at that angle (``ModeSpec.angle_theta``).
    """
    import gdsfactory as gf

    materials = dict(materials or {})
    ports = [p for p in component.ports if p.port_type == "optical"]
    if not ports:
        raise ValueError(f"component {component.name!r} has no optical ports")
    if layer_stack is None:
        layer_stack = gf.get_active_pdk().layer_stack
    background = background if background is not None else material_library["SiO2"].medium
    extended = _extend_ports(component, extension)
    dbu = component.kcl.dbu

    drawn, covered = [], set()
    for name, level in layer_stack.layers.items():
        shapes = level.layer.get_shapes(extended)
        if shapes.is_empty():
            continue
        covered.update(_layers_of(level.layer))
        # 2D: a slab through z = 0 (the plane the simulation steps).
        bounds = (-1.0, 1.0) if two_d else (float(level.zmin), float(level.zmin) + float(level.thickness))
        drawn.append((level.mesh_order, name, level, shapes, bounds, _medium(level.material, name, materials)))
    for layer in component.get_polygons_points(by="tuple"):
        if tuple(layer) not in covered:
            raise ValueError(f"component {component.name!r}: layer {tuple(layer)} has shapes but no level of the layer stack draws it")
    if not drawn:
        raise ValueError(f"component {component.name!r}: no level of the layer stack has shapes in it")
    _check_overlaps(drawn, two_d)

    structures = []
    # Higher mesh_order first: a lower one, drawn later, wins where levels overlap.
    for _, name, level, shapes, bounds, medium in sorted(drawn, key=lambda d: -d[0]):
        for vertices in _polygons(shapes, dbu):
            # gdsfactory's angle is in degrees, its mask the bottom cross-section (as gplugins hands it to Meep); a 2D slab has no sidewalls.
            angle = 0.0 if two_d else math.radians(float(level.sidewall_angle or 0.0))
            structures.append(Structure(geometry=PolySlab(vertices=vertices, slab_bounds=bounds, sidewall_angle=angle), medium=medium, name=name))

    box = component.dbbox()
    xy_lo, xy_hi = (box.left - padding, box.bottom - padding), (box.right + padding, box.top + padding)
    if two_d:
        z_range, centre_z, size_z = None, 0.0, 0.0
    else:
        z_range = (min(d[4][0] for d in drawn), max(d[4][1] for d in drawn))
        centre_z, size_z = 0.5 * (z_range[0] + z_range[1]), z_range[1] - z_range[0] + 2 * padding
    centre = (0.5 * (xy_lo[0] + xy_hi[0]), 0.5 * (xy_lo[1] + xy_hi[1]), centre_z)
    size = (xy_hi[0] - xy_lo[0], xy_hi[1] - xy_lo[1], size_z)
    core = None if two_d else _port_levels(drawn, ports, dbu)
    sides = _side_margins(ports, port_margin)
    return ComponentDevice(component.name, structures, centre, size, background, [_port(p, core, port_margin, sides[p.name]) for p in ports])


def _layers_of(layer: Any) -> set[tuple[int, int]]:
    """The GDS (layer, datatype) pairs a stack level's (possibly derived) layer reads."""
    if hasattr(layer, "layer1"):  # a DerivedLayer: an operation on two layers
        return _layers_of(layer.layer1) | _layers_of(layer.layer2)
    info = layer.layer  # a LayerEnum member, a KLayout LayerInfo or a (layer, datatype) pair
    return {(int(info.layer), int(info.datatype))} if hasattr(info, "datatype") else {(int(info[0]), int(info[1]))}


def _check_overlaps(drawn: list[tuple], two_d: bool) -> None:
    """Levels of different materials whose shapes and heights overlap are ambiguous."""
    for i, (_, name_a, _, shapes_a, za, medium_a) in enumerate(drawn):
        for _, name_b, _, shapes_b, zb, medium_b in drawn[i + 1 :]:
            heights = two_d or (min(za[1], zb[1]) - max(za[0], zb[0]) > 1e-9)
            if medium_a != medium_b and heights and not (shapes_a & shapes_b).is_empty():
                raise ValueError(f"layer_stack levels {name_a!r} and {name_b!r} overlap with different materials")


def _port_levels(drawn: list[tuple], ports: list[Any], dbu: float) -> tuple[float, float]:
    """The z range of the levels under the ports' centres (the waveguide cores)."""
    import klayout.db as kdb

    lo, hi = math.inf, -math.inf
    for p in ports:
        x, y = (round(float(v) / dbu) for v in p.center)
        probe = kdb.Region(kdb.Box(x - 1, y - 1, x + 1, y + 1))
        for _, _, _, shapes, bounds, _ in drawn:
            if not (shapes & probe).is_empty():
                lo, hi = min(lo, bounds[0]), max(hi, bounds[1])
    if not math.isfinite(lo):
        raise ValueError(f"ports {[p.name for p in ports]}: no level of the layer stack lies under them")
    return lo, hi

