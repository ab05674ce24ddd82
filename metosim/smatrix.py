"""S-matrices of multi-port devices: one simulation per excited port and mode.

    ports = [ms.Port(name="in", center=(-2, 0, 0), size=(0, 2, ms.inf), direction="+"),
             ms.Port(name="out", center=(2, 0, 0), size=(0, 2, ms.inf), direction="-")]
    smatrix = ms.SMatrix(device, ports, freqs)
    s = smatrix.run(client)                   # a batch: one member per (port, mode) excited
    smatrix.to_touchstone("device.s2p")       # the last S computed, through scikit-rf

Each member adds to the device a ``ModeSource`` just inside its port (``source_offset``
µm along the port's direction) and a ``ModeMonitor`` on every port plane. With the
mode monitors' phase referenced to the source plane, S(out, in) is the outgoing
amplitude at port ``out`` times exp(i·β_in·d), d the distance between the source's
and the port's grid planes: the incident wave referred back from the source to its
port plane (fields vary as exp(i(βx − ωt))). So the reference plane of each port is
the Yee grid plane nearest its centre.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, TypeAdapter

from .base import Coordinate, Frequencies, MetoModel, Size
from .data import SimulationData, solve
from .grid import C_0, MICROMETRE
from .mode_spec import ModeSpec, plane_normal
from .monitor import ModeMonitor
from .simulation import Simulation
from .batch import Batch
from .client import Client
from .session import JobFailed
from .source import GaussianPulse, ModeSource


class Port(MetoModel):
    """A waveguide port: a mode plane and the direction ("+"/"-" along its normal)
    that points INTO the device (the way an injected mode travels)."""

    type: Literal["Port"] = "Port"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,40}$")]
    center: Coordinate
    size: Size
    direction: Literal["+", "-"]
    mode_spec: ModeSpec = ModeSpec()

    @property
    def axis(self) -> int:
        return plane_normal(self.size)

    @property
    def outward(self) -> str:
        """The direction of waves leaving the device through this port."""
        return "-" if self.direction == "+" else "+"


class SMatrix:
    """The scattering matrix of ``simulation`` (the device, without sources or mode
    monitors of its own) between ``ports`` at ``freqs`` (Hz), for each port's modes
    ``0 … mode_spec.num_modes − 1``.

    ``source_time``: the pulse of every excitation (default: a Gaussian pulse
    covering ``freqs``); ``num_freqs``: mode profiles per source over its band (see
    :class:`ModeSource`); ``source_offset``: how far inside its port each source
    sits (µm; default two cells along the port's normal).
    """

    def __init__(
        self,
        simulation: Simulation,
        ports: Sequence[Port],
        freqs: Sequence[float],
        source_time: GaussianPulse | None = None,
        num_freqs: int = 3,
        source_offset: float | None = None,
    ) -> None:
        if len(ports) < 1:
            raise ValueError("ports: an S-matrix needs at least one port")
        names = [p.name for p in ports]
        if len(set(names)) != len(names):
            raise ValueError(f"ports: names must be unique, got {names}")
        lo, hi = simulation.bounds
        for p in ports:
            if not all(lo[a] <= p.center[a] <= hi[a] for a in range(3)):
                raise ValueError(f"port {p.name!r}: centre {p.center} is outside the simulation domain {lo}–{hi}")
        self.simulation, self.ports, self.num_freqs = simulation, list(ports), num_freqs
        self.freqs = np.asarray(TypeAdapter(Frequencies).validate_python(tuple(float(f) for f in freqs)))
        f_lo, f_hi = float(self.freqs.min()), float(self.freqs.max())
        f0 = 0.5 * (f_lo + f_hi)
        self.source_time = source_time or GaussianPulse(freq0=f0, fwidth=max(0.5 * (f_hi - f_lo), 0.05 * f0))
        self._offsets = {p.name: source_offset if source_offset is not None else 2 * simulation.grid.dl[p.axis] for p in self.ports}
        self._members = {self.member_name(p, m): (p, m) for p in self.ports for m in range(p.mode_spec.num_modes)}
        #: The last S-matrix that :meth:`run`, :meth:`run_local` or :meth:`assemble` computed.
        self.s: xr.DataArray | None = None
        for name in self._members:  # every member must validate now, not on the service
            self.member(name)

    @staticmethod
    def member_name(port: Port, mode_index: int) -> str:
        return f"{port.name}@{mode_index}"

    def member(self, name: str) -> Simulation:
        """The simulation exciting one (port, mode): the device plus a ModeSource inside
        that port and a ModeMonitor on every port."""
        port, mode_index = self._members[name]
        center = list(port.center)
        center[port.axis] += self._offsets[port.name] * (1 if port.direction == "+" else -1)
        source = ModeSource(center=tuple(center), size=port.size, direction=port.direction, mode_spec=port.mode_spec, mode_index=mode_index, source_time=self.source_time, num_freqs=self.num_freqs, name=name)
        monitors = [ModeMonitor(name=f"port.{p.name}", center=p.center, size=p.size, freqs=tuple(self.freqs.tolist()), mode_spec=p.mode_spec) for p in self.ports]
        try:
            return Simulation(**{**{k: getattr(self.simulation, k) for k in Simulation.model_fields}, "sources": [source], "monitors": [*self.simulation.monitors, *monitors]})
        except ValueError as e:
            raise ValueError(f"port {port.name!r}: {e}") from None

    def reference_shift(self, port: Port) -> float:
        """Distance (µm) from the port's grid plane to its source's grid plane."""
        nodes = self.simulation.grid.nodes(port.axis, half=False)
        snap = lambda x: nodes[np.argmin(np.abs(nodes - x))]  # noqa: E731
        inside = port.center[port.axis] + self._offsets[port.name] * (1 if port.direction == "+" else -1)
        return float(abs(snap(inside) - snap(port.center[port.axis])))

    def simulations(self) -> dict[str, Simulation]:
        """The batch members, named ``"<port>@<mode>"``."""
        return {name: self.member(name) for name in self._members}

    # ------------------------------------------------------------ running
    def submit(self, client: Client, max_parallel: int | None = None) -> Batch:
        """Submit the members as one batch on the service."""
        return client.batch(self.simulations(), max_parallel=max_parallel)

    def run(self, client: Client, max_parallel: int | None = None, progress: bool = True, timeout: float | None = None) -> xr.DataArray:
        """Submit, wait and assemble: the S-matrix as an ``xarray.DataArray``."""
        batch = self.submit(client, max_parallel)
        state = batch.wait(progress=progress, timeout=timeout)
        data = batch.data()
        missing = [name for name in self._members if name not in data]
        if missing:
            raise JobFailed(batch.id, state["status"], "; ".join(f"{n}: {data.failed.get(n)}" for n in missing))
        try:
            return self.assemble(data)
        finally:
            data.close()

    def run_local(self) -> xr.DataArray:
        """Solve the members one after another in this process and assemble."""
        return self.assemble({name: solve(sim) for name, sim in self.simulations().items()})

    def assemble(self, results: Mapping[str, SimulationData]) -> xr.DataArray:
        """S on (port_out, mode_out, port_in, mode_in, f) from the members' results."""
        port_names = [p.name for p in self.ports]
        num_modes = max(p.mode_spec.num_modes for p in self.ports)
        s = np.full((len(self.ports), num_modes, len(self.ports), num_modes, self.freqs.size), np.nan + 0j)
        for name, (port_in, mode_in) in self._members.items():
            data = results[name]
            n_eff = data[f"port.{port_in.name}"].n_eff.sel(mode_index=mode_in).values
            beta = 2 * np.pi * self.freqs / C_0 * MICROMETRE * np.real(n_eff)  # rad/µm
            to_port = np.exp(1j * beta * self.reference_shift(port_in))
            i = port_names.index(port_in.name)
            for j, port_out in enumerate(self.ports):
                amps = data[f"port.{port_out.name}"].amps.sel(direction=port_out.outward).values  # (mode, f)
                s[j, : amps.shape[0], i, mode_in] = amps * to_port
        self.s = xr.DataArray(
            s,
            dims=("port_out", "mode_out", "port_in", "mode_in", "f"),
            coords={"port_out": port_names, "mode_out": np.arange(num_modes), "port_in": port_names, "mode_in": np.arange(num_modes), "f": self.freqs},
            name="S",
            attrs={"reference": "grid planes nearest the port centres", "convention": "exp(i(βx − ωt))"},
        )
        return self.s

    # ------------------------------------------------------------ export
    def network(self, s: xr.DataArray | None = None) -> Any:
        """A ``skrf.Network`` with one network port per (port, mode), in port then mode
        order, named ``"<port>@<mode>"``, frequencies ascending; reference impedance
        50 Ω (S is a power-wave matrix, so the impedance only labels the file)."""
        import skrf

        s = self._computed(s).sortby("f")  # Touchstone lists frequencies ascending
        pairs = [(p.name, m) for p in self.ports for m in range(p.mode_spec.num_modes)]
        matrix = np.stack(
            [np.stack([s.sel(port_out=po, mode_out=mo, port_in=pi, mode_in=mi).values for pi, mi in pairs], axis=-1) for po, mo in pairs],
            axis=-2,
        )  # (f, out, in)
        network = skrf.Network(frequency=skrf.Frequency.from_f(s["f"].values, unit="hz"), s=matrix, z0=50, name="metosim")
        network.port_names = [f"{p}@{m}" for p, m in pairs]
        return network

    def _computed(self, s: xr.DataArray | None) -> xr.DataArray:
        if s is None:
            if self.s is None:
                raise ValueError("no S-matrix yet: call run(client) or run_local() first, or pass s")
            s = self.s
        return s

    def to_touchstone(self, path: str, s: xr.DataArray | None = None) -> str:
        """Write ``s`` (default: the last one computed) as a Touchstone file (``.sNp``,
        N = ports × modes); returns the path written (scikit-rf picks the extension)."""
        network = self.network(s)
        stem = path.rsplit(".", 1)[0] if path.lower().endswith(f".s{network.nports}p") else path
        network.write_touchstone(stem, form="ri")
        return f"{stem}.s{network.nports}p"

    def __repr__(self) -> str:
        return f"SMatrix({len(self.ports)} ports {[p.name for p in self.ports]}, {len(self._members)} excitations, {self.freqs.size} frequencies)"


__all__ = ["Port", "SMatrix"]
