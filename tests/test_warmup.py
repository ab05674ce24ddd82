"""``import metosim`` starts importing JAX in the background in interactive sessions
(metosim.warmup), and only there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys, threading
import metosim
threads = [t for t in threading.enumerate() if t.name == "metosim-preload-jax"]
for t in threads:
    t.join()
print(len(threads), "jax" in sys.modules)
"""


@pytest.mark.parametrize(("setting", "expected"), [("1", "1 True"), ("0", "0 False"), ("", "0 False")])
def test_jax_is_preloaded_only_when_asked_or_interactive(setting: str, expected: str) -> None:
    env = {**os.environ, "METOSIM_PRELOAD": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True)
    # A script (not interactive) preloads only when METOSIM_PRELOAD=1.
    assert out.stdout.split()[-2:] == expected.split()


@pytest.mark.parametrize("session", [["-i", "-c", PROBE], ["-c", "import IPython\n" + PROBE]], ids=["python -i", "IPython"])
def test_an_interactive_session_preloads(session: list[str]) -> None:
    env = {**os.environ, "METOSIM_PRELOAD": ""}
    out = subprocess.run([sys.executable, *session], env=env, input="", check=True, capture_output=True, text=True)
    assert out.stdout.split()[:2] == ["1", "True"]


def test_import_metosim_leaves_scipy_to_the_first_mode_solve() -> None:
    """SciPy's sparse solvers (0.2 s of a 0.75 s ``import metosim``) load when a mode
    is first solved, not with the package."""
    probe = "import sys, metosim; print('scipy' in sys.modules)\nimport metosim.kernels.modes as m, numpy as np\nm._difference(4, False)\nprint('scipy.sparse' in sys.modules)"
    env = {**os.environ, "METOSIM_PRELOAD": "0"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"]
