"""A fork server for the crash sweep: imports Foreman once, then forks one child per driver
process, so each of the sweep's hundreds of processes starts in milliseconds instead of
paying the imports again on a loaded machine.

Reads one JSON request a line on stdin (``{"role": ROLE, "argv": [...], "env": {...},
"cwd": DIR, "log": FILE}``), forks, answers ``{"pid": N}``, then ``{"rc": N}`` when the
child is gone (``-9`` when it was killed). The child replaces its environment with the
request's, re-reads the crash plan, and runs its role: ``driver`` (the embedded sweep's
driver, the default), ``worker`` or ``api`` (a distributed-mode process, see
``crash_node``). The parent holds no threads, so forking is safe.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from app.runs import crashpoints
from tests.verify import crash_driver, crash_node


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
    role = str(request.get("role", "driver"))
    sys.argv = [role, *map(str, argv)]
    code = 1
    try:
        {"driver": crash_driver.main, "worker": crash_node.worker_main,
         "api": crash_node.api_main}[role]()
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
    opens its store in a thread), the policy language's grammar (built on first use) and
    the tokenizer the scripted models count with (litellm and its encodings: imported on
    a run's first model call, seconds of a child's life otherwise)."""
    import chromadb
    from celpy.celparser import CELParser

    from app.llm.tokens import completion_tokens, prompt_tokens

    CELParser()
    del chromadb
    crash_node.warm()
    prompt_tokens("scripted/small", [{"role": "user", "content": "warm"}])
    completion_tokens("scripted/small", "warm")
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
