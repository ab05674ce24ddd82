"""JAX imported in the background in interactive sessions.

JAX takes about a second to import (its compiled extensions load from disk), and
MetoSim imports it only when it first needs it: the first ``ms.solve`` of a fresh
process paid that second. In Jupyter or IPython — where ``import metosim`` runs in one
cell and the solve in a later one — ``import metosim`` starts that import on a
background thread, so it is done by the time the simulation is built. Scripts are not
changed (nothing to overlap there, and a short script would only wait for the thread at
exit). ``METOSIM_PRELOAD=1`` turns it on anywhere, ``0`` off.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading


def interactive() -> bool:
    """Whether this is an IPython shell or kernel, or Python's own prompt (``python -i``)."""
    return "IPython" in sys.modules or hasattr(sys, "ps1") or bool(sys.flags.interactive)


def preload_jax() -> threading.Thread | None:
    """Start importing JAX on a background thread (see the module doc); the thread, or
    None when there is nothing to do."""
    choice = os.environ.get("METOSIM_PRELOAD", "")
    wanted = choice == "1" or (choice != "0" and interactive())
    if not wanted or "jax" in sys.modules:
        return None
    # Not a daemon: an interpreter that exits mid-import waits for it rather than
    # tearing down half-loaded extension modules.
    thread = threading.Thread(target=importlib.import_module, args=("jax",), name="metosim-preload-jax")
    thread.start()
    return thread
