"""The ``metosim`` command: ``metosim --version``, ``metosim demo``.

``serve``, ``keys`` and ``run`` join here with the compute service.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__


def demo_simulation() -> Any:
    """A 2D dielectric ring resonator (Si-like, ε = 12) side-coupled to a straight
    waveguide, driven by a dipole in the guide: small enough to solve in seconds."""
    import metosim as ms

    f0 = ms.C_0 / 1.55e-6  # Hz, free-space wavelength 1.55 µm
    silicon = ms.Medium(permittivity=12.0)
    return ms.Simulation(
        size=(6.0, 6.0, 0.0),
        grid_spec=ms.GridSpec.auto(wavelength=1.55, min_steps_per_wvl=16),
        run_time=2e-13,
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, -1.55, 0), size=(ms.inf, 0.4, ms.inf)), medium=silicon, name="waveguide"),
            ms.Structure(geometry=ms.Cylinder(center=(0, 0.25, 0), radius=1.3, length=ms.inf), medium=silicon, name="ring"),
            ms.Structure(geometry=ms.Cylinder(center=(0, 0.25, 0), radius=0.9, length=ms.inf), medium=ms.Medium(), name="ring core"),
        ],
        sources=[ms.PointDipole(center=(-2.0, -1.55, 0), polarization="Hz", source_time=ms.GaussianPulse(freq0=f0, fwidth=f0 / 8))],
        monitors=[
            ms.FieldMonitor(name="field", size=(ms.inf, ms.inf, 0), freqs=[f0], fields=("Ex", "Ey", "Hz")),
            ms.FluxMonitor(name="through", center=(2.2, -1.55, 0), size=(0, 1.2, ms.inf), freqs=[f0 * (0.9 + 0.01 * i) for i in range(21)]),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import metosim as ms

    sim = demo_simulation()
    est = sim.estimate()
    print(f"demo: {sim.grid}; {est['memory_bytes'] / 2**20:.1f} MiB")
    last = [0.0]

    def progress(step: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 0.5 or step == total:
            print(f"  step {step}/{total} ({100 * step / total:.0f}%)", flush=True)
            last[0] = now

    data = ms.solve(sim, backend=args.backend, progress=progress)
    info = data.info
    print(f"solved {info['time_steps']} steps with {info['backend']} on {info['device']}: {info['cells_per_second'] / 1e6:.1f} Mcells/s")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    data.plot_field("field", "Hz", z=0, val="abs", ax=left)
    flux = data["through"]
    right.plot(flux.f / 1e12, flux.values, marker="o")
    right.set_xlabel("frequency (THz)")
    right.set_ylabel("flux past the ring (normalised)")
    right.set_title("through port")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.hdf5:
        data.to_hdf5(args.hdf5)
        print(f"wrote {args.hdf5}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metosim", description="MetoSim: notebook-native FDTD simulation.")
    parser.add_argument("--version", action="version", version=f"metosim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="solve a sample simulation and write a field PNG")
    demo.add_argument("--out", default="metosim-demo.png", help="PNG to write (default: %(default)s)")
    demo.add_argument("--hdf5", default=None, help="also write the results file here")
    demo.add_argument("--backend", default="auto", choices=("auto", "jax", "numpy"))
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
