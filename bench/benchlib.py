"""
Servers for `make bench` (bench/run.py) and the bench smoke test: a Parley
instance (router, storage workers, gateways sharing one client port),
a private PostgreSQL, Prosody and ejabberd from Debian, each in a private
directory under /tmp with its own config and ports, started by hand on
loopback, optionally pinned to CPUs with taskset, and stopped by PID.

Nothing here touches the system services of Prosody, ejabberd or
PostgreSQL: they keep their own configs and data. Standard library only.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.join(REPO, "deploy"))
import parleylib  # noqa: E402

BIN = os.environ.get("PARLEY_BIN", os.path.join(REPO, "build"))
BENCH = os.path.join(BIN, "parley-bench")
DOMAIN = "localhost"
PASSWORD = "bench-secret"


class BenchError(Exception):
    """A server could not be started or set up; the message says why."""


def free_port():
    return parleylib.free_port()


def wait_port(port, proc_alive, timeout=30, what="server"):
    """Waits until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_alive():
            raise BenchError(f"{what} exited during start-up")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} not listening on {port} within {timeout} s")


def pinned(argv, cpus):
    """argv run under taskset -c cpus (None: unpinned)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def stop_pid(popen, timeout=10, sig=signal.SIGTERM):
    """Stops one process we started, by its PID: sig, then SIGKILL."""
    if popen is None or popen.poll() is not None:
        return
    try:
        popen.send_signal(sig)
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state first,
    so utime is [11] and stime [12]), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children_of(pid):
    """PIDs of pid's direct children (from /proc), for servers that fork."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        child = int(stat.split("/")[2])
        fields = proc_stat(child)
        if fields and int(fields[1]) == pid:
            out.append(child)
    return out


# ---------------------------------------------------------------------------
# PostgreSQL (private cluster, unix socket only; needs root: runs as postgres)


class Postgres:
    def __init__(self, cpus=None, durable=True):
        dirs = glob.glob("/usr/lib/postgresql/*/bin/postgres")
        if not dirs:
            raise BenchError("no PostgreSQL server in /usr/lib/postgresql/*/bin")
        self.bindir = os.path.dirname(max(dirs, key=lambda p: int(p.split("/")[4].split(".")[0])))
        self.user = pwd.getpwnam("postgres")
        self.base = tempfile.mkdtemp(prefix="pbpg", dir="/tmp")
        os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        os.mkdir(self.sockdir, 0o700)
        os.chown(self.sockdir, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        self.cpus = cpus
        self.durable = durable
        self.proc = None

    def _as_postgres(self):
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [],
                "cwd": self.base, "env": {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": self.base}}

    def start(self):
        r = subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "--auth=trust", "-U",
                            "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
                           capture_output=True, text=True, timeout=120, check=False, **self._as_postgres())
        if r.returncode != 0:
            raise BenchError(f"initdb failed: {r.stderr}")
        opts = ["-c", "listen_addresses=", "-c", "shared_buffers=256MB"]
        if not self.durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(os.path.join(self.base, "postgres.log"), "wb")
        self.proc = subprocess.Popen(pinned([os.path.join(self.bindir, "postgres"), "-D", self.data, "-k",
                                             self.sockdir, "-p", str(self.port), *opts], self.cpus),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     **self._as_postgres())
        log.close()
        deadline = time.monotonic() + 30
        while subprocess.run(["pg_isready", "-q", "-h", self.sockdir, "-p", str(self.port)],
                             capture_output=True, timeout=10, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("postgres did not start")
            time.sleep(0.1)
        return self

    def create_database(self, name):
        subprocess.run(["psql", "-X", "-q", "-h", self.sockdir, "-p", str(self.port), "-U", "postgres", "-d",
                        "postgres", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True, timeout=30)
        return f"host={self.sockdir} port={self.port} dbname={name} user=postgres"

    def pids(self):
        return [self.proc.pid, *children_of(self.proc.pid)] if self.proc else []

    def stop(self):
        stop_pid(self.proc, sig=signal.SIGINT)
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------------------
# Parley


class Parley:
    """router + storage workers + gateways sharing one STARTTLS port and one
    direct-TLS port (SO_REUSEPORT), as deploy/parley-launch runs them."""

    name = "parley"

    def __init__(self, gateways=1, storage=2, backend="sqlite", pg_conninfo=None, cpus=None, log_level="warn",
                 **sections):
        self.state = tempfile.mkdtemp(prefix="pb", dir="/tmp")
        self.port, self.tls_port = free_port(), free_port()
        self.backend = backend
        self.cpus = cpus
        tree = {
            "domain": DOMAIN,
            "log": {"level": log_level},
            "gateway": {"bind_address": "127.0.0.1", "starttls_port": self.port, "tls_port": self.tls_port,
                        "allow_plain_loopback": True},
            "storage": {"backend": backend, "sqlite_path": "parley.db"},
            "offline": {"quota": 1000000},
        }
        if backend == "postgresql":
            tree["storage"]["pg_conninfo"] = pg_conninfo
        for sec, opts in sections.items():
            tree.setdefault(sec, {}).update(opts)
        self.tree = tree
        self.conf = os.path.join(self.state, "parley.conf")
        self.db = (f"sqlite:{os.path.join(self.state, 'parley.db')}" if backend == "sqlite"
                   else f"pg:{pg_conninfo}")
        logs = os.path.join(self.state, "log")

        def proc(name, role, prog, *extra):
            argv = pinned([os.path.join(BIN, prog), "-c", self.conf, *extra], cpus)
            return parleylib.Process(name, role, argv, cwd=self.state, log_path=os.path.join(logs, f"{name}.log"))

        self.router = proc("router", "router", "parley-router")
        self.storage = [proc(f"storage-{i}", "storage", "parley-storage", "-n", f"storage-{i}")
                        for i in range(1, storage + 1)]
        self.gateways = [proc(f"gateway-{i}", "gateway", "parley-gateway", "-n", f"gateway-{i}")
                         for i in range(1, gateways + 1)]

    @property
    def procs(self):
        return [self.router, *self.storage, *self.gateways]

    def start(self):
        parleylib.write_config(self.conf, self.tree)
        parleylib.prepare_state(self.state, self.tree)
        router_started = time.monotonic()
        self.router.start()
        for p in self.storage + self.gateways:
            p.start()
        ctl = os.path.join(BIN, "parleyctl")
        try:
            parleylib.wait_listed(lambda: parleylib.run_ctl(ctl, self.conf, self.state, "status", timeout_s=1),
                                  self.procs, 20)
        except parleylib.ParleyError as e:
            self.stop()
            raise BenchError(f"parley did not start: {e}\n{self.logs()}") from e
        # For router.peer_timeout_ms after it starts, the router parks
        # messages to accounts without a session (route.c W1: after a
        # restart, gateways are still re-announcing theirs). A run started
        # inside that window would time the window, not the store.
        warm = self.tree.get("router", {}).get("peer_timeout_ms", 5000) / 1000.0
        time.sleep(max(0.0, router_started + warm + 0.2 - time.monotonic()))
        return self

    def pids(self):
        """PIDs of every Parley process (taskset execs in place: same PID)."""
        return [p.pid for p in self.procs if p.is_running()]

    def pid_roles(self):
        return {p.pid: p.name for p in self.procs if p.is_running()}

    def create_accounts(self, prefix, first, count):
        """Accounts are made by parley-bench --create (straight into the store)."""
        return ["--db", self.db, "--create"]

    def logs(self, tail=30):
        return "\n".join(f"--- {p.name}\n{p.log_text(tail)}" for p in self.procs if p.popen is not None)

    def stop(self):
        parleylib.stop_processes([self.gateways, self.storage, [self.router]], 5)
        shutil.rmtree(self.state, ignore_errors=True)


def cpu_seconds(pids):
    """User + system CPU seconds used so far by the processes pids (all
    their threads; a process gone meanwhile counts 0)."""
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_bench(args, timeout=600, cpus=None):
    """Runs parley-bench with args; returns (exit status, stdout, stderr)."""
    argv = pinned([BENCH, *args], cpus)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return r.returncode, r.stdout, r.stderr


# ---------------------------------------------------------------------------
# Shared credentials for the peers' accounts


def scram_keys(hash_name, password, salt, iterations):
    """(stored_key, server_key) of RFC 5802 for hash_name ("sha1"/"sha256")."""
    import hashlib
    import hmac
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored = hashlib.new(hash_name, client_key).digest()
    server = hmac.new(salted, b"Server Key", hash_name).digest()
    return stored, server


def make_cert(directory):
    """Self-signed certificate for DOMAIN: (cert, key) paths."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    parleylib.make_self_signed_cert(cert, key, DOMAIN)
    return cert, key


# ---------------------------------------------------------------------------
# Prosody (Debian's 0.12): one Lua process, internal (file) storage


class Prosody:
    """Prosody with a private config and data dir; SCRAM-SHA-256 accounts
    (password_hash = "SHA-256") written straight into its account store
    files, all with one salt (as Parley's bench accounts)."""

    name = "prosody"

    def __init__(self, cpus=None, log_level="warn", mam=False):
        self.dir = tempfile.mkdtemp(prefix="pbpros", dir="/tmp")
        self.port, self.tls_port = free_port(), free_port()
        self.cpus = cpus
        self.proc = None
        self.data = os.path.join(self.dir, "data")
        os.makedirs(os.path.join(self.data, DOMAIN, "accounts"))
        cert, key = make_cert(self.dir)
        self.conf = os.path.join(self.dir, "prosody.cfg.lua")
        with open(self.conf, "w") as f:
            f.write(f"""-- parley bench: private Prosody on loopback
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.data}"
log = {{ {log_level} = "{self.dir}/prosody.log" }}
network_backend = "epoll"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ {self.tls_port} }}
s2s_ports = {{ }}
c2s_require_encryption = false
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = 4096
storage = "internal"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "offline"{'; "mam"' if mam else ''} }}
default_archive_policy = true
archive_expires_after = "never"
modules_disabled = {{ "s2s" }}
certificates = "{self.dir}"
ssl = {{ certificate = "{cert}"; key = "{key}" }}
c2s_tcp_keepalives = false
-- Accept queue as deep as ejabberd's and Parley's (default 128): with 200
-- handshakes in flight a short queue drops SYNs and logins wait for retries.
network_settings = {{ tcp_backlog = 4096 }}
VirtualHost "{DOMAIN}"
ssl = {{ certificate = "{cert}"; key = "{key}" }}
""")

    def start(self):
        log = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(pinned(["prosody", "-F", "--config", self.conf], self.cpus),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        log.close()
        wait_port(self.port, lambda: self.proc.poll() is None, what="prosody")
        return self

    def create_accounts(self, prefix, first, count):
        """Writes accounts/<user>.dat files (Prosody's internal store format)."""
        salt = "parley-bench-shared-salt"
        stored, server = scram_keys("sha256", PASSWORD, salt.encode(), 4096)
        body = ("return {\n\t[\"iteration_count\"] = 4096;\n\t[\"salt\"] = \"%s\";\n"
                "\t[\"server_key\"] = \"%s\";\n\t[\"stored_key\"] = \"%s\";\n};\n"
                % (salt, server.hex(), stored.hex()))
        d = os.path.join(self.data, DOMAIN, "accounts")
        for i in range(first, first + count):
            with open(os.path.join(d, f"{prefix}{i}.dat"), "w") as f:
                f.write(body)
        # Offline messages of earlier runs would be stale: drop them.
        shutil.rmtree(os.path.join(self.data, DOMAIN, "offline"), ignore_errors=True)
        return []

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def pid_roles(self):
        return {pid: "prosody" for pid in self.pids()}

    def logs(self, tail=30):
        try:
            with open(os.path.join(self.dir, "prosody.log"), errors="replace") as f:
                return "\n".join(f.read().splitlines()[-tail:])
        except OSError:
            return ""

    def stop(self):
        stop_pid(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# ejabberd (Debian's 23.01): one Erlang VM, Mnesia


class Ejabberd:
    """ejabberd run straight from erl as the ejabberd user (so its PID is
    the VM's), no Erlang distribution (no epmd), a private Mnesia spool.
    Accounts are imported from a XEP-0227 file through mod_http_api on a
    loopback port (ejabberd hashes them to SCRAM-SHA-256 on import)."""

    name = "ejabberd"

    def __init__(self, cpus=None, log_level="warning", mam=False):
        self.user = pwd.getpwnam("ejabberd")
        self.dir = tempfile.mkdtemp(prefix="pbejab", dir="/tmp")
        self.port, self.tls_port, self.http_port = free_port(), free_port(), free_port()
        self.cpus = cpus
        self.proc = None
        cert, key = make_cert(self.dir)
        pem = os.path.join(self.dir, "server.pem")
        with open(pem, "w") as out:
            for p in (cert, key):
                with open(p) as f:
                    out.write(f.read())
        self.conf = os.path.join(self.dir, "ejabberd.yml")
        with open(self.conf, "w") as f:
            f.write(f"""# parley bench: private ejabberd on loopback
hosts: ["{DOMAIN}"]
loglevel: {log_level}
log_rotate_count: 0
certfiles: ["{pem}"]
listen:
  - {{port: {self.port}, ip: "127.0.0.1", module: ejabberd_c2s, max_stanza_size: 262144,
      shaper: none, access: c2s, starttls: true, starttls_required: false, backlog: 4096}}
  - {{port: {self.tls_port}, ip: "127.0.0.1", module: ejabberd_c2s, max_stanza_size: 262144,
      shaper: none, access: c2s, tls: true, backlog: 4096}}
  - {{port: {self.http_port}, ip: "127.0.0.1", module: ejabberd_http,
      request_handlers: {{"/api": mod_http_api}}}}
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha256
acl:
  loopback:
    ip: ["127.0.0.0/8"]
access_rules:
  c2s:
    allow: all
api_permissions:
  "bench import":
    from: [mod_http_api]
    who:
      access:
        allow:
          acl: loopback
    what: ["import_piefxis", "registered_users", "connected_users_number"]
cache_size: 1000000
shaper_rules:
  max_user_offline_messages: 1000000
  max_user_sessions: 10
modules:
  mod_disco: {{}}
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {{}}
  mod_roster: {{}}
  mod_admin_extra: {{}}
  mod_http_api: {{}}
""" + ("""  mod_mam:
    default: always
    db_type: mnesia
""" if mam else ""))
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.spool)
        for root, dirs, files in os.walk(self.dir):
            for n in [root, *(os.path.join(root, x) for x in files)]:
                os.chown(n, self.user.pw_uid, self.user.pw_gid)

    def start(self):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.dir, "EJABBERD_CONFIG_PATH": self.conf,
               "EJABBERD_LOG_PATH": os.path.join(self.dir, "ejabberd.log"),
               "ERL_LIBS": "/usr/lib/x86_64-linux-gnu", "ERL_MAX_PORTS": "250000",
               "ERL_MAX_ETS_TABLES": "1400", "ERL_CRASH_DUMP": os.path.join(self.dir, "erl_crash.dump"),
               "LC_ALL": "C.UTF-8"}
        argv = ["/usr/bin/erl", "+K", "true", "+P", "1000000", "-noinput", "-mnesia", "dir",
                f'"{self.spool}"', "-s", "ejabberd"]
        log = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(pinned(argv, self.cpus), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=env, user=self.user.pw_uid,
                                     group=self.user.pw_gid, extra_groups=[])
        log.close()
        wait_port(self.port, lambda: self.proc.poll() is None, timeout=60, what="ejabberd")
        wait_port(self.http_port, lambda: self.proc.poll() is None, timeout=30, what="ejabberd http")
        return self

    def api(self, command, args, timeout=600):
        import http.client
        import json
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        c.request("POST", f"/api/{command}", json.dumps(args), {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        c.close()
        if r.status != 200:
            raise BenchError(f"ejabberd api {command}: {r.status} {body}")
        return json.loads(body) if body else None

    def create_accounts(self, prefix, first, count):
        """Pre-hashed ("scram:sha256,stored,server,salt,iterations", the form
        ejabberd's own XEP-0227 export writes), one shared salt: the import
        then costs no PBKDF2 per account."""
        import base64
        salt = b"parley-bench-shared-salt"
        stored, server = scram_keys("sha256", PASSWORD, salt, 4096)
        # ejabberd 23.01 keeps the #scram{} fields base64-encoded in Mnesia,
        # but its importer base64-decodes them once more before storing:
        # encode twice so what it stores is the base64 its SASL code expects.
        b64 = lambda b: base64.b64encode(base64.b64encode(b)).decode()  # noqa: E731
        cred = f"scram:sha256,{b64(stored)},{b64(server)},{b64(salt)},4096"
        path = os.path.join(self.dir, f"accounts-{first}-{count}.xml")
        with open(path, "w") as f:
            f.write(f"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n"
                    f"<host jid='{DOMAIN}'>\n")
            for i in range(first, first + count):
                f.write(f"<user name='{prefix}{i}' password='{cred}'/>\n")
            f.write("</host>\n</server-data>\n")
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.api("import_piefxis", {"file": path})
        return []

    def pids(self):
        if not self.proc or self.proc.poll() is not None:
            return []
        # The VM, plus erl_child_setup and inet_gethost helpers it forks.
        return [self.proc.pid, *children_of(self.proc.pid)]

    def pid_roles(self):
        return {pid: "beam" if pid == self.proc.pid else "helper" for pid in self.pids()}

    def logs(self, tail=30):
        out = []
        for n in ("ejabberd.log", "error.log", "stdout.log"):
            try:
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out.append(f"--- {n}\n" + "\n".join(f.read().splitlines()[-tail:]))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        stop_pid(self.proc, timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)
