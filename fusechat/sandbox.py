"""Running untrusted, model-written Python code.

Each run gets its own process (its own session, killed as a group), a throw-away folder, a
scrubbed environment and limits on CPU time, memory, output and file size. Two layers cage it:

1. The operating system: rlimits; a fresh network namespace with no interfaces (root, or
   unprivileged user namespaces); when started as root, the code runs as `nobody`, so it can
   neither write outside its folder, nor signal or read the parent, nor fork without limit.
2. Python's audit hooks, installed before the code runs and impossible to remove from Python:
   no sockets, no subprocesses or forks, no signals to other processes, no ctypes, no writes
   outside the folder, no reading other processes' environments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
PRELOAD = ("math", "cmath", "itertools", "functools", "collections", "collections.abc", "heapq", "bisect",
           "re", "string", "typing", "dataclasses", "json", "random", "statistics", "fractions", "decimal",
           "operator", "copy", "enum", "datetime", "array", "textwrap", "unicodedata", "hashlib", "io",
           "numbers", "abc", "contextlib", "types", "pprint", "struct", "time", "calendar", "base64",
           "traceback", "warnings", "inspect", "ast", "difflib", "unittest", "threading", "queue")

# Runs in the child before the untrusted code; its config arrives as argv[1] (JSON).
_BOOT = r'''
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
work = cfg["workdir"]
lim = lambda r, v: resource.setrlimit(r, (v, v))
# Soft below hard: the kernel sends SIGXCPU at the soft limit (we report "timeout"); at equal
# limits it sends SIGKILL instead, which cannot be told apart from other kills.
resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 1))
lim(resource.RLIMIT_AS, cfg["memory_bytes"])
lim(resource.RLIMIT_FSIZE, cfg["max_file_bytes"])
lim(resource.RLIMIT_CORE, 0)
lim(resource.RLIMIT_NOFILE, 64)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
root = os.geteuid() == 0
net_isolated = libc.unshare(CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNET) == 0
del libc, ctypes
for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
    del sys.modules[name]
if root:
    # After the switch to `nobody` the interpreter's own folder may be unreadable (a Python
    # under /root): import the standard library that solutions commonly use while we still can.
    for name in cfg["preload"]:
        try:
            __import__(name)
        except ImportError:
            pass
    lim(resource.RLIMIT_NPROC, cfg["max_procs"])
    os.setgroups([])
    os.setgid(cfg["uid"])
    os.setuid(cfg["uid"])
os.chdir(work)

def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "/proc/self/fd/%d" % path)
    except Exception:
        return False
    return p == work or p.startswith(work + os.sep)

_BLOCKED = ("socket.", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
            "subprocess.", "pty.", "ctypes.", "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid")
_PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _guard(event, args):
    if event == "os.kill" and args and args[0] == os.getpid():
        return
    if event.startswith(_BLOCKED):
        raise PermissionError("sandbox: %s is not allowed" % event)
    if event == "import" and args and str(args[0]).split(".")[0] in ("ctypes", "_ctypes"):
        raise PermissionError("sandbox: ctypes is not allowed")
    if event == "open":
        path, mode, flags = args
        text = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
        if text.startswith("/proc/") and not text.startswith("/proc/self/"):
            raise PermissionError("sandbox: other processes are off limits")
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & _WRITE_FLAGS
        if writing and not _inside(path):
            raise PermissionError("sandbox: writing outside the sandbox folder")
    if event in _PATH_EVENTS:
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a):
                raise PermissionError("sandbox: %s outside the sandbox folder" % event)

sys.addaudithook(_guard)
source = open(os.path.join(work, "main.py"), encoding="utf-8").read()
globs = {"__name__": "__main__", "__builtins__": __builtins__}
del cfg, lim, root, json, resource
exec(compile(source, "main.py", "exec"), globs)
'''


@dataclass
class SandboxResult:
    status: str  # passed | failed | timeout | memory | output_limit | error
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_python(code: str, timeout_s: float = 10, memory_mb: int = 1024,
               max_output_bytes: int = 1_000_000, max_procs: int = 16) -> SandboxResult:
    """Run `code` as a Python program in the sandbox; `max_output_bytes` also caps any file it writes."""
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="fusechat-sandbox-"))
    work = base / "work"  # the code's folder; `base` (parent-only) holds the boot script and outputs
    work.mkdir()
    (work / "main.py").write_text(code, encoding="utf-8")
    (base / "boot.py").write_text(_BOOT, encoding="utf-8")
    os.chmod(base, 0o711)
    if root:
        os.chown(work, NOBODY, NOBODY)
        os.chown(work / "main.py", NOBODY, NOBODY)
    config = {
        "workdir": str(work.resolve()),
        # A second above the wall clock, so single-threaded code meets the wall limit first.
        "cpu_s": int(timeout_s + 0.999) + 1,
        "memory_bytes": memory_mb * 1024 * 1024,
        "max_file_bytes": max_output_bytes,
        "max_procs": max_procs,
        "uid": NOBODY,
        "preload": PRELOAD,
    }
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    started = time.time()
    with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(base / "boot.py"), json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=work, env=env,
            start_new_session=True, close_fds=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children it may have left
            except ProcessLookupError:
                pass
            proc.wait()
        seconds = time.time() - started
        output_full = max(os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size) >= max_output_bytes
        out.seek(0)
        err.seek(0)
        stdout = out.read(max_output_bytes).decode("utf-8", "replace")
        stderr = err.read(max_output_bytes).decode("utf-8", "replace")
    shutil.rmtree(base, ignore_errors=True)

    rc = proc.returncode
    if timed_out or rc == -signal.SIGXCPU:
        status = "timeout"
    elif rc == -signal.SIGXFSZ or output_full or "File too large" in stderr:
        status = "output_limit"  # Python ignores SIGXFSZ: the write fails with EFBIG instead
    elif rc == 0:
        status = "passed"
    elif "MemoryError" in stderr:
        status = "memory"
    else:
        status = "failed"
    return SandboxResult(status, rc, stdout, stderr, round(seconds, 3))
