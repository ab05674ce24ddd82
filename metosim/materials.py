"""The material library: dispersive media in the engine's own models, each with its
data source, the range where it is valid and its fit error.

    ms.material_library["Si"].medium          # a Lorentz medium for a Structure
    ms.material_library["Au"].n(1.55)         # the reference model's complex index at 1.55 µm
    ms.material_library["SiO2"].fit_error     # max |n_fit − n_ref| over the valid range

Dielectrics (Si, SiO₂, Si₃N₄) are lossless Lorentz fits of published Sellmeier
formulas over the stated range, with pole frequencies kept below 1500 THz so the
engine's ADE stays stable for any grid finer than ~0.1 µm. Metals (Au, Ag, Al) are
the Lorentz–Drude models of Rakić et al. 1998 themselves (a Drude term and four
Lorentz terms, fitted by the authors to measured data), so their "fit error" against
that reference is rounding only; the paper reports how well the model follows the
measurements. A simulation whose sources leave a library medium's range warns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .grid import C_0
from .medium import DrudeLorentz, Lorentz

#: Photon energy (eV) → frequency (Hz).
EV = 2.417989242e14


@dataclass(frozen=True)
class LibraryMaterial:
    """A library entry: the engine ``medium``, the ``reference`` model it reproduces
    (ε as a function of wavelength in µm), its citation, and the valid wavelength
    range (µm)."""

    name: str
    medium: Lorentz | DrudeLorentz
    reference: Callable[[np.ndarray], np.ndarray]
    source: str
    wavelength_range: tuple[float, float]
    notes: str = ""

    def n(self, wavelength: Any) -> np.ndarray:
        """Complex refractive index n + ik of the reference model at ``wavelength`` (µm)."""
        return np.sqrt(self.reference(np.asarray(wavelength, dtype=float)))

    def n_model(self, wavelength: Any) -> np.ndarray:
        """Complex refractive index of the engine medium at ``wavelength`` (µm)."""
        return np.sqrt(self.medium.eps_model(C_0 / (np.asarray(wavelength, dtype=float) * 1e-6)))

    @cached_property
    def fit_error(self) -> float:
        """max |n_model − n_reference| over the valid range (400 wavelengths)."""
        wavelengths = np.geomspace(*self.wavelength_range, 400)
        return float(np.max(np.abs(self.n_model(wavelengths) - self.n(wavelengths))))

    def _repr_html_(self) -> str:
        lo, hi = self.wavelength_range
        return (
            f"<b>{self.name}</b>: {type(self.medium).__name__}, valid {lo:g}–{hi:g} µm, "
            f"fit error {self.fit_error:.1e} in n; {self.source}"
        )


def sellmeier(terms: list[tuple[float, float]], eps_base: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """ε(λ) = eps_base + Σ B λ² / (λ² − C) for terms (B, C in µm²)."""
    return lambda lam: eps_base + sum(B * lam**2 / (lam**2 - C) for B, C in terms) + 0j


def lorentz_drude_rakic(plasma_ev: float, drude: tuple[float, float], lorentz: list[tuple[float, float, float]]) -> DrudeLorentz:
    """Rakić et al. (1998) Lorentz–Drude parameters in eV as a ``DrudeLorentz`` medium:
    ``drude`` = (f0, Γ0), ``lorentz`` = [(f_j, Γ_j, ω_j)]; ε = 1 − f0ωp²/(ω(ω − iΓ0)) +
    Σ f_j ωp²/(ω_j² − ω² + iωΓ_j) (their e^{iωt} convention, ours is e^{−iωt})."""
    f0, gamma0 = drude
    return DrudeLorentz(
        eps_inf=1.0,
        drude_poles=((float(np.sqrt(f0)) * plasma_ev * EV, gamma0 * EV),),
        lorentz_poles=tuple((fj * plasma_ev**2 / wj**2, wj * EV, gj * EV) for fj, gj, wj in lorentz),
    )


def fit_sellmeier(terms: list[tuple[float, float]], wavelength_range: tuple[float, float], max_pole: float = 2.5e15) -> Lorentz:
    """A lossless Lorentz medium for a Sellmeier formula (terms (B, C µm²)) over
    ``wavelength_range`` (µm): each term is a Lorentz pole (Δε = B, f0 = c/√C); the
    terms faster than ``max_pole`` Hz, which the ADE could not step stably on a coarse
    grid, are replaced by ε∞ and one pole at or below ``max_pole`` fitted by least
    squares in n over the range. This is how the dielectric entries were made."""
    from scipy.optimize import least_squares

    poles = [(B, C_0 / (np.sqrt(C) * 1e-6), 0.0) for B, C in terms]
    slow = [p for p in poles if p[1] <= max_pole]
    fast = [p for p in poles if p[1] > max_pole]
    if not fast:
        return Lorentz(eps_inf=1.0, poles=slow)
    lam = np.geomspace(*wavelength_range, 200)
    f = C_0 / (lam * 1e-6)
    target = np.real(np.sqrt(sellmeier(terms)(lam)))

    def model(x: np.ndarray) -> Lorentz:
        return Lorentz(eps_inf=float(x[0]), poles=[(float(x[1]), float(x[2]), 0.0), *slow])

    lowest = 1.3 * f.max()
    # Far below its resonance a pole is ≈ a constant plus a little dispersion: start
    # from half the fast poles' strength in ε∞ and half in the slower pole.
    strength = sum(p[0] for p in fast)
    guess = [1.0 + strength / 2, strength / 2, max_pole]
    result = least_squares(lambda x: np.real(np.sqrt(model(x).eps_model(f))) - target, guess, bounds=([1.0, 1e-6, lowest], [np.inf, np.inf, max_pole]), x_scale="jac")
    return model(result.x)


def _hz(wavelength_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = wavelength_range
    return C_0 / (hi * 1e-6), C_0 / (lo * 1e-6)


def _entry(name: str, medium: Lorentz | DrudeLorentz, reference: Callable[[np.ndarray], np.ndarray], source: str, wavelength_range: tuple[float, float], notes: str = "") -> LibraryMaterial:
    tagged = medium.model_copy(update={"name": name, "frequency_range": _hz(wavelength_range)})
    return LibraryMaterial(name=name, medium=tagged, reference=reference, source=source, wavelength_range=wavelength_range, notes=notes)


SILICON_SELLMEIER = [(10.6684293, 0.301516485**2), (0.0030434748, 1.13475115**2), (1.54133408, 1104.0**2)]
SILICA_SELLMEIER = [(0.6961663, 0.0684043**2), (0.4079426, 0.1162414**2), (0.8974794, 9.896161**2)]
NITRIDE_SELLMEIER = [(3.0249, 0.1353406**2), (40314.0, 1239.842**2)]
#: fit_sellmeier(SILICA_SELLMEIER, (0.4, 2.5)), rounded: its two UV terms (4383 and
#: 2579 THz) are too fast for the ADE on coarse grids.
SILICA_FIT = Lorentz(eps_inf=1.5084822, poles=[(0.59575751, 2.4992686e15, 0.0), (0.8974794, 3.0293814e13, 0.0)])

#: Rakić et al. 1998, Table 1 (Lorentz–Drude): ((f0, Γ0), [(f_j, Γ_j, ω_j)], ωp), all in eV.
GOLD_LD = ((0.760, 0.053), [(0.024, 0.241, 0.415), (0.010, 0.345, 0.830), (0.071, 0.870, 2.969), (0.601, 2.494, 4.304)], 9.03)
SILVER_LD = ((0.845, 0.048), [(0.065, 3.886, 0.816), (0.124, 0.452, 4.481), (0.011, 0.065, 8.185), (0.840, 0.916, 9.083)], 9.01)
ALUMINIUM_LD = ((0.523, 0.047), [(0.227, 0.333, 0.162), (0.050, 0.312, 1.544), (0.166, 1.351, 1.808), (0.030, 3.382, 3.473)], 14.98)


def _rakic_reference(params: tuple[Any, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The Rakić formula itself, in the paper's e^{iωt} form (conjugated to ours)."""
    (f0, gamma0), terms, wp = params

    def eps(lam: np.ndarray) -> np.ndarray:
        w = 1.23984193 / lam  # photon energy (eV) at λ (µm)
        value = 1 - f0 * wp**2 / (w * (w - 1j * gamma0)) + sum(fj * wp**2 / (wj**2 - w**2 + 1j * w * gj) for fj, gj, wj in terms)
        return np.conj(value)

    return eps


def _library() -> dict[str, LibraryMaterial]:
    rakic = "A. D. Rakić, A. B. Djurišić, J. M. Elazar, M. L. Majewski, Appl. Opt. 37, 5271 (1998): Lorentz–Drude model fitted to measured data"
    return {
        "Si": _entry(
            "Si",
            fit_sellmeier(SILICON_SELLMEIER, (1.36, 6.0)),  # every pole is slow enough: exact
            sellmeier(SILICON_SELLMEIER),
            "C. D. Salzberg, J. J. Villa, J. Opt. Soc. Am. 47, 244 (1957): Sellmeier fit to measured crystalline Si at room temperature",
            (1.36, 6.0),
            "lossless: below the band gap only",
        ),
        "SiO2": _entry(
            "SiO2",
            SILICA_FIT,
            sellmeier(SILICA_SELLMEIER),
            "I. H. Malitson, J. Opt. Soc. Am. 55, 1205 (1965): Sellmeier fit to measured fused silica at 20 °C",
            (0.4, 2.5),
        ),
        "Si3N4": _entry(
            "Si3N4",
            fit_sellmeier(NITRIDE_SELLMEIER, (0.4, 2.5)),  # exact
            sellmeier(NITRIDE_SELLMEIER),
            "K. Luke, Y. Okawachi, M. R. E. Lamont, A. L. Gaeta, M. Lipson, Opt. Lett. 40, 4823 (2015): Sellmeier fit to LPCVD Si3N4",
            (0.4, 2.5),
        ),
        "Au": _entry("Au", lorentz_drude_rakic(GOLD_LD[2], *GOLD_LD[:2]), _rakic_reference(GOLD_LD), rakic, (0.25, 12.4)),
        "Ag": _entry("Ag", lorentz_drude_rakic(SILVER_LD[2], *SILVER_LD[:2]), _rakic_reference(SILVER_LD), rakic, (0.25, 12.4)),
        "Al": _entry("Al", lorentz_drude_rakic(ALUMINIUM_LD[2], *ALUMINIUM_LD[:2]), _rakic_reference(ALUMINIUM_LD), rakic, (0.25, 12.4)),
    }


class MaterialLibrary(Mapping[str, LibraryMaterial]):
    """``material_library[name]`` for name in Si, SiO2, Si3N4, Au, Ag, Al (built on
    first use)."""

    @cached_property
    def _entries(self) -> dict[str, LibraryMaterial]:
        return _library()

    def __getitem__(self, name: str) -> LibraryMaterial:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no material {name!r} in the library; it has {sorted(self._entries)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _repr_html_(self) -> str:
        return "<ul>" + "".join(f"<li>{m._repr_html_()}</li>" for m in self._entries.values()) + "</ul>"


material_library = MaterialLibrary()

__all__ = ["LibraryMaterial", "MaterialLibrary", "fit_sellmeier", "material_library"]
