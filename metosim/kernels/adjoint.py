"""The transposed Yee step: the discrete adjoint of :func:`.yee.make_step`, written out.

Step n maps the fields (E, H, the CPML ψ, the polarisations P) linearly to the next
ones, plus source terms that do not depend on them. Reverse mode through the time
loop applies the transpose of that map to the cotangent λ once per step, backwards.
JAX can derive the transpose, but on XLA CPU its graph runs about ten times slower
than the forward step whenever CPML slabs are present; written out, the transpose
is again a Yee-type update (differences, elementwise coefficients, slab-local ψ)
and compiles like the forward step. Per step, in reverse order of the update:

    λ_E' += Re Σ_f λ_dft(f)·e^{iωt}          (DFT monitors: E' and H' recorded)
    g_Δcb += λ_E'·(∇×H' − ΔP/Δt)  on the design window
    λ_E = ca·λ_E' + c₃ᵀλ_P;  λ_H' += curl_Hᵀ(cb·λ_E');  λ_P, λ_P_prev from the poles
    λ_H = λ_H' (PMC walls zeroed);  λ_E += curl_Eᵀ(−Δt·λ_H)

with each difference's transpose the negated opposite difference, and inside a slab
λ_ψ = b·(λ_ψ' + λ_out) feeding c·(…) back into the difference. The design's
correction Δcb·(∇×H − ΔP/Δt) on its window is the update with cb + Δcb there, so
the caller passes that coefficient (:func:`.yee.design_cb`) and the transposed
update carries the design at no cost per step. The only forward quantity the
adjoint needs is that drive on the design windows (for g_Δcb), which the caller
recomputes. ``tests/test_inverse.py`` checks the step against ``jax.vjp`` of the
forward step on every boundary kind, dispersive poles and monitors.
"""

from __future__ import annotations

from typing import Any, Callable

from .yee import Array, Layout, State, _take, dft_step, inverse_step, jax_ops, pml_slabs, slab_padding, step_times, zero_pmc_walls


def make_adjoint_step(layout: Layout) -> Callable[[State, dict, dict[str, Any], Array, list[Array]], tuple[State, list[Array]]]:
    """Return ``adjoint(ct, ct_dft, params, n, drives) -> (ct_before, dcb_gradients)``
    for ``layout`` (JAX).

    ``ct`` holds the cotangents of E, H, psi, P, P_prev after step ``n``; ``ct_dft``
    those of the DFT accumulators (constant in time); ``params["cb"]`` includes the
    design's Δcb (:func:`.yee.design_cb`); ``drives`` (∇×H − ΔP/Δt) of step ``n`` on
    each design window of ``layout.design`` (:func:`.yee.window_drive`). Returns the
    cotangents before step ``n`` and this step's gradient with respect to each
    ``params["design_dcb"]``.
    """
    import jax
    import jax.numpy as jnp

    ops = jax_ops()
    N = layout.shape

    def shift(g: Array, a: int, offset: int) -> Array:
        """g[i + offset] along ``a`` with a zero ghost (periodic: wrapped)."""
        if layout.periodic[a]:
            return jnp.roll(g, -offset, axis=a)
        zero = jnp.zeros_like(_take(g, a, 0, 1))
        if offset > 0:
            return jnp.concatenate([_take(g, a, 1, N[a]), zero], axis=a)
        return jnp.concatenate([zero, _take(g, a, 0, N[a] - 1)], axis=a)

    def difference_t(g: Array, a: int, forward: bool) -> Array:
        """Transpose of the forward (F[i+1] − F[i]) or backward (F[i] − F[i−1])
        difference of :func:`.yee.make_step`, ghosts included."""
        if forward:
            return shift(g, a, -1) - g
        out = g - shift(g, a, 1)
        if layout.pmc_minus[a] and not layout.periodic[a]:  # the odd image F[−1] = −F[0]
            out = jnp.concatenate([_take(out, a, 0, 1) + _take(g, a, 0, 1), _take(out, a, 1, N[a])], axis=a)
        return out

    def derivative_t(g: Array, a: int, forward: bool, key: str, ct_psi: dict, new_ct_psi: dict, params: dict) -> Array:
        kind = "h" if forward else "e"
        # The forward derivative scales the raw difference by 1/step per node (a graded
        # axis) or by one scalar: its transpose scales before the transposed difference.
        inv = inverse_step(layout, params.get("inv_steps"), kind, a)
        slabs = pml_slabs(layout, a)
        if not slabs:
            return difference_t(g * inv, a, forward)
        ct_d = g * params["pml_inv_kappa"][f"{kind}{a}"]
        for side, lo, hi in slabs:
            b, c = params["pml"][f"{kind}{a}{side}"]
            name = f"{key}{side}"
            total = ct_psi[name] + _take(g, a, lo, hi)  # ψ' feeds the next step and this derivative
            new_ct_psi[name] = b * total
            ct_d = ct_d + jnp.pad(c * total, slab_padding(layout, a, lo, hi))
        return difference_t(ct_d * inv, a, forward)

    def curl_t(ct_curl: list[Array | None], forward: bool, prefix: str, ct_psi: dict, new_ct_psi: dict, params: dict) -> list[Array | None]:
        """Transpose of :func:`.yee.make_step`'s curl: cotangents of the curled field."""
        out: list[Array | None] = [None, None, None]

        def add(q: int, value: Array) -> None:
            out[q] = value if out[q] is None else out[q] + value

        for p, g in enumerate(ct_curl):
            if g is None:
                continue
            a, b = (p + 1) % 3, (p + 2) % 3
            if layout.active[a]:
                add(b, derivative_t(g, a, forward, f"{prefix}{p}{a}", ct_psi, new_ct_psi, params))
            if layout.active[b]:
                add(a, derivative_t(-g, b, forward, f"{prefix}{p}{b}", ct_psi, new_ct_psi, params))
        return out

    curled = layout.curled

    def record_t(ct: State, ct_dft: dict, params: dict[str, Any], n: Array) -> State:
        """Transpose of step ``n``'s recording of E' and H' into the DFTs, as a padded
        whole-grid term that fuses into the update (measured a little faster on XLA
        CPU than a slice update of the carried cotangent). The monitor's own values
        are computed first, apart (``optimization_barrier``): fused, XLA GPU
        recomputed the phase e^{iωt} for every node it read (7× the forward's time)."""
        lam_e, lam_h = list(ct["E"]), list(ct["H"])
        t_e, t_h = step_times(layout, n)
        terms = []
        for name, components in layout.dft:
            omega = params["omega"][name]
            phase = {"E": jnp.exp(1j * omega * t_e), "H": jnp.exp(1j * omega * t_h)}
            for comp, slices in components:
                terms.append((comp, slices, jnp.real(jnp.tensordot(phase[comp[0]], ct_dft[name][comp], axes=1))))
        values = jax.lax.optimization_barrier([value for _, _, value in terms])
        for (comp, slices, _), value in zip(terms, values):
            lam = lam_e if comp[0] == "E" else lam_h
            p = "xyz".index(comp[1])
            lam[p] = lam[p] + jnp.pad(value.astype(lam[p].dtype), [(k.indices(size)[0], size - k.indices(size)[1]) for k, size in zip(slices, N)])
        return {**ct, "E": lam_e, "H": lam_h}

    def recorded_t(ct: State, ct_dft: dict, params: dict[str, Any], n: Array) -> State:
        """:func:`record_t` on the steps whose fields the DFTs took (:func:`.yee.dft_step`)."""
        if not layout.dft_decimated:
            return record_t(ct, ct_dft, params, n)
        return jax.lax.cond(dft_step(layout, n), lambda: record_t(ct, ct_dft, params, n), lambda: ct)

    def update_t(ct: State, params: dict[str, Any]) -> State:
        """Transpose of the update of E, H, ψ and P (the same for every step)."""
        lam_e, lam_h = list(ct["E"]), list(ct["H"])
        dt = layout.dt
        poles = params["poles"]
        # ---- E^{n+1} = ca·E^n + cb·(∇×H − ΔP/Δt)
        ct_drive: list[Array | None] = [None, None, None]
        for p in range(3):
            if curled[p] or poles:
                ct_drive[p] = params["cb"][p] * lam_e[p]
                if layout.has_ca:
                    lam_e[p] = params["ca"][p] * lam_e[p]
        new_ct_psi: dict[str, Array] = {}
        for q, value in enumerate(curl_t([g if curled[p] else None for p, g in enumerate(ct_drive)], False, "e", ct["psi"], new_ct_psi, params)):
            if value is not None:
                lam_h[q] = lam_h[q] + value

        # ---- P^{n+1} = c₁P^n + c₂P^{n−1} + c₃E^n, entering E^{n+1} as −cb·(P^{n+1} − P^n)/Δt
        lam_p, lam_p_prev = [], []
        for k, (c1, c2, c3) in enumerate(poles):
            for p in range(3):
                i = 3 * k + p
                ct_change = -ct_drive[p] / dt  # type: ignore[operator]
                total = ct["P"][i] + ct_change
                lam_p.append(c1 * total + ct["P_prev"][i] - ct_change)
                lam_p_prev.append(c2 * total)
                lam_e[p] = lam_e[p] + c3[p] * total

        # ---- H^{n+1/2} = H^{n−1/2} − Δt·∇×E^n, then the PMC walls' tangential H zeroed
        lam_h = zero_pmc_walls(lam_h, layout, ops)
        # λ_H complete before the λ_E update reads it: fused into that update, XLA GPU
        # could write neither in place and copied both every step.
        lam_h = list(jax.lax.optimization_barrier(lam_h))
        for q, value in enumerate(curl_t([-dt * lam_h[p] if curled[p] else None for p in range(3)], True, "h", ct["psi"], new_ct_psi, params)):
            if value is not None:
                lam_e[q] = lam_e[q] + value

        return {"E": lam_e, "H": lam_h, "psi": {**ct["psi"], **new_ct_psi}, "P": lam_p, "P_prev": lam_p_prev}

    def adjoint(ct: State, ct_dft: dict, params: dict[str, Any], n: Array, drives: list[Array]) -> tuple[State, list[Array]]:
        ct = recorded_t(ct, ct_dft, params, n)
        gradients = [ct["E"][p][window] * drive for (p, window), drive in zip(layout.design, drives)]
        return update_t(ct, params), gradients

    return adjoint
