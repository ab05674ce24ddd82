"""One Yee time step as a pure array function, written once for any array namespace.

``make_step(layout, ops)`` returns ``step(state, params, n) -> state``. With
``ops = JAX_OPS`` it is traced into a jitted ``lax.fori_loop``; with ``NUMPY_OPS``
it runs eagerly. Both execute the very same update equations (normalised units:
ε₀ = μ₀ = c = 1, lengths in µm):

    H^{n+½} = H^{n−½} − Δt ∇×E^n                      (μ = 1)
    E^{n+1} = ca·E^n + cb·(∇×H^{n+½} − (P^{n+1} − P^n)/Δt)
    P^{n+1} = c₁P^n + c₂P^{n−1} + c₃E^n                (one per dispersive pole)

Derivatives of E are forward differences (feeding H on half nodes) over the cell size,
derivatives of H backward differences (feeding E on integer nodes) over the distance
between the half nodes around the node; on a graded axis both come per node from
``params["inv_steps"]``, on a uniform one they are the scalar ``layout.inv_dl``. Inside a CPML slab a
derivative d becomes d/κ + ψ with ψ ← bψ + c·d; ψ lives only on slab nodes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np

from ..base import FIELD_COMPONENTS
from ..grid import coupled_components

Array = Any
State = dict[str, Any]


@dataclass(frozen=True)
class ArrayOps:
    """The array namespace plus the two in-place-or-functional updates that differ."""

    name: str
    xp: ModuleType
    add_at: Callable[[Array, Any, Array], Array]
    set_at: Callable[[Array, Any, Array], Array]
    #: ``cond(pred, yes, no)``: ``yes()`` if pred else ``no()``, only the one taken evaluated.
    cond: Callable[[Any, Callable[[], Any], Callable[[], Any]], Any]


def _np_add_at(a: np.ndarray, index: Any, value: Any) -> np.ndarray:
    a[index] += value  # the array is a fresh result of this step, owned by the caller
    return a


def _np_set_at(a: np.ndarray, index: Any, value: Any) -> np.ndarray:
    a[index] = value
    return a


NUMPY_OPS = ArrayOps("numpy", np, _np_add_at, _np_set_at, lambda pred, yes, no: yes() if pred else no())


def jax_ops() -> ArrayOps:
    """JAX ops. Updates of a static box go through ``dynamic_update_slice``, which XLA
    performs in place; ``.at[].add`` would lower to a scatter, which is not
    vectorised on CPU."""
    import jax.numpy as jnp
    from jax import lax

    def box(a: Array, index: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        if not isinstance(index, tuple) or len(index) != a.ndim:
            return None
        starts, sizes = [], []
        for i, n in zip(index, a.shape):
            if isinstance(i, slice) and i.step in (None, 1):
                start, stop, _ = i.indices(n)
                starts.append(start), sizes.append(stop - start)
            elif isinstance(i, int):
                starts.append(i), sizes.append(1)
            else:
                return None
        return tuple(starts), tuple(sizes)

    def add_at(a: Array, index: Any, value: Array) -> Array:
        where = box(a, index)
        if where is None:
            return a.at[index].add(value)
        starts, sizes = where
        current = lax.dynamic_slice(a, starts, sizes)
        return lax.dynamic_update_slice(a, current + jnp.broadcast_to(value, sizes).astype(a.dtype), starts)

    def set_at(a: Array, index: Any, value: Array) -> Array:
        where = box(a, index)
        if where is None:
            return a.at[index].set(value)
        starts, sizes = where
        return lax.dynamic_update_slice(a, jnp.broadcast_to(jnp.asarray(value, a.dtype), sizes), starts)

    return ArrayOps("jax", jnp, add_at, set_at, lambda pred, yes, no: lax.cond(pred, yes, no))


@dataclass(frozen=True)
class Layout:
    """Static (trace-time) description of the grid, boundaries, sources and monitors."""

    shape: tuple[int, int, int]
    #: Real dtype of fields and times: "float32" or "float64".
    dtype: str
    active: tuple[bool, bool, bool]
    #: 1/step of each uniform axis; a graded axis takes params["inv_steps"] instead.
    inv_dl: tuple[float, float, float]
    graded: tuple[bool, bool, bool]
    dt: float
    periodic: tuple[bool, bool, bool]
    #: Bloch phase (rad) over one period per periodic axis: F(x + L) = F(x)·exp(i·phase).
    bloch: tuple[float, float, float]
    pmc_minus: tuple[bool, bool, bool]
    pmc_plus: tuple[bool, bool, bool]
    #: CPML layers (minus, plus) per axis.
    pml: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    has_ca: bool
    #: Point sources: (field, node index) in the order of params["points"].
    points: tuple[tuple[str, tuple[int, int, int]], ...]
    #: TFSF sheets: (E field, H field, E slices, H slices) in the order of params["sheets"].
    sheets: tuple[tuple[str, str, tuple[slice, ...], tuple[slice, ...]], ...]
    num_poles: int
    #: DFT monitors: (name, ((component, slices), ...)).
    dft: tuple[tuple[str, tuple[tuple[str, tuple[slice, ...]], ...]], ...]
    #: Time monitors: (name, ((component, slices), ...), start step, interval, slots).
    snapshots: tuple[tuple[str, tuple[tuple[str, tuple[slice, ...]], ...], int, int, int], ...]
    #: Design windows of a differentiable solve: (E component index, node slices) in the
    #: order of params["design_dcb"], the change of cb there. Empty for a plain solve.
    design: tuple[tuple[int, tuple[slice, slice, slice]], ...] = ()
    #: Which of Ex, Ey, Ez, Hx, Hy, Hz the step updates; the others stay zero (a 2D run
    #: whose sources excite one polarisation steps three: :func:`single_polarisation`).
    live: tuple[bool, bool, bool, bool, bool, bool] = (True,) * 6
    #: Axes whose CPML ψ spans the whole axis, with b = c = 0 off the slabs
    #: (``params["pml_whole"]``): a grid split along such an axis updates ψ
    #: elementwise on each device's slab, with no slicing across devices (:mod:`.sharding`).
    whole_axis_psi: tuple[bool, bool, bool] = (False, False, False)
    #: The DFT monitors add the fields of the steps n with (n + 1) divisible by this
    #: (:func:`dft_decimation`, :func:`dft_step`).
    dft_every: int = 1

    @property
    def dft_decimated(self) -> bool:
        """Whether some steps' fields stay out of the DFTs (a conditional in the step)."""
        return self.dft_every > 1 and bool(self.dft)

    @property
    def dft_weight(self) -> float:
        """The time (normalised) each DFT sample stands for: the sums are Σ F e^{iωt} and
        the DFT is that times this."""
        return self.dt * self.dft_every

    @property
    def curled(self) -> tuple[bool, bool, bool]:
        """Per component p, whether (∇×F)ₚ has a term: an active axis transverse to p."""
        return tuple(self.active[(p + 1) % 3] or self.active[(p + 2) % 3] for p in range(3))  # type: ignore[return-value]


#: Where a source's spectrum counts as ended: f0 + SPECTRUM_EDGE·fwidth, where its
#: Gaussian, exp(−(f − f0)²/2fwidth²), is e^{−24.5} ≈ 2·10⁻¹¹ of its peak.
SPECTRUM_EDGE = 7.0
#: The largest switch-on step (envelope at t = 0 over its peak, e^{−offset²/2}) that
#: leaves a source band-limited: a step has content at every frequency, and a DFT
#: sampled every k steps would fold it onto the recorded ones (the default offset, 5:
#: 3.7·10⁻⁶).
SWITCH_ON_STEP = 1e-5


def dft_decimation(dt: float, highest_signal: float, highest_recorded: float) -> int:
    """Steps between DFT samples: the most that fold nothing onto a recorded frequency
    (normalised units; ``highest_signal`` bounds the fields' spectrum). Samples every
    k·Δt see content at f′ also at f′ − m·f_s (f_s = 1/(k·Δt)); the nearest such alias of
    a recorded f comes from f′ = f_s − f, so f_s ≥ highest_signal + highest_recorded
    keeps every recorded frequency clear. Meep decimates its DFTs by the same
    reasoning; recording every step adds nothing but work (a whole-plane DFT is most
    of a 2D step)."""
    return max(1, math.floor(1 / (dt * (highest_signal + highest_recorded)) * (1 - 1e-9)))


def injected_components(layout: Layout) -> frozenset[str]:
    """The components the point and sheet sources drive ("Ex" … "Hz")."""
    return frozenset([field for field, _ in layout.points] + [f for e, h, _, _ in layout.sheets for f in (e, h)])


def single_polarisation(layout: Layout) -> Layout:
    """``layout`` stepping only the components its sources can reach
    (:func:`metosim.grid.coupled_components`): TE or TM in 2D, all six in 3D. The others
    are identically zero in a six-component run, so the results are the same; a design
    (differentiable solve, whose adjoint transposes the six-component step) keeps six."""
    if layout.design:
        return layout
    live = coupled_components(layout.active, injected_components(layout))
    return dataclasses.replace(layout, live=tuple(c in live for c in FIELD_COMPONENTS))  # type: ignore[arg-type]


def _take(a: Array, axis: int, start: int, stop: int) -> Array:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]


def pml_slabs(layout: Layout, a: int) -> list[tuple[str, int, int]]:
    """The CPML slabs along ``a`` as (side, first node, end node), empty ones left out."""
    n_minus, n_plus = layout.pml[a]
    N = layout.shape[a]
    return [(side, lo, hi) for side, lo, hi in (("minus", 0, n_minus), ("plus", N - n_plus, N)) if hi > lo]


def slab_padding(layout: Layout, a: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """``pad`` widths that place a slab (nodes lo…hi−1 along ``a``) in the whole grid."""
    return [(lo, layout.shape[a] - hi) if k == a else (0, 0) for k in range(3)]


def inverse_step(layout: Layout, inv_steps: dict[str, Array] | None, kind: str, a: int) -> Array | float:
    """1/step along ``a`` for the derivative feeding the ``kind`` ("e" or "h") update: a
    per-node profile from ``inv_steps`` (``params["inv_steps"]``) on a graded axis, the
    scalar ``layout.inv_dl[a]`` on a uniform one."""
    if not layout.graded[a]:
        return layout.inv_dl[a]
    if inv_steps is None:
        raise ValueError(f"a graded axis ({'xyz'[a]}) needs params['inv_steps']")
    return inv_steps[f"{kind}{a}"]


def shifted(F: Array, a: int, lo: int, hi: int, offset: int, layout: Layout, xp: ModuleType) -> Array:
    """F[lo + offset : hi + offset] along ``a`` (offset ±1), with the ghost nodes
    past the faces: periodic wrap (times the Bloch phase); past the plus face the
    zero PEC/PML ghost; before the minus face the odd PMC image or zero."""
    N = layout.shape
    start, stop = lo + offset, hi + offset
    if 0 <= start and stop <= N[a]:
        return _take(F, a, start, stop)
    if layout.periodic[a]:
        if not layout.bloch[a]:
            return _take(xp.roll(F, -offset, axis=a), a, lo, hi)
        if offset > 0:  # F[N] = F[0]·e^{iφ}
            wrapped = xp.concatenate([_take(F, a, 1, N[a]), _take(F, a, 0, 1) * np.exp(1j * layout.bloch[a])], axis=a)
        else:  # F[−1] = F[N − 1]·e^{−iφ}
            wrapped = xp.concatenate([_take(F, a, N[a] - 1, N[a]) * np.exp(-1j * layout.bloch[a]), _take(F, a, 0, N[a] - 1)], axis=a)
        return _take(wrapped, a, lo, hi)
    # The zero ghost enters by padding, not by concatenating a zero plane: XLA's SPMD
    # partitioner keeps a pad along an unsplit axis local, but reshuffles a
    # concatenate across devices (all-to-all) when the grid is split (.sharding).
    ghost = [(0, 0)] * F.ndim
    if offset > 0:  # stop == N + 1
        ghost[a] = (0, 1)
        return xp.pad(_take(F, a, start, N[a]), ghost)
    if layout.pmc_minus[a]:
        return xp.concatenate([-_take(F, a, 0, 1), _take(F, a, 0, stop)], axis=a)
    ghost[a] = (1, 0)
    return xp.pad(_take(F, a, 0, stop), ghost)


def window_curl(
    F: list[Array], p: int, window: tuple[slice, slice, slice], layout: Layout, xp: ModuleType, forward: bool = False, inv_steps: dict[str, Array] | None = None
) -> Array:
    """(∇×F)ₚ on a window off the PML (the callers check): plain backward differences
    (∇×H, driving E) or ``forward`` ones (∇×E, driving H), with the ghosts of
    :func:`shifted` where the window meets a face (a mirror wall's design window).
    A graded axis takes its 1/step per node from ``inv_steps`` (``params["inv_steps"]``)."""
    total = 0.0
    for a, b, sign in window_terms(p, window, layout):
        across = F[b][tuple(slice(None) if k == a else w for k, w in enumerate(window))]
        lo, hi = window[a].start, window[a].stop
        here = _take(across, a, lo, hi)
        difference = shifted(across, a, lo, hi, 1, layout, xp) - here if forward else here - shifted(across, a, lo, hi, -1, layout, xp)
        inv = inverse_step(layout, inv_steps, "h" if forward else "e", a)
        if layout.graded[a]:
            inv = _take(inv, a, window[a].start, window[a].stop)
        total = total + sign * difference * inv
    return total


def window_drive(
    H: list[Array], delta_p: Array | None, p: int, window: tuple[slice, slice, slice], layout: Layout, xp: ModuleType, inv_steps: dict[str, Array] | None = None
) -> Array:
    """What cb multiplies in the E update, (∇×H − ΔP/Δt)ₚ, on a design window;
    ``delta_p`` is the step's summed polarisation change of component p (None
    without dispersive media)."""
    drive = window_curl(H, p, window, layout, xp, inv_steps=inv_steps)
    return drive if delta_p is None else drive - delta_p[window] / layout.dt


def polarisation_change(state: State, p: int) -> Array | None:
    """ΔP of component p over the step that produced ``state`` (P − P_prev summed
    over the poles), None without dispersive media."""
    changes = [P - Q for P, Q in zip(state["P"][p::3], state["P_prev"][p::3])]
    return sum(changes[1:], changes[0]) if changes else None


def design_cb(params: dict[str, Any], layout: Layout) -> list[Array]:
    """cb with each design window's Δcb added: the coefficient the design's
    correction amounts to (JAX), for a step whose layout carries no design."""
    import jax.numpy as jnp

    cb = list(params["cb"])
    for (p, window), dcb in zip(layout.design, params["design_dcb"]):
        cb[p] = jnp.asarray(cb[p]).at[window].add(dcb)
    return cb


def window_terms(p: int, window: tuple[slice, slice, slice], layout: Layout) -> list[tuple[int, int, float]]:
    """(derivative axis a, H component b, sign) of the terms of (∇×H)ₚ on an active axis."""
    return [(a, b, sign) for a, b, sign in (((p + 1) % 3, (p + 2) % 3, 1.0), ((p + 2) % 3, (p + 1) % 3, -1.0)) if layout.active[a]]


def zero_pmc_walls(H: list[Array], layout: Layout, ops: ArrayOps) -> list[Array]:
    """``H`` with its tangential components zeroed on each plus-side PMC wall (the last
    half node along the wall's axis; the arrays' last, so ghost planes before the grid, as
    in :mod:`.fused`, change nothing): the forward step and its adjoint both apply it."""
    for a in range(3):
        if layout.pmc_plus[a]:
            for p in range(3):
                if p != a and layout.live[3 + p]:
                    H[p] = ops.set_at(H[p], tuple(slice(-1, None) if b == a else slice(None) for b in range(3)), 0.0)
    return H


def step_times(layout: Layout, n: Array) -> tuple[Array, Array]:
    """Times (normalised) of E^{n+1} and H^{n+½}, the fields step n produces."""
    return (n + 1).astype(layout.dtype) * layout.dt, (n.astype(layout.dtype) + 0.5) * layout.dt


def inject_sources(layout: Layout, ops: ArrayOps, F: list[Array], kind: str, params: dict[str, Any], n: Array) -> None:
    """Add the step-n point currents and TFSF sheet terms that drive the ``kind``
    ("E" or "H") fields, in place in the list ``F``."""
    for (field, index), (amp, wave) in zip(layout.points, params["points"]):
        if field[0] == kind:
            p = "xyz".index(field[1])
            F[p] = ops.add_at(F[p], index, amp * wave[n])
    for (e_field, h_field, e_slices, h_slices), sheet in zip(layout.sheets, params["sheets"]):
        field, slices, prefix = (e_field, e_slices, "e") if kind == "E" else (h_field, h_slices, "h")
        p = "xyz".index(field[1])
        # Σₖ waveform[n, k]·profile[k]: one update however many profiles a sheet has.
        # (a dot: measured 2× faster per step than a broadcast multiply and sum on XLA CPU)
        F[p] = ops.add_at(F[p], slices, ops.xp.tensordot(sheet[f"{prefix}_waveform"][n], sheet[f"{prefix}_profile"], axes=1))


def dft_step(layout: Layout, n: Array) -> Array:
    """Whether step ``n``'s fields go into the DFT sums (every ``layout.dft_every``-th)."""
    return (n + 1) % layout.dft_every == 0


def record_monitors(layout: Layout, ops: ArrayOps, state: State, E: list[Array], H: list[Array], params: dict[str, Any], n: Array) -> tuple[dict, dict]:
    """The DFT sums and time-monitor slots after step n, from its fields E^{n+1}, H^{n+½}."""
    xp = ops.xp
    t_e, t_h = step_times(layout, n)
    fields = {"Ex": E[0], "Ey": E[1], "Ez": E[2], "Hx": H[0], "Hy": H[1], "Hz": H[2]}

    def accumulate() -> dict:
        dft = {}
        for name, components in layout.dft:
            omega = params["omega"][name]
            phase = {"E": xp.exp(1j * omega * t_e), "H": xp.exp(1j * omega * t_h)}
            acc = state["dft"][name]
            dft[name] = {
                comp: acc[comp] + fields[comp][slices][None] * phase[comp[0]].reshape(-1, 1, 1, 1) if layout.live[FIELD_COMPONENTS.index(comp)] else acc[comp]
                for comp, slices in components
            }
        return dft

    dft = ops.cond(dft_step(layout, n), accumulate, lambda: state["dft"]) if layout.dft_decimated else accumulate()
    snaps = {}
    for name, components, start, interval, slots in layout.snapshots:
        slot = xp.clip((n + 1 - start + interval - 1) // interval, 0, slots)
        snaps[name] = {comp: ops.set_at(state["snap"][name][comp], slot, fields[comp][slices]) for comp, slices in components}
    return dft, snaps


def make_step(layout: Layout, ops: ArrayOps) -> Callable[[State, dict[str, Any], Array], State]:
    """Build the time-step function for ``layout`` on the array namespace ``ops``."""
    xp = ops.xp
    N = layout.shape

    def difference(F: Array, a: int, forward: bool, lo: int, hi: int) -> Array:
        """Forward (F[i+1] − F[i]) or backward (F[i] − F[i−1]) difference on nodes lo…hi−1."""
        here = _take(F, a, lo, hi)
        return (shifted(F, a, lo, hi, 1, layout, xp) - here) if forward else (here - shifted(F, a, lo, hi, -1, layout, xp))

    def derivative(F: Array, a: int, forward: bool, key: str, psi: dict, new_psi: dict, params: dict) -> Array:
        kind = "h" if forward else "e"  # which update the derivative feeds
        inv = inverse_step(layout, params.get("inv_steps"), kind, a)
        d = difference(F, a, forward, 0, N[a]) * inv
        slabs = pml_slabs(layout, a)
        if not slabs:
            return d
        # d/κ + ψ as one elementwise expression over the whole axis, so XLA fuses it
        # into the field update: 1/κ is a 1D profile (1 outside the PML) and ψ, which
        # lives only on slab nodes, enters zero-padded. ψ advances from its own
        # slab-local difference, not a slice of d: a second consumer of d makes XLA on
        # the CPU materialise the whole-axis derivative instead of fusing it into the
        # update (2.4x slower on the standard problem; benchmarks/engine.py --guard).
        out = d * params["pml_inv_kappa"][f"{kind}{a}"]
        if layout.whole_axis_psi[a]:
            b, c = params["pml_whole"][f"{kind}{a}"]
            new_psi[key] = b * psi[key] + c * d
            return out + new_psi[key]
        for side, lo, hi in slabs:
            b, c = params["pml"][f"{kind}{a}{side}"]
            name = f"{key}{side}"
            d_slab = difference(F, a, forward, lo, hi) * (_take(inv, a, lo, hi) if layout.graded[a] else inv)
            new_psi[name] = b * psi[name] + c * d_slab
            out = out + xp.pad(new_psi[name], slab_padding(layout, a, lo, hi))
        return out

    def curl(F: list[Array], forward: bool, prefix: str, psi: dict, new_psi: dict, params: dict) -> list[Array | None]:
        """(∇×F)ₚ = ∂ₐF_b − ∂_bFₐ with (p, a, b) cyclic; None where it vanishes or
        where the component it drives is not stepped."""
        drives = layout.live[3:] if forward else layout.live[:3]
        out: list[Array | None] = []
        for p in range(3):
            a, b = (p + 1) % 3, (p + 2) % 3
            total = None
            if not drives[p]:
                out.append(None)
                continue
            if layout.active[a]:
                total = derivative(F[b], a, forward, f"{prefix}{p}{a}", psi, new_psi, params)
            if layout.active[b]:
                term = derivative(F[a], b, forward, f"{prefix}{p}{b}", psi, new_psi, params)
                total = -term if total is None else total - term
            out.append(total)
        return out

    def step(state: State, params: dict[str, Any], n: Array) -> State:
        E, H, psi = list(state["E"]), list(state["H"]), state["psi"]
        new_psi: dict[str, Array] = {}
        dt = layout.dt

        # ---- H^{n-1/2} -> H^{n+1/2}
        curl_e = curl(E, True, "h", psi, new_psi, params)
        for p in range(3):
            if curl_e[p] is not None:
                H[p] = H[p] - dt * curl_e[p]
        inject_sources(layout, ops, H, "H", params, n)
        H = zero_pmc_walls(H, layout, ops)

        # ---- dispersive polarisation P^{n+1} from E^n
        P, P_prev = state["P"], state["P_prev"]
        P_next: list[Array] = []
        delta_p: list[Array | None] = [None, None, None]
        for k, (c1, c2, c3) in enumerate(params["poles"]):
            for p in range(3):
                i = 3 * k + p
                if not layout.live[p]:
                    P_next.append(P[i])  # zero, as E_p
                    continue
                P_next.append(c1 * P[i] + c2 * P_prev[i] + c3[p] * E[p])
                change = P_next[i] - P[i]
                delta_p[p] = change if delta_p[p] is None else delta_p[p] + change

        # ---- E^n -> E^{n+1}
        curl_h = curl(H, False, "e", psi, new_psi, params)
        for p in range(3):
            drive = curl_h[p]
            if delta_p[p] is not None:
                drive = (-delta_p[p] / dt) if drive is None else drive - delta_p[p] / dt
            if drive is None:
                continue
            base = params["ca"][p] * E[p] if layout.has_ca else E[p]
            E[p] = base + params["cb"][p] * drive
        # A design enters as a correction Δcb·(∇×H − ΔP/Δt) on its window alone, with
        # ∇×H recomputed there: the whole-grid update stays one fused loop, and under
        # jax.grad each step keeps only that window of the drive for the backward pass.
        for (p, window), dcb in zip(layout.design, params.get("design_dcb", ())):
            E[p] = ops.add_at(E[p], window, dcb * window_drive(H, delta_p[p], p, window, layout, xp, params.get("inv_steps")))
        inject_sources(layout, ops, E, "E", params, n)

        dft, snaps = record_monitors(layout, ops, state, E, H, params, n)
        return {"E": E, "H": H, "psi": {**psi, **new_psi}, "P": P_next, "P_prev": list(P), "dft": dft, "snap": snaps}

    return step


def field_energy(state: State, eps: list[Array], xp: ModuleType) -> Array:
    """Σ ε|E|² + |H|² over the grid (normalised; a shutoff indicator, not the exact
    staggered Yee invariant)."""
    return sum(xp.sum(e * xp.abs(E) ** 2) for e, E in zip(eps, state["E"])) + sum(xp.sum(xp.abs(H) ** 2) for H in state["H"])
