"""Which process holds a lease: host and pid, read when asked, never cached at import.

django-q2 forks its workers after Django has set up, so anything computed when a module is
imported is the parent's: with a holder fixed at import, every worker of a cluster would
renew its siblings' leases, and a worker killed on timeout would keep its slots for as long
as the cluster lives. os.getpid() is a cheap system call and always the caller's own.
"""

import os
import socket

_HOST = socket.gethostname()  # the same before and after a fork


def current_holder() -> str:
    return f"{_HOST}:{os.getpid()}"
