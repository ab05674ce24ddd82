"""The ``metosim`` command: ``--version``, ``demo``, ``serve``, ``stop`` and ``keys``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .version import __version__


def demo_simulation() -> Any:
    """A 2D silicon ring resonator (ε = 12, R = 1 µm, 0.4 µm guides, 50 nm gaps) in
    silica between a bus and a drop guide: a TE mode source on the bus, mode monitors
    on the through and drop ports (601 frequencies over 193 THz ± 15%), a probe in
    the ring for the resonance finder and one snapshot of the ringing field."""
    import metosim as ms

    f0 = ms.C_0 / 1.55e-6  # Hz, free-space wavelength 1.55 µm
    fwidth = f0 / 10
    radius, width, gap = 1.0, 0.4, 0.05
    bus_y = -(radius + width + gap)  # bus centre: ring outer edge + gap + half a guide
    silicon, silica = ms.Medium(permittivity=12.0, name="Si"), ms.Medium(permittivity=2.085, name="SiO2")
    te = ms.ModeSpec(num_modes=1, filter_pol="te")
    port = (0, 1.2, ms.inf)
    freqs = f0 + fwidth * np.linspace(-1.5, 1.5, 601)
    x_port = radius + 0.9
    return ms.Simulation(
        size=(2 * radius + 3.4, 2 * radius + 3.6, 0.0),
        grid_spec=ms.GridSpec.auto(wavelength=1.55, min_steps_per_wvl=16),
        run_time=5e-12,  # the energy shutoff ends it once the ring has rung down (~2.5 ps)
        medium=silica,
        structures=[
            ms.Structure(geometry=ms.Box(center=(0, bus_y, 0), size=(ms.inf, width, ms.inf)), medium=silicon, name="bus"),
            ms.Structure(geometry=ms.Box(center=(0, -bus_y, 0), size=(ms.inf, width, ms.inf)), medium=silicon, name="drop guide"),
            ms.Structure(geometry=ms.Cylinder(radius=radius + width / 2, length=ms.inf), medium=silicon, name="ring"),
            ms.Structure(geometry=ms.Cylinder(radius=radius - width / 2, length=ms.inf), medium=silica, name="ring inside"),
        ],
        sources=[ms.ModeSource(center=(-x_port, bus_y, 0), size=port, mode_spec=te, source_time=ms.GaussianPulse(freq0=f0, fwidth=fwidth), num_freqs=5, name="input")],
        monitors=[
            ms.ModeMonitor(name="through", center=(x_port, bus_y, 0), size=port, freqs=freqs, mode_spec=te),
            # Light in the ring circulates anticlockwise, so the drop guide carries it towards −x.
            ms.ModeMonitor(name="drop", center=(-x_port, -bus_y, 0), size=port, freqs=freqs, mode_spec=te),
            ms.FieldTimeMonitor(name="probe", center=(-radius, 0, 0), size=(0, 0, 0), start=0.2e-12, interval=4, fields=("Hz",)),
            ms.FieldTimeMonitor(name="ringing", size=(ms.inf, ms.inf, 0), start=1e-12, stop=1e-12, fields=("Ex", "Ey", "Hz")),
        ],
        boundary_spec=ms.BoundarySpec.all_sides(ms.PML(num_layers=12)),
    )


def ring_report(data: Any) -> dict[str, Any]:
    """Through and drop transmission of the demo ring, its resonances (ResonanceFinder on
    the probe), and for the resonance nearest 193 THz: FSR, extinction at the through
    port and the loaded Q from a Lorentzian fit of the through spectrum."""
    import metosim as ms
    from metosim.resonance import lorentzian_q

    through = np.abs(data["through"].amps.sel(direction="+", mode_index=0).values) ** 2
    drop = np.abs(data["drop"].amps.sel(direction="-", mode_index=0).values) ** 2
    freqs = data["through"].f.values
    found = ms.ResonanceFinder(freq_window=(freqs[0], freqs[-1])).run(data["probe"]["Hz"])
    # The ring's own resonances: strong, and confirmed by both matrix pencils.
    strong = (found.amplitude > 0.05 * found.amplitude.max()) & (found.error < 1e-4)
    resonances = found.isel(resonance=np.nonzero(strong.values)[0])
    f_res = resonances.freq.values
    k = int(np.argmin(np.abs(f_res - ms.C_0 / 1.55e-6)))
    fit = lorentzian_q(freqs, through, guess=f_res[k])
    near = np.abs(freqs - f_res[k]) < 0.5 * np.min(np.diff(f_res))
    return {
        "freqs": freqs,
        "through": through,
        "drop": drop,
        "resonances": resonances,
        "f0": float(f_res[k]),
        "fsr": float(np.median(np.diff(f_res))),
        "extinction_db": float(10 * np.log10(through[near].max() / through[near].min())),
        "q_resonance_finder": float(resonances.Q.values[k]),
        "q_lorentzian": fit["Q"],
    }


def _demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import metosim as ms

    sim = demo_simulation()
    est = sim.estimate()
    print(f"demo: a ring resonator, {sim.grid}; {est['memory_bytes'] / 2**20:.1f} MiB")
    last = [0.0]

    def progress(step: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 0.5 or step == total:
            print(f"  step {step}/{total} ({100 * step / total:.0f}%)", flush=True)
            last[0] = now

    if args.in_process:
        data = ms.solve(sim, backend=args.backend, progress=progress)
        info = data.info
        print(f"solved {info['time_steps']} steps with {info['backend']} on {info['device']}: {info['cells_per_second'] / 1e6:.1f} Mcells/s")
    else:
        client = ms.Client()
        print(f"running on the MetoSim service at {client.url}")
        data = client.run(sim)
        print(f"solved {data.info['time_steps']} steps on the service ({data.info['cells_per_second'] / 1e6:.1f} Mcells/s); result verified by SHA-256")
    report = ring_report(data)
    print(
        f"resonance at {report['f0'] / 1e12:.2f} THz: FSR {report['fsr'] / 1e12:.2f} THz, extinction {report['extinction_db']:.1f} dB, "
        f"loaded Q {report['q_resonance_finder']:.0f} (resonance finder) / {report['q_lorentzian']:.0f} (Lorentzian fit)"
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.4]})
    data.plot_field("ringing", "Hz", z=0, val="real", ax=left)
    left.set_title("Hz at t = 1 ps: the pulse has passed, the ring rings")
    f_thz = report["freqs"] / 1e12
    right.plot(f_thz, report["through"], label="through")
    right.plot(f_thz, report["drop"], label="drop")
    for f in report["resonances"].freq.values:
        right.axvline(f / 1e12, color="grey", linewidth=0.5, linestyle=":")
    right.set_ylim(0, 1.05)
    right.set_xlabel("frequency (THz)")
    right.set_ylabel("power in the TE mode / injected")
    right.set_title(
        f"FSR {report['fsr'] / 1e12:.2f} THz, extinction {report['extinction_db']:.1f} dB, "
        f"Q {report['q_resonance_finder']:.0f} (harmonic inversion) / {report['q_lorentzian']:.0f} (Lorentzian)",
        fontsize=9,
    )
    right.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.hdf5:
        data.to_hdf5(args.hdf5)
        print(f"wrote {args.hdf5}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import signal

    import ray

    from .serve.db import embedded_in_use, stop_embedded
    from .serve.service import record_state, start, state_file, status, stop_api, terminate
    from .serve.settings import Settings

    settings = Settings.from_env(host=args.host, port=args.port, ray_address=args.address, tls_cert=args.tls_cert, tls_key=args.tls_key)
    previous = status(settings)["service"]
    if previous and previous["running"]:
        print(f"a MetoSim service already runs for {settings.data_dir}: pid {previous['pid']} at {previous['url']} (`metosim stop` ends it)", file=sys.stderr)
        return 1
    terminate(settings)  # the Ray daemons a hard-killed service left, if any
    start(settings)
    record_state(settings)
    print(f"MetoSim API on {settings.base_url} (OpenAPI at {settings.base_url}/docs); Ctrl-C or `metosim stop` to stop", flush=True)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    try:
        while not stop:
            time.sleep(0.5)
    finally:
        # Stop what this process started: its local Ray (Serve, the job-state actor and
        # workers go with it), or only the API on a cluster it joined.
        if settings.ray_address:
            stop_api()
        else:
            ray.shutdown()
        state_file(settings).unlink(missing_ok=True)
        if not settings.database_url and not embedded_in_use(settings):
            stop_embedded(settings)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .serve import keys
    from .serve.db import connect, database_url, migrate
    from .serve.settings import Settings

    url = database_url(Settings.from_env())
    migrate(url)
    with connect(url) as conn:
        if args.keys_command == "create":
            key, row = keys.create(conn, args.name, args.quota, args.max_parallel)
            print(key)
            print(f"# key {row['id']} ({row['name']}); shown once, stored only as SHA-256", file=sys.stderr)
        elif args.keys_command == "list":
            for row in keys.list_keys(conn):
                state = "revoked" if row["revoked_at"] else "active"
                print(f"{row['id']}  {row['prefix']}…  {row['name']}  quota={row['quota']}  max_parallel={row['max_parallel']}  {state}  created {row['created_at']:%Y-%m-%d %H:%M}")
        else:
            count = keys.revoke(conn, args.key)
            print(f"revoked {count} key(s)")
            return 0 if count else 1
    return 0


def _stop(args: argparse.Namespace) -> int:
    from .session import forget_local_service

    forget_local_service()
    try:
        from .serve.db import stop_embedded
        from .serve.service import terminate
        from .serve.settings import Settings
    except ImportError:  # no service extras installed: nothing runs here to stop
        print("no local service was running")
        return 0
    settings = Settings.from_env()
    print("stopped the local service" if terminate(settings) else "no local service was running")
    if stop_embedded(settings):
        print("stopped the embedded PostgreSQL")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        from .serve.service import status
        from .serve.settings import Settings
    except ImportError:
        print("the service extras are not installed (pip install 'metosim[serve]')")
        return 1
    report = status(Settings.from_env())
    service = report["service"]
    if service is None or not service["running"]:
        print(f"service: not running (data directory {report['data_dir']})")
        if service and service["leftover_ray_processes"]:
            print(f"  Ray processes left by a killed service: {service['leftover_ray_processes']} (`metosim stop` ends them)")
    else:
        health = "healthy" if service["healthy"] else "NOT answering /v1/health"
        print(f"service: running, pid {service['pid']}, {service['url']} (port {service['port']}), {health}")
        print(f"  Ray: {service['ray']} (GCS {service['ray_gcs']})")
        print(f"  database: {service['database']}")
        print(f"  object store: {service['store']}")
    pid = report["embedded_postgres_pid"]
    print(f"embedded PostgreSQL: {'running, pid ' + str(pid) if pid else 'not running'}")
    return 0 if service and service["running"] else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metosim", description="MetoSim: notebook-native FDTD simulation.")
    parser.add_argument("--version", action="version", version=f"metosim {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="run a sample simulation (on the embedded local service unless METOSIM_URL is set) and write a field PNG")
    demo.add_argument("--out", default="metosim-demo.png", help="PNG to write (default: %(default)s)")
    demo.add_argument("--hdf5", default=None, help="also write the results file here")
    demo.add_argument("--in-process", action="store_true", help="solve in this process instead of on the service")
    demo.add_argument("--backend", default="auto", choices=("auto", "jax", "numpy"), help="engine backend with --in-process")
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser("serve", help="start the compute service (local Ray, embedded PostgreSQL, local store by default)")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or METOSIM_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000, or METOSIM_PORT)")
    serve.add_argument("--address", default=None, help="Ray cluster address, e.g. 'auto' on a cluster head (default: start a local Ray)")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate (chain): serve HTTPS with HSTS (or METOSIM_TLS_CERT)")
    serve.add_argument("--tls-key", default=None, help="PEM private key for --tls-cert (or METOSIM_TLS_KEY)")
    serve.set_defaults(handler=_serve)

    stop = commands.add_parser("stop", help="stop the local service (usually 5–8 s, at most ~22 s) and the embedded PostgreSQL; leaves nothing running")
    stop.set_defaults(handler=_stop)
    status = commands.add_parser("status", help="what runs: the service (pid, URL, port, Ray, database, store) and the embedded PostgreSQL")
    status.set_defaults(handler=_status)

    key_parser = commands.add_parser("keys", help="create, list or revoke API keys")
    key_commands = key_parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--quota", type=int, default=1, help="active jobs or batches allowed at once (default 1)")
    create.add_argument("--max-parallel", type=int, default=8, help="members of one batch that run at once (default 8)")
    key_commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id or printed prefix")
    revoke.add_argument("key")
    key_parser.set_defaults(handler=_keys)
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
