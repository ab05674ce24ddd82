"""The differentiable solve: the engine's own Yee step under ``jax.grad``.

``differentiable_solve(sim, design)`` returns a JAX function of the permittivity
pixels of one ``CustomMedium`` structure (the design) that time-steps ``sim`` for
its full ``run_time`` (no energy shutoff: a fixed step count keeps the function
differentiable) and returns the monitor outputs:

- ``ModeMonitor``: complex amplitudes, shape (2 directions "+"/"−", modes, f), over
  the source reference exactly as ``ms.solve`` reports them;
- ``FluxMonitor``: power per frequency over the source power, shape (f,);
- ``FieldMonitor``: DFT components colocated on integer nodes, (f, x, y, z).

Reverse mode through the time loop is the exact discrete adjoint of the update,
written out by hand (:mod:`.adjoint`, checked against JAX's own transpose). Two
things keep its memory bounded:

1. the design enters the step as a correction ``E += Δcb·(∇×H − ΔP/Δt)`` on its
   window only (:mod:`.yee`), so the gradient needs only that window of the drive
   per step, not the whole grid; the hand-written pair folds Δcb into cb once per
   call instead (:func:`.yee.design_cb`: the same update, no work per step);
2. steps run in segments: the forward pass keeps the fields (E, H, ψ, P) at each
   segment's start; the backward pass replays one segment at a time, then runs the
   transposed steps back through it. What the replay keeps per step, D values, is
   the drive on the design windows — or, where the medium around the design is
   lossless and source-free, only the faces of a box around it, from which
   :mod:`.reversal` runs the box's fields backwards alongside the adjoint (a surface
   per step instead of a volume). With S values of fields and T steps, ``L`` steps
   per segment cost about T/L·S + L·D values; the default L = √(T·S/D) minimises that.

``checkpoint=False`` differentiates the loop with JAX's own reverse mode instead
(every step's window kept; slower on CPU), the reference the adjoint is tested against.

With mirror symmetry the solve steps the kept half, as ``ms.solve`` does (:mod:`.symmetry`):
the design box is its own mirror image (the Simulation checks), so the pixels are
symmetrised before painting — the function is the full grid's of the symmetric part of
the pixels, and its gradient is symmetric — and the recordings are unfolded (in
jax.numpy) before the outputs are read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..medium import CustomMedium
from ..monitor import FieldMonitor, FluxMonitor, ModeMonitor
from ..simulation import Simulation
from . import monitors as mon
from .design import axis_into_pml, design_windows, kept_half, paint
from .solver import EngineInputError, _Problem, _setup, apply_symmetry, check_inputs, mode_reference, source_power
from .symmetry import unfold_dft
from .units import to_normalised_frequency
from .adjoint import make_adjoint_step
from .reversal import face_sizes, faces, make_reverse_step, record, reversal_box
from .yee import Layout, design_cb, jax_ops, make_step, polarisation_change, window_drive

Outputs = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class DifferentiableSolve:
    """A differentiable solve ready to call: ``outputs = solve(pixels)``.

    ``fn(pixels, arrays)`` is the pure function underneath: pass ``arrays`` (the
    update coefficients and the initial state) as an argument when ``fn`` goes
    inside another ``jax.jit``, so they stay buffers rather than compiled-in constants."""

    fn: Callable[[Any, Any], Outputs]
    arrays: Any
    #: Pixels of the design along x, y, z.
    shape: tuple[int, int, int]
    num_steps: int
    #: Steps per checkpointed segment (``num_steps`` when not checkpointed).
    segment_steps: int
    #: Values (floats) of state the backward pass keeps per segment, and per step
    #: (design-window drives, or the reversal box's faces): the memory estimate's terms.
    state_size: int
    step_size: int
    #: Whether the backward pass runs the design's box backwards (:mod:`.reversal`)
    #: rather than storing the drives of each step.
    reversal: bool

    def __call__(self, pixels: Any) -> Outputs:
        return self.fn(pixels, self.arrays)


def default_segment(num_steps: int, state_size: int, step_size: int) -> int:
    """Steps per checkpointed segment minimising T/L·S + L·D (see the module doc)."""
    return int(min(num_steps, max(1, round(math.sqrt(num_steps * state_size / max(step_size, 1))))))


def design_structure(sim: Simulation, design: str) -> int:
    """Index in ``sim.structures`` of the CustomMedium structure named ``design``."""
    customs = [k for k, s in enumerate(sim.structures) if isinstance(s.medium, CustomMedium)]
    named = [k for k in customs if sim.structures[k].name == design]
    if not named:
        raise EngineInputError(f"no CustomMedium structure named {design!r} to differentiate (structures named: {[s.name for s in sim.structures]})")
    if len(customs) > 1:
        raise EngineInputError("a differentiable solve takes one CustomMedium structure, the design")
    return named[0]


def differentiable_solve(sim: Simulation, design: str, segment_steps: int | None = None, checkpoint: bool = True, reversal: bool = True) -> DifferentiableSolve:
    """Set up ``sim`` once and return its monitor outputs as a JAX function of the
    pixels of the structure named ``design``. Call (and differentiate) it under
    ``solver.precision_context(sim.precision)`` (64-bit JAX for float64). ``checkpoint=False``
    uses JAX's own reverse mode through every step (no segments; for comparison);
    ``reversal=False`` stores the design's drives per step even where the box around
    the design could be run backwards."""
    import jax
    import jax.numpy as jnp

    sim = check_inputs(sim)
    if sim.is_complex:
        raise EngineInputError("a differentiable solve steps real fields: Bloch boundaries with a phase are not available in it")
    structure = sim.structures[design_structure(sim, design)]
    full = _setup(sim, paint_custom=False)
    maps = design_windows(sim.grid, structure.geometry.bounds(), structure.medium.shape)
    if not maps:
        raise EngineInputError(f"design {design!r} covers no E node of the grid")
    for p, m in maps.items():
        if np.any(full.params["cb"][p][m.window] == 0):
            raise EngineInputError(f"design {design!r} touches a PEC node or wall; keep it inside the domain, off PEC")
        a = axis_into_pml(m.window, full.layout.shape, full.layout.pml, full.layout.active)
        if a is not None:
            raise EngineInputError(f"design {design!r} reaches into the PML or onto the boundary along {'xyz'[a]}; keep it inside the domain")
    # Mirror symmetry: step the kept half (as ms.solve does), the design's windows cut
    # to it; the design box is its own mirror image (Simulation checks), so the pixels
    # are symmetrised before painting and the gradient stays symmetric.
    problem, halvings = apply_symmetry(sim, full)
    layout = problem.layout
    for h in halvings:
        maps = {p: cut for p, cut in ((p, kept_half(m, h.axis, h.centre)) for p, m in maps.items()) if cut is not None}
    drives = list(maps)
    # Time monitors are no outputs of a differentiable solve: dropped.
    layout = dataclasses.replace(layout, design=tuple((p, maps[p].window) for p in drives), snapshots=())
    dt, total = layout.dt, problem.num_steps
    state_size = sum(int(np.size(x)) for k in FIELDS for x in jax.tree_util.tree_leaves(problem.state[k]))
    box = reversal_box(layout, problem.params) if checkpoint and reversal else None
    if box is None:
        step_size = sum(int(np.prod(maps[p].outside.shape)) for p in drives)
    else:
        step_size = sum(face_sizes(faces(layout, box)))
    segment = total if not checkpoint else (segment_steps or default_segment(total, state_size, step_size))
    segment = max(1, min(segment, total))
    read_outputs = _output_reader(sim, problem)

    march = _autodiff_march(make_step(layout, jax_ops()), total) if not checkpoint else _adjoint_march(layout, total, segment, box)
    @jax.jit
    def outputs(pixels: Any, arrays: dict) -> Outputs:
        pixels = jnp.asarray(pixels, dtype=layout.dtype).reshape(structure.medium.shape)
        for h in halvings:
            pixels = 0.5 * (pixels + jnp.flip(pixels, h.axis))
        # A PEC mirror wall holds its tangential E at zero (cb = 0): the design leaves it.
        dcb = [jnp.where(arrays["cb"][k] == 0, 0.0, dt / paint(maps[p], pixels, arrays["other"][k], jnp) - arrays["cb"][k]) for k, p in enumerate(drives)]
        state = march(arrays["state"], {**arrays["params"], "design_dcb": dcb})
        return read_outputs(unfold_dft({name: {c: v * layout.dft_weight for c, v in comps.items()} for name, comps in state["dft"].items()}, halvings, jnp))

    arrays = {"params": problem.params, "state": {**problem.state, "snap": {}}, "other": [problem.eps[p][maps[p].window] for p in drives], "cb": [problem.params["cb"][p][maps[p].window] for p in drives]}
    return DifferentiableSolve(outputs, arrays, structure.medium.shape, total, segment, state_size, step_size, box is not None)


#: The state a step maps linearly to the next: what a checkpoint keeps (the DFT
#: accumulators only add up and never feed back).
FIELDS = ("E", "H", "psi", "P", "P_prev")


def _scan_steps(step: Callable, state: dict, params: dict, steps: Any) -> dict:
    import jax

    return jax.lax.scan(lambda s, n: (step(s, params, n), None), state, steps)[0]


def _autodiff_march(step: Callable, total: int) -> Callable[[dict, dict], dict]:
    """The time loop differentiated by JAX itself: every step's design window kept."""
    import jax.numpy as jnp

    return lambda state, params: _scan_steps(step, state, params, jnp.arange(total))


def _adjoint_march(layout: Layout, total: int, segment: int, box: tuple[slice, slice, slice] | None) -> Callable[[dict, dict], dict]:
    """The time loop with the hand-written adjoint (:mod:`.adjoint`) as its reverse
    mode: the forward run keeps the fields at each segment's start; the backward pass
    replays one segment at a time (fields only, no monitors), keeping the drive on the
    design windows per step — or, with a reversal ``box``, only the box's faces, the
    box's fields then run backwards beside the adjoint — and runs the transposed
    steps back through it. Both directions step with the design folded into cb
    (:func:`.yee.design_cb`)."""
    import jax
    import jax.numpy as jnp

    adjoint = make_adjoint_step(layout)
    step = make_step(dataclasses.replace(layout, design=()), jax_ops())
    replay_step = make_step(dataclasses.replace(layout, design=(), dft=()), jax_ops())
    count, rest = divmod(total, segment)
    segments, tail = jnp.arange(count * segment).reshape(count, segment), jnp.arange(count * segment, total)

    def fields(state: dict) -> dict:
        return {k: state[k] for k in FIELDS}

    def forward(state: dict, params: dict) -> tuple[dict, tuple[dict, dict]]:
        state, starts = jax.lax.scan(lambda s, steps: (_scan_steps(step, s, params, steps), fields(s)), state, segments)
        tail_start = fields(state)
        return (_scan_steps(step, state, params, tail) if rest else state), (starts, tail_start)

    def back_step(carry: tuple[dict, list], n: Any, drives: list, ct_dft: dict, params: dict) -> tuple[dict, list]:
        ct, gradient = carry
        ct, share = adjoint(ct, ct_dft, params, n, drives)
        return ct, [g + s for g, s in zip(gradient, share)]

    def stored_segment(carry: tuple[dict, list], start: dict, steps: Any, ct_dft: dict, params: dict) -> tuple[dict, list]:
        """Replay keeping each step's drives, then the transposed steps."""

        def replay(s: dict, n: Any) -> tuple[dict, list]:
            s = replay_step(s, params, n)
            return s, [window_drive(s["H"], polarisation_change(s, p), p, window, layout, jnp, params.get("inv_steps")) for p, window in layout.design]

        drives = jax.lax.scan(replay, {**start, "dft": {}, "snap": {}}, steps)[1]
        return jax.lax.scan(lambda c, x: (back_step(c, *x, ct_dft, params), None), carry, (steps, drives), reverse=True)[0]

    if box is not None:
        recorded = faces(layout, box)
        reverse = make_reverse_step(layout, box)

        def reversed_segment(carry: tuple[dict, list], start: dict, steps: Any, ct_dft: dict, params: dict) -> tuple[dict, list]:
            """Replay keeping each step's box faces, then the transposed steps beside
            the box run backwards from the segment's end."""

            def replay(s: dict, n: Any) -> tuple[dict, Any]:
                s = replay_step(s, params, n)
                return s, record(s, recorded)

            end, after = jax.lax.scan(replay, {**start, "dft": {}, "snap": {}}, steps)
            first = record(start, recorded)
            cb = [c[box] for c in params["cb"]]

            def back(c: tuple[tuple[dict, list], dict], x: tuple[Any, Any]) -> tuple[tuple[tuple[dict, list], dict], None]:
                carry, in_box = c
                k, n = x
                # Faces before step k of the segment: the start's, else those recorded
                # after step k − 1 (recorded after the step: read before it, the whole
                # state is copied each step; read by index: a shifted copy of the
                # records would double them).
                before = jnp.where(k == 0, first, jax.lax.dynamic_index_in_dim(after, jnp.maximum(k - 1, 0), keepdims=False))
                in_box, drives = reverse(in_box, cb, before)
                return (back_step(carry, n, drives, ct_dft, params), in_box), None

            in_box = {k: [F[box] for F in end[k]] for k in ("E", "H")}
            return jax.lax.scan(back, (carry, in_box), (jnp.arange(steps.shape[0]), steps), reverse=True)[0][0]

    backward_segment = stored_segment if box is None else reversed_segment

    def folded(params: dict) -> dict:
        return {**params, "cb": design_cb(params, layout)}

    @jax.custom_vjp
    def march(state: dict, params: dict) -> dict:
        return _scan_steps(step, state, folded(params), jnp.arange(total))

    def march_fwd(state: dict, params: dict) -> tuple[dict, tuple]:
        state, checkpoints = forward(state, folded(params))
        return state, (checkpoints, params)

    def march_bwd(residuals: tuple, ct: dict) -> tuple[dict, dict]:
        (starts, tail_start), original = residuals
        params = folded(original)
        carry = (fields(ct), [jnp.zeros_like(d) for d in params["design_dcb"]])
        if rest:
            carry = backward_segment(carry, tail_start, tail, ct["dft"], params)
        carry = jax.lax.scan(lambda c, xs: (backward_segment(c, *xs, ct["dft"], params), None), carry, (starts, segments), reverse=True)[0]
        ct_state, gradient = carry
        # Only the design is differentiated; the other coefficients get zeros (unused).
        return {**ct_state, "dft": ct["dft"], "snap": {}}, {**jax.tree.map(jnp.zeros_like, original), "design_dcb": gradient}

    march.defvjp(march_fwd, march_bwd)
    return march


def _output_reader(sim: Simulation, problem: _Problem) -> Callable[[dict], Outputs]:
    """The map from DFT recordings (Δt applied) to the outputs, in jax.numpy."""
    import jax.numpy as jnp

    grid, readers = sim.grid, {}
    for m in sim.monitors:
        region = problem.regions[m.name]
        if isinstance(m, (FluxMonitor, ModeMonitor)):
            freqs = np.array([to_normalised_frequency(f) for f in m.freqs])
        if isinstance(m, FluxMonitor):
            power = source_power(problem, freqs)
            readers[m.name] = lambda d, m=m, region=region, power=power: mon.flux_values(m, region, grid, d, jnp) / power
        elif isinstance(m, ModeMonitor):
            plane, modes = region
            ref = mode_reference(problem, freqs)
            readers[m.name] = lambda d, plane=plane, modes=modes, ref=ref: mon.mode_amplitudes(plane, modes, d, grid.dl[plane.normal], jnp) / ref[None, None, :]
        elif isinstance(m, FieldMonitor):
            readers[m.name] = lambda d, m=m, region=region: mon.field_values(m, region, d, jnp)

    def read(dft: dict) -> Outputs:
        return {name: reader(dft[name]) for name, reader in readers.items()}

    return read
