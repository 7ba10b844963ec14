"""Start-up hook of the vLLM processes servemark launches (this directory leads their PYTHONPATH).

vLLM's CPU attention uses AMX tile instructions wherever the CPU advertises them, but Linux
lets a process execute those only after it asks for the tile state (``arch_prctl``
ARCH_REQ_XCOMP_PERM), and vLLM does not ask: on such machines (Sapphire Rapids and later,
including VMs) the first request kills the worker with SIGILL. The permission is per process
and cleared by ``exec``, and vLLM's CPU workers are spawned (a fresh interpreter), so every
Python process of the server asks here, at start-up, before anything runs. Where the kernel or
CPU has no AMX the call fails harmlessly. Then the environment's own ``sitecustomize`` (if any)
runs as it would have.
"""

import os
import sys


def _request_amx() -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return
    try:
        import ctypes

        sys_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata = 158, 0x1023, 18
        ctypes.CDLL(None, use_errno=True).syscall(sys_arch_prctl, arch_req_xcomp_perm,
                                                   xfeature_xtiledata)
    except Exception:  # noqa: BLE001 - a start-up hook must never stop the process
        pass


def _chain() -> None:
    """Run the next ``sitecustomize`` on sys.path, which this module shadows."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_request_amx()
_chain()
