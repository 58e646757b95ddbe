#!/usr/bin/python3
"""
`make bench`: Parley, Prosody and ejabberd side by side under parley-bench
(build/parley-bench), the same scenarios and sizes for each, server pinned
to one core and the generator to the other (taskset), every figure the
min / median / max of --runs runs, a fresh server for every run. Prints a
table and writes every parley-bench JSON report plus a summary.json into
--out. BENCHMARKS.md explains the scenarios and records the figures.

  connect-plain / connect-tls   --users accounts log in (no ramp limit, 200
                 handshakes in flight), are held, server RSS sampled before
                 and after: logins/s and bytes per idle session
  chat-sat       saturation: offered rate raised x1.5 from --chat-start
                 until delivery falls behind (received < 95 % of offered,
                 any loss, or p99 > 200 ms), then one bisection step; the
                 highest rate that kept up (resolution x1.22). Every
                 server runs without a message archive here (the Debian
                 defaults of the peers; Parley with archive.enabled=false),
                 so all three do the same work per message.
  chat-archive   the same sweep with the XEP-0313 archive on (Parley's
                 default; the peers' mod_mam only with --peer-mam): the
                 highest rate whose archive (2 rows per message) also
                 caught up within 1 s of the end of sending.
  chat-half      every server at half of Parley's median saturation:
                 latency p50/p99 (archive off, as in chat-sat)
  connect-large  (Parley only; not in the default list) --large-users
                 sessions over --large-gateways gateways and as many
                 generator processes, plaintext then TLS, for the memory
                 ceiling estimate
  offline        --messages to offline accounts, stored, then drained;
                 Parley on PostgreSQL (and SQLite), the peers on their
                 default stores (Prosody: files; ejabberd: Mnesia)
  offline-noarchive  (Parley only) the same on PostgreSQL with the archive
                 off: one row per message, as the peers store

Needs root (PostgreSQL runs as user postgres; ejabberd as user ejabberd),
prosody and ejabberd installed (apt-get install prosody ejabberd); a missing
peer is skipped with a note.
"""
import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import benchlib  # noqa: E402
from benchlib import BenchError  # noqa: E402

SERVER_CPU, GEN_CPU = "1", "0"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.strip().split("\n")[0])
    ap.add_argument("--servers", default="parley,prosody,ejabberd")
    ap.add_argument("--scenarios", default="connect-plain,connect-tls,chat-sat,chat-archive,chat-half,offline")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--users", type=int, default=5000, help="connect: accounts (default 5000)")
    ap.add_argument("--chat-users", type=int, default=1000)
    ap.add_argument("--chat-start", type=float, default=2000)
    ap.add_argument("--half-rate", type=float, default=0,
                    help="chat-half at this rate instead of half of this invocation's Parley saturation")
    ap.add_argument("--archive-start", type=float, default=2000, help="chat-archive: first offered rate")
    ap.add_argument("--chat-window", type=float, default=4, help="seconds of sending per chat step")
    ap.add_argument("--messages", type=int, default=50000, help="offline: messages (default 50000)")
    ap.add_argument("--senders", type=int, default=100)
    ap.add_argument("--receivers", type=int, default=500)
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--large-users", type=int, default=60000)
    ap.add_argument("--large-gateways", type=int, default=4)
    ap.add_argument("--procs", type=int, default=1, help="generator processes")
    ap.add_argument("--max-time", type=int, default=170, help="cap on each parley-bench run, seconds")
    ap.add_argument("--out", default=None, help="directory for the JSON reports (default: a new /tmp dir)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and generator to cores")
    ap.add_argument("--pg-core", choices=["server", "generator"], default="server",
                    help="offline: the core PostgreSQL runs on (default: the server's). 'generator': its own, "
                         "shared only with the generator, which is idle once its burst is sent")
    ap.add_argument("--peer-mam", action="store_true",
                    help="run chat-archive for the peers too, with their mod_mam on")
    return ap.parse_args(argv)


class Bench:
    def __init__(self, args):
        self.a = args
        self.out = args.out or f"/tmp/parley-bench-{time.strftime('%Y%m%d-%H%M%S')}"
        os.makedirs(self.out, exist_ok=True)
        self.results = {}       # (server, scenario) -> list of per-run dicts
        self.notes = []
        self.pin = not args.no_pin
        self.server_cpu = SERVER_CPU if self.pin else None
        self.gen_cpu = GEN_CPU if self.pin else None

    # -- servers

    def make(self, name, backend="sqlite", archive=True):
        """Starts a fresh server; returns (server, pg or None). archive: the
        XEP-0313 message archive on or off (the peers': only with --peer-mam)."""
        cpus = self.server_cpu
        if name == "parley":
            pg = None
            conninfo = None
            if backend == "postgresql":
                pg_cpus = self.gen_cpu if self.a.pg_core == "generator" else cpus
                pg = benchlib.Postgres(cpus=pg_cpus).start()
                conninfo = pg.create_database("bench")
            try:
                s = benchlib.Parley(gateways=self.a.gateways, storage=2, backend=backend, pg_conninfo=conninfo,
                                    cpus=cpus, router={"job_queue_max": 10000000},
                                    archive={"enabled": archive}).start()
            except BaseException:
                if pg:
                    pg.stop()
                raise
            return s, pg
        cls = {"prosody": benchlib.Prosody, "ejabberd": benchlib.Ejabberd}[name]
        return cls(cpus=cpus, mam=self.a.peer_mam and archive).start(), None

    def available(self, name):
        if name == "parley":
            return os.access(benchlib.BENCH, os.X_OK)
        if name == "prosody":
            ok = shutil.which("prosody") is not None
        else:
            ok = shutil.which("erl") is not None and bool(glob.glob("/usr/lib/x86_64-linux-gnu/ejabberd-*"))
        if not ok:
            self.notes.append(f"{name} is not installed (apt-get install {name}): skipped")
        return ok

    # -- one parley-bench run against a started server

    def bench(self, server, tag, scenario, accounts, extra, mem=False):
        server_args = server.create_accounts("bench", 0, accounts)
        path = os.path.join(self.out, f"{tag}.json")
        args = [scenario, "--port", str(server.port), "--label", server.name, "--json", path, "--quiet",
                "--procs", str(self.a.procs), "--sources", "4", "--inflight", "200", "--max-time", str(self.a.max_time),
                *server_args, *extra]
        pids = server.pids()
        if mem:
            args += ["--mem-pids", ",".join(str(p) for p in pids)]
        cpu0, gen0 = benchlib.cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
        rc, out, err = benchlib.run_bench(args, timeout=self.a.max_time + 30, cpus=self.gen_cpu)
        cpu1, gen1 = benchlib.cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
        sys.stdout.write(out)
        for line in err.splitlines():
            if "first message error" in line or "warning" in line or "cannot" in line:
                print("   ", line)
        if not os.path.exists(path):
            raise BenchError(f"parley-bench wrote no report (exit {rc}): {err[-500:]}")
        with open(path) as f:
            rep = json.load(f)
        rep["_exit"] = rc
        # CPU seconds over the whole run (logins, hold, settle), whatever
        # limited the rate: the server's cost per unit of work, comparable
        # across servers even when the generator is the bottleneck.
        rep["_cpu"] = {"server_s": cpu1 - cpu0,
                       "generator_s": (gen1.ru_utime + gen1.ru_stime) - (gen0.ru_utime + gen0.ru_stime)}
        if mem and hasattr(server, "pid_roles"):
            rep["_roles"] = {str(k): v for k, v in server.pid_roles().items()}
        return rep

    def record(self, server, scenario, value):
        self.results.setdefault((server, scenario), []).append(value)

    # -- scenarios

    def connect(self, name, tls):
        scen = f"connect-{tls}"
        for run in range(self.a.runs):
            s, pg = self.make(name)
            try:
                rep = self.bench(s, f"{name}-{scen}-{run}", "connect", self.a.users,
                                 ["--users", str(self.a.users), "--tls", "plain" if tls == "plain" else "starttls",
                                  "--duration", "3", "--settle", "3", "--timeout", "30"], mem=True)
            finally:
                s.stop()
                if pg:
                    pg.stop()
            ok = max(1, rep["login"]["ok"])
            self.record(name, scen, {"login_rate": rep["login"]["rate_per_s"],
                                     "bytes_per_session": rep.get("memory", {}).get("bytes_per_session", 0),
                                     "held": rep["connections"]["held_end"], "failed": rep["login"]["failed"],
                                     "server_us_per_login": rep["_cpu"]["server_s"] * 1e6 / ok,
                                     "generator_us_per_login": rep["_cpu"]["generator_s"] * 1e6 / ok,
                                     "pids": rep.get("memory", {}).get("pids", []), "roles": rep.get("_roles", {})})

    def connect_large(self):
        """Many sessions, for bytes per session at scale: one run each of
        plaintext and TLS, 4 gateways (each below its 19,000 connections),
        one generator process per gateway's worth of clients."""
        n, gw = self.a.large_users, self.a.large_gateways
        procs = max(gw, (n + 14999) // 15000)
        for tls in ("plain", "tls"):
            scen = f"connect-large-{tls}"
            s = benchlib.Parley(gateways=gw, storage=2, cpus=self.server_cpu,
                                router={"job_queue_max": 10000000}).start()
            try:
                rep = self.bench(s, f"parley-{scen}", "connect", n,
                                 ["--users", str(n), "--tls", "plain" if tls == "plain" else "starttls",
                                  "--duration", "3", "--settle", "5", "--timeout", "60", "--procs", str(procs),
                                  "--sources", str(max(8, (n + 19999) // 20000))], mem=True)
            finally:
                s.stop()
            self.record("parley", scen, {"login_rate": rep["login"]["rate_per_s"],
                                         "bytes_per_session": rep.get("memory", {}).get("bytes_per_session", 0),
                                         "held": rep["connections"]["held_end"], "failed": rep["login"]["failed"],
                                         "pids": rep.get("memory", {}).get("pids", []),
                                         "roles": rep.get("_roles", {})})

    def chat_step(self, name, rate, tag, archive=False):
        s, pg = self.make(name, archive=archive)
        try:
            extra = ["--users", str(self.a.chat_users), "--tls", "plain", "--rate", str(int(rate)),
                     "--duration", str(self.a.chat_window), "--drain", "5"]
            if name == "parley" and not archive:
                extra.append("--no-archive")
            return self.bench(s, tag, "chat", self.a.chat_users, extra)
        finally:
            s.stop()
            if pg:
                pg.stop()

    @staticmethod
    def kept_up(rep, rate):
        m = rep["messages"]
        return (m["recv_rate_per_s"] >= 0.95 * rate and m["lost"] == 0 and m["bounced"] == 0
                and m["latency"]["p99_ms"] <= 200 and rep["login"]["failed"] == 0)

    def chat_sat(self, name, archive=False):
        """The saturation sweep; with archive, a rate passes only when the
        archive (Parley: counted in its database) also caught up."""
        scen = "chat-archive" if archive else "chat-sat"
        for run in range(self.a.runs):
            rate, best, steps = (self.a.archive_start if archive else self.a.chat_start), 0, []

            def step(rate):
                rep = self.chat_step(name, rate, f"{name}-{scen}-{run}-{int(rate)}", archive)
                ok = self.kept_up(rep, rate)
                arch = rep.get("archive")
                if archive and arch is not None:
                    ok = ok and arch["caught_up"] and arch["lag_s"] <= 1.0
                steps.append({"rate": rate, "ok": ok, "recv_rate": rep["messages"]["recv_rate_per_s"],
                              "p99_ms": rep["messages"]["latency"]["p99_ms"],
                              "archive_lag_s": arch["lag_s"] if arch else None})
                return ok

            while rate <= 400000:
                if not step(rate):
                    break
                best = rate
                rate *= 1.5
            if best and rate <= 400000:
                # One bisection between the last pass and the first failure
                # (geometric mean: x1.22), so the figure is within 22 %.
                mid = (best * rate) ** 0.5
                if step(mid):
                    best = mid
            self.record(name, scen, {"rate": best, "steps": steps})

    def chat_half(self, name, rate):
        for run in range(self.a.runs):
            rep = self.chat_step(name, rate, f"{name}-chat-half-{run}")
            lat = rep["messages"]["latency"]
            self.record(name, "chat-half", {"rate": rate, "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                                            "max_ms": lat["max_ms"], "kept_up": self.kept_up(rep, rate),
                                            "archive": rep.get("archive")})

    def offline(self, name, backend="sqlite", archive=True):
        scen = "offline" if name != "parley" else f"offline-{backend}" + ("" if archive else "-noarchive")
        n = self.a.senders + self.a.receivers
        for run in range(self.a.runs):
            s, pg = self.make(name, backend, archive)
            try:
                rep = self.bench(s, f"{name}-{scen}-{run}", "offline", n,
                                 ["--users", str(self.a.senders), "--receivers", str(self.a.receivers),
                                  "--messages", str(self.a.messages), "--tls", "plain", "--drain", "10",
                                  "--timeout", "30"])
            finally:
                s.stop()
                if pg:
                    pg.stop()
            off = rep["offline"]
            self.record(name, scen, {"store_rate": off["store_rate_per_s"], "drain_rate": off["drain_rate_per_s"],
                                     "complete": off["complete"], "check": off["store_check"],
                                     "received": rep["messages"]["received"], "bounced": rep["messages"]["bounced"]})

    # -- the whole thing

    def run(self):
        servers = [s for s in self.a.servers.split(",") if self.available(s)]
        scen = self.a.scenarios.split(",")
        for name in servers:
            print(f"=== {name}", flush=True)
            try:
                if "connect-plain" in scen:
                    self.connect(name, "plain")
                if "connect-tls" in scen:
                    self.connect(name, "tls")
                if "connect-large" in scen and name == "parley":
                    self.connect_large()
                if "chat-sat" in scen or ("chat-half" in scen and not self.a.half_rate):
                    self.chat_sat(name)
                if "chat-archive" in scen and (name == "parley" or self.a.peer_mam):
                    self.chat_sat(name, archive=True)
                if "offline" in scen:
                    if name == "parley":
                        self.offline(name, "postgresql")
                        self.offline(name, "sqlite")
                    else:
                        self.offline(name)
                if "offline-noarchive" in scen and name == "parley":
                    # The peers store one row per message; Parley with its
                    # archive stores three. This is Parley doing their work.
                    self.offline(name, "postgresql", archive=False)
            except BenchError as e:
                self.notes.append(f"{name}: {e}")
                print(f"!!! {name}: {e}", flush=True)
        if "chat-half" in scen and (self.a.half_rate or ("parley", "chat-sat") in self.results):
            half = self.a.half_rate or statistics.median(r["rate"] for r in self.results[("parley", "chat-sat")]) / 2
            for name in servers:
                print(f"=== {name} chat at {half:.0f} msgs/s", flush=True)
                try:
                    self.chat_half(name, half)
                except BenchError as e:
                    self.notes.append(f"{name} chat-half: {e}")
        self.report(servers)

    # -- output

    def stat(self, server, scenario, key):
        vals = [r[key] for r in self.results.get((server, scenario), []) if r.get(key) is not None]
        if not vals:
            return None
        return min(vals), statistics.median(vals), max(vals)

    def report(self, servers):
        rows = [
            ("connect-plain", "login_rate", "logins/s, plaintext", "high"),
            ("connect-tls", "login_rate", "logins/s, STARTTLS", "high"),
            ("connect-plain", "server_us_per_login", "server CPU us per login, plaintext", "low"),
            ("connect-tls", "server_us_per_login", "server CPU us per login, STARTTLS", "low"),
            ("connect-tls", "generator_us_per_login", "generator CPU us per STARTTLS login", "low"),
            ("connect-plain", "bytes_per_session", "bytes/idle session, plaintext", "low"),
            ("connect-tls", "bytes_per_session", "bytes/idle session, TLS", "low"),
            ("connect-large-plain", "bytes_per_session", "bytes/session at --large-users, plain", "low"),
            ("connect-large-tls", "bytes_per_session", "bytes/session at --large-users, TLS", "low"),
            ("chat-sat", "rate", "chat saturation msgs/s (delivery)", "high"),
            ("chat-archive", "rate", "chat msgs/s with archive caught up", "high"),
            ("chat-half", "p50_ms", "chat p50 ms at half Parley sat.", "low"),
            ("chat-half", "p99_ms", "chat p99 ms at half Parley sat.", "low"),
            ("offline", "store_rate", "offline stored msgs/s", "high"),
            ("offline", "drain_rate", "offline drained msgs/s", "high"),
        ]
        fmt = lambda t: "-" if t is None else f"{t[0]:.0f}/{t[1]:.0f}/{t[2]:.0f}" if t[1] >= 100 else \
            f"{t[0]:.2f}/{t[1]:.2f}/{t[2]:.2f}"  # noqa: E731
        print("\n" + "=" * 100)
        print(f"min/median/max of {self.a.runs} runs; server on CPU {self.server_cpu or 'any'}, "
              f"generator on CPU {self.gen_cpu or 'any'}")
        head = f"{'':38s}" + "".join(f"{s:>22s}" for s in servers) + f"{'parley/best peer':>18s}"
        print(head)
        summary = {}
        for scen, key, label, better in rows:
            cells, meds = [], {}
            for s in servers:
                sc = scen
                if s == "parley" and scen == "offline":
                    sc = "offline-postgresql"
                t = self.stat(s, sc, key)
                cells.append(fmt(t))
                if t:
                    meds[s] = t[1]
                summary[f"{s}.{sc}.{key}"] = t
            peers = [v for k, v in meds.items() if k != "parley" and v]
            ratio = "-"
            if "parley" in meds and peers and meds["parley"]:
                best = max(peers) if better == "high" else min(peers)
                ratio = f"{meds['parley'] / best:.2f}x"
            print(f"{label:38s}" + "".join(f"{c:>22s}" for c in cells) + f"{ratio:>18s}")
        t = self.stat("parley", "offline-sqlite", "store_rate")
        if t:
            print(f"{'  (parley offline on SQLite, stored/s)':38s}{fmt(t):>22s}")
        for key, label in (("store_rate", "stored/s"), ("drain_rate", "drained/s")):
            t = self.stat("parley", "offline-postgresql-noarchive", key)
            if t:
                print(f"{'  (parley PostgreSQL, no archive, ' + label + ')':38s}{fmt(t):>22s}")
        for n in self.notes:
            print("note:", n)
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump({"table": summary, "runs": {f"{k[0]}.{k[1]}": v for k, v in self.results.items()},
                       "notes": self.notes, "args": vars(self.a)}, f, indent=1, default=str)
        print(f"reports in {self.out}")


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (PostgreSQL runs as postgres, ejabberd as ejabberd)", file=sys.stderr)
        return 2
    if not os.access(benchlib.BENCH, os.X_OK):
        print(f"{benchlib.BENCH} is missing: make first", file=sys.stderr)
        return 2
    Bench(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
