"""A throw-away PostgreSQL cluster for the store benchmark, and CPU time read from /proc.

The cluster lives in one directory under the harness's work directory: initdb with trust
authentication, and a server on a free port of 127.0.0.1 with its unix socket in that directory.
Every durability setting keeps PostgreSQL's default (fsync on, synchronous_commit on), so the
server syncs its commits as the SQLite store does. When the harness runs as root, initdb, pg_ctl and the
server run as the `postgres` system user through runuser, because PostgreSQL refuses root.
`stop()` shuts the server down and removes the directory.
"""

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from receiver import find_free_ports

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def find_bindir():
    """Returns the directory of initdb and pg_ctl: `pg_config --bindir`, else Debian's path."""
    candidates = []
    if shutil.which("pg_config"):
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) in "
                       f"{', '.join(map(str, candidates))}: install the postgresql package")


def process_cpu_seconds(pid, children=False):
    """Returns the user plus system CPU seconds of process `pid`, all threads. With `children`,
    adds those of its children that have exited and been waited for."""
    fields = process_stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def process_stat(pid):
    """Returns the fields of /proc/PID/stat after the command name: state first, then ppid."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def child_pids(parent):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(process_stat(entry)[1]) == parent:
                pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # it exited meanwhile
    return pids


class PostgresCluster:
    def __init__(self, work_dir):
        self.directory = Path(work_dir) / "postgres"
        self.data = self.directory / "data"
        self.bindir = find_bindir()
        self.port = None
        self.running = False
        self.as_postgres = os.geteuid() == 0

    # --- life cycle --------------------------------------------------------------------------

    def start(self):
        self.remove()  # what a killed earlier run left behind
        self.directory.mkdir(parents=True)
        if self.as_postgres:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, but there is no 'postgres' user to run "
                                   "PostgreSQL as (the postgresql package creates it)") from None
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        self.directory.chmod(0o700)
        self.port = find_free_ports(1, candidates=range(25432, 25532))
        # --no-sync only skips syncing the files initdb writes; the server's settings keep their
        # defaults.
        self.run([self.bindir / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\nlisten_addresses = '127.0.0.1'\n"
                       f"port = {self.port}\n"
                       f"unix_socket_directories = '{self.directory}'\n")
        self.run([self.bindir / "pg_ctl", "-D", self.data, "-l", self.directory / "server.log",
                  "-w", "-t", "60", "start"], "pg_ctl start")
        self.running = True

    def stop(self):
        """Stops the server and removes the directory; safe to call more than once."""
        if self.running:
            self.running = False
            try:
                self.run([self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60",
                          "stop"], "pg_ctl stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                self.run([self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                          "stop"], "pg_ctl stop", check=False)
        self.remove()

    def remove(self):
        if not self.directory.exists():
            return
        if (self.data / "postmaster.pid").exists():
            self.run([self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"],
                     "pg_ctl stop", check=False)
        shutil.rmtree(self.directory)

    def run(self, command, name, check=True):
        command = [str(c) for c in command]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise RuntimeError(f"{name} failed with status {result.returncode}: "
                               f"{(result.stdout + result.stderr).strip()[-1500:]}\n{tail}")
        return result

    # --- queries -----------------------------------------------------------------------------

    def uri(self, database="postgres"):
        """Returns the --store option of revdesk-server for `database`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, query, database="postgres"):
        """Runs `query` with psql over TCP and returns its unaligned output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", "postgres", "-d", database, "-c", query],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"psql {query!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def recreate_database(self, name):
        self.sql(f"DROP DATABASE IF EXISTS {name}")
        self.sql(f"CREATE DATABASE {name}")

    def version(self):
        return self.sql("SHOW server_version")

    # --- CPU time ----------------------------------------------------------------------------

    def postmaster_pid(self):
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def cpu_seconds(self):
        """Returns the CPU seconds of the whole server so far: the postmaster, the processes it
        runs now (backends, writers, the WAL writer) and the ones that ended and were waited for.
        NOTE: a process that ends between the two reads inside this call is missed."""
        postmaster = self.postmaster_pid()
        total = process_cpu_seconds(postmaster, children=True)
        for pid in child_pids(postmaster):
            try:
                total += process_cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                continue
        return total
