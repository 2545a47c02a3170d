"""Repeats of a refused or failed tool call within one specialist step.

A small model that gets an error back often sends the very same call again, and again. The
gate answers such a repeat from the first outcome instead of running it (or asking the
policy, or a human) once more, and tells the model to change the arguments or report
blocked; once the same call has been repeated ``Limits.specialist_max_repeats`` times the
step ends as blocked, with the first refusal's reason.

"The same call" is the same tool with the same arguments, key order aside.
"""

from __future__ import annotations

import json

from graphs.state import FailedCall, SpecialistState
from graphs.views import sha256
from tools.spec import args_sha256


def call_fingerprint(tool: str, arguments: str) -> str:
    """Identifies a call by its tool and its arguments, whatever their key order; arguments
    that are not a JSON object are compared as written."""
    try:
        raw = json.loads(arguments or "{}")
    except ValueError:
        raw = None
    digest = args_sha256(raw) if isinstance(raw, dict) else sha256(arguments)
    return f"{tool}:{digest}"


def prior_failure(state: SpecialistState, fingerprint: str) -> FailedCall | None:
    """The first refusal or failure of this exact call in this step, if there was one."""
    return (state.get("failed_calls") or {}).get(fingerprint)


def with_failure(state: SpecialistState, fingerprint: str, call_id: str, reason: str,
                 executed: bool) -> dict[str, FailedCall]:
    """The step's failed calls with this one added (the first outcome of a call is kept)."""
    failed = dict(state.get("failed_calls") or {})
    failed.setdefault(fingerprint, FailedCall(call_id=call_id, reason=reason,
                                              executed=executed, repeats=0))
    return failed


def with_repeat(state: SpecialistState, fingerprint: str) -> dict[str, FailedCall]:
    """The step's failed calls with one more repeat counted against this one."""
    failed = dict(state.get("failed_calls") or {})
    prior = failed[fingerprint]
    failed[fingerprint] = FailedCall(**{**prior, "repeats": prior["repeats"] + 1})
    return failed


def repeat_note(prior: FailedCall) -> str:
    """What the model is told instead of a second outcome of the same call."""
    verb = "already failed" if prior["executed"] else "was already refused"
    return (f"this exact call {verb}: {prior['reason']}; it was not run again. "
            "Change the arguments or report blocked")


def repeat_block(tool: str, prior: FailedCall, repeats: int) -> str:
    """The summary of a step that ended because the agent kept repeating a refused call."""
    verb = "failed" if prior["executed"] else "was refused"
    return (f"BLOCKED: {tool} {verb} ({prior['reason']}) and the agent repeated the same "
            f"call {repeats} time{'s' if repeats > 1 else ''}.")
