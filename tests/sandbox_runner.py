"""Runs the sandbox attacks as whoever starts it (root, or a normal user made by the test) and prints,
per attack, what happened and whether anything outside the sandbox was touched.

Usage: python sandbox_runner.py PROJECT SHARED   (PROJECT holds a copy of the fusechat package; SHARED is a
world-readable folder). Standard library only: a normal user runs it with the system Python.
"""

import hashlib
import json
import os
import resource
import secrets
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

project, shared = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(project))
from fusechat.sandbox import isolation, run_python  # noqa: E402
from sandbox_attacks import ATTACKS  # noqa: E402

home = Path(os.environ["HOME"])
SECRET = "hf_" + secrets.token_hex(12)
MARKER = "fusechat_marker_" + secrets.token_hex(6)
os.environ["HF_TOKEN"] = f"{SECRET}-environment"  # the runner's environment holds a secret too

# What an attacker wants: the user's 0600 secrets, world-readable ones, the project's own files.
planted = {
    "ssh_key": (home / ".ssh" / "id_ed25519", 0o600),
    "hf_token": (home / ".cache" / "huggingface" / "token", 0o600),
    "env_file": (project / ".env", 0o644),
    "shared_token": (shared / "token", 0o644),
}
for name, (path, mode) in planted.items():
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET}-{name}\n")
    os.chmod(path, mode)
SHM = "fusechat_probe_" + secrets.token_hex(4)  # a shared-memory segment of the host's
if Path("/dev/shm").is_dir():
    planted["shm"] = (Path("/dev/shm") / SHM, 0o644)
    planted["shm"][0].write_text(f"{SECRET}-shm\n")
watched = [p for p, _ in planted.values()] + [project / "fusechat" / "sandbox.py"]


def digest() -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in watched} | {
        "shared_listing": sorted(os.listdir(shared)), "home_listing": sorted(os.listdir(home))}


# Servers an attacker could reach: TCP on loopback, a unix socket file, an abstract unix socket.
connections = []


def serve(sock):
    sock.listen(8)
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        connections.append(1)
        conn.close()


tcp = socket.socket()
tcp.bind(("127.0.0.1", 0))
unix_path = shared / "agent.sock"
unix = socket.socket(socket.AF_UNIX)
unix.bind(str(unix_path))
os.chmod(unix_path, 0o777)
abstract_name = "fusechat-test-" + secrets.token_hex(4)
abstract = socket.socket(socket.AF_UNIX)
abstract.bind("\0" + abstract_name)
for s in (tcp, unix, abstract):
    threading.Thread(target=serve, args=(s,), daemon=True).start()


def start_victim():
    return subprocess.Popen(["sleep", "600"])


victim = start_victim()
limits_before = {r: resource.getrlimit(getattr(resource, r)) for r in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_CPU")}
values = {
    "ssh_key": planted["ssh_key"][0], "hf_token": planted["hf_token"][0], "env_file": planted["env_file"][0],
    "shared_token": planted["shared_token"][0], "home": home, "project": project, "shared": shared,
    "sandbox_py": project / "fusechat" / "sandbox.py", "victim": victim.pid, "runner": os.getpid(),
    "port": tcp.getsockname()[1], "unix": unix_path, "abstract": abstract_name, "marker": MARKER, "secret": SECRET,
    "shm": SHM,
}


def survivors() -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and MARKER.encode() in (p / "cmdline").read_bytes():
                found.append(int(p.name))
        except OSError:
            pass
    return found


def uid_survivors() -> list[str]:
    """Processes of the runs' uids: as root, the fresh uids drawn for runs; as a normal user, any process
    of ours but this runner and its victim."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in (os.getpid(), victim.pid) or p.name in BEFORE:
            continue
        try:
            uid = int(next(line for line in (p / "status").read_text().splitlines() if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if (uid == os.getuid() != 0) or (os.getuid() == 0 and 0x60000000 <= uid < 0x61000000):
            try:
                found.append(f"{p.name} {(p / 'stat').read_text().split(')')[-1].split()[:2]} "
                             f"{(p / 'cmdline').read_bytes()[:80]!r}")
            except OSError:
                continue
    return found


BEFORE: set[str] = set()  # processes of our uid from before the first run (a previous suite's, exiting)
BEFORE.update(entry.split()[0] for entry in uid_survivors())


def left_in_tmp() -> list[str]:
    return [p.name for p in Path(tempfile.gettempdir()).glob(f"fusechat-sandbox-*.{os.getpid()}-*")]


def run(attack: dict) -> dict:
    code = string.Template(attack["code"]).safe_substitute(values)
    tests = string.Template(attack["tests"]).safe_substitute(values) if attack.get("tests") else attack.get("tests")
    return run_python(code, tests, timeout_s=attack.get("timeout", 5), memory_mb=512, disk_mb=16, max_procs=16,
                      max_output_bytes=attack.get("max_output_bytes", 1_000_000)).__dict__


results = {"isolation": isolation(), "uid": os.getuid(), "attacks": []}
for attack in ATTACKS:
    before = digest()
    connections.clear()
    neighbour = None
    if attack.get("neighbour"):  # another sandbox run, alive at the same time, holding a secret
        neighbour = threading.Thread(target=run, args=({"code": attack["neighbour"], "timeout": 4},))
        neighbour.start()
        time.sleep(1)
    r = run(attack)
    if neighbour:
        neighbour.join()
    later = [run({"code": "def f(x):\n    return x\n", "tests": "assert f(1) == 2\n"})["status"]
             for _ in range(attack.get("then_wrong", 0))]
    time.sleep(0.2)
    by_uid, in_tmp = uid_survivors(), left_in_tmp()
    left = survivors()
    for pid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    victim_alive = victim.poll() is None
    if not victim_alive:
        victim = start_victim()
        values["victim"] = victim.pid
    after = digest()
    results["attacks"].append({
        "name": attack["name"], "status": r["status"], "stdout": r["stdout"][-3000:], "stderr": r["stderr"][-3000:],
        "leaked": SECRET in r["stdout"] + r["stderr"], "escaped": "ESCAPED" in r["stdout"],
        "victim_alive": victim_alive, "connections": len(connections), "files_changed": before != after,
        "limits_changed": limits_before != {k: resource.getrlimit(getattr(resource, k)) for k in limits_before},
        "survivors": len(left), "later": later, "seconds": r["seconds"],
        "uid_survivors": by_uid, "left_in_tmp": in_tmp,
    })
victim.kill()
if "shm" in planted:
    planted["shm"][0].unlink()
print(json.dumps(results))
