"""The sandbox's adversarial suite: each attack is contained, and honest code still runs."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from fusechat.sandbox import run_python


def test_honest_code_runs_and_tests_decide():
    ok = run_python("import math, collections\ndef f(x):\n    return math.isqrt(x)\nassert f(17) == 4\nprint('fine')")
    assert ok.status == "passed" and ok.stdout == "fine\n"
    bad = run_python("def f(x):\n    return x\nassert f(1) == 2")
    assert bad.status == "failed" and "AssertionError" in bad.stderr


def test_infinite_loop_is_stopped():
    started = time.time()
    r = run_python("while True:\n    pass", timeout_s=2)
    assert r.status == "timeout" and time.time() - started < 10


def test_cpu_limit_reports_a_timeout_not_a_failure():
    # Two threads hashing (hashlib releases the GIL) spend CPU time faster than wall time, so the
    # CPU limit is met before the wall clock. At a hard limit equal to the soft one the kernel
    # sent SIGKILL and this read as "failed".
    code = ("import hashlib, threading\n"
            "def burn():\n    data = bytes(1 << 20)\n    while True:\n        hashlib.sha256(data).digest()\n"
            "for _ in range(2):\n    threading.Thread(target=burn, daemon=True).start()\n"
            "threading.Event().wait()\n")
    r = run_python(code, timeout_s=3)
    assert r.status == "timeout" and r.seconds < 10


def test_sleeping_forever_is_stopped_by_wall_clock():
    r = run_python("import time\ntime.sleep(60)", timeout_s=1)
    assert r.status == "timeout" and r.seconds < 5


def test_fork_bomb_is_contained():
    r = run_python("import os\nwhile True:\n    os.fork()", timeout_s=3)
    assert r.status != "passed"
    time.sleep(0.2)
    # No leftover processes running the sandboxed program.
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"fusechat-sandbox" in _cmdline(p)]
    assert not leftovers


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_memory_bomb_is_contained():
    r = run_python("x = bytearray(4 * 1024**3)\nprint('allocated')", memory_mb=256)
    assert r.status == "memory" and "allocated" not in r.stdout


def test_huge_output_is_capped():
    r = run_python("while True:\n    print('x' * 100000)", max_output_bytes=200_000, timeout_s=5)
    assert r.status == "output_limit" and len(r.stdout) <= 200_000


def test_huge_file_is_capped():
    r = run_python("with open('big', 'w') as f:\n    while True:\n        f.write('x' * 100000)", max_output_bytes=200_000)
    assert r.status == "output_limit"


def test_no_network_even_to_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: _accept(server, accepted))
    thread.start()
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')\nprint('connected')"
    r = run_python(code, timeout_s=5)
    thread.join()
    server.close()
    assert r.status == "failed" and "connected" not in r.stdout
    assert not accepted


def _accept(server, accepted):
    try:
        accepted.append(server.accept())
    except OSError:
        pass


def test_cannot_write_outside_its_folder(tmp_path):
    target = tmp_path / "escape.txt"
    os.chmod(tmp_path, 0o777)  # even a world-writable folder is off limits
    r = run_python(f"open({str(target)!r}, 'w').write('pwned')")
    assert r.status == "failed" and not target.exists()
    inside = run_python("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())")
    assert inside.status == "passed" and inside.stdout == "ok\n"


def test_cannot_delete_outside_its_folder(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    os.chmod(tmp_path, 0o777)
    run_python(f"import os\nos.remove({str(victim)!r})")
    assert victim.read_text() == "precious"


def test_cannot_read_parent_environment(monkeypatch):
    monkeypatch.setenv("FUSECHAT_SECRET", "hunter2")
    code = (
        "import os\nprint(dict(os.environ))\n"
        "try:\n    print(open('/proc/%d/environ' % os.getppid(), 'rb').read())\nexcept Exception as e:\n    print('blocked', type(e).__name__)"
    )
    r = run_python(code)
    assert "hunter2" not in r.stdout and "blocked" in r.stdout


def test_cannot_signal_its_parent():
    r = run_python("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\nprint('sent')")
    assert r.status == "failed" and "sent" not in r.stdout  # and we, the parent, are still alive


def test_cannot_spawn_processes_or_load_native_code():
    for code in ("import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')", "import ctypes"):
        assert run_python(code).status == "failed", code


def test_throwaway_folder_is_removed():
    r = run_python("import os\nprint(os.getcwd())")
    assert r.status == "passed" and not Path(r.stdout.strip()).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop happens only when started as root")
def test_runs_as_nobody_when_started_as_root():
    assert run_python("import os\nprint(os.getuid())").stdout.strip() == "65534"
