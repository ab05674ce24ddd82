"""The API's routes by resource, as FastAPI routers that reach their replica through
Serve's replica context (:func:`.common.replica`)."""

from .batches import router as batches
from .optimizations import router as optimizations
from .simulations import router as simulations
from .system import router as system

ROUTERS = (simulations, batches, optimizations, system)

__all__ = ["ROUTERS"]
