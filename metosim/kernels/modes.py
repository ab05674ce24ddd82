"""Finite-difference eigenmodes of a waveguide cross-section on the Yee grid.

The plane has transverse axes (u, v) and normal n, (u, v, n) cyclic (for n = x:
u = y, v = z). Each transverse Yee cell i, j holds the six components at their own
nodes — Eu (i+½, j), Ev (i, j+½), En (i, j), Hu (i, j+½), Hv (i+½, j), Hn (i+½, j+½) —
exactly as in the 3D grid, so a mode solved here is the grid's own mode.

With fields ∝ exp(i(βn − ωt)) (normalised units: c = ε₀ = μ₀ = 1, lengths µm),
eliminating En and Hn from Maxwell's equations leaves, for e = (Eu, Ev):

    iβ h = Q e / (iω),   iβ e = P h / (iω)   ⇒   (P Q / ω²) e = β² e

    Q = [[−Du_b M Dv_f,            Du_b M Du_f + ω² εv],
         [−Dv_b M Dv_f − ω² εu,     Dv_b M Du_f       ]],   M = 1/μn
    P = [[ Du_f K Dv_b,            −Du_f K Du_b − ω² μv],
         [ Dv_f K Dv_b + ω² μu,    −Dv_f K Du_b        ]],   K = 1/εn

with forward differences D_f on E (onto half nodes) and backward differences D_b on
H (onto integer nodes). Beyond the plane's last cell the ghost E is zero (a PEC
wall, as at the engine's plus face) and before its first cell the ghost H is zero;
``num_pml`` cells of stretched-coordinate PML absorb at the edges instead. A bend of
radius R maps onto an equivalent straight guide (transformation optics: ε, μ
transverse × h, normal ÷ h with h = 1 + r/R along the radial axis).

Mode normalisation: ½ Re Σ (Eu Hv* − Ev Hu*) ΔA = 1 (unit power along +n), phase
chosen so the largest E component is real and positive at its peak.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..boundary import Periodic
from ..grid import C_0, MICROMETRE
from ..medium import DISPERSIVE, Medium
from .dispersion import grid_permittivity
from .mesh import MeshedMedia, mesh_media
from .sampling import colocate_axes, half_node_axes, node_range

if TYPE_CHECKING:  # SciPy's sparse modules (0.2 s to import) load at the first mode solve
    import scipy.sparse as sp

#: Extra eigenpairs computed beyond ``num_modes`` when filtering by polarisation.
_FILTER_EXTRA = 4
#: ... and when the plane has PML layers (their modes crowd the shift).
_PML_EXTRA = 16
#: Unknowns (2 × cells) up to which the eigenproblem is solved densely.
_DENSE_LIMIT = 1200


class ModeSolverError(ValueError):
    """No guided mode could be found, or the eigenproblem failed."""


@dataclass(frozen=True)
class PlaneSteps:
    """Primal cell sizes (µm) along u and v: ``steps[a][i] = node[i+1] − node[i]``.
    An axis of one cell and no extent (a 2D simulation) has ``active`` False."""

    u: np.ndarray
    v: np.ndarray
    active: tuple[bool, bool]
    #: Position (µm) of the first integer node along u and v relative to the plane's
    #: centre (where a bend's radius is measured from).
    origin: tuple[float, float] = (0.0, 0.0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.size, self.v.size


@dataclass(frozen=True)
class Modes:
    """Solved modes, ordered by decreasing Re n_eff, modes with |k_eff| > 1% of n_eff
    (PML modes) last, after polarisation filtering.

    ``E``, ``H``: (Fu, Fv, Fn) arrays of shape (num_modes, Nu, Nv) on each
    component's own Yee nodes. ``beta``: propagation constant (1/µm) along n.
    ``E_back``, ``H_back``: the transverse (Fu, Fv) of each mode's backward partner
    where it is not (e, −h) — a mode crossing the plane at an angle (:func:`tilted`).
    """

    n_eff: np.ndarray
    beta: np.ndarray
    E: tuple[np.ndarray, np.ndarray, np.ndarray]
    H: tuple[np.ndarray, np.ndarray, np.ndarray]
    te_fraction: np.ndarray
    n_group: np.ndarray
    E_back: tuple[np.ndarray, np.ndarray] | None = None
    H_back: tuple[np.ndarray, np.ndarray] | None = None

    def backward(self, m: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The transverse (e, h) of mode ``m`` travelling against the normal."""
        if self.E_back is None or self.H_back is None:
            return (self.E[0][m], self.E[1][m]), (-self.H[0][m], -self.H[1][m])
        return (self.E_back[0][m], self.E_back[1][m]), (self.H_back[0][m], self.H_back[1][m])


def _dual(steps: np.ndarray) -> np.ndarray:
    """Dual step at integer node i: the distance between half nodes i−½ and i+½ (the
    ghost half node before the first cell mirrors the first step)."""
    before = np.concatenate([steps[:1], steps[:-1]])
    return 0.5 * (before + steps)


def _dense_nearest(A: sp.csc_matrix, k: int, shift: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenpairs of A nearest ``shift`` from a dense eigensolve, block by block
    when the (Eu, Ev) polarisations decouple (a 1D cross-section)."""
    import scipy.linalg

    dense = A.toarray()
    if not dense[:size, size:].any() and not dense[size:, :size].any():
        parts = [scipy.linalg.eig(dense[b, b], check_finite=False) for b in (slice(0, size), slice(size, 2 * size))]
        values = np.concatenate([p[0] for p in parts])
        vectors = np.zeros((2 * size, 2 * size), dtype=complex)
        vectors[:size, :size], vectors[size:, size:] = parts[0][1], parts[1][1]
    else:
        values, vectors = scipy.linalg.eig(dense, check_finite=False)
    nearest = np.argsort(np.abs(values - shift))[:k]
    return values[nearest], vectors[:, nearest]


def _shift_invert(A: sp.csc_matrix, k: int, shift: float, target_neff: float) -> tuple[np.ndarray, np.ndarray]:
    """The k eigenpairs of A nearest ``shift`` by ARPACK's shift-invert mode."""
    import scipy.sparse.linalg as spla

    ncv = min(A.shape[0], max(2 * k + 1, 20))  # a wider Krylov space: fewer restarts
    try:
        return spla.eigs(A, k=k, sigma=shift, which="LM", ncv=ncv)
    except RuntimeError:  # the shift hit an eigenvalue exactly: move it a little
        try:
            return spla.eigs(A, k=k, sigma=shift * (1 + 1e-6), which="LM", ncv=ncv)
        except (RuntimeError, spla.ArpackNoConvergence) as exc:
            raise ModeSolverError(f"the eigenproblem did not converge near n_eff = {target_neff:.4g}: {exc}") from exc
    except spla.ArpackNoConvergence as exc:
        raise ModeSolverError(f"the eigenproblem did not converge near n_eff = {target_neff:.4g}: {exc}") from exc


def face_areas(steps: PlaneSteps) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Areas (µm², or µm on a 1D cross-section) of the Yee faces around each node kind,
    shape (Nu, Nv): Eu/Hv at (i+½, j), Ev/Hu at (i, j+½), En at (i, j), Hn at (i+½, j+½)."""
    primal = [d if act else np.ones_like(d) for d, act in zip((steps.u, steps.v), steps.active)]
    dual = [_dual(d) if act else np.ones_like(d) for d, act in zip((steps.u, steps.v), steps.active)]
    return (
        np.outer(primal[0], dual[1]),
        np.outer(dual[0], primal[1]),
        np.outer(dual[0], dual[1]),
        np.outer(primal[0], primal[1]),
    )


def _power(Eu: np.ndarray, Ev: np.ndarray, Hu: np.ndarray, Hv: np.ndarray, area_u: np.ndarray, area_v: np.ndarray, axis: Any = None) -> np.ndarray:
    """½ Re Σ (Eu Hv* − Ev Hu*) ΔA over ``axis`` (all by default): the power along n."""
    return 0.5 * np.real((Eu * np.conj(Hv) * area_u - Ev * np.conj(Hu) * area_v).sum(axis=axis))


def _unit_power(Eu: np.ndarray, Ev: np.ndarray, Hu: np.ndarray, Hv: np.ndarray, area_u: np.ndarray, area_v: np.ndarray) -> complex:
    """The factor that gives a mode unit power |P| = 1 (in a lossy plane a mode may carry
    net power backwards) and its largest transverse E component real and positive at
    its peak (the phase convention)."""
    power = abs(_power(Eu, Ev, Hu, Hv, area_u, area_v))
    flat = np.concatenate([Eu.ravel(), Ev.ravel()])
    peak = flat[np.argmax(np.abs(flat))]
    return np.conj(peak) / abs(peak) / np.sqrt(power)


def reciprocal_overlap(Eu: np.ndarray, Ev: np.ndarray, Hu: np.ndarray, Hv: np.ndarray, steps: PlaneSteps) -> np.ndarray:
    """Σ (E × H)·n̂ dA = Σ (Eu Hv − Ev Hu) dA over the plane's last two axes (no
    conjugate: the overlap under which the modes of a lossless or lossy guide are
    orthogonal)."""
    area_u, area_v, _, _ = face_areas(steps)
    return (Eu * Hv * area_u - Ev * Hu * area_v).sum(axis=(-2, -1))


def _difference(n: int, periodic: bool) -> sp.csr_matrix:
    """Forward difference F[i+1] − F[i] on n nodes, the ghost past the end zero (or wrapped)."""
    import scipy.sparse as sp

    d = sp.diags([-np.ones(n), np.ones(n - 1)], [0, 1], shape=(n, n), format="lil")
    if periodic and n > 1:
        d[n - 1, 0] = 1.0
    return d.tocsr()


def _pml_stretch(steps: np.ndarray, num_pml: tuple[int, int], omega: float, half: bool) -> np.ndarray:
    """Complex coordinate stretch s = 1 + iσ/ω on integer (or half) nodes, with a
    cubic σ profile rising to give e^{-16} round-trip reflection at normal incidence."""
    n = steps.size
    s = np.ones(n, dtype=complex)
    position = np.arange(n) + (0.5 if half else 0.0)
    for side, layers in zip(("minus", "plus"), num_pml):
        if layers <= 0:
            continue
        thickness = layers * float(np.mean(steps))
        sigma_max = 4 * 16 / (2 * thickness)  # (order + 1)·ln(1/R)/(2 d), order 3, R = e^{-16}
        depth = (layers - position) / layers if side == "minus" else (position - (n - layers)) / layers
        depth = np.clip(depth, 0.0, 1.0)
        s = s + 1j * sigma_max * depth**3 / omega
    return s


def derivative_matrices(steps: PlaneSteps, omega: float, num_pml: tuple[int, int] = (0, 0), periodic: tuple[bool, bool] = (False, False)) -> tuple[sp.csr_matrix, ...]:
    """(Du_f, Du_b, Dv_f, Dv_b) acting on flattened (Nu, Nv) arrays (C order); zero
    matrices along an inactive axis."""
    import scipy.sparse as sp

    Nu, Nv = steps.shape
    out = []
    for a, (d, n, other) in enumerate(((steps.u, Nu, Nv), (steps.v, Nv, Nu))):
        if not steps.active[a]:
            zero = sp.csr_matrix((Nu * Nv, Nu * Nv))
            out += [zero, zero]
            continue
        diff = _difference(n, periodic[a])
        pml = (num_pml[a], num_pml[a])
        s_half = _pml_stretch(d, pml, omega, half=True)
        s_int = _pml_stretch(d, pml, omega, half=False)
        forward = sp.diags(1.0 / (s_half * d)) @ diff
        backward = sp.diags(1.0 / (s_int * _dual(d))) @ (-diff.T)
        eye = sp.identity(other, format="csr")
        if a == 0:
            out += [sp.kron(forward, eye, format="csr"), sp.kron(backward, eye, format="csr")]
        else:
            out += [sp.kron(eye, forward, format="csr"), sp.kron(eye, backward, format="csr")]
    return tuple(out)


def axis_nodes(steps: PlaneSteps, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (µm, from the plane centre) of the integer and half nodes along plane
    axis ``axis`` (0 = u, 1 = v)."""
    d = steps.u if axis == 0 else steps.v
    nodes = steps.origin[axis] + np.concatenate([[0.0], np.cumsum(d)])[:-1]
    return nodes, nodes + 0.5 * d


def bend_factors(steps: PlaneSteps, radius: float, radial_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """h = 1 + r/R on integer and half nodes of the radial axis (r from the plane centre, µm)."""
    integer, half = axis_nodes(steps, radial_axis)
    return 1 + integer / radius, 1 + half / radius


@dataclass(frozen=True)
class CrossSection:
    """The eigenproblem of one plane split by its dependence on ω: Q = Q0 + ω²·Qw and
    P = P0 + ω²·Pw (so building it once serves every frequency of a monitor), with the
    materials and derivative matrices needed to recover all six field components."""

    steps: PlaneSteps
    eps: tuple[np.ndarray, np.ndarray, np.ndarray]  # flattened, bend-transformed
    mu: tuple[np.ndarray, np.ndarray, np.ndarray]
    derivatives: tuple[sp.csr_matrix, ...]  # Du_f, Du_b, Dv_f, Dv_b
    Q0: sp.csc_matrix
    Qw: sp.csc_matrix
    P0: sp.csc_matrix
    Pw: sp.csc_matrix
    #: The PML stretch depends on ω: such a section serves only ``omega``.
    omega: float | None
    #: The plane's largest refractive index before any bend transformation (the
    #: default search target), and its PML cells per axis.
    max_index: float
    num_pml: tuple[int, int]

    def operator(self, omega: float) -> sp.csc_matrix:
        """P·Q/ω², the matrix whose eigenvalues are β²."""
        w2 = omega**2
        P, Q = self.P0 + w2 * self.Pw, self.Q0 + w2 * self.Qw
        return (P @ Q / w2).tocsc()

    def Q(self, omega: float) -> sp.csc_matrix:
        return self.Q0 + omega**2 * self.Qw


def cross_section(
    eps: tuple[np.ndarray, np.ndarray, np.ndarray],
    steps: PlaneSteps,
    omega: float,
    num_pml: tuple[int, int] = (0, 0),
    periodic: tuple[bool, bool] = (False, False),
    bend_radius: float | None = None,
    bend_axis: int | None = None,
) -> CrossSection:
    """Assemble the plane's eigenproblem (see the module docstring). ``omega`` is used
    only by a PML; ``bend_axis``: the tangential axis (0 = u, 1 = v) the guide bends
    about, the other one being radial."""
    import scipy.sparse as sp

    Nu, Nv = steps.shape
    size = Nu * Nv
    eu, ev, en = (np.asarray(e, dtype=complex).reshape(size) for e in eps)
    mu = [np.ones(size, dtype=complex) for _ in range(3)]
    eps_c = [eu, ev, en]
    if bend_radius is not None:
        radial = 1 - int(bend_axis or 0)
        h_int, h_half = bend_factors(steps, bend_radius, radial)
        if min(h_int.min(), h_half.min()) <= 0:
            raise ModeSolverError(
                f"the plane reaches the bend's centre: its half-width along the radial axis must be below |bend_radius| = {abs(bend_radius):g} µm"
            )
        shape = (-1, 1) if radial == 0 else (1, -1)
        # Whether each E (and H) component sits on half nodes along the radial axis.
        comp_half = {0: (True, False, False), 1: (False, True, False)}[radial]
        mu_half = {0: (False, True, True), 1: (True, False, True)}[radial]
        for k in range(3):
            h = np.broadcast_to((h_half if comp_half[k] else h_int).reshape(shape), (Nu, Nv)).reshape(size)
            eps_c[k] = eps_c[k] * (h if k < 2 else 1 / h)
            hm = np.broadcast_to((h_half if mu_half[k] else h_int).reshape(shape), (Nu, Nv)).reshape(size)
            mu[k] = mu[k] * (hm if k < 2 else 1 / hm)
    eu, ev, en = eps_c
    Du_f, Du_b, Dv_f, Dv_b = derivative_matrices(steps, omega, num_pml, periodic)
    M, K = sp.diags(1 / mu[2]), sp.diags(1 / en)
    zero = sp.csr_matrix((size, size))
    return CrossSection(
        steps=steps,
        eps=(eu, ev, en),
        mu=tuple(mu),  # type: ignore[arg-type]
        derivatives=(Du_f, Du_b, Dv_f, Dv_b),
        Q0=sp.bmat([[-Du_b @ M @ Dv_f, Du_b @ M @ Du_f], [-Dv_b @ M @ Dv_f, Dv_b @ M @ Du_f]], format="csc"),
        Qw=sp.bmat([[zero, sp.diags(ev)], [-sp.diags(eu), zero]], format="csc"),
        P0=sp.bmat([[Du_f @ K @ Dv_b, -Du_f @ K @ Du_b], [Dv_f @ K @ Dv_b, -Dv_f @ K @ Du_b]], format="csc"),
        Pw=sp.bmat([[zero, -sp.diags(mu[1])], [sp.diags(mu[0]), zero]], format="csc"),
        omega=omega if any(num_pml) else None,
        max_index=float(np.sqrt(max(np.max(np.real(e)) for e in eps))),
        num_pml=num_pml,
    )


def solve_modes(
    section: CrossSection,
    omega: float,
    num_modes: int,
    target_neff: float | None = None,
    filter_pol: str | None = None,
    precision: str = "double",
    te_axis: int = 0,
) -> Modes:
    """Eigenmodes of an assembled cross-section (:func:`cross_section`) at angular
    frequency ``omega`` (rad per µm/c).

    ``target_neff``: shift of the shift-invert search (default: the largest index in
    the plane). ``filter_pol``: "te" / "tm" puts modes with ``te_fraction`` (the share
    of |E|² along transverse axis ``te_axis``: 0 = u, 1 = v) ≥ ½ / < ½ first.
    """
    if section.omega is not None and section.omega != omega:
        raise ValueError("a cross-section with PML serves only the frequency it was built for")
    steps = section.steps
    Nu, Nv = steps.shape
    size = Nu * Nv
    eu, ev, en = section.eps
    mu = section.mu
    Du_f, Du_b, Dv_f, Dv_b = section.derivatives
    Q = section.Q(omega)
    A = section.operator(omega)
    # Lossless straight and bent guides give a real operator: real LU and ARPACK
    # iterations are several times cheaper than complex ones.
    real = not np.any(np.imag(A.data))
    A = (A.real if real else A).astype((np.float32 if real else np.complex64) if precision == "single" else (np.float64 if real else np.complex128))
    if target_neff is None:
        # The plane's own largest index: a bend's transformed cladding can exceed the
        # core's index at the outer edge, where only leaky modes live.
        target_neff = section.max_index
    shift = (target_neff * omega) ** 2
    # PML planes add absorber modes near the shift: look at more candidates.
    want = num_modes + (_FILTER_EXTRA if filter_pol else 0) + (_PML_EXTRA if any(section.num_pml) else 0)
    k = min(want, 2 * size - 2)
    if k < num_modes:
        raise ModeSolverError(f"the plane has {size} cells: too few for {num_modes} modes")
    if 2 * size <= _DENSE_LIMIT:
        # Small planes (1D cross-sections): a dense eigensolve is faster than ARPACK's
        # setup; keep the k eigenvalues nearest the shift, as shift-invert would.
        values, vectors = _dense_nearest(A, k, shift, size)
    else:
        values, vectors = _shift_invert(A, k, shift, target_neff)
    beta = np.sqrt(values.astype(complex))  # principal root: Re β ≥ 0, forward along +n
    # By decreasing Re n_eff, low-loss modes first: a PML adds modes that live in the
    # absorber (|k_eff| of order 0.1), which must not displace guided ones.
    lossy = np.abs(np.imag(beta)) > 1e-2 * np.abs(np.real(beta))
    order = np.lexsort((-np.real(beta), lossy))
    beta, vectors = beta[order], vectors[:, order]

    E_u, E_v, E_n, H_u, H_v, H_n, te = [], [], [], [], [], [], []
    area_u, area_v, area_n_e, area_n_h = (a.reshape(size) for a in face_areas(steps))
    for m in range(beta.size):
        e = vectors[:, m]
        h = -(Q @ e) / (omega * beta[m])
        fu, fv = e[:size], e[size:]
        gu, gv = h[:size], h[size:]
        gn = (Du_f @ fv - Dv_f @ fu) / (1j * omega * mu[2])
        fn = (Du_b @ gv - Dv_b @ gu) / (-1j * omega * en)
        scale = _unit_power(fu, fv, gu, gv, area_u, area_v)
        E_u.append(fu * scale), E_v.append(fv * scale), E_n.append(fn * scale)
        H_u.append(gu * scale), H_v.append(gv * scale), H_n.append(gn * scale)
        wu, wv = np.sum(np.abs(fu) ** 2 * area_u), np.sum(np.abs(fv) ** 2 * area_v)
        te.append((wu if te_axis == 0 else wv) / (wu + wv))
    te = np.asarray(te)
    if filter_pol is not None:
        keep = te >= 0.5 if filter_pol == "te" else te < 0.5
        order = np.concatenate([np.nonzero(keep)[0], np.nonzero(~keep)[0]])
    else:
        order = np.arange(beta.size)
    order = order[:num_modes]

    def pack(parts: list[np.ndarray]) -> np.ndarray:
        return np.stack([parts[i].reshape(Nu, Nv) for i in order])

    E = (pack(E_u), pack(E_v), pack(E_n))
    H = (pack(H_u), pack(H_v), pack(H_n))
    # Group index from the energy theorem: n_g = c·U/P with U = ¼Σ(ε|E|² + μ|H|²)ΔA and
    # P = 1 (non-dispersive media; exact for the transverse-discrete problem).
    n_group = []
    for k_ in range(order.size):
        energy = (
            np.sum(np.real(eu) * np.abs(E[0][k_].reshape(size)) ** 2 * area_u)
            + np.sum(np.real(ev) * np.abs(E[1][k_].reshape(size)) ** 2 * area_v)
            + np.sum(np.real(en) * np.abs(E[2][k_].reshape(size)) ** 2 * area_n_e)
            + np.sum(np.real(mu[0]) * np.abs(H[0][k_].reshape(size)) ** 2 * area_v)
            + np.sum(np.real(mu[1]) * np.abs(H[1][k_].reshape(size)) ** 2 * area_u)
            + np.sum(np.real(mu[2]) * np.abs(H[2][k_].reshape(size)) ** 2 * area_n_h)
        )
        n_group.append(0.25 * energy)
    return Modes(
        n_eff=beta[order] / omega,
        beta=beta[order],
        E=E,
        H=H,
        te_fraction=te[order],
        n_group=np.asarray(n_group),
    )


# ---------------------------------------------------------------- a plane of a simulation grid
@dataclass(frozen=True)
class Plane:
    """A mode plane on the simulation's Yee grid: its normal axis, the integer node
    ``index`` it sits on along the normal, and the cells it spans (``window``: index
    slices per x, y, z, one node along the normal)."""

    normal: int
    index: int
    window: tuple[slice, slice, slice]
    steps: PlaneSteps
    periodic: tuple[bool, bool]

    @property
    def axes(self) -> tuple[int, int]:
        """The transverse axes (u, v), cyclic with the normal."""
        return (self.normal + 1) % 3, (self.normal + 2) % 3

    @property
    def first_tangential(self) -> int:
        """Which of (u, v) comes first in x, y, z order (the ``ModeSpec`` convention for
        ``te_fraction``, ``num_pml`` and ``bend_axis``): 0 = u, except v for a y normal."""
        u, v = self.axes
        return 0 if u < v else 1

    def to_grid(self, F: np.ndarray) -> np.ndarray:
        """A (..., Nu, Nv) plane array as (..., Nx, Ny, Nz), length 1 along the normal."""
        lead = F.ndim - 2
        u, v = self.axes
        return np.moveaxis(F[..., None], [lead, lead + 1, lead + 2], [lead + u, lead + v, lead + self.normal])

    def from_grid(self, F: Any, xp: ModuleType = np) -> Any:
        """Inverse of :meth:`to_grid`: (..., Nx, Ny, Nz) with one node along the normal → (..., Nu, Nv)."""
        lead = F.ndim - 3
        u, v = self.axes
        return xp.moveaxis(F, [lead + u, lead + v, lead + self.normal], [lead, lead + 1, lead + 2])[..., 0]


def plane_on_grid(grid, center: tuple[float, ...], size: tuple[float, ...], periodic: tuple[bool, bool, bool]) -> Plane:
    """The plane of a mode source, monitor or solver box (size 0 along its normal)."""

    normal = next(a for a in range(3) if size[a] == 0 and grid.active[a])
    ranges = [node_range(grid, a, center[a], size[a]) for a in range(3)]
    window = tuple(slice(*r) for r in ranges)
    u, v = (normal + 1) % 3, (normal + 2) % 3
    steps = PlaneSteps(
        u=grid.primal_steps(u)[slice(*ranges[u])],
        v=grid.primal_steps(v)[slice(*ranges[v])],
        active=(grid.active[u], grid.active[v]),
        origin=tuple(float(grid.nodes(a, half=False)[ranges[a][0]] - center[a]) if grid.active[a] else 0.0 for a in (u, v)),  # type: ignore[arg-type]
    )
    spans = [ranges[a] == (0, grid.num_cells[a]) for a in range(3)]
    return Plane(
        normal=normal,
        index=ranges[normal][0],
        window=window,  # type: ignore[arg-type]
        steps=steps,
        periodic=(periodic[u] and spans[u], periodic[v] and spans[v]),
    )


def plane_permittivity(permittivity: tuple[np.ndarray, np.ndarray, np.ndarray], plane: Plane, windowed: bool = False) -> tuple[np.ndarray, ...]:
    """(εu, εv, εn) on the plane from the meshed permittivity of each E component
    (whole-grid arrays, or already cut to ``plane.window`` when ``windowed``)."""
    u, v = plane.axes
    cut = (lambda e: e) if windowed else (lambda e: e[plane.window])
    return tuple(plane.from_grid(cut(permittivity[a])) for a in (u, v, plane.normal))


def grid_omega(omega: float, dt: float) -> float:
    """The angular frequency the leapfrog time step sees: (2/Δt)·sin(ωΔt/2)."""
    return 2 / dt * np.sin(omega * dt / 2)


def grid_beta(beta: np.ndarray, dn: float) -> np.ndarray:
    """The propagation constant on a grid of step ``dn`` along the normal whose
    central difference gives ``beta``: (2/Δn)·arcsin(βΔn/2)."""
    return 2 / dn * np.arcsin(beta * dn / 2)


def _to_half(F: np.ndarray, axis: int) -> np.ndarray:
    """Integer-node values averaged onto the half nodes after them along ``axis``
    (of a (modes, Nu, Nv) array; the ghost past the end is zero)."""
    ahead = np.concatenate([np.take(F, np.arange(1, F.shape[axis]), axis=axis), np.zeros_like(np.take(F, [0], axis=axis))], axis=axis)
    return 0.5 * (F + ahead)


def _to_integer(F: np.ndarray, axis: int) -> np.ndarray:
    """Half-node values averaged onto the integer nodes between them along ``axis``
    (the ghost before the start is zero)."""
    behind = np.concatenate([np.zeros_like(np.take(F, [0], axis=axis)), np.take(F, np.arange(F.shape[axis] - 1), axis=axis)], axis=axis)
    return 0.5 * (F + behind)


def shortened(steps: PlaneSteps, axis: int, theta: float) -> PlaneSteps:
    """The plane's steps with the tilt axis (0 = u, 1 = v) shortened by cos θ: the
    cross-section, normal to a straight guide crossing the plane at angle θ, that the
    plane's cut of it is a stretched copy of."""
    c = np.cos(theta)
    return PlaneSteps(
        u=steps.u * c if axis == 0 else steps.u,
        v=steps.v * c if axis == 1 else steps.v,
        active=steps.active,
        origin=tuple(o * c if a == axis else o for a, o in enumerate(steps.origin)),  # type: ignore[arg-type]
    )


def tilted(modes: Modes, steps: PlaneSteps, axis: int, sign: int, theta: float) -> Modes:
    """Modes solved on the :func:`shortened` cross-section as they cross the plane
    (``steps``, µm) travelling along n̂ cos θ + sign·t̂ sin θ, t̂ the plane axis ``axis``
    (0 = u, 1 = v): the solver's (t', other, guide-axis) components rotated into
    (t, other, n) — each from its neighbours' average where two sit on different Yee
    nodes — times e^{±iβ sin θ t} on each component's own nodes; ``beta`` becomes β cos θ
    (along n); forward and backward partners each at unit power through the plane."""
    c, s = np.cos(theta), sign * np.sin(theta)
    beta = modes.beta[:, None, None]
    a = 1 + axis  # the tilt axis in (mode, Nu, Nv) arrays
    positions = dict(zip((False, True), axis_nodes(steps, axis)))
    shape = (1, -1, 1) if axis == 0 else (1, 1, -1)

    def phase(half: bool, direction: int) -> np.ndarray:
        return np.exp(direction * 1j * beta * s * positions[half].reshape(shape))

    t, o = axis, 1 - axis
    E, H = modes.E, modes.H
    # Yee nodes along the tilt axis: E_t half, E_other and E_n integer; H_t integer, H_other and H_n half.
    e_t_fwd, e_t_bwd = c * E[t] + s * _to_half(E[2], a), c * E[t] - s * _to_half(E[2], a)
    h_t_fwd, h_t_bwd = c * H[t] + s * _to_integer(H[2], a), -c * H[t] + s * _to_integer(H[2], a)
    e_n = c * E[2] - s * _to_integer(E[t], a)
    h_n = c * H[2] - s * _to_half(H[t], a)

    def ordered(tilt: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (tilt, other) if axis == 0 else (other, tilt)

    E_f = ordered(e_t_fwd * phase(True, 1), E[o] * phase(False, 1))
    H_f = ordered(h_t_fwd * phase(False, 1), H[o] * phase(True, 1))
    E_b = ordered(e_t_bwd * phase(True, -1), E[o] * phase(False, -1))
    H_b = ordered(h_t_bwd * phase(False, -1), -H[o] * phase(True, -1))
    area_u, area_v, _, _ = face_areas(steps)

    def unit(Ep: tuple[np.ndarray, ...], Hp: tuple[np.ndarray, ...]) -> np.ndarray:
        return (1 / np.sqrt(np.abs(_power(Ep[0], Ep[1], Hp[0], Hp[1], area_u, area_v, axis=(1, 2)))))[:, None, None]

    fwd, bwd = unit(E_f, H_f), unit(E_b, H_b)
    return replace(
        modes,
        beta=modes.beta * c,
        E=(E_f[0] * fwd, E_f[1] * fwd, e_n * phase(False, 1) * fwd),
        H=(H_f[0] * fwd, H_f[1] * fwd, h_n * phase(True, 1) * fwd),
        E_back=(E_b[0] * bwd, E_b[1] * bwd),
        H_back=(H_b[0] * bwd, H_b[1] * bwd),
    )


def simulation_modes(
    sim, center: tuple[float, ...], size: tuple[float, ...], spec, freqs: np.ndarray, where: str,
    media: MeshedMedia | None = None, dt: float | None = None, on_frequency: Callable[[], None] | None = None,
) -> tuple[Plane, list[Modes]]:
    """Modes of ``sim`` on the plane ``center``/``size`` (µm) at normalised ``freqs``
    (c/µm), one :class:`Modes` per frequency, for the ``ModeSpec`` ``spec``.

    ``media``: the whole grid's meshed media, if the caller has them (the engine);
    else the plane alone is meshed. ``dt`` (normalised): solve at the leapfrog's ω̃ and
    report the grid's β along the normal, so the modes are exact solutions of the
    time-stepped equations (the engine's sources and monitors); with ``media``,
    dispersive and lossy media enter with the permittivity the update realises
    (:func:`.dispersion.grid_permittivity`).
    ``where`` names the caller in errors ("sources[0]", "ModeSolver");
    ``on_frequency`` is called before each frequency (the engine's heartbeat).
    """
    grid = sim.grid
    periodic = tuple(isinstance(sim.boundary_spec[a].minus, Periodic) for a in range(3))
    plane = plane_on_grid(grid, center, size, periodic)  # type: ignore[arg-type]
    # Dispersive or lossy media: their ε(f) per frequency, on the plane alone.
    frequency_dependent = any(isinstance(m, DISPERSIVE) or (isinstance(m, Medium) and m.conductivity > 0) for m in sim.media)

    def plane_eps(f: float) -> tuple[np.ndarray, ...]:
        if media is not None and dt is not None:
            return plane_permittivity(grid_permittivity(sim, media, plane.window, f, dt), plane, windowed=True)
        return plane_permittivity(mesh_media(sim, grid, plane.window, freq=f * C_0 / MICROMETRE).permittivity, plane, windowed=True)

    if frequency_dependent:
        eps = ()  # per frequency below
    elif media is None:
        eps = plane_permittivity(mesh_media(sim, grid, plane.window).permittivity, plane, windowed=True)
    else:
        eps = plane_permittivity(media.permittivity, plane)
    # ModeSpec names tangential axes in x, y, z order; the solver in cyclic (u, v) order.
    swap = plane.first_tangential == 1
    num_pml = tuple(reversed(spec.num_pml)) if swap else tuple(spec.num_pml)
    bend_axis = None if spec.bend_axis is None else (1 - spec.bend_axis if swap else spec.bend_axis)
    steps = plane.steps
    if spec.tilt is not None:
        tilt_axis = 1 - spec.tilt[0] if swap else spec.tilt[0]
        name = "xyz"[plane.axes[tilt_axis]]
        if not steps.active[tilt_axis]:
            raise ModeSolverError(f"{where}: mode_spec.angle_phi tilts the guide along {name}, an axis of zero simulation size")
        if plane.periodic[tilt_axis]:
            raise ModeSolverError(f"{where}: mode_spec.angle_theta tilts the guide along {name}, a periodic axis the plane spans")
        steps = shortened(steps, tilt_axis, spec.angle_theta)
    section = None
    points = interpolation_points(np.asarray(freqs, dtype=float), spec.interp_freqs)
    solved = []
    warned = False  # once per plane, not per frequency
    for f in freqs if points is None else points:
        if on_frequency is not None:
            on_frequency()
        if frequency_dependent:
            eps = plane_eps(float(f))
            section = None
        cladding = _edge_index(eps, steps, num_pml)
        omega = grid_omega(2 * np.pi * f, dt) if dt is not None else 2 * np.pi * f
        try:
            if section is None or section.omega is not None:
                section = cross_section(eps, steps, omega, num_pml, plane.periodic, spec.bend_radius, bend_axis)
            modes = solve_modes(section, omega, spec.num_modes, spec.target_neff, spec.filter_pol, spec.precision, te_axis=plane.first_tangential)
        except ModeSolverError as exc:
            raise ModeSolverError(f"{where}: {exc}") from None
        if spec.bend_radius is None and not np.real(modes.n_eff[0]) > cladding * (1 + 1e-9):
            searched = spec.target_neff or section.max_index
            raise ModeSolverError(
                f"{where}: no guided mode on the plane at {f * C_0 / MICROMETRE / 1e12:.4g} THz: searched near n_eff = {searched:.4g}, "
                f"found n_eff {np.real(modes.n_eff).min():.4g}…{np.real(modes.n_eff).max():.4g}, none above the index at the plane's edges "
                f"({cladding:.4g}); does the plane cross a waveguide core?"
            )
        guided = int(np.sum(np.real(modes.n_eff) > cladding * (1 + 1e-9)))
        if spec.bend_radius is None and guided < spec.num_modes and not warned:
            warned = True
            warnings.warn(
                f"{where}: {guided} guided mode(s) on the plane at {f * C_0 / MICROMETRE / 1e12:.4g} THz, fewer than the "
                f"{spec.num_modes} asked for (n_eff above the index at the plane's edges, {cladding:.4g}); modes "
                f"{guided}…{spec.num_modes - 1} are cladding or PML modes",
                stacklevel=2,
            )
        solved.append(modes)
    if points is not None:
        solved = interpolate_modes(track_modes(solved, points, steps, "central"), points, np.asarray(freqs, dtype=float), steps)
    elif spec.track_freq is not None:
        solved = track_modes(solved, np.asarray(freqs), steps, spec.track_freq)
    if spec.tilt is not None:
        solved = [tilted(modes, plane.steps, tilt_axis, spec.tilt[1], spec.angle_theta) for modes in solved]
    if dt is None:
        return plane, solved
    # The leapfrog's discrete β along the normal, over the step at the plane.
    dn = float(grid.primal_steps(plane.normal)[plane.index])
    out = []
    for f, modes in zip(freqs, solved):
        beta = grid_beta(modes.beta, dn)
        # Unit power as the grid carries it: the Yee H of a mode sits half a cell
        # either side of the plane, so the discrete flux of a continuum-normalised
        # mode is cos(βΔn/2); scaled by 1/√ of it, |amp|² is the power on every grid.
        carried = np.sqrt(np.cos(np.real(beta) * dn / 2))[:, None, None]
        back = {} if modes.E_back is None else {"E_back": tuple(F / carried for F in modes.E_back), "H_back": tuple(F / carried for F in modes.H_back)}
        n_eff = beta / (2 * np.pi * f * np.cos(spec.angle_theta))  # along the guide
        out.append(replace(modes, beta=beta, n_eff=n_eff, E=tuple(F / carried for F in modes.E), H=tuple(F / carried for F in modes.H), **back))
    return plane, out


def interpolation_points(freqs: np.ndarray, count: int | None) -> np.ndarray | None:
    """``count`` Chebyshev–Lobatto points (ascending) spanning ``freqs``, or None where
    solving at every frequency costs no more (``ModeSpec.interp_freqs``)."""
    if count is None or np.unique(freqs).size <= count:
        return None
    lo, hi = float(freqs.min()), float(freqs.max())
    return (lo + hi) / 2 - (hi - lo) / 2 * np.cos(np.pi * np.arange(count) / (count - 1))


def interpolate_modes(modes: list[Modes], points: np.ndarray, freqs: np.ndarray, steps: PlaneSteps) -> list[Modes]:
    """Modes solved at ``points`` (ascending, tracked: index m is one mode throughout)
    interpolated to ``freqs``: each mode's phase aligned to the previous point's by
    their overlap, every quantity interpolated (barycentric, along the points), then
    each mode brought back to unit power and the phase convention of :func:`solve_modes`."""
    from scipy.interpolate import BarycentricInterpolator

    aligned = [modes[0]]
    for current in modes[1:]:
        overlap = np.diagonal(_overlaps(aligned[-1], current, steps))
        aligned.append(_phased(current, np.conj(overlap) / np.abs(overlap)))

    def at_freqs(values: list[np.ndarray]) -> np.ndarray:
        return BarycentricInterpolator(points, np.stack(values), axis=0)(freqs)

    n_eff = at_freqs([m.n_eff for m in aligned])
    beta = at_freqs([m.beta for m in aligned])
    te = np.real(at_freqs([m.te_fraction for m in aligned]))
    n_group = np.real(at_freqs([m.n_group for m in aligned]))
    E = [at_freqs([m.E[i] for m in aligned]) for i in range(3)]
    H = [at_freqs([m.H[i] for m in aligned]) for i in range(3)]
    area_u, area_v, _, _ = face_areas(steps)
    out = []
    for k in range(freqs.size):
        scale = np.array([_unit_power(E[0][k][m], E[1][k][m], H[0][k][m], H[1][k][m], area_u, area_v) for m in range(beta.shape[1])])[:, None, None]
        out.append(Modes(n_eff=n_eff[k], beta=beta[k], E=tuple(F[k] * scale for F in E), H=tuple(F[k] * scale for F in H), te_fraction=te[k], n_group=n_group[k]))
    return out


def _phased(modes: Modes, phase: np.ndarray) -> Modes:
    """``modes`` with mode m's fields times ``phase[m]``."""
    p = phase[:, None, None]
    return Modes(n_eff=modes.n_eff, beta=modes.beta, E=tuple(F * p for F in modes.E), H=tuple(F * p for F in modes.H), te_fraction=modes.te_fraction, n_group=modes.n_group)  # type: ignore[arg-type]


def track_modes(modes: list[Modes], freqs: np.ndarray, steps: PlaneSteps, start: str) -> list[Modes]:
    """``modes`` (one per frequency) reordered so that each index follows one mode: the
    order at the ``start`` frequency ("lowest", "central", "highest") is kept, and each
    neighbouring frequency, walking outwards in frequency, takes the assignment that
    maximises the total |overlap| with the one before (Hungarian method)."""
    if len(modes) < 2 or modes[0].n_eff.size < 2:
        return modes  # one frequency or one mode: nothing to match (and scipy.optimize, 0.37 s to import, stays out)
    from scipy.optimize import linear_sum_assignment

    order = np.argsort(freqs, kind="stable")
    at = {"lowest": 0, "central": (len(order) - 1) // 2, "highest": len(order) - 1}[start]
    out = list(modes)
    for walk in (range(at + 1, len(order)), range(at - 1, -1, -1)):
        previous = order[at]
        for k in walk:
            current = order[k]
            overlap = np.abs(_overlaps(out[previous], out[current], steps))
            _, assignment = linear_sum_assignment(-overlap)
            out[current] = _reordered(out[current], assignment)
            previous = current
    return out


def _overlaps(a: Modes, b: Modes, steps: PlaneSteps) -> np.ndarray:
    """|⟨a_i, b_j⟩| symmetrised, over unit-power modes: near 1 for the same mode."""
    ab = reciprocal_overlap(a.E[0][:, None], a.E[1][:, None], b.H[0][None], b.H[1][None], steps)
    ba = reciprocal_overlap(b.E[0][None], b.E[1][None], a.H[0][:, None], a.H[1][:, None], steps)
    return 0.5 * (ab + ba)


def _reordered(modes: Modes, order: np.ndarray) -> Modes:
    return Modes(
        n_eff=modes.n_eff[order],
        beta=modes.beta[order],
        E=tuple(F[order] for F in modes.E),  # type: ignore[arg-type]
        H=tuple(F[order] for F in modes.H),  # type: ignore[arg-type]
        te_fraction=modes.te_fraction[order],
        n_group=modes.n_group[order],
    )


def _edge_index(eps: tuple[np.ndarray, ...], steps: PlaneSteps, num_pml: tuple[int, int]) -> float:
    """The largest refractive index on the plane's outer cells (inside any PML): a
    guided mode's n_eff lies above it."""
    edges = []
    for e in eps:
        e = np.real(e)
        for a in range(2):
            if not steps.active[a]:
                continue
            k = num_pml[a]
            first, last = np.take(e, k, axis=a), np.take(e, e.shape[a] - 1 - k, axis=a)
            edges += [first.max(), last.max()]
    return float(np.sqrt(max(edges))) if edges else 0.0


def modes_dataset(grid, plane: Plane, modes: list[Modes], freqs_hz: np.ndarray) -> xr.Dataset:
    """Mode data as xarray: n_complex, te_fraction, n_group on (mode_index, f); the six
    field components on (mode_index, f, and the two transverse axes), on the plane's
    cell boundaries (µm)."""

    u, v = plane.axes
    in_plane = tuple(a != plane.normal for a in range(3))
    axes = "xyz"
    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        "n_complex": (("mode_index", "f"), np.stack([m.n_eff for m in modes], axis=1)),
        "te_fraction": (("mode_index", "f"), np.stack([m.te_fraction for m in modes], axis=1)),
        "n_group": (("mode_index", "f"), np.stack([m.n_group for m in modes], axis=1)),
    }
    plane_dims = tuple(axes[a] for a in sorted((u, v)))
    for kind in "EH":
        for k, a in enumerate((u, v, plane.normal)):
            comp = f"{kind}{axes[a]}"
            stacked = np.stack([getattr(m, kind)[k] for m in modes], axis=1)  # (mode, f, Nu, Nv)
            on_grid = colocate_axes(plane.to_grid(stacked), half_node_axes(comp, in_plane), (False,) * 3, 2)
            data[comp] = (("mode_index", "f", *plane_dims), np.take(on_grid, 0, axis=2 + plane.normal))
    coords = {axes[a]: grid.nodes(a, half=False)[plane.window[a]] for a in (u, v)}
    coords[axes[plane.normal]] = float(grid.nodes(plane.normal, half=False)[plane.index])
    ordered = {c: data[c] for c in ("n_complex", "te_fraction", "n_group", "Ex", "Ey", "Ez", "Hx", "Hy", "Hz")}
    return xr.Dataset(ordered, coords={"mode_index": np.arange(modes[0].n_eff.size), "f": np.asarray(freqs_hz), **coords})
