"""The time-stepping driver: validate → mesh → set up → step in chunks → monitors.

The JAX path jits ``lax.fori_loop`` over a chunk of steps with the state donated,
so a chunk runs without touching the host; between chunks the driver reports
progress and checks the energy shutoff. The NumPy path runs the same step function
eagerly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..base import FIELD_COMPONENTS
from ..boundary import PML, BlochBoundary, PECBoundary, Periodic, PMCBoundary
from ..medium import DISPERSIVE
from ..monitor import FieldMonitor, FieldProjectionAngleMonitor, FieldTimeMonitor, FluxMonitor, ModeMonitor
from ..simulation import Simulation
from ..source import ModeSource, PointDipole
from . import fused
from . import monitors as mon
from .checkpoint import Checkpoint, CheckpointPolicy, SolveSuspended, check, metadata, restore
from .cpml import slab_profile
from .dispersion import ade_coefficients
from .mesh import mesh_media
from .modes import simulation_modes
from .sampling import monitor_region
from .sharding import ShardingError, describe, every_process, from_lead, gather, halo_bytes, is_lead, local_pieces, multi_process, place, replicated, shardings, split_axes, stepped_shape, whole_axis_psi
from .symmetry import Halving, halve, unfold_fields, unfold_state
from .split_monitors import held_in_pieces, monitor_pieces
from .sources import SheetInjection, dipole_power, mode_injection, point_injection, sheet_injection
from .units import TIME_UNIT, to_normalised_frequency
from .yee import NUMPY_OPS, SPECTRUM_EDGE, SWITCH_ON_STEP, Layout, dft_decimation, field_energy, jax_ops, make_step, single_polarisation
from .zarr_results import write_store

Progress = Callable[[int, int], None]


class EngineInputError(ValueError):
    """The engine refuses a simulation before any time stepping."""


@dataclass
class SolveResult:
    """What the engine hands back: monitor data keyed by monitor name, and run facts."""

    monitors: dict[str, xr.Dataset | xr.DataArray]
    info: dict[str, Any] = field(default_factory=dict)
    #: With a results store: the files of it this process hands over (paths in the store).
    files: list[str] = field(default_factory=list)


def max_memory_bytes() -> int:
    """Memory the engine may use (``METOSIM_MAX_MEMORY`` bytes, default 80% of RAM)."""
    if "METOSIM_MAX_MEMORY" in os.environ:
        return int(float(os.environ["METOSIM_MAX_MEMORY"]))
    return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def resolve_backend(backend: str) -> str:
    if backend not in ("auto", "jax", "numpy"):
        raise ValueError(f"backend must be 'auto', 'jax' or 'numpy', not {backend!r}")
    if backend != "auto":
        return backend
    return "jax" if importlib.util.find_spec("jax") else "numpy"


def precision_context(precision: str, backend: str = "jax") -> AbstractContextManager:
    """Where JAX computes: its 64-bit mode on for a "float64" simulation, off for
    "float32" (nothing to do for the NumPy backend)."""
    if backend != "jax":
        return nullcontext()
    import jax

    return jax.enable_x64(precision == "float64")


def check_devices(sim: Simulation, devices: int, backend: str) -> None:
    """Refuse a device count this process cannot run or ``sim`` cannot be split
    over, naming ``devices``."""
    if not isinstance(devices, int) or devices < 1:
        raise EngineInputError(f"devices must be a positive integer, not {devices!r}")
    if devices == 1:
        return
    if backend != "jax":
        raise EngineInputError(f"devices={devices} needs the JAX backend, not {backend!r}")
    import jax

    if devices > jax.device_count():
        raise EngineInputError(f"devices={devices} but this process sees {jax.device_count()} JAX device(s) ({jax.devices()[0].platform})")
    if multi_process():
        if devices != jax.device_count():
            raise EngineInputError(f"devices={devices} across {jax.process_count()} processes must be all {jax.device_count()} of their devices")
    try:
        split_axes(stepped_shape(sim), sim.grid.active, devices)
    except ShardingError as exc:
        raise EngineInputError(str(exc)) from None


def check_inputs(sim: Simulation) -> Simulation:
    """Re-validate ``sim`` (it may have been built with ``model_construct``) and check
    the engine's own limits. Raises before anything is allocated."""
    sim = Simulation.model_validate(sim.model_dump())
    need, limit = sim.estimate()["memory_bytes"], max_memory_bytes()
    if need > limit:
        raise EngineInputError(
            f"simulation needs about {need / 2**30:.2f} GiB, above the engine limit of "
            f"{limit / 2**30:.2f} GiB (METOSIM_MAX_MEMORY); coarsen grid_spec or shrink monitors"
        )
    return sim


def solve(
    sim: Simulation,
    backend: str = "auto",
    progress: Progress | None = None,
    all_components: bool = False,
    checkpoints: CheckpointPolicy | None = None,
    resume: Checkpoint | None = None,
    devices: int = 1,
    kernel: str = "xla",
    store: Path | None = None,
) -> SolveResult:
    """Run ``sim`` to its ``run_time`` (or the energy shutoff) and return monitor data.
    A 2D run whose sources excite one polarisation steps its three components only;
    ``all_components`` steps all six (the same results, for comparison).

    ``checkpoints`` hands the stepping state out now and then (see
    :class:`~.checkpoint.CheckpointPolicy`; a deadline may end the solve with
    :class:`~.checkpoint.SolveSuspended`); ``resume`` goes on from a checkpoint of this
    very simulation (checked with :func:`~.checkpoint.check` first: another one raises
    :class:`~.checkpoint.CheckpointMismatch`), giving the uninterrupted run's results.

    ``devices`` > 1 splits the grid into that many slabs over the first JAX devices
    (:mod:`.sharding`), with the one-device run's results.

    ``kernel`` "fused" steps with the Pallas kernels of :mod:`.fused` (on a GPU; off
    one, in Pallas's interpreter, for checks) instead of the XLA step ("xla").

    ``store``: a new directory to write the results into as a zarr store
    (:mod:`.zarr_results`) besides returning them. Of a run split over several
    processes, each writes there only what it hands over (``SolveResult.files``: the
    lead's all but the others' pieces, a process's own pieces), and the field monitors
    that span a split axis are kept in pieces (:mod:`.split_monitors`), not returned."""
    sim = check_inputs(sim)
    backend = resolve_backend(backend)
    check_devices(sim, devices, backend)
    if kernel not in ("xla", "fused"):
        raise EngineInputError(f"kernel must be 'xla' or 'fused', not {kernel!r}")
    if kernel == "fused" and backend != "jax":
        raise EngineInputError(f"kernel='fused' needs the JAX backend, not {backend!r}")
    if resume is not None:
        check(resume, sim)
    setup_start = time.perf_counter()
    # Setup (mode solves, compilation) can take a while: report step 0 meanwhile, so
    # a service sees a live worker.
    heartbeat = (lambda: progress(0, sim.grid.num_time_steps)) if progress is not None else None
    problem, halvings = apply_symmetry(sim, _setup(sim, heartbeat))
    split = split_axes(problem.layout.shape, problem.layout.active, devices) if devices > 1 else ()
    held = held_in_pieces(sim.monitors, problem.state, problem.layout.shape, split) if store is not None and split else frozenset()
    with precision_context(sim.precision, backend):
        state, steps, device, loop_seconds, layout = _run(sim, problem, backend, progress, all_components=all_components, checkpoints=checkpoints, resume=resume, devices=devices, kernel=kernel, held=held)
        in_pieces = {kind: {name: state[kind].pop(name) for name in held if name in state[kind]} for kind in ("dft", "snap")}
        pieces = monitor_pieces(sim.monitors, in_pieces, problem.regions, problem.snapshot_steps, halvings, sim.grid, problem.layout.dft_weight, steps, split) if held else {}
        state = unfold_state(state, halvings)
    monitors = _collect(sim, problem, state, steps, skip=held)
    total = time.perf_counter() - setup_start
    stepped = math.prod(problem.layout.shape)
    info = {
        "backend": backend,
        "device": device,
        "precision": sim.precision,
        # Cells stepped: half the grid per symmetric axis.
        "num_cells": stepped,
        "stepped_components": [c for c, live in zip(FIELD_COMPONENTS, layout.live) if live],
        "symmetry": list(sim.symmetry),
        "time_steps": steps,
        "num_time_steps": problem.num_steps,
        # The DFT monitors' samples: every this many steps (yee.dft_decimation).
        "dft_every": problem.layout.dft_every,
        "solve_seconds": loop_seconds,
        "total_seconds": total,
        # Cells per second of this process's own stepping (not the resumed steps').
        "cells_per_second": stepped * (steps - (resume.step if resume else 0)) / loop_seconds if loop_seconds > 0 else 0.0,
        "resumed_step": resume.step if resume else 0,
        "devices": devices,
        "kernel": kernel,
    }
    if split:
        # The cut axes ("y"; "xy" for blocks) and, per axis, the devices along it.
        info["split_axis"] = "".join("xyz"[a] for a, _ in split)
        info["split_counts"] = [n for _, n in split]
        info["halo_bytes_per_step"] = halo_bytes(layout, split)
    if store is None:
        return SolveResult(monitors=monitors, info=info)
    every = {m.name: pieces[m.name] if m.name in held else monitors[m.name] for m in sim.monitors}
    files = write_store(store, sim.model_dump_json(), info, sim.grid.boundaries, every, lead=backend != "jax" or is_lead())
    return SolveResult(monitors=monitors, info=info, files=files)


@dataclass
class _Problem:
    layout: Layout
    params: dict[str, Any]
    state: dict[str, Any]
    eps: list[np.ndarray]
    regions: dict[str, Any]  # sampling.Region, or (modes.Plane, [modes.Modes per f]) for mode monitors
    snapshot_steps: dict[str, np.ndarray]
    source_power: Callable[[np.ndarray], np.ndarray] | None
    #: Complex amplitude spectrum of the first source when it is a mode source.
    source_amplitude: Callable[[np.ndarray], np.ndarray] | None
    sources_end: float  # normalised time after which every source is off
    num_steps: int
    #: Which source each point and TFSF sheet belongs to ("sources[i] (name)"), for messages.
    point_sources: list[str] = field(default_factory=list)
    sheet_sources: list[str] = field(default_factory=list)


def _setup(sim: Simulation, heartbeat: Callable[[], None] | None = None, paint_custom: bool = True) -> _Problem:
    grid = sim.grid
    dtype = np.dtype(sim.precision)
    N = grid.num_cells
    dt = grid.dt / TIME_UNIT
    num_steps = grid.num_time_steps
    media = mesh_media(sim, grid, paint_custom=paint_custom, on_component=heartbeat)
    for p in range(3):
        if not np.all(np.isfinite(media.permittivity[p])) or not np.all(np.isfinite(media.conductivity[p])):
            raise EngineInputError("meshed permittivity or conductivity is not finite; check the media")

    kinds = [(sim.boundary_spec[a].minus, sim.boundary_spec[a].plus) if grid.active[a] else (Periodic(), Periodic()) for a in range(3)]
    periodic = tuple(isinstance(k[0], (Periodic, BlochBoundary)) for k in kinds)
    # Fields are complex where a Bloch boundary puts a phase on the period.
    field_dtype = np.result_type(dtype, np.complex64) if sim.is_complex else dtype
    pml = sim.pml_layers

    # ---- update coefficients (E): ca, cb; PEC nodes and PEC/PML minus walls get 0
    ca, cb = [], []
    for p in range(3):
        eps, sigma = media.permittivity[p], media.conductivity[p]
        loss = sigma * dt / (2 * eps)
        a_coef, b_coef = (1 - loss) / (1 + loss), dt / eps / (1 + loss)
        wall = media.pec[p].copy()
        for a in range(3):
            if a != p and grid.active[a] and isinstance(kinds[a][0], (PECBoundary, PML)):
                wall[tuple(0 if b == a else slice(None) for b in range(3))] = True
        ca.append(np.where(wall, 0.0, a_coef).astype(dtype))
        cb.append(np.where(wall, 0.0, b_coef).astype(dtype))
    has_ca = any(np.any(m.conductivity > 0) for m in sim.media if hasattr(m, "conductivity"))

    # ---- CPML profiles: b, c on slab nodes; 1/κ along the whole axis (1 outside)
    profiles, inv_kappa, psi = {}, {}, {}
    for a in range(3):
        if not any(pml[a]):
            continue
        shape = [-1 if b == a else 1 for b in range(3)]
        for feeds, half in (("h", True), ("e", False)):
            full = np.ones(N[a])
            for side, layers, kind in (("minus", pml[a][0], kinds[a][0]), ("plus", pml[a][1], kinds[a][1])):
                if not layers:
                    continue
                steps = grid.primal_steps(a)[slice(0, layers) if side == "minus" else slice(N[a] - layers, N[a])]
                prof = slab_profile(layers, side, half, steps, dt, kind.sigma_order, kind.sigma_scale, kind.kappa_max, kind.alpha_max)
                profiles[f"{feeds}{a}{side}"] = (prof.b.reshape(shape).astype(dtype), prof.c.reshape(shape).astype(dtype))
                full[slice(0, layers) if side == "minus" else slice(N[a] - layers, N[a])] = prof.inv_kappa
                slab = tuple(layers if b == a else N[b] for b in range(3))
                for p in range(3):
                    if p != a:
                        psi[f"{feeds}{p}{a}{side}"] = np.zeros(slab, field_dtype)
            inv_kappa[f"{feeds}{a}"] = full.reshape(shape).astype(dtype)

    # ---- graded axes: 1/step per node, forward differences (onto half nodes) over the
    # cell, backward ones (onto integer nodes) over the distance between half nodes
    graded = tuple(grid.active[a] and not grid.is_uniform(a) for a in range(3))
    inv_steps = {}
    for a in (a for a in range(3) if graded[a]):
        shape = [-1 if b == a else 1 for b in range(3)]
        inv_steps[f"h{a}"] = (1.0 / grid.primal_steps(a)).reshape(shape).astype(dtype)
        inv_steps[f"e{a}"] = (1.0 / grid.dual_steps(a, periodic=periodic[a])).reshape(shape).astype(dtype)

    # ---- sources
    points, point_params, sheets, sheet_params, point_sources, sheet_sources = [], [], [], [], [], []
    source_power = source_amplitude = None

    def add_sheet(sheet: SheetInjection, label: str) -> None:
        if not (sheet.e_profile.any() or sheet.h_profile.any()):
            return  # e.g. the other polarisation's pair of a 2D mode: it adds nothing, and would cost a 2D run its single-polarisation stepping
        sheet_sources.append(label)
        sheets.append((sheet.e_field, sheet.h_field, sheet.e_slices, sheet.h_slices))
        sheet_params.append(
            {
                "e_profile": sheet.e_profile.astype(field_dtype),
                "h_profile": sheet.h_profile.astype(field_dtype),
                "e_waveform": sheet.e_waveform.astype(field_dtype),
                "h_waveform": sheet.h_waveform.astype(field_dtype),
            }
        )

    for i, src in enumerate(sim.sources):
        label = f"sources[{i}] ({src.name or src.type})"
        if isinstance(src, ModeSource):
            try:
                mode_sheets, amplitude, power = mode_injection(src, label, sim, dt, media, cb, num_steps)
            except ValueError as exc:  # ModeSolverError included
                raise EngineInputError(str(exc)) from None
            for sheet in mode_sheets:
                add_sheet(sheet, label)
            if source_power is None:
                source_amplitude = amplitude
        elif isinstance(src, PointDipole):
            inj = point_injection(src, grid, dt, cb["xyz".index(src.polarization[1])] if src.polarization[0] == "E" else None, num_steps)
            points.append((inj.field, inj.index))
            point_sources.append(label)
            point_params.append((np.asarray(inj.amplitude, dtype), inj.waveform.astype(dtype)))
            power = dipole_power(inj, src, dt)
        else:
            if not hasattr(sim.medium, "permittivity"):
                raise EngineInputError("plane-wave and beam sources need a non-dispersive background medium")
            plane_sheets, power = sheet_injection(src, grid, dt, sim.medium.permittivity, cb, num_steps)
            for sheet in plane_sheets:
                add_sheet(sheet, label)
        source_power = source_power or power
    sources_end = max((src.source_time.end_time for src in sim.sources), default=0.0) / TIME_UNIT

    # ---- dispersive poles (auxiliary differential equation, central differences)
    poles, P = [], []
    for k, medium in enumerate(sim.media):
        if not isinstance(medium, DISPERSIVE):
            continue
        for c1, c2, c3 in ade_coefficients(medium, dt):
            poles.append((np.asarray(c1, dtype), np.asarray(c2, dtype), [(media.pole_weight[k][p] * c3).astype(dtype) for p in range(3)]))
            P += [np.zeros(N, field_dtype) for _ in range(3)]

    # ---- monitors
    complex_dtype = np.result_type(dtype, np.complex64)
    regions, dft_layout, snap_layout, snapshot_steps, omega, dft_state, snap_state = {}, [], [], {}, {}, {}, {}

    def add_dft(key: str, frequencies: tuple[float, ...], slices: dict[str, tuple[slice, ...]]) -> None:
        """A running DFT of the components in ``slices`` at ``frequencies`` (Hz)."""
        omega[key] = (2 * np.pi * np.array([to_normalised_frequency(f) for f in frequencies])).astype(dtype)
        dft_layout.append((key, tuple(slices.items())))
        dft_state[key] = {c: np.zeros((len(frequencies), *(s.stop - s.start for s in where)), complex_dtype) for c, where in slices.items()}

    for i, m in enumerate(sim.monitors):
        if isinstance(m, FieldProjectionAngleMonitor):
            # Six DFT recordings, one per face of the box, named "<monitor>#<face>".
            faces = []
            for k, (a, side, centre, size) in enumerate(mon.projection_faces(m)):
                region = monitor_region(grid, centre, size, mon.flux_components(a), surface=True)
                faces.append((a, side, region))
                add_dft(f"{m.name}#{k}", m.freqs, region.slices)
            regions[m.name] = faces
            continue
        if isinstance(m, ModeMonitor):
            # The modes are solved before time stepping so a plane without a guide
            # fails at once, not after the run.
            where = f"monitors[{i}] ({m.name})"
            freqs = np.array([to_normalised_frequency(f) for f in m.freqs])
            try:
                plane, modes = simulation_modes(sim, m.center, m.size, m.mode_spec, freqs, where, media=media, dt=dt, on_frequency=heartbeat)
                slices = dict(mon.mode_recording(plane, where))
            except ValueError as exc:  # ModeSolverError included
                raise EngineInputError(str(exc)) from None
            regions[m.name] = (plane, modes)
            comps = tuple(slices)
        else:
            comps = mon.flux_components(mon.flux_normal(m, grid)) if isinstance(m, FluxMonitor) else m.fields
            region = monitor_region(grid, m.center, m.size, tuple(comps), surface=isinstance(m, FluxMonitor))
            regions[m.name] = region
            slices = region.slices
        if isinstance(m, FieldTimeMonitor):
            steps = mon.snapshot_steps(m, grid.dt, num_steps)
            snapshot_steps[m.name] = steps
            start = int(steps[0]) if steps.size else num_steps + 1
            snap_layout.append((m.name, tuple((c, slices[c]) for c in comps), start, m.interval, int(steps.size)))
            snap_state[m.name] = {c: np.zeros((steps.size + 1, *(s.stop - s.start for s in slices[c])), field_dtype) for c in comps}
        else:
            add_dft(m.name, m.freqs, {c: slices[c] for c in comps})

    # The fields carry nothing above the sources' spectrum: the DFT monitors need not
    # see every step (yee.dft_decimation), unless a source switches on with a step.
    band_limited = all(math.exp(-(s.source_time.offset**2) / 2) <= SWITCH_ON_STEP for s in sim.sources)
    signal = max((to_normalised_frequency(s.source_time.freq0 + SPECTRUM_EDGE * s.source_time.fwidth) for s in sim.sources), default=0.0)
    recorded = max((float(np.max(np.abs(w))) / (2 * np.pi) for w in omega.values() if w.size), default=0.0)
    layout = Layout(
        shape=N,
        dtype=sim.precision,
        active=grid.active,
        inv_dl=tuple(1.0 / d for d in grid.dl),  # type: ignore[arg-type]
        graded=graded,
        dt=dt,
        periodic=periodic,  # type: ignore[arg-type]
        bloch=tuple(sim.boundary_spec[a].bloch_phase if grid.active[a] else 0.0 for a in range(3)),  # type: ignore[arg-type]
        pmc_minus=tuple(isinstance(k[0], PMCBoundary) for k in kinds),  # type: ignore[arg-type]
        pmc_plus=tuple(isinstance(k[1], PMCBoundary) for k in kinds),  # type: ignore[arg-type]
        pml=pml,  # type: ignore[arg-type]
        has_ca=has_ca,
        points=tuple(points),
        sheets=tuple(sheets),
        num_poles=len(poles),
        dft=tuple(dft_layout),
        snapshots=tuple(snap_layout),
        dft_every=dft_decimation(dt, signal, recorded) if band_limited and omega and signal > 0 else 1,
    )
    params = {"ca": ca if has_ca else [], "cb": cb, "pml": profiles, "pml_inv_kappa": inv_kappa, "inv_steps": inv_steps, "points": point_params, "sheets": sheet_params, "poles": poles, "omega": omega}
    state = {
        "E": [np.zeros(N, field_dtype) for _ in range(3)],
        "H": [np.zeros(N, field_dtype) for _ in range(3)],
        "psi": psi,
        "P": P,
        "P_prev": [x.copy() for x in P],
        "dft": dft_state,
        "snap": snap_state,
    }
    eps = [m.astype(dtype) for m in media.permittivity]
    return _Problem(layout, params, state, eps, regions, snapshot_steps, source_power, source_amplitude, sources_end, num_steps, point_sources, sheet_sources)


def apply_symmetry(sim: Simulation, problem: _Problem) -> tuple[_Problem, list[Halving]]:
    """Halve ``problem`` along each axis of ``sim.symmetry`` (see :mod:`.symmetry`);
    the monitor regions stay the full grid's, for the unfolded recordings."""
    layout, params, state, eps, halvings = problem.layout, problem.params, problem.state, problem.eps, []
    for a, s in enumerate(sim.symmetry):
        if s:
            try:
                layout, params, state, eps, halving = halve(layout, params, state, eps, sim.grid, a, s, problem.point_sources, problem.sheet_sources)
            except ValueError as exc:
                raise EngineInputError(str(exc)) from None
            halvings.append(halving)
    return dataclasses.replace(problem, layout=layout, params=params, state=state, eps=eps), halvings


def chunk_length(num_steps: int, source_steps: float) -> int:
    """Steps per jitted chunk: about 20 progress reports a run, and at least four
    energy samples while the sources are on (so the shutoff sees the real peak);
    16 to 2000 steps each."""
    return int(min(max(min(math.ceil(num_steps / 20), source_steps // 4), 16), 2000))


def yee_state(sim: Simulation, steps: int, backend: str = "auto") -> dict[str, list[np.ndarray]]:
    """The raw staggered fields after exactly ``steps`` time steps (no shutoff):
    ``{"E": [Ex, Ey, Ez] at steps·Δt, "H": [Hx, Hy, Hz] at (steps − ½)·Δt, "eps": [...]}``
    in normalised units. For diagnostics such as the discrete energy invariant."""
    sim = check_inputs(sim)
    backend = resolve_backend(backend)
    full = _setup(sim)
    problem, halvings = apply_symmetry(sim, full)
    if not 0 <= steps <= problem.num_steps:
        raise ValueError(f"steps must be within 0…{problem.num_steps} (the run_time)")
    with precision_context(sim.precision, backend):
        state, _, _, _, _ = _run(sim, problem, backend, None, total=steps, shutoff=False, fields=True)
    return {**unfold_fields({"E": state["E"], "H": state["H"]}, halvings), "eps": full.eps}


def _run(
    sim: Simulation,
    problem: _Problem,
    backend: str,
    progress: Progress | None,
    total: int | None = None,
    shutoff: bool = True,
    all_components: bool = False,
    checkpoints: CheckpointPolicy | None = None,
    resume: Checkpoint | None = None,
    devices: int = 1,
    kernel: str = "xla",
    fields: bool = False,
    held: frozenset[str] = frozenset(),
) -> tuple[dict, int, str, float, Layout]:
    """Step ``problem`` and return (state on the host, steps taken, device, stepping
    seconds, the stepped layout). The state returned holds the monitors' recordings
    ("dft", "snap") only, unless ``fields`` (then E, H, ψ and P too): the fields are the
    grid's bulk, and a large run's host, or each process of a split one, need not hold
    them all at the end (a split run's fields would be this process's pieces). The
    recordings of the monitors ``held`` in pieces stay split JAX arrays."""
    layout = problem.layout if all_components else single_polarisation(problem.layout)
    if kernel == "fused" and (why := fused.unsupported(layout, devices)):
        raise EngineInputError(f"kernel='fused' cannot step this simulation yet ({why}); use kernel='xla'")
    total = problem.num_steps if total is None else total
    n, peak = 0, 0.0
    if resume is not None:
        problem = dataclasses.replace(problem, state=restore(resume.state, problem.state))
        n, peak = resume.step, resume.peak
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        state, params, eps = problem.state, problem.params, problem.eps
        if devices > 1:
            split = split_axes(layout.shape, layout.active, devices)
            for axis, _ in split:
                layout, state, params = whole_axis_psi(layout, state, params, axis)
            placed = shardings(state, layout, split)
            state = place(state, placed)
            params = place(params, shardings(params, layout, split))
            eps = place(eps, shardings(eps, layout, split))
            processes = f" in {jax.process_count()} processes" if multi_process() else ""
            if len(set(starts := every_process(n))) > 1:
                # Each process fetched the checkpoint itself: one that could not would
                # step from another state than the others.
                raise EngineInputError(f"the processes of this solve would go on from different steps ({starts}): not all of them could read the checkpoint")
            device = f"{devices} × {jax.devices()[0].platform}{processes} ({describe(split)})"
        else:
            if kernel == "fused":
                # Off a GPU the Pallas kernels run in the interpreter.
                interpret = jax.devices()[0].platform != "gpu"
                plan = fused.plan(layout, interpret)
                layout, state, params, eps = fused.prepare(layout, state, params, eps, plan)
            state, params, eps = jax.device_put(state), jax.device_put(params), jax.device_put(eps)
            device = str(jax.devices()[0])
        step = fused.make_step(layout, plan, interpret) if kernel == "fused" else make_step(layout, jax_ops())

        def run_chunk(state: dict, params: dict, n0: Any, n1: Any) -> dict:
            return jax.lax.fori_loop(n0, n1, lambda n, s: step(s, params, n), state)

        # A split state keeps its slabs from chunk to chunk (donated in place).
        run = jax.jit(run_chunk, donate_argnums=0, out_shardings=placed if devices > 1 else None)
        energy = jax.jit(lambda s, eps: field_energy(s, eps, jnp), out_shardings=replicated(split) if devices > 1 else None)
        # Compile before the clock starts: setup is not time stepping.
        if progress is not None:
            progress(0, total)
        run.lower(state, params, jnp.int32(0), jnp.int32(0)).compile()

        def advance(state: dict, n0: int, n1: int) -> dict:
            return run(state, params, jnp.int32(n0), jnp.int32(n1))

        def measure(state: dict) -> float:
            # The sum is replicated: read this process's copy (across processes the
            # whole array is not addressable here).
            return float(energy(state, eps).addressable_data(0))

        def host(state: dict) -> dict:
            """The state for a checkpoint or the caller: NumPy as one device holds it (the
            CPML ψ in slabs); of a split run, this process's pieces of that."""
            if kernel == "fused":
                return fused.restore(layout, _to_numpy(state), plan)
            if devices == 1:
                return _to_numpy(state)
            return local_pieces(state, layout, split)

        def settle(state: dict) -> None:
            jax.block_until_ready(state)

        def recordings(state: dict) -> dict:
            out = gather({kind: {name: v for name, v in state[kind].items() if name not in held} for kind in ("dft", "snap")})
            for kind in out:
                out[kind].update({name: v for name, v in state[kind].items() if name in held})
            return out
    else:
        step = make_step(layout, NUMPY_OPS)
        device, state, params, eps = "cpu (numpy)", problem.state, problem.params, problem.eps

        def advance(state: dict, n0: int, n1: int) -> dict:
            for n in range(n0, n1):
                state = step(state, params, np.int64(n))
            return state

        def measure(state: dict) -> float:
            return float(field_energy(state, eps, np))

        def host(state: dict) -> dict:
            return state

        def settle(state: dict) -> None:
            pass

        def recordings(state: dict) -> dict:
            return {"dft": state["dft"], "snap": state["snap"]}

    dt = layout.dt
    # The chunk grid depends on the run alone, so a resumed solve samples the energy
    # at the same steps as an uninterrupted one (the same shutoff, the same results).
    chunk = chunk_length(total, problem.sources_end / dt)
    meta = metadata(sim) if checkpoints is not None else {}
    if meta and multi_process():  # each process hands out its own part
        import jax

        meta["part"] = [jax.process_index(), jax.process_count()]
    start = last_saved = last_chunk = time.perf_counter()
    save_seconds = 0.0  # how long the last checkpoint took to hand out
    if progress is not None:  # stepping starts now (after compilation): rates count from here
        progress(n, total)
    while n < total:
        n_next = min(n + chunk, total)
        state = advance(state, n, n_next)
        n = n_next
        if progress is not None:
            progress(n, total)
        if shutoff and sim.shutoff > 0 and n < total:
            e = measure(state)
            peak = max(peak, e)
            if n * dt > problem.sources_end and e <= sim.shutoff * peak:
                break
        if checkpoints is not None and n < total:
            settle(state)  # chunks are dispatched asynchronously: time the finished one
            now = time.perf_counter()
            chunk_seconds, last_chunk = now - last_chunk, now
            # Stop while two more chunks and a checkpoint would still fit: margin for noise.
            stopping = checkpoints.deadline is not None and time.monotonic() + 2 * chunk_seconds + save_seconds > checkpoints.deadline
            # Across processes all save and stop at the same step, when the lead does.
            stopping, due = from_lead(stopping, stopping or now - last_saved >= checkpoints.interval_s)
            if due:
                checkpoints.save(Checkpoint(step=n, peak=peak, state=host(state), meta=meta))
                last_saved = last_chunk = time.perf_counter()
                save_seconds = last_saved - now
            if stopping:
                raise SolveSuspended(n, total)
    settle(state)
    elapsed = time.perf_counter() - start
    return host(state) if fields else recordings(state), n, device, elapsed, layout


def _to_numpy(state: dict) -> dict:
    import jax

    return jax.tree_util.tree_map(np.asarray, state)


def source_power(problem: _Problem, freqs: np.ndarray) -> np.ndarray:
    """The first source's power spectrum at normalised ``freqs`` (ones without one):
    what flux and far-field monitors are divided by."""
    return problem.source_power(freqs) if problem.source_power else np.ones(freqs.size)


def mode_reference(problem: _Problem, freqs: np.ndarray) -> np.ndarray:
    """What mode amplitudes are divided by: the injected complex amplitude of a mode
    source, else √(source power)."""
    if problem.source_amplitude is not None:
        return problem.source_amplitude(freqs)
    return np.sqrt(source_power(problem, freqs))


def _collect(sim: Simulation, problem: _Problem, state: dict, steps: int, skip: frozenset[str] = frozenset()) -> dict[str, xr.Dataset | xr.DataArray]:
    grid, out = sim.grid, {}
    weight = problem.layout.dft_weight
    for i, m in enumerate(sim.monitors):
        if m.name in skip:
            continue
        region = problem.regions[m.name]
        if isinstance(m, (FieldMonitor, FluxMonitor, ModeMonitor)):
            # The running sums omit the time per sample; the DFT is Σ F e^{iωt} Δt·k.
            dft = {c: v * weight for c, v in state["dft"][m.name].items()}
        freqs = np.array([to_normalised_frequency(f) for f in getattr(m, "freqs", ())])
        if isinstance(m, FieldMonitor):
            out[m.name] = mon.field_dataset(m, region, grid, dft)
        elif isinstance(m, FluxMonitor):
            out[m.name] = mon.flux_array(m, region, grid, dft, source_power(problem, freqs))
        elif isinstance(m, FieldProjectionAngleMonitor):
            recorded = [{c: v * weight for c, v in state["dft"][f"{m.name}#{k}"].items()} for k in range(len(region))]
            out[m.name] = mon.far_field(m, region, grid, recorded, sim.medium.permittivity, source_power(problem, freqs))
        elif isinstance(m, ModeMonitor):
            plane, modes = region
            # The H planes either side sit half a cell away each: the dual step apart.
            dn = float(grid.dual_steps(plane.normal)[plane.index])
            out[m.name] = mon.mode_dataset(m, grid, plane, modes, dft, mode_reference(problem, freqs), dn)
        else:
            taken = problem.snapshot_steps[m.name]
            out[m.name] = mon.time_dataset(m, region, grid, state["snap"][m.name], taken[taken <= steps])
    return out
