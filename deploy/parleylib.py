"""
Process and instance helpers shared by deploy/parley-launch and the
end-to-end tests (tests/e2e/conftest.py): read the configuration the way the
C loader does (JSON with // and /* */ comments), prepare a state directory
(run/ 0700, a self-signed certificate), start the Parley processes there,
ask `parleyctl status` until they are all listed, and stop them by PID
within a fixed time. Standard library only; Debian 12's python3.
"""
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# The options the launcher and the tests read, with the defaults of the
# table in common/config.c. (The programs themselves read the whole file.)
DEFAULTS = {
    "domain": "localhost",
    "router.admin_endpoint": "ipc://run/admin.sock",
    "gateway.bind_address": "127.0.0.1",
    "gateway.starttls_port": 5222,
    "gateway.tls_port": 5223,
    "gateway.tls_cert": "tls/cert.pem",
    "gateway.tls_key": "tls/key.pem",
    "storage.backend": "sqlite",
}

CTL_OK, CTL_ERROR, CTL_NO_ROUTER = 0, 1, 2


class ParleyError(Exception):
    """A launch step failed; the message says which and why."""


# ---------------------------------------------------------------------------
# Configuration


def strip_json_comments(text):
    """Returns text with // and /* */ comments blanked out (yajl accepts them,
    Python's json does not). Strings are copied untouched, so the "//" in
    "ipc://run/x.sock" stays. Newlines are kept so json's line numbers match."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated /* comment")
            out.append("\n" * text.count("\n", i, j))
            i = j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_config(path):
    """Parses a Parley configuration file into a dict (sections as dicts).
    Raises ParleyError naming the file on unreadable or invalid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        tree = json.loads(strip_json_comments(text))
    except (OSError, ValueError) as e:
        raise ParleyError(f"{path}: {e}") from e
    if not isinstance(tree, dict):
        raise ParleyError(f"{path}: the configuration must be a JSON object")
    return tree


def config_get(tree, path):
    """Value of "section.key" (or "key") in tree, else its default."""
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return DEFAULTS.get(path)
        node = node[part]
    return node


def write_config(path, tree):
    """Writes tree as JSON (a file the C loader reads), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(tree, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------
# State directory


def prepare_state(state, tree):
    """Creates state/, state/run (0700: the inter-process sockets must not be
    open to other users) and, if missing, a self-signed certificate for the
    configured domain at gateway.tls_cert/tls_key. Returns nothing; raises
    ParleyError if openssl fails."""
    os.makedirs(state, exist_ok=True)
    run = os.path.join(state, "run")
    os.makedirs(run, mode=0o700, exist_ok=True)
    os.chmod(run, 0o700)  # also tighten a run/ an older version left open
    cert = os.path.join(state, config_get(tree, "gateway.tls_cert"))
    key = os.path.join(state, config_get(tree, "gateway.tls_key"))
    if not (os.path.exists(cert) and os.path.exists(key)):
        make_self_signed_cert(cert, key, config_get(tree, "domain"))


def make_self_signed_cert(cert, key, domain):
    """Writes a self-signed EC certificate for domain (CN and subjectAltName)
    valid for ten years; the key file is mode 0600."""
    for p in (cert, key):
        os.makedirs(os.path.dirname(os.path.abspath(p)), mode=0o700, exist_ok=True)
    cmd = ["openssl", "req", "-x509", "-newkey", "ec",
           "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
           "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
           "-keyout", key, "-out", cert]
    old = os.umask(0o077)
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30, check=False)
    finally:
        os.umask(old)
    if r.returncode != 0:
        raise ParleyError(f"openssl could not make a certificate for {domain}: {r.stderr.strip()}")
    os.chmod(key, 0o600)


def port_is_free(host, port):
    """True if nothing listens on host:port. The probe binds without
    SO_REUSEPORT, so it also sees another Parley gateway, which a new
    gateway would otherwise silently share the port with."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host="127.0.0.1"):
    """A TCP port the kernel just handed out and nothing holds now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs in the child between fork and exec: keep it to async-signal-safe
    # work. A new session keeps the terminal's Ctrl-C away from the children
    # (the launcher stops them itself, in order); PDEATHSIG stops a child
    # whose parent died without cleaning up.
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Process:
    """One Parley process: started with cwd=state, stderr to log_path and,
    if echo, also to our stderr. Stopped by PID only."""

    def __init__(self, name, role, argv, cwd, log_path, echo=False):
        self.name, self.role, self.argv = name, role, list(argv)
        self.cwd, self.log_path, self.echo = cwd, log_path, echo
        self.popen = None
        self._pump = None

    def __repr__(self):
        return f"<Process {self.name} pid={self.pid} rc={self.returncode}>"

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def returncode(self):
        return self.popen.poll() if self.popen else None

    def is_running(self):
        return self.popen is not None and self.popen.poll() is None

    def start(self):
        """Starts the process (again, if it had stopped); appends to the log."""
        if self.is_running():
            raise ParleyError(f"{self.name} is already running (pid {self.pid})")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=log if not self.echo else subprocess.PIPE,
                stderr=log if not self.echo else subprocess.STDOUT,
                preexec_fn=_child_setup, close_fds=True)
        except OSError as e:
            log.close()
            raise ParleyError(f"cannot start {self.name} ({self.argv[0]}): {e}") from e
        if self.echo:
            self._pump = threading.Thread(target=self._copy_output, args=(log,), daemon=True)
            self._pump.start()
        else:
            log.close()
        return self

    def _copy_output(self, log):
        # Tee: the log file keeps everything for a failure report; our
        # stderr shows it live. Lines are whole events (one per line).
        with log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                try:
                    sys.stderr.buffer.write(line)
                    sys.stderr.buffer.flush()
                except (OSError, ValueError):
                    pass

    def signal(self, sig):
        """Sends sig to this process only (never to a name or a group)."""
        if self.is_running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        """Waits up to timeout seconds; returns the exit code or None."""
        if self.popen is None:
            return None
        try:
            rc = self.popen.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
        if self._pump is not None:
            self._pump.join(timeout=1)
        return rc

    def log_text(self, tail=200):
        """The last tail lines of the log ('' if none yet)."""
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])


def stop_processes(groups, timeout=5.0):
    """Stops groups of processes in order (e.g. gateways, storage, router):
    SIGTERM to a group, wait for it, then the next, all within timeout
    seconds; whatever is still alive then gets SIGKILL. Returns
    {name: exit code} (negative: killed by that signal)."""
    deadline = time.monotonic() + timeout
    for group in groups:
        for p in group:
            p.signal(signal.SIGTERM)
        for p in group:
            p.wait(deadline - time.monotonic())
    result = {}
    for group in groups:
        for p in group:
            if p.is_running():
                p.signal(signal.SIGKILL)
                p.wait(5)
            if p.popen is not None:
                result[p.name] = p.returncode
    return result


# ---------------------------------------------------------------------------
# parleyctl


def run_ctl(ctl, conf, cwd, *args, timeout_s=3, input=None):
    """Runs `parleyctl -c conf -t timeout_s args...` in cwd (the state
    directory: relative ipc:// paths resolve there), with input (text) on
    its stdin if given. Returns the CompletedProcess (text); exit 0 ok,
    1 router error, 2 no router."""
    argv = [ctl, "-c", conf, "-t", str(timeout_s), *args]
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout_s + 10, check=False, **stdin)
    except subprocess.TimeoutExpired as e:
        raise ParleyError(f"parleyctl {' '.join(args)} did not return within {timeout_s + 10} s") from e


def parse_table(text):
    """Rows of parleyctl's table output as dicts keyed by the header's
    column names (lower case). Columns are split on tabs if the header has
    one, else on runs of spaces."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    tabs = "\t" in lines[0]

    def split(line):
        return [c.strip() for c in line.split("\t")] if tabs else line.split()

    header = [h.lower() for h in split(lines[0])]
    rows = []
    for line in lines[1:]:
        cells = split(line)
        if not tabs and len(cells) > len(header):  # spaces in the last column
            cells = cells[:len(header) - 1] + [" ".join(cells[len(header) - 1:])]
        rows.append(dict(zip(header, cells)))
    return rows


def wait_listed(status_fn, processes, timeout=15.0, only_running=False):
    """Polls status_fn() (-> CompletedProcess of `parleyctl status`) until
    every process in processes has a row: role "router" for the router, its
    name for the others. Returns the rows. Raises ParleyError if one of them
    exits meanwhile or the time runs out. With only_running, processes that
    are not running at the call (stopped on purpose) are left out."""
    deadline = time.monotonic() + timeout
    if only_running:
        processes = [p for p in processes if p.is_running()]
    last = "(no answer yet)"
    while True:
        for p in processes:
            if p.popen is not None and not p.is_running():
                raise ParleyError(f"{p.name} exited with status {p.returncode} during start-up")
        r = status_fn()
        if r.returncode == CTL_OK:
            rows = parse_table(r.stdout)
            missing = [p.name for p in processes if not is_listed(rows, p)]
            if not missing:
                return rows
            last = f"not listed yet: {', '.join(missing)}\n{r.stdout}"
        else:
            last = f"parleyctl status exit {r.returncode}: {r.stderr.strip()}"
        if time.monotonic() >= deadline:
            raise ParleyError(f"not every process came up within {timeout:g} s; {last}")
        time.sleep(0.2)


def is_listed(rows, proc):
    """True if a status row stands for proc (the router by role, others by name)."""
    if proc.role == "router":
        return any(r.get("role") == "router" for r in rows)
    return any(r.get("name") == proc.name for r in rows)
