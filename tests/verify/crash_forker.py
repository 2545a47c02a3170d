"""A fork server for the crash sweep: imports Foreman once, then forks one child per driver
process, so each of the sweep's hundreds of processes starts in milliseconds instead of
paying the imports again on a loaded machine.

Reads one JSON request a line on stdin (``{"argv": [CONFIG, TASK_ID], "env": {...},
"cwd": DIR, "log": FILE}``), forks, answers ``{"pid": N}``, then ``{"rc": N}`` when the
child is gone (``-9`` when it was killed). The child replaces its environment with the
request's, re-reads the crash plan, and runs the driver; the parent holds no threads, so
forking is safe.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from app import crashpoints
from tests.verify import crash_driver


def child(request: dict[str, object]) -> None:
    """The forked process: its own environment, directory and log, then the driver."""
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.chdir(str(request["cwd"]))
    fd = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    crashpoints.rearm()
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = ["crash_driver", *map(str, argv)]
    code = 1
    try:
        crash_driver.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # any escape is a failed process, reported with its trace
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def warm() -> None:
    """Pay once what every child would pay again: the vector store's imports (a child
    opens its store in a thread) and the policy language's grammar (built on first use)."""
    import chromadb
    from celpy.celparser import CELParser

    CELParser()
    del chromadb
    assert threading.active_count() == 1, "a thread before fork: children would inherit locks"


def main() -> None:
    warm()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
