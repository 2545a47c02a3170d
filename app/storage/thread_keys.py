"""Thread ids are the tenant's own: the same id in two tenants names two threads.

Inside, every table, checkpoint, ledger key, approval id and queue lock refers to a
thread by its *key*: ``<tenant>/<id>`` for a thread created since ids became per tenant,
the bare id for one created before (those ids were unique across tenants, so the two
forms never meet: a client id may not contain ``/``). Clients only ever see the id.
"""

from __future__ import annotations

SEPARATOR = "/"


def thread_key(tenant: str, thread_id: str) -> str:
    """The key of a new thread ``thread_id`` of ``tenant``."""
    return f"{tenant}{SEPARATOR}{thread_id}"


def local_id(key: str) -> str:
    """The id the tenant knows a thread by, from its key (either form)."""
    return key.rpartition(SEPARATOR)[2]


def tenant_of(key: str) -> str | None:
    """The tenant a key names, or None for a bare id (a thread from before per-tenant ids)."""
    tenant, sep, _ = key.rpartition(SEPARATOR)
    return tenant if sep else None
