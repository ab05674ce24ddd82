"""Monitor regions on the Yee grid and the post-processing of what they record.

Every monitor reports its fields colocated on the integer nodes (cell boundaries)
inside its box; a zero-size axis snaps to the nearest node. During the run each
component is recorded on its own staggered nodes, widened by one node where it is
staggered, and averaged onto the integer nodes afterwards (colocation commutes with
the DFT, so it costs nothing per step).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import xarray as xr

from ..grid import Grid
from ..monitor import FieldMonitor, FieldProjectionAngleMonitor, FieldTimeMonitor, FluxMonitor, ModeMonitor
from .modes import Modes, Plane, modes_dataset, reciprocal_overlap
from .sampling import Region, colocate, interior_node, snapped_edges
from .units import TIME_UNIT, to_normalised_frequency


def flux_components(normal: int) -> tuple[str, str, str, str]:
    """(E_u, H_v, E_v, H_u) with S_normal = E_u·H_v − E_v·H_u."""
    u, v = "xyz"[(normal + 1) % 3], "xyz"[(normal + 2) % 3]
    return f"E{u}", f"H{v}", f"E{v}", f"H{u}"


def flux_normal(monitor: FluxMonitor, grid: Grid) -> int:
    return next(a for a in range(3) if monitor.size[a] == 0 and grid.active[a])


def field_dataset(monitor: FieldMonitor, region: Region, grid: Grid, recorded: dict[str, np.ndarray]) -> xr.Dataset:
    """DFT fields (normalised field units × s) on dims (x, y, z, f)."""
    data = {comp: (("x", "y", "z", "f"), np.moveaxis(v, 0, -1) * TIME_UNIT) for comp, v in field_values(monitor, region, recorded).items()}
    return xr.Dataset(data, coords={**region.coords(grid), "f": np.asarray(monitor.freqs)}, attrs={"monitor_type": monitor.type})


def field_values(monitor: FieldMonitor, region: Region, recorded: dict[str, Any], xp: ModuleType = np) -> dict[str, Any]:
    """The recorded DFT components colocated on the region's integer nodes, (f, x, y, z)."""
    return {comp: colocate(recorded[comp], region, comp, 1, xp) for comp in monitor.fields}


def flux_array(monitor: FluxMonitor, region: Region, grid: Grid, recorded: dict[str, np.ndarray], source_power: np.ndarray) -> xr.DataArray:
    """Flux through the plane along ``normal_dir``, over the first source's power spectrum."""
    normal = flux_normal(monitor, grid)
    return xr.DataArray(
        flux_values(monitor, region, grid, recorded) / source_power,
        dims=("f",),
        coords={"f": np.asarray(monitor.freqs)},
        name="flux",
        attrs={"monitor_type": monitor.type, "normal": "xyz"[normal] + monitor.normal_dir},
    )


def surface_weights(grid: Grid, region: Region, center: tuple[float, ...], size: tuple[float, ...], normal: int) -> np.ndarray:
    """Integration weights (µm², µm in 2D) of a surface's integer nodes (its region from
    :func:`surface_range`), shape of the region: the span between the half nodes around
    each node, only its inner half at an end node an edge was snapped to (the trapezoid
    rule over the snapped extent, so surfaces sharing an edge, as the faces of a closed
    box do, count it once and leave no gap, whatever the box's size); an edge past the
    domain keeps the full width."""
    weights = np.ones(tuple(stop - start for start, stop in region.targets))
    for b in range(3):
        if b == normal or not grid.active[b]:
            continue
        span = slice(*region.targets[b])
        below, above = (e[span] for e in grid.cell_extent(f"H{'xyz'[b]}", b))  # H_b: on integer nodes along b
        w = below + above
        snapped = snapped_edges(grid, b, center[b], size[b])
        if w.size > 1 and snapped[0]:
            w[0] = above[0]
        if w.size > 1 and snapped[1]:
            w[-1] = below[-1]
        weights = weights * w.reshape([-1 if k == b else 1 for k in range(3)])
    return weights


def flux_values(monitor: FluxMonitor, region: Region, grid: Grid, recorded: dict[str, Any], xp: ModuleType = np) -> Any:
    """Power through the monitor plane along ``normal_dir`` per frequency, from the
    recorded DFT fields (normalised units, not divided by the source power)."""
    normal = flux_normal(monitor, grid)
    eu, hv, ev, hu = (colocate(recorded[c], region, c, 1, xp) for c in flux_components(normal))
    weights = surface_weights(grid, region, monitor.center, monitor.size, normal)
    sign = 1.0 if monitor.normal_dir == "+" else -1.0
    return sign * 0.5 * (xp.real(eu * xp.conj(hv) - ev * xp.conj(hu)) * weights).sum(axis=(1, 2, 3))


def snapshot_steps(monitor: FieldTimeMonitor, dt_seconds: float, num_steps: int) -> np.ndarray:
    """Time-step numbers at which ``monitor`` records (state after that many steps)."""
    start = math.ceil(monitor.start / dt_seconds - 1e-9)
    stop = num_steps if monitor.stop is None else min(num_steps, math.floor(monitor.stop / dt_seconds + 1e-9))
    if stop < start and start <= num_steps:  # a window between two steps (start = stop): the nearest step
        start = stop = min(num_steps, round(monitor.start / dt_seconds))
    return np.arange(start, stop + 1, monitor.interval)


def time_dataset(monitor: FieldTimeMonitor, region: Region, grid: Grid, recorded: dict[str, np.ndarray], steps: np.ndarray) -> xr.Dataset:
    """Snapshots on dims (x, y, z, t); H is sampled half a step before the t shown."""
    data = {comp: (("x", "y", "z", "t"), np.moveaxis(v, 0, -1)) for comp, v in time_values(monitor, region, recorded, steps.size).items()}
    return xr.Dataset(data, coords={**region.coords(grid), "t": steps * grid.dt}, attrs={"monitor_type": monitor.type})


def time_values(monitor: FieldTimeMonitor, region: Region, recorded: dict[str, Any], count: int, xp: ModuleType = np) -> dict[str, Any]:
    """The first ``count`` snapshots of each component colocated on the region's
    integer nodes, (t, x, y, z)."""
    return {comp: colocate(recorded[comp][:count], region, comp, 1, xp) for comp in monitor.fields}


def mode_recording(plane: Plane, where: str) -> tuple[tuple[str, tuple[slice, slice, slice]], ...]:
    """What a mode monitor records: the transverse E on the plane's E nodes and the
    transverse H on the two H planes either side (index i0 − 1 and i0 along the normal)."""
    n, (u, v) = plane.normal, plane.axes
    i0 = interior_node(plane.index, f"{where}: the mode plane")
    e_window, h_window = list(plane.window), list(plane.window)
    e_window[n], h_window[n] = slice(i0, i0 + 1), slice(i0 - 1, i0 + 1)
    return tuple((f"{kind}{'xyz'[a]}", tuple(e_window if kind == "E" else h_window)) for kind in "EH" for a in (u, v))  # type: ignore[misc]


def mode_dataset(monitor: ModeMonitor, grid: Grid, plane: Plane, modes: list[Modes], recorded: dict[str, np.ndarray], reference: np.ndarray, dn: float) -> xr.Dataset:
    """Forward/backward amplitudes of each mode from the recorded DFT fields.

    With E = a₊e₊ + a₋e₋ and H = a₊h₊ + a₋h₋ on the plane (the backward partner of
    a guide's mode along the normal has e₋ = e₊ and h₋ = −h₊; at an angle it differs:
    ``Modes.backward``), reciprocity — ⟨e₁, h₂⟩ − ⟨e₂, h₁⟩ vanishes between modes of
    one guide unless they are partners — gives, with the unconjugated overlap ⟨e, h⟩ and
    C = ⟨e₊, h₋⟩ − ⟨e₋, h₊⟩, a₊ = (⟨E, h₋⟩ − ⟨e₋, H⟩)/C and a₋ = −(⟨E, h₊⟩ − ⟨e₊, H⟩)/C
    (a± = (⟨E, h⟩ ± ⟨e, H⟩)/(2⟨e, h⟩) along the normal); the H recorded half a cell
    either side of the plane averages to cos(βΔn/2)·H(i0) for each mode, divided out
    again.
    ``reference``: per frequency, the injected amplitude (complex for a mode source,
    √power otherwise). With ``monitor.store_fields`` the modes' indices and profiles
    join them (:func:`.modes.modes_dataset`).
    """
    amps = mode_amplitudes(plane, modes, recorded, dn) / reference[None, None, :]
    n_eff = np.stack([m.n_eff for m in modes], axis=1)
    data = xr.Dataset(
        {"amps": (("direction", "mode_index", "f"), amps), "n_eff": (("mode_index", "f"), np.real(n_eff))},
        coords={"direction": ["+", "-"], "mode_index": np.arange(amps.shape[1]), "f": np.asarray(monitor.freqs)},
        attrs={"monitor_type": monitor.type, "normal": "xyz"[plane.normal]},
    )
    if monitor.store_fields:
        data = data.merge(modes_dataset(grid, plane, modes, np.asarray(monitor.freqs)))
    return data


def mode_amplitudes(plane: Plane, modes: list[Modes], recorded: dict[str, Any], dn: float, xp: ModuleType = np) -> Any:
    """(a₊, a₋) of each mode per frequency, shape (2, modes, f), from the recorded DFT
    fields (see :func:`mode_dataset`; not divided by the source reference)."""

    u, v = plane.axes
    E = [plane.from_grid(recorded[f"E{'xyz'[a]}"], xp) for a in (u, v)]  # (f, Nu, Nv)
    H = [plane.from_grid(0.5 * recorded[f"H{'xyz'[a]}"].sum(axis=1 + plane.normal, keepdims=True), xp) for a in (u, v)]

    def overlap(e: tuple, h: tuple) -> Any:
        return reciprocal_overlap(e[0], e[1], h[0], h[1], plane.steps)

    forward, backward = [], []
    for k in range(modes[0].n_eff.size):
        plus, minus = [], []
        for i, m in enumerate(modes):
            e, h = (m.E[0][k], m.E[1][k]), (m.H[0][k], m.H[1][k])
            e_b, h_b = m.backward(k)
            recorded_h = np.cos(m.beta[k] * dn / 2)
            fields = ((E[0][i], E[1][i]), (H[0][i], H[1][i]))
            norm = overlap(e, h_b) - overlap(e_b, h)
            plus.append((overlap(fields[0], h_b) - overlap(e_b, fields[1]) / recorded_h) / norm)
            minus.append(-(overlap(fields[0], h) - overlap(e, fields[1]) / recorded_h) / norm)
        forward.append(xp.stack(plus))
        backward.append(xp.stack(minus))
    return xp.stack([xp.stack(forward), xp.stack(backward)])


def projection_faces(monitor: FieldProjectionAngleMonitor) -> list[tuple[int, int, tuple[float, ...], tuple[float, ...]]]:
    """The faces of a projection box (six; four sides of a rectangle in 2D): (normal
    axis, side −1/+1, centre, size)."""
    faces = []
    for a in range(2 if monitor.planar else 3):
        for side in (-1, 1):
            centre, size = list(monitor.center), list(monitor.size)
            centre[a] += side * monitor.size[a] / 2
            size[a] = 0.0
            faces.append((a, side, tuple(centre), tuple(size)))
    return faces


def far_field(
    monitor: FieldProjectionAngleMonitor, faces: list[tuple[int, int, Region]], grid: Grid, recorded: list[dict[str, np.ndarray]], eps_background: float, source_power: np.ndarray
) -> xr.Dataset:
    """Near-to-far-field transformation (e^{−iωt}): on each face the equivalent
    currents J = n̂ × H and M = −n̂ × E; radiation vectors N = Σ J e^{−ik r̂·r'} dA and
    L = Σ M e^{−ik r̂·r'} dA (r' from the box centre); then
    E_θ = ik·G·(L_φ + ηN_θ), E_φ = −ik·G·(L_θ − ηN_φ) with G = e^{ikr}/(4πr) and the
    power per steradian r²|E|²/(2η), in the background's k = nω and η = 1/n.

    In 2D (a rectangle, invariant along z) the sums run along the sides (dA = dl, per
    unit length along z) and G is the far form of the 2D Green's function,
    ∫ e^{ikR}/(4πR) dz = (i/4)·H₀⁽¹⁾(kr) → e^{i(kr+π/4)}/√(8πkr); the power per radian
    is r|E|²/(2η)."""
    n_bg = np.sqrt(eps_background)
    eta = 1 / n_bg
    freqs = np.array([to_normalised_frequency(f) for f in monitor.freqs])
    k = 2 * np.pi * freqs * n_bg  # (F,)
    theta, phi = np.meshgrid(np.asarray(monitor.theta), np.asarray(monitor.phi), indexing="ij")
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    r_hat = np.stack([st * cp, st * sp, ct], axis=-1)  # (T, P, 3)
    theta_hat = np.stack([ct * cp, ct * sp, -st], axis=-1)
    phi_hat = np.stack([-sp, cp, np.zeros_like(sp)], axis=-1)
    N = np.zeros((freqs.size, *theta.shape, 3), dtype=complex)
    L = np.zeros_like(N)
    for (a, side, region), (_, _, centre, size), dft in zip(faces, projection_faces(monitor), recorded):
        u, v = (a + 1) % 3, (a + 2) % 3
        eu, hv, ev, hu = (colocate(dft[c], region, c, 1) for c in flux_components(a))  # (F, Nx, Ny, Nz)
        coords = region.coords(grid)
        mesh = np.meshgrid(*(coords[ax] - monitor.center[i] for i, ax in enumerate("xyz")), indexing="ij")
        weights = surface_weights(grid, region, centre, size, a)
        points = np.stack([m.ravel() for m in mesh], axis=-1)  # (Q, 3)
        phase = np.exp(-1j * k[:, None, None, None] * (r_hat @ points.T)[None])  # (F, T, P, Q)
        # J = side·(H_u ê_v − H_v ê_u), M = −side·(E_u ê_v − E_v ê_u)
        for current, (first, second), sign in ((N, (hu, hv), side), (L, (eu, ev), -side)):
            along_v = (first * weights).reshape(freqs.size, -1)
            along_u = (-second * weights).reshape(freqs.size, -1)
            current[..., v] += sign * np.einsum("ftpq,fq->ftp", phase, along_v)
            current[..., u] += sign * np.einsum("ftpq,fq->ftp", phase, along_u)
    N_t, N_p = (np.sum(N * h[None], axis=-1) for h in (theta_hat, phi_hat))
    L_t, L_p = (np.sum(L * h[None], axis=-1) for h in (theta_hat, phi_hat))
    r = monitor.proj_distance
    if monitor.planar:
        green, area = np.exp(1j * (k * r + np.pi / 4)) / np.sqrt(8 * np.pi * k * r), r
    else:
        green, area = np.exp(1j * k * r) / (4 * np.pi * r), r**2
    factor = (1j * k * green)[:, None, None]
    e_theta = factor * (L_p + eta * N_t)
    e_phi = -factor * (L_t - eta * N_p)
    power = (np.abs(e_theta) ** 2 + np.abs(e_phi) ** 2) * area / (2 * eta) / source_power[:, None, None]
    return xr.Dataset(
        {
            "Etheta": (("f", "theta", "phi"), e_theta * TIME_UNIT),
            "Ephi": (("f", "theta", "phi"), e_phi * TIME_UNIT),
            # H = r̂ × E / η (a transverse outgoing wave), in units of E as elsewhere.
            "Htheta": (("f", "theta", "phi"), -e_phi / eta * TIME_UNIT),
            "Hphi": (("f", "theta", "phi"), e_theta / eta * TIME_UNIT),
            "power": (("f", "theta", "phi"), power),
        },
        coords={"f": np.asarray(monitor.freqs), "theta": np.asarray(monitor.theta), "phi": np.asarray(monitor.phi)},
        # "per_rad" (2D, a rectangle) or "per_sr" (3D, a box): what ``power`` is per.
        attrs={"monitor_type": monitor.type, "proj_distance": monitor.proj_distance, "power_per": "per_rad" if monitor.planar else "per_sr"},
    )
