"""Database connection pools across fork().

Each process has its own psycopg pool (settings.DATABASE_POOL_MAX). django-q2 forks its
worker processes from a parent that has already used the database, so without this a child
starts with the parent's pool: the same sockets used by two processes at once (corrupted
replies) and none of the pool's own threads (every checkout times out). The child forgets
what it inherited, without closing it (that would close the parent's sockets too), and
opens its own pool on first use.
"""

import os

from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper


def forget_inherited_pools() -> None:
    DatabaseWrapper._connection_pools.clear()
    for connection in connections.all(initialized_only=True):
        if connection.vendor == "postgresql":
            connection.connection = None  # the parent's; Django connects afresh when asked


def install() -> None:
    os.register_at_fork(after_in_child=forget_inherited_pools)
