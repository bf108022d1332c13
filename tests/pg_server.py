"""A throwaway PostgreSQL server for tests: initdb, start on a free loopback port, yield a URL, stop.

Not a test module. Tests call `postgres_server(tmp_path)` and skip on `PostgresUnavailable`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from hostsim.services import free_port

__all__ = ["PostgresUnavailable", "find_postgres", "postgres_server"]

DATABASE = "forecourt"
START_ATTEMPTS = 3          # a free port can be taken between probing it and the server binding it


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server programs (or a user allowed to run them) are not installed."""


@dataclass(frozen=True)
class PostgresInstall:
    bindir: Path
    run_as: list[str]        # command prefix that drops root to the postgres user; empty when not root
    user: str | None         # owner of the data directory when dropping root


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def find_postgres() -> PostgresInstall:
    """Locate initdb/pg_ctl (Debian's /usr/lib/postgresql/N/bin first, newest N) and how to run them."""
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    bindir = next((Path(c).parent for c in candidates if (Path(c).parent / "pg_ctl").exists()), None)
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                                  "install the Debian package 'postgresql' (scripts/setup.sh does)")
    if os.geteuid() != 0:
        return PostgresInstall(bindir, [], None)
    # initdb and postgres refuse to run as root: drop to the postgres user.
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user "
                                  "to run the server as") from None
    if runuser := shutil.which("runuser"):
        return PostgresInstall(bindir, [runuser, "-u", "postgres", "--"], "postgres")
    if setpriv := shutil.which("setpriv"):
        return PostgresInstall(bindir, [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups"],
                               "postgres")
    raise PostgresUnavailable("running as root and neither runuser nor setpriv "
                              "is there to drop to 'postgres'")


def _run(pg: PostgresInstall, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pg.run_as, *argv], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, check=False)


def _check(proc: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")


@contextmanager
def postgres_server(tmp_path: Path) -> Iterator[str]:
    """Run a private cluster (trust auth, fsync off) on 127.0.0.1:<free port>; yield an SQLAlchemy URL.

    Root drops to the postgres user, which cannot enter pytest's private temp tree (mode 0700) and whose
    socket path must stay short, so then the cluster lives in a fresh directory under the system temp
    dir, removed afterwards; the server log is copied to tmp_path either way.
    """
    pg = find_postgres()
    if pg.user is None:
        root = tmp_path / "pg"
        root.mkdir(parents=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="forecourt-pg-"))
        entry = pwd.getpwnam(pg.user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    data, log = root / "data", root / "server.log"
    pg_ctl = str(pg.bindir / "pg_ctl")
    try:
        _check(_run(pg, [str(pg.bindir / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres",
                         "--encoding=UTF8", "--no-locale", "--no-sync"], root), "initdb")
        for attempt in range(START_ATTEMPTS):
            port = free_port()
            opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            proc = _run(pg, [pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", opts],
                        root)
            if proc.returncode == 0:
                break
            if attempt == START_ATTEMPTS - 1:
                _check(proc, "pg_ctl start", log)
        _check(_run(pg, [str(pg.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                         DATABASE], root), "createdb", log)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            if (data / "postmaster.pid").exists():       # also after a start that timed out
                stop = _run(pg, [pg_ctl, "stop", "-w", "-t", "30", "-m", "fast", "-D", str(data)], root)
                if stop.returncode != 0:
                    _run(pg, [pg_ctl, "stop", "-w", "-m", "immediate", "-D", str(data)], root)
                    _check(stop, "pg_ctl stop", log)
        finally:
            if log.exists() and pg.user is not None:
                shutil.copyfile(log, tmp_path / "postgres.log")
            if pg.user is not None:
                shutil.rmtree(root, ignore_errors=True)
