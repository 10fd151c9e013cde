"""Prefect's temporary server dies with the ``crm`` process that started it.

Without a Prefect API configured, Prefect 3 starts a temporary server in a child process
(``prefect.server.api.server.SubprocessASGIServer``, uvicorn, about 200 MB) and stops it
with an ``atexit`` handler. A SIGKILLed ``crm run`` runs no handler, so the server was
left running for minutes. :func:`guard_temporary_server` makes that child ask the kernel
for a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``) before it becomes
the server: it is started through a tiny Python wrapper that calls prctl and then
``execv``s the server command (the setting survives exec). A wrapper rather than
``preexec_fn``: preexec_fn is unsafe in a process with threads, and Prefect starts the
server while its own threads run. Elsewhere than Linux nothing changes.

The parent-death signal fires when the *thread* that started the child ends; Prefect
starts the server from a thread that lives as long as the process (the server is shared
by every flow run of it), so it fires when the process dies.
"""

from __future__ import annotations

import subprocess
import sys
import types

# Run in the child: ask for SIGTERM when the parent dies, give up if it already has (the
# parent died between fork and prctl), then become the server.
_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, signal.SIGTERM, 0, 0, 0) != 0: sys.exit('prctl failed')\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def wrap_command(args: list[str], parent_pid: int) -> list[str]:
    """``args`` run through the parent-death wrapper (PR_SET_PDEATHSIG = 1 on Linux)."""
    return [sys.executable, "-c", _WRAPPER, str(parent_pid), *map(str, args)]


class _PopenWithParentDeath:
    """``subprocess`` for Prefect's server module: Popen runs the command wrapped."""

    def __init__(self, real: types.ModuleType) -> None:
        self._real = real

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 (the subprocess name)
        import os

        return self._real.Popen(wrap_command(list(args), os.getpid()), *rest, **kwargs)


def guard_temporary_server() -> bool:
    """Make the temporary server Prefect may start die with this process; True when done
    (Linux, and Prefect's server module as expected), False otherwise. Idempotent."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        from prefect.server.api import server
    except ImportError:
        return False
    if isinstance(server.subprocess, _PopenWithParentDeath):
        return True
    if getattr(server.subprocess, "Popen", None) is not subprocess.Popen:
        return False
    server.subprocess = _PopenWithParentDeath(server.subprocess)
    return True


def mark_crashed_run(settings) -> str | None:
    """Mark the Prefect flow run of a killed ``crm`` run Crashed; call at the start of a
    flow run, before it opens the warehouse. Returns the flow run id marked, or None.

    A SIGKILLed run cannot report its end, so Prefect kept its flow run RUNNING for ever.
    The working database's holder record (pipelines/warehouse.py) of a process that is no
    longer alive names its flow run; unless that flow run already ended, it is set
    Crashed with a message saying so. Prefect being unreachable is logged, not raised:
    the new run matters more than the old run's label.
    """
    import logging

    from pipelines.warehouse import dead_holder

    held = dead_holder(settings)
    flow_run_id = (held or {}).get("prefect_flow_run_id")
    if not flow_run_id:
        return None
    log = logging.getLogger(__name__)
    try:
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run
        from prefect.states import Crashed

        if str(flow_run.id) == flow_run_id:
            return None
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return None
            client.set_flow_run_state(
                flow_run_id,
                Crashed(
                    message=(
                        f"The process running it ({held.get('holder', 'crm')} "
                        f"{held.get('run_id') or ''}, PID {held.get('pid')}, since "
                        f"{held.get('since')}) ended without finishing (killed?); marked "
                        "crashed by the next run."
                    )
                ),
                force=True,
            )
    except Exception as exc:  # an old flow run Prefect no longer knows, no API, ...
        log.warning("could not mark flow run %s crashed: %s", flow_run_id, exc)
        return None
    log.warning("flow run %s of a killed run marked crashed", flow_run_id)
    return flow_run_id
