"""The fused time step: each half step of the Yee update as one Pallas kernel.

The XLA step (:func:`.yee.make_step`) leaves XLA to fuse a few dozen array
expressions; on a GPU that means several kernels a half step, each re-reading fields
from memory. Here each half step is one kernel (`Pallas <https://docs.jax.dev/en/latest/pallas/>`_,
the Triton backend on NVIDIA and AMD GPUs): a program takes a block of cells in the
grid's flat (C) order, loads the curled field at the block and at its three plus (H
update) or minus (E update) neighbours, and writes the updated field, the CPML ψ
(only cells in a slab touch ψ: the loads and stores are masked) and the dispersive
polarisation. Point and sheet sources and the monitors stay small XLA operations
between the kernels (:func:`.yee.inject_sources`, :func:`.yee.record_monitors`).

Layout of the fused state: every field array carries zero planes before x = 0 (ghosts:
one, or as many as a block spans when x is periodic), so no block's neighbour read
starts before the array; reads past a face are masked to the zero PEC/PML ghost, as
the XLA step's padding does, or, along a periodic axis, taken from the opposite face. The CPML ψ spans
the whole axis with b = c = 0 off the slabs (:func:`.sharding.whole_axis_psi`): a
cell's ψ sits at the cell's own flat index. :func:`prepare` and :func:`restore` convert
to and from the state checkpoints and results hold.

Supported: uniform grids with PEC, PMC, CPML or periodic faces, mirror symmetry, per-cell
ca/cb, dispersive poles, point and sheet sources, DFT and time monitors,
single-polarisation 2D, graded axes. Not yet: Bloch faces (complex fields), a design
window (differentiable solves),
split grids — :func:`unsupported` names the first such feature, and the solver then
steps with XLA. Off a GPU the kernels run in Pallas's interpreter (slow: for checks).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .sharding import slab_psi, whole_axis_psi
from .yee import Layout, State, inject_sources, jax_ops, pml_slabs, record_monitors, zero_pmc_walls

#: Cells per program on a GPU (a power of two, as Triton's tensors must be).
GPU_BLOCK = 1024


def unsupported(layout: Layout, devices: int = 1) -> str | None:
    """Why the fused kernels cannot step ``layout``, or None when they can."""
    reasons = [
        (any(layout.bloch), "Bloch boundaries (complex fields)"),
        (bool(layout.design), "a design region (differentiable solve)"),
        (devices > 1, "a grid split over devices"),
        (layout.dtype not in ("float32", "float64"), f"{layout.dtype} fields"),
        (any(layout.live[k] and not _curl_terms(layout, k % 3) for k in range(6)), "a stepped component without a curl (a 1D grid)"),
    ]
    return next((why for bad, why in reasons if bad), None)


@dataclass(frozen=True)
class Plan:
    """How the kernels cover the grid: cells per program, and the zero planes before
    x = 0 in the field arrays."""

    block: int
    planes: int


def plan(layout: Layout, interpret: bool) -> Plan:
    """:data:`GPU_BLOCK` cells per program on a GPU; in the interpreter, whose cost grows
    with the number of programs, a third to a sixth of the grid (still several programs,
    block edges included). One ghost plane, or, when x is periodic, enough that the wrap
    from the last x plane back to the first starts within the array for every block."""
    cells = int(np.prod(layout.shape))
    block = GPU_BLOCK if not interpret else 1 << max(6, (cells // 3).bit_length() - 1)
    plane = layout.shape[1] * layout.shape[2]
    planes = -(-block // plane) if layout.periodic[0] and layout.active[0] else 1
    return Plan(block, planes)


def _shift(where: Any, planes: int) -> Any:
    """A node index or slices of the grid, moved ``planes`` up x (past the ghosts)."""
    first = where[0]
    moved = slice(first.start + planes, first.stop + planes, first.step) if isinstance(first, slice) else first + planes
    return (moved, *where[1:])


def ghosted(layout: Layout, planes: int) -> Layout:
    """``layout`` with its sources' and monitors' positions moved past the ghost planes,
    for :func:`.yee.inject_sources` and :func:`.yee.record_monitors` on fused fields."""
    return dataclasses.replace(
        layout,
        points=tuple((f, _shift(index, planes)) for f, index in layout.points),
        sheets=tuple((e, h, _shift(es, planes), _shift(hs, planes)) for e, h, es, hs in layout.sheets),
        dft=tuple((name, tuple((c, _shift(s, planes)) for c, s in comps)) for name, comps in layout.dft),
        snapshots=tuple((name, tuple((c, _shift(s, planes)) for c, s in comps), *rest) for name, comps, *rest in layout.snapshots),
    )


def _pml_axes(layout: Layout) -> list[int]:
    return [a for a in range(3) if pml_slabs(layout, a)]


def prepare(layout: Layout, state: State, params: dict[str, Any], eps: list[Any], plan: Plan) -> tuple[Layout, State, dict[str, Any], list[np.ndarray]]:
    """The problem in the fused layout: ghost planes on the fields (and on ε, for the
    energy), whole-axis ψ, and the CPML profiles and graded axes' 1/step as 1D arrays
    ``params["fused"]``."""
    ghost = lambda x: np.pad(np.asarray(x), [(plan.planes, 0), (0, 0), (0, 0)])  # noqa: E731
    for a in _pml_axes(layout):
        layout, state, params = whole_axis_psi(layout, state, params, a)
    profiles = {}
    for a in _pml_axes(layout):
        for kind in ("h", "e"):
            b, c = params["pml_whole"][f"{kind}{a}"]
            profiles[f"kappa:{kind}{a}"] = np.ravel(params["pml_inv_kappa"][f"{kind}{a}"])
            profiles[f"b:{kind}{a}"], profiles[f"c:{kind}{a}"] = np.ravel(b), np.ravel(c)
    for a in (a for a in range(3) if layout.graded[a]):
        for kind in ("h", "e"):
            profiles[f"inv:{kind}{a}"] = np.ravel(params["inv_steps"][f"{kind}{a}"])
    state = {**state, "E": [ghost(x) for x in state["E"]], "H": [ghost(x) for x in state["H"]]}
    return layout, state, {**params, "fused": profiles}, [ghost(e) for e in eps]


def restore(layout: Layout, state: State, plan: Plan) -> State:
    """The fused ``state`` (NumPy) as the XLA step holds it: no ghost planes, ψ in slabs."""
    state = {**state, "E": [x[plan.planes :] for x in state["E"]], "H": [x[plan.planes :] for x in state["H"]]}
    for a in _pml_axes(layout):
        state = slab_psi(layout, state, a)
    return state


def _curl_terms(layout: Layout, p: int) -> list[tuple[int, int, int]]:
    """(sign, axis, component) of (∇×F)ₚ = ∂ₐF_b − ∂_bFₐ, (p, a, b) cyclic, over the
    active axes, in the order the XLA step adds them."""
    a, b = (p + 1) % 3, (p + 2) % 3
    return [t for t, on in (((1, a, b), layout.active[a]), ((-1, b, a), layout.active[b])) if on]


def half_step(layout: Layout, kind: str, plan: Plan, interpret: bool) -> Callable[..., dict[str, Any]]:
    """One half step as a Pallas call: ``kind`` "H" advances H from the forward
    differences of E, "E" advances E (ca, cb, dispersive poles) from the backward
    differences of H. Returns ``call(arrays) -> updated arrays``, both flat 1D arrays
    keyed by name ("E0", "H1", "psi:h01", "P0", ...), the updated ones in place."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    forward = kind == "H"
    curled, updated, prefix = ("E", "H", "h") if forward else ("H", "E", "e")
    live = layout.live[3:] if forward else layout.live[:3]
    N = layout.shape
    cells = int(np.prod(N))
    block, ghost = plan.block, plan.planes * N[1] * N[2]
    strides = (N[1] * N[2], N[2], 1)
    slabs = {a: pml_slabs(layout, a) for a in _pml_axes(layout)}
    stepped = [p for p in range(3) if live[p] and _curl_terms(layout, p)]
    poles = 0 if forward else layout.num_poles

    inputs = [f"{curled}{c}" for c in range(3)] + [f"{updated}{p}" for p in stepped]
    inputs += [f"psi:{prefix}{p}{a}" for p in stepped for _, a, _ in _curl_terms(layout, p) if a in slabs]
    inputs += [f"{name}:{prefix}{a}" for a in slabs for name in ("kappa", "b", "c")]
    inputs += [f"inv:{prefix}{a}" for a in range(3) if layout.graded[a]]
    if not forward:
        inputs += [f"ca{p}" for p in stepped if layout.has_ca] + [f"cb{p}" for p in stepped]
        for k in range(poles):
            inputs += [f"c1:{k}", f"c2:{k}"] + [f"c3:{k}:{p}" for p in stepped]
            inputs += [f"P{3 * k + p}" for p in stepped] + [f"Pprev{3 * k + p}" for p in stepped]
    # P_next overwrites P_prev in place: the caller keeps the old P as the next P_prev.
    outputs = [f"{updated}{p}" for p in stepped] + [n for n in inputs if n.startswith(("psi:", "Pprev"))]
    aliases = {inputs.index(name): i for i, name in enumerate(outputs)}

    def kernel(*refs: Any) -> None:
        ref = dict(zip(inputs, refs[: len(inputs)]))
        out = dict(zip(outputs, refs[len(inputs) :]))
        start = pl.program_id(0) * block
        q = start + jnp.arange(block)
        inside = q < cells
        # (i, j, k) of each cell; past the last cell i is clamped so gathers stay in range.
        node = (jnp.minimum(q // strides[0], N[0] - 1), (q // strides[1]) % N[1], q % N[2])
        loaded: dict[tuple[str, int], Any] = {}

        def field(name: str, shift: int = 0, mask: Any = inside) -> Any:
            if (name, shift) not in loaded:
                loaded[name, shift] = plt.load(ref[name].at[pl.ds(ghost + start + shift, block)], mask=mask, other=0)
            return loaded[name, shift]

        def cell(name: str, mask: Any = inside) -> Any:
            return plt.load(ref[name].at[pl.ds(start, block)], mask=mask, other=0)

        def profile(name: str, a: int) -> Any:
            return plt.load(ref[name].at[node[a]], mask=inside, other=0)

        def scalar(name: str) -> Any:
            return plt.load(ref[name].at[pl.ds(0, 1)])

        def neighbour(name: str, a: int) -> Any:
            """F at the next node along ``a`` (H update) or the previous one (E update);
            past the face the periodic image, before a PMC minus wall the odd image
            −F[0] (as the XLA step), else the zero ghost. Masked lanes read nothing, so
            the two reads add to the one that applies."""
            edge = node[a] == (N[a] - 1 if forward else 0)
            value = field(name, strides[a] if forward else -strides[a], inside & ~edge)
            if layout.periodic[a]:
                wrap = (N[a] - 1) * strides[a]
                value = value + field(name, -wrap if forward else wrap, inside & edge)
            elif not forward and layout.pmc_minus[a]:
                value = jnp.where(edge, -field(name), value)
            return value

        def derivative(p: int, a: int, c: int) -> Any:
            """∂ₐ of component c, CPML included, for the update of component p."""
            name = f"{curled}{c}"
            d = (neighbour(name, a) - field(name)) if forward else (field(name) - neighbour(name, a))
            d = d * (profile(f"inv:{prefix}{a}", a) if layout.graded[a] else layout.inv_dl[a])
            if a not in slabs:
                return d
            in_slab = inside & functools.reduce(operator.or_, [(node[a] >= lo) & (node[a] < hi) for _, lo, hi in slabs[a]])
            key = f"psi:{prefix}{p}{a}"
            psi = profile(f"b:{prefix}{a}", a) * cell(key, in_slab) + profile(f"c:{prefix}{a}", a) * d
            plt.store(out[key].at[pl.ds(start, block)], psi, mask=in_slab)
            return d * profile(f"kappa:{prefix}{a}", a) + psi

        for p in stepped:
            total = None
            for sign, a, c in _curl_terms(layout, p):
                term = derivative(p, a, c)
                total = term if sign > 0 else (-term if total is None else total - term)
            here = field(f"{updated}{p}")
            if forward:
                new = here - layout.dt * total
            else:
                change = None
                for k in range(poles):
                    i = 3 * k + p
                    now = cell(f"P{i}")
                    nxt = scalar(f"c1:{k}") * now + scalar(f"c2:{k}") * cell(f"Pprev{i}") + cell(f"c3:{k}:{p}") * here
                    plt.store(out[f"Pprev{i}"].at[pl.ds(start, block)], nxt, mask=inside)
                    change = nxt - now if change is None else change + (nxt - now)
                drive = total if change is None else total - change / layout.dt
                base = cell(f"ca{p}") * here if layout.has_ca else here
                new = base + cell(f"cb{p}") * drive
            plt.store(out[f"{updated}{p}"].at[pl.ds(ghost + start, block)], new, mask=inside)

    def call(arrays: dict[str, Any]) -> dict[str, Any]:
        args = [arrays[name] for name in inputs]
        shapes = [jax.ShapeDtypeStruct(arrays[name].shape, arrays[name].dtype) for name in outputs]
        results = pl.pallas_call(
            kernel,
            out_shape=shapes,
            grid=(pl.cdiv(cells, block),),
            input_output_aliases=aliases,
            interpret=interpret,
            compiler_params=plt.CompilerParams(num_warps=4, num_stages=1),
            name=f"yee_{kind}_update",
        )(*args)
        return dict(zip(outputs, results))

    return call


def make_step(layout: Layout, plan: Plan, interpret: bool) -> Callable[[State, dict[str, Any], Any], State]:
    """The time step on the fused layout (:func:`prepare` with the same ``plan``): two
    Pallas kernels, the sources and the monitors."""
    h_update, e_update = half_step(layout, "H", plan, interpret), half_step(layout, "E", plan, interpret)
    placed = ghosted(layout, plan.planes)
    ops = jax_ops()

    def flat(state: State, params: dict[str, Any]) -> dict[str, Any]:
        arrays = {f"{f}{p}": state[f][p].reshape(-1) for f in ("E", "H") for p in range(3)}
        arrays |= {f"psi:{key}": v.reshape(-1) for key, v in state["psi"].items()}
        arrays |= params["fused"]
        arrays |= {f"cb{p}": params["cb"][p].reshape(-1) for p in range(3)}
        arrays |= {f"ca{p}": params["ca"][p].reshape(-1) for p in range(3) if layout.has_ca}
        for k, (c1, c2, c3) in enumerate(params["poles"]):
            arrays |= {f"c1:{k}": c1.reshape(1), f"c2:{k}": c2.reshape(1)} | {f"c3:{k}:{p}": c3[p].reshape(-1) for p in range(3)}
        arrays |= {f"P{i}": x.reshape(-1) for i, x in enumerate(state["P"])} | {f"Pprev{i}": x.reshape(-1) for i, x in enumerate(state["P_prev"])}
        return arrays

    def step(state: State, params: dict[str, Any], n: Any) -> State:
        shape = {f: state[f][0].shape for f in ("E", "H")}
        arrays = flat(state, params)
        arrays |= h_update(arrays)
        H = [arrays[f"H{p}"].reshape(shape["H"]) for p in range(3)]
        inject_sources(placed, ops, H, "H", params, n)
        H = zero_pmc_walls(H, placed, ops)
        arrays |= {f"H{p}": H[p].reshape(-1) for p in range(3)}
        arrays |= e_update(arrays)
        E = [arrays[f"E{p}"].reshape(shape["E"]) for p in range(3)]
        inject_sources(placed, ops, E, "E", params, n)
        psi = {key: arrays[f"psi:{key}"].reshape(v.shape) for key, v in state["psi"].items()}
        P_next = [arrays[f"Pprev{i}"].reshape(x.shape) for i, x in enumerate(state["P_prev"])]
        dft, snaps = record_monitors(placed, ops, state, E, H, params, n)
        return {"E": E, "H": H, "psi": psi, "P": P_next, "P_prev": list(state["P"]), "dft": dft, "snap": snaps}

    return step
