"""MetoSim: notebook-native FDTD electromagnetic simulation.

>>> import metosim as ms
>>> sim = ms.Simulation(size=(4, 4, 0), grid_spec=ms.GridSpec.uniform(0.05), run_time=1e-13)
"""

from .base import inf
from .version import __version__
from .client import Client
from .jobs import Job
from .session import ChecksumMismatch, JobFailed, QuotaExceeded
from .data import SimulationData, solve
from .batch import Batch, BatchData
from .batch_spec import BatchSpec, Sweep, sweep
from .dataset import open_dataset, verify_dataset
from .smatrix import Port, SMatrix
from .components import ComponentDevice, from_gdsfactory
from .boundary import PML, BlochBoundary, Boundary, BoundarySpec, PECBoundary, PMCBoundary, Periodic
from .geometry import Box, Cylinder, PolySlab, Sphere
from .grid import C_0, Grid, GridSpec, MeshOverride
from .medium import PEC, CustomMedium, Drude, DrudeLorentz, Lorentz, Medium, PECMedium
from .materials import material_library
from .mode_solver import ModeSolver, ModeSolverData
from .mode_spec import ModeSpec
from .monitor import FieldMonitor, FieldProjectionAngleMonitor, FieldTimeMonitor, FluxMonitor, ModeMonitor
from .simulation import SCHEMA_VERSION, Simulation, Structure
from .resonance import ResonanceFinder, lorentzian_q
from .fibre import fibre_fraction, gaussian_beam_line
from .source import ContinuousWave, GaussianBeam, GaussianPulse, ModeSource, PlaneWave, PointDipole
from . import inverse
from .inverse import DesignRegion, InverseProblem
from .warmup import preload_jax


preload_jax()


def __getattr__(name: str) -> object:
    """``ms.widgets`` is imported on first use (it needs ipywidgets)."""
    if name == "widgets":
        import importlib

        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module 'metosim' has no attribute {name!r}")


__all__ = [
    "Batch",
    "BatchData",
    "Port",
    "SMatrix",
    "ComponentDevice",
    "from_gdsfactory",
    "BatchSpec",
    "Sweep",
    "open_dataset",
    "sweep",
    "verify_dataset",
    "QuotaExceeded",
    "JobFailed",
    "Job",
    "Client",
    "ChecksumMismatch",
    "C_0",
    "PEC",
    "PML",
    "SCHEMA_VERSION",
    "Boundary",
    "BoundarySpec",
    "Box",
    "ContinuousWave",
    "Cylinder",
    "Drude",
    "DrudeLorentz",
    "FieldMonitor",
    "FieldProjectionAngleMonitor",
    "FieldTimeMonitor",
    "FluxMonitor",
    "GaussianBeam",
    "GaussianPulse",
    "Grid",
    "GridSpec",
    "MeshOverride",
    "Lorentz",
    "Medium",
    "ModeMonitor",
    "ModeSolver",
    "ModeSolverData",
    "ModeSource",
    "ModeSpec",
    "PECBoundary",
    "PECMedium",
    "CustomMedium",
    "DesignRegion",
    "InverseProblem",
    "inverse",
    "PMCBoundary",
    "Periodic",
    "BlochBoundary",
    "ResonanceFinder",
    "lorentzian_q",
    "fibre_fraction",
    "gaussian_beam_line",
    "PlaneWave",
    "PointDipole",
    "PolySlab",
    "Simulation",
    "SimulationData",
    "Sphere",
    "Structure",
    "inf",
    "material_library",
    "solve",
]
