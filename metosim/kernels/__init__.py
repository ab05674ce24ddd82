"""The FDTD engine: pure array kernels (mesh, Yee update, CPML, sources, monitors)
and the driver that steps them. No I/O here apart from HDF5 writing in ``hdf5``."""

from .solver import EngineInputError, SolveResult, solve

__all__ = ["EngineInputError", "SolveResult", "solve"]
