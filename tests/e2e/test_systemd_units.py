"""
The systemd units in deploy/systemd/: they pass `systemd-analyze verify`
with no warning at all (copies whose ExecStart points at real executables
in a temp dir), their hardening scores stay low under `systemd-analyze
security --offline`, and they keep the deployment rules the README promises
(user parley, shared 0700 runtime dir, gateways that survive a router
restart, ...). The negative tests prove the checks can fail.
"""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
UNIT_SRC = os.path.join(REPO, "deploy", "systemd")
SERVICES = ("parley-router.service", "parley-storage@.service", "parley-gateway@.service")
UNITS = SERVICES + ("parley.target",)
PROGRAM = {"parley-router.service": "parley-router", "parley-storage@.service": "parley-storage",
           "parley-gateway@.service": "parley-gateway"}
# systemd-analyze security --offline: overall exposure x10; ours is ~14.
EXPOSURE_THRESHOLD = 25

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (Debian package systemd)")


def parse_unit(path):
    """{section: [(key, value), ...]} keeping repeated keys in order."""
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            assert current is not None, f"{path}: {line!r} outside a section"
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not key=value: {line!r}"
            current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key):
    """Every word given to key in section (list options may repeat)."""
    out = []
    for k, v in unit.get(section, []):
        if k == key:
            out.extend(v.split()) if v else out.append("")
    return out


def value(unit, section, key):
    """The last assignment of key (what systemd uses for scalar options)."""
    found = [v for k, v in unit.get(section, []) if k == key]
    assert found, f"[{section}] {key}= is missing"
    return found[-1]


@pytest.fixture
def unitdir(tmp_path):
    """Copies of the units whose ExecStart names executables that exist:
    the built programs if make has run, else tiny stand-ins."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for prog in PROGRAM.values():
        built = os.path.join(REPO, "build", prog)
        if os.access(built, os.X_OK):
            os.symlink(built, bindir / prog)
        else:
            (bindir / prog).write_text("#!/bin/sh\nexit 0\n")
            (bindir / prog).chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = open(os.path.join(UNIT_SRC, name), encoding="utf-8").read()
        text = text.replace("/usr/local/bin/", f"{bindir}/")
        assert "/usr/local/bin" not in text
        (units / name).write_text(text)
    return units


def verify(*paths):
    """(exit code, output) of systemd-analyze verify. systemd reports many
    mistakes (unknown keys, bad values) as warnings with exit 0, so a clean
    unit is exit 0 *and* no output."""
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                       capture_output=True, text=True, timeout=60, check=False,
                       env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""})
    return r.returncode, (r.stdout + r.stderr).strip()


def exposure(path):
    """(exit code with --threshold, overall exposure line)."""
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                        f"--threshold={EXPOSURE_THRESHOLD}", str(path)],
                       capture_output=True, text=True, timeout=60, check=False)
    overall = [ln for ln in r.stdout.splitlines() if "Overall exposure" in ln]
    return r.returncode, overall[-1] if overall else r.stdout + r.stderr


# -- systemd-analyze verify


# Each unit, templates through an instance, verifies with no warning.
@pytest.mark.parametrize("name", ["parley-router.service", "parley-storage@1.service",
                                  "parley-gateway@1.service", "parley-gateway@3.service", "parley.target"])
def test_unit_verifies_clean(unitdir, name):
    rc, out = verify(unitdir / name)
    assert rc == 0 and out == "", f"systemd-analyze verify {name}: exit {rc}\n{out}"


# The whole set loads together (the target's Wants resolve to our units).
def test_all_units_verify_together(unitdir):
    rc, out = verify(*(unitdir / n for n in ("parley.target", "parley-router.service",
                                             "parley-storage@1.service", "parley-storage@2.service",
                                             "parley-gateway@1.service", "parley-gateway@2.service")))
    assert rc == 0 and out == "", f"exit {rc}\n{out}"


BREAKAGES = {
    "unknown key": (lambda t: t.replace("[Service]\n", "[Service]\nRestartt=always\n"), "Restartt"),
    "bad value": (lambda t: t.replace("Restart=on-failure", "Restart=sometimes"), "sometimes"),
    "missing program": (lambda t: re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/parley-x", t), "/nonexistent"),
    "relative program": (lambda t: re.sub(r"ExecStart=\S+", "ExecStart=bin/parley-x", t), "bin/parley-x"),
    "bad section": (lambda t: t.replace("[Service]", "[Servce]"), "Servce"),
}


# A deliberately broken copy fails verification, naming what is wrong.
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_unit_fails_verification(unitdir, breakage):
    mutate, expected = BREAKAGES[breakage]
    good = (unitdir / "parley-gateway@.service").read_text()
    bad_text = mutate(good)
    assert bad_text != good, "the mutation did not apply: update the test"
    broken = unitdir / "broken"
    broken.mkdir()
    (broken / "parley-gateway@.service").write_text(bad_text)
    rc, out = verify(broken / "parley-gateway@1.service")
    assert rc != 0 or out != "", f"{breakage}: verify passed a broken unit"
    assert expected in out, f"{breakage}: verify output does not name {expected!r}:\n{out}"


# -- hardening


# Each service keeps a low exposure score.
@pytest.mark.parametrize("name", SERVICES)
def test_service_exposure_is_low(unitdir, name):
    rc, overall = exposure(unitdir / name)
    assert rc == 0, f"{name}: exposure above {EXPOSURE_THRESHOLD / 10}: {overall}"


# The exposure check fails an unhardened service.
def test_exposure_check_fails_unhardened_service(unitdir):
    weak = unitdir / "weak.service"
    weak.write_text(f"[Service]\nExecStart={unitdir.parent}/bin/parley-router\n")
    rc, overall = exposure(weak)
    assert rc != 0, f"an unhardened service passed: {overall}"


# -- deployment rules


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_as_parley_in_state_dir(name):
    u = parse_unit(os.path.join(UNIT_SRC, name))
    s = "Service"
    exec_start = value(u, s, "ExecStart").split()
    assert exec_start[0] == f"/usr/local/bin/{PROGRAM[name]}"
    assert exec_start[1:3] == ["-c", "/etc/parley/parley.conf"]
    assert value(u, s, "User") == "parley" and value(u, s, "Group") == "parley"
    assert values(u, s, "DynamicUser") in ([], ["no"]), "state persists: DynamicUser does not fit"
    assert value(u, s, "WorkingDirectory") == "/var/lib/parley"
    assert value(u, s, "StateDirectory") == "parley"
    assert value(u, s, "ConfigurationDirectory") == "parley"
    # One runtime dir shared by every unit: 0700 (inter-process sockets)
    # and kept when any one unit stops, or a restart would cut the others off.
    assert value(u, s, "RuntimeDirectory") == "parley"
    assert value(u, s, "RuntimeDirectoryMode") == "0700"
    assert value(u, s, "RuntimeDirectoryPreserve") == "yes"
    assert value(u, s, "Restart") == "on-failure"
    assert value(u, s, "RestartSec")
    assert value(u, s, "Type") == "simple"


@pytest.mark.parametrize("name", SERVICES)
def test_service_hardening_options(name):
    u = parse_unit(os.path.join(UNIT_SRC, name))
    s = "Service"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictNamespaces", "LockPersonality",
                "MemoryDenyWriteExecute"):
        assert value(u, s, key) == "yes", f"{key}="
    assert value(u, s, "ProtectSystem") == "strict"
    assert value(u, s, "SystemCallArchitectures") == "native"
    assert sorted(values(u, s, "RestrictAddressFamilies")) == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert value(u, s, "CapabilityBoundingSet") == "", "no capability is needed (ports above 1024)"


@pytest.mark.parametrize("name,role", [("parley-storage@.service", "storage"),
                                       ("parley-gateway@.service", "gateway")])
def test_template_names_instance_and_outlives_router(name, role):
    u = parse_unit(os.path.join(UNIT_SRC, name))
    assert value(u, "Service", "ExecStart").split()[-2:] == ["-n", f"{role}-%i"]
    assert "parley-router.service" in values(u, "Unit", "After")
    assert "parley-router.service" in values(u, "Unit", "Wants")
    # A router restart must not take gateways and workers down with it.
    for strong in ("BindsTo", "Requires", "Requisite", "PartOf"):
        assert "parley-router.service" not in values(u, "Unit", strong), f"{strong}=parley-router.service"
    assert "parley.target" in values(u, "Install", "WantedBy")


def test_gateway_file_limit():
    u = parse_unit(os.path.join(UNIT_SRC, "parley-gateway@.service"))
    # Above gateway.max_connections' default (19000).
    assert int(value(u, "Service", "LimitNOFILE")) == 20000


def test_target_wants_default_set():
    u = parse_unit(os.path.join(UNIT_SRC, "parley.target"))
    assert set(values(u, "Unit", "Wants")) == {
        "parley-router.service", "parley-storage@1.service", "parley-storage@2.service",
        "parley-gateway@1.service", "parley-gateway@2.service"}
    assert values(u, "Install", "WantedBy") == ["multi-user.target"]


def test_sysusers_declares_parley():
    lines = [ln.split() for ln in open(os.path.join(UNIT_SRC, "parley.sysusers"), encoding="utf-8")
             if ln.strip() and not ln.startswith("#")]
    assert any(f[0] == "u" and f[1] == "parley" for f in lines), lines
    if shutil.which("systemd-sysusers"):
        # --dry-run parses the file and prints what it would create.
        r = subprocess.run(["systemd-sysusers", "--dry-run", os.path.join(UNIT_SRC, "parley.sysusers")],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0, r.stderr
