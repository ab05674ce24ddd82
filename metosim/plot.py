"""Matplotlib drawing of simulations: structure cross-sections, sources, monitors, PML."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import AXES
from .boundary import PML
from .geometry import Box, Cylinder, PolySlab, Sphere
from .medium import PECMedium
from .monitor import FluxMonitor, ModeMonitor
from .source import ModeSource, PointDipole

_BIG = 1e6  # stands in for an infinite extent when clipping to the domain (µm)

#: What a field plot can show of a complex component: name → (function, label).
QUANTITIES: dict[str, tuple[Any, str]] = {
    "real": (np.real, "Re"),
    "imag": (np.imag, "Im"),
    "abs": (np.abs, "|·|"),
    "int": (lambda v: np.abs(v) ** 2, "|·|²"),
}


def field_image(ax: Any, array: Any, u: str, v: str, component: str, val: str, structures: Any = (), normal: int = 2, position: float = 0.0) -> Any:
    """Draw a 2D DataArray on dims (``u``, ``v``) as ``val`` (real | imag | abs | int)
    with a colour bar and the outlines of ``structures`` cut at axis ``normal`` =
    ``position`` (µm); returns the axis."""
    if val not in QUANTITIES:
        raise ValueError(f"val must be one of {sorted(QUANTITIES)}, not {val!r}")
    func, label = QUANTITIES[val]
    image = func(np.asarray(array.transpose(u, v).values))
    cu, cv = np.asarray(array[u]), np.asarray(array[v])
    symmetric = val in ("real", "imag")
    vmax = float(np.max(np.abs(image))) or 1.0
    mesh = ax.pcolormesh(cu, cv, image.T, shading="nearest", cmap="RdBu_r" if symmetric else "magma", vmin=-vmax if symmetric else 0.0, vmax=vmax)
    ax.figure.colorbar(mesh, ax=ax, label=f"{label} {component}")
    draw_structure_outlines(ax, structures, normal, position, color="black" if not symmetric else "grey")
    ax.set_xlim(cu.min(), cu.max()) if cu.size > 1 else None
    ax.set_ylim(cv.min(), cv.max()) if cv.size > 1 else None
    ax.set_aspect("equal")
    ax.set_xlabel(f"{u} (µm)")
    ax.set_ylabel(f"{v} (µm)")
    return ax


def spectral_label(dim: str, value: float) -> str:
    """A frequency (``dim="f"``, Hz) or time (``"t"``, s) to 4 significant digits with an
    SI prefix: 193.4 THz, 12.35 fs."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(unit="Hz" if dim == "f" else "s")(float(f"{value:.4g}"))


def plane_axes(x: float | None, y: float | None, z: float | None) -> tuple[int, float, int, int]:
    """The normal axis and position of the requested cut, and the two in-plane axes."""
    given = [(a, v) for a, v in enumerate((x, y, z)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of x=, y=, z= (µm) to choose the cross-section")
    normal, position = given[0]
    u, v = (a for a in range(3) if a != normal)
    return normal, float(position), u, v


def _interval(lo: float, hi: float) -> tuple[float, float]:
    return max(lo, -_BIG), min(hi, _BIG)


def cross_section(geometry: Any, normal: int, position: float) -> list[Any]:
    """Patches of ``geometry`` cut by the plane ``axis[normal] = position`` (µm), drawn
    in the plane's (u, v) coordinates, u < v in axis order."""
    from matplotlib.patches import Circle, Polygon, Rectangle

    u, v = (a for a in range(3) if a != normal)
    lo, hi = geometry.bounds()
    if not lo[normal] <= position <= hi[normal]:
        return []
    if isinstance(geometry, Box) or (isinstance(geometry, Cylinder) and geometry.axis != normal):
        if isinstance(geometry, Cylinder):
            half = np.sqrt(max(geometry.radius**2 - (position - geometry.center[_other(geometry.axis, normal)]) ** 2, 0.0))
            lo, hi = list(lo), list(hi)
            w = _other(geometry.axis, normal)
            lo[w], hi[w] = geometry.center[w] - half, geometry.center[w] + half
        (u0, u1), (v0, v1) = _interval(lo[u], hi[u]), _interval(lo[v], hi[v])
        return [Rectangle((u0, v0), u1 - u0, v1 - v0)]
    if isinstance(geometry, (Sphere, Cylinder)):
        d = position - geometry.center[normal] if isinstance(geometry, Sphere) else 0.0
        radius = np.sqrt(max(geometry.radius**2 - d**2, 0.0))
        return [Circle((geometry.center[u], geometry.center[v]), radius)] if radius > 0 else []
    if isinstance(geometry, PolySlab):
        if geometry.axis == normal:
            return [Polygon(np.asarray(geometry.vertices), closed=True)]
        # A cut containing the extrusion axis: the polygon's chords along the cut line.
        a, b = (i for i in range(3) if i != geometry.axis)
        line_axis = b if normal == a else a  # in-polygon coordinate running along the cut
        verts = np.asarray(geometry.vertices)
        fixed = verts[:, 0] if normal == a else verts[:, 1]
        moving = verts[:, 1] if normal == a else verts[:, 0]
        hits = []
        for (f0, m0), (f1, m1) in zip(zip(fixed, moving), zip(np.roll(fixed, -1), np.roll(moving, -1))):
            if (f0 > position) != (f1 > position):
                hits.append(m0 + (position - f0) * (m1 - m0) / (f1 - f0))
        hits.sort()
        z0, z1 = geometry.slab_bounds
        patches = []
        for m0, m1 in zip(hits[::2], hits[1::2]):
            span = {line_axis: (m0, m1), geometry.axis: (z0, z1)}
            (u0, u1), (v0, v1) = span[u], span[v]
            patches.append(Rectangle((u0, v0), u1 - u0, v1 - v0))
        return patches
    raise TypeError(f"cannot draw {type(geometry).__name__}")


def _other(axis: int, normal: int) -> int:
    return next(i for i in range(3) if i not in (axis, normal))


def draw_structure_outlines(ax: Any, structures: Any, normal: int, position: float, **style: Any) -> list[Any]:
    """Overlay structure outlines (no fill) on ``ax``; returns the patches added."""
    patches = []
    for s in structures:
        for p in cross_section(s.geometry, normal, position):
            p.set(fill=False, edgecolor=style.get("color", "white"), linewidth=style.get("linewidth", 1.0))
            ax.add_patch(p)
            patches.append(p)
    return patches


def plot_simulation(sim: Any, x: float | None = None, y: float | None = None, z: float | None = None, ax: Any = None, grid: bool = False) -> Any:
    """Draw a cross-section of ``sim``; see :meth:`metosim.Simulation.plot`."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    normal, position, u, v = plane_axes(x, y, z)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    (lo, hi), g = sim.bounds, sim.grid
    span = [(lo[a], hi[a]) if sim.size[a] > 0 else (sim.center[a] - g.dl[a] / 2, sim.center[a] + g.dl[a] / 2) for a in range(3)]
    eps = [m.eps_max for m in sim.media]
    norm = Normalize(vmin=1.0, vmax=max(max(eps), 1.0 + 1e-9))
    cmap = plt.get_cmap("Blues")

    ax.add_patch(Rectangle((span[u][0], span[v][0]), span[u][1] - span[u][0], span[v][1] - span[v][0], facecolor=cmap(norm(eps[0])), edgecolor="black", label="_domain"))
    for s in sim.structures:
        colour = "black" if isinstance(s.medium, PECMedium) else cmap(norm(s.medium.eps_max))
        for p in cross_section(s.geometry, normal, position):
            p.set(facecolor=colour, edgecolor="black", linewidth=0.5, label=f"structure:{s.name or type(s.geometry).__name__}")
            ax.add_patch(p)

    for a, (lo_a, hi_a) in ((u, span[u]), (v, span[v])):
        if sim.size[a] == 0:
            continue
        for side, kind in (("minus", sim.boundary_spec[a].minus), ("plus", sim.boundary_spec[a].plus)):
            if not isinstance(kind, PML):
                continue
            steps = g.primal_steps(a)
            t = float(np.sum(steps[: kind.num_layers] if side == "minus" else steps[-kind.num_layers :]))
            start = lo_a if side == "minus" else hi_a - t
            (x0, w), (y0, h) = ((start, t), (span[v][0], span[v][1] - span[v][0])) if a == u else ((span[u][0], span[u][1] - span[u][0]), (start, t))
            ax.add_patch(Rectangle((x0, y0), w, h, facecolor="grey", alpha=0.25, hatch="//", edgecolor="grey", label=f"pml:{AXES[a]}{side}"))

    for a in (u, v):
        if sim.symmetry[a] == 0:
            continue
        # The mirror plane, and the half the engine does not step (it is unfolded).
        c = sim.center[a]
        (x0, w), (y0, h) = ((span[u][0], c - span[u][0]), (span[v][0], span[v][1] - span[v][0])) if a == u else ((span[u][0], span[u][1] - span[u][0]), (span[v][0], c - span[v][0]))
        ax.add_patch(Rectangle((x0, y0), w, h, facecolor="white", alpha=0.45, edgecolor="none", label=f"mirrored:{AXES[a]}"))
        line = ax.axvline if a == u else ax.axhline
        line(c, color="teal", linestyle="-.", linewidth=1.5, label=f"symmetry:{AXES[a]}={sim.symmetry[a]:+d} ({'PMC' if sim.symmetry[a] > 0 else 'PEC'})")

    for src in sim.sources:
        if isinstance(src, PointDipole):
            ax.plot(src.center[u], src.center[v], marker="o", color="red", label=f"source:{src.name or src.type}")
        else:
            _draw_box(ax, src.center, src.size, u, v, span, color="red", label=f"source:{src.name or src.type}")
        if isinstance(src, ModeSource) and src.axis in (u, v):
            # An arrow along the launch direction, from the plane's centre.
            step = 0.08 * max(span[u][1] - span[u][0], span[v][1] - span[v][0]) * src.sign
            du, dv = (step, 0.0) if src.axis == u else (0.0, step)
            ax.annotate("", xy=(src.center[u] + du, src.center[v] + dv), xytext=(src.center[u], src.center[v]), arrowprops=dict(arrowstyle="->", color="red", linewidth=2))
    for mon in sim.monitors:
        colour = "orange" if isinstance(mon, FluxMonitor) else "purple" if isinstance(mon, ModeMonitor) else "green"
        _draw_box(ax, mon.center, mon.size, u, v, span, color=colour, label=f"monitor:{mon.name}", dashed=True)

    if grid:
        from matplotlib.collections import LineCollection

        # Cell boundaries (integer nodes) of the two in-plane axes.
        lines = [[(b, span[v][0]), (b, span[v][1])] for b in g.boundaries[u]] if sim.size[u] > 0 else []
        lines += [[(span[u][0], b), (span[u][1], b)] for b in g.boundaries[v]] if sim.size[v] > 0 else []
        ax.add_collection(LineCollection(lines, colors="tab:orange", linewidths=0.35, alpha=0.8, label="grid"))

    ax.set_xlim(*span[u])
    ax.set_ylim(*span[v])
    ax.set_aspect("equal")
    ax.set_xlabel(f"{AXES[u]} (µm)")
    ax.set_ylabel(f"{AXES[v]} (µm)")
    ax.set_title(f"{AXES[normal]} = {position:g} µm")
    return ax


def _draw_box(ax: Any, center: Any, size: Any, u: int, v: int, span: Any, color: str, label: str, dashed: bool = False) -> None:
    """A source or monitor footprint, clipped to the domain (a line when flat)."""
    from matplotlib.patches import Rectangle

    u0, u1 = max(center[u] - size[u] / 2, span[u][0]), min(center[u] + size[u] / 2, span[u][1])
    v0, v1 = max(center[v] - size[v] / 2, span[v][0]), min(center[v] + size[v] / 2, span[v][1])
    ax.add_patch(Rectangle((u0, v0), u1 - u0, v1 - v0, fill=False, edgecolor=color, linewidth=2, linestyle="--" if dashed else "-", label=label))


def design_image(ax: Any, rho_hat: np.ndarray, problem: Any) -> Any:
    """The projected density (nx, ny, nz) of a design region (1 = ε_max) on its box,
    in the plane of its two largest pixel axes (the middle slice of a 3D design)."""
    u, v = sorted(int(a) for a in np.argsort(rho_hat.shape, kind="stable")[-2:])
    w = 3 - u - v
    image = np.take(rho_hat, rho_hat.shape[w] // 2, axis=w)  # (n_u, n_v)
    lo, hi = problem.design.geometry.bounds()
    ax.imshow(image.T, origin="lower", extent=(lo[u], hi[u], lo[v], hi[v]), cmap="binary", vmin=0, vmax=1)
    ax.set_xlabel(f"{AXES[u]} (µm)"), ax.set_ylabel(f"{AXES[v]} (µm)")
    ax.set_title("design ρ̂ (black: ε_max)")
    return ax


def optimization_figure(history: list[dict[str, Any]], rho_hat: np.ndarray, problem: Any, axes: Any = None) -> Any:
    """Objective against iteration (β changes marked) beside the current design."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1.4, 1]})
    curve, image = axes
    iterations = [r["iteration"] for r in history]
    curve.plot(iterations, [r["objective"] for r in history], "o-", ms=3)
    for prev, rec in zip(history, history[1:]):
        if rec["beta"] != prev["beta"]:
            curve.axvline(rec["iteration"], color="0.8", lw=0.8)
            curve.annotate(f"β={rec['beta']:g}", (rec["iteration"], 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="0.4")
    curve.set_xlabel("iteration"), curve.set_ylabel(f"objective ({problem.objective.goal})")
    curve.grid(alpha=0.3)
    design_image(image, rho_hat, problem)
    return axes
