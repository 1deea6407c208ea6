"""`python -m config.createdb`: create DATABASE_URL's Postgres database if it is missing, so
`make bench` runs on a fresh machine. Says clearly when no server answers."""

import sys

import dj_database_url
import psycopg
from psycopg import sql

from config import env


def main() -> int:
    url = env.get("DATABASE_URL")
    db = dj_database_url.parse(url) if url else {}
    if db.get("ENGINE") != "django.db.backends.postgresql":
        return 0  # SQLite creates itself
    try:
        with psycopg.connect(
            host=db["HOST"] or "127.0.0.1",
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db["PASSWORD"] or None,
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
    except psycopg.OperationalError as exc:
        # Not the URL itself: it may hold a password.
        where = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        print(f"Postgres is not answering for DATABASE_URL ({where}): {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
