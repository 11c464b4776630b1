"""What runs inside the sandbox: a judge and a worker, two processes of one cage. Never imported by
fusechat: sandbox.py runs this file's text with `python -I -S -c` (standard library only; nothing of
fusechat is mounted in the cage). argv: the fd of the job (code, tests, token, limits), the fd the
verdict goes out on.

Why two processes. A verdict decided in the interpreter that ran the model's code can be forged by
that code: it can patch what the tests call (`math.isclose`, `__builtins__`, `sys.meta_path`), re-patch
from a thread, or read the pass token out of its own memory. So the model's code and the tests never
share an interpreter:

- The **judge** is PID 1 of the cage. Before anything else it makes itself non-dumpable, so no other
  process of the cage can read or write its memory or file descriptors (`/proc/1/mem`, `/proc/1/fd`,
  `pidfd_getfd`, ptrace: the kernel refuses them all), and, being PID 1, it cannot be signalled from
  inside. It forks the worker before it reads the job, so the worker's memory never held the token or
  the tests. It runs the tests, in a fresh namespace of its own, and only it holds the verdict pipe.
- The **worker** runs the model's code as module `solution` and then answers requests: call this, get
  that attribute. Whatever it returns crosses as *data* (numbers, strings, bytes, lists, tuples, dicts,
  sets, and the like, copied): the judge compares those with the expected values itself, so a patched
  `==`, `isclose` or `unittest` in the worker changes nothing. The worker never sees an expected value:
  comparing one of its objects with a plain value is never asked of it.
- Other objects (functions, classes, instances of the solution's classes, generators) stay in the worker
  and the judge holds a handle: calling it, reading its attributes, iterating it, comparing it with
  another of the worker's objects is a request. What such an object says about *itself* (its `__eq__`
  with another of its kind, `__len__`, `__bool__`) is the solution's word; equal to a plain value it
  never is. Test callbacks (a lambda passed to the solution) work the other way: the worker may call
  functions and classes the tests defined, and data constructors, nothing else of the judge's.
- Arguments that are lists, dicts, sets or bytearrays come back after each call, so in-place solutions
  ("sort the list in place") are judged on what they did; the solution may read and set the public
  attributes of the tests' own objects (a linked list the tests built, reversed in place).
- The tests run as the main program, in a namespace of their own that holds the solution's names but
  never one that would hide a built-in (`def abs(x): return 0`) or a dunder (`__builtins__`); a module
  the solution imported (`math`), or a function from one (`from math import isclose`), is the judge's
  own copy when it is one of the plain standard-library modules below. A `__main__` guard runs,
  `unittest.main()` finds the tests' cases and passes only when they pass, and `def test_x():`
  functions the file never calls are called, as pytest would.
- An exception from the solution arrives as the first built-in class in its MRO (`class Bad(ValueError)`
  is caught by `except ValueError`); StopIteration only ends an iteration.

Known limits: tests see a snapshot of the solution's module-level data taken after it loaded; a name the
tests use without defining or importing it is the solution's word (a helper the solution defines, like
`poly` in HumanEval/32, is trusted as it always was); tests that introspect the solution (`inspect`,
`isinstance` against its classes), or `eval` what it returns, do not work or are not protected; a
function named like a built-in (`def filter(...)`) is hidden from the tests by the built-in.

The judge also watches the whole cage (as PID 1 it sees exactly the cage's processes): every 10 ms it
adds up the resident memory of all of them, and counts the files in /tmp and /dev/shm; past the run's
`memory_mb` or `max_files` it kills every process of the cage and says so. It reaps the orphans the
solution leaves.
"""

import json  # before the fork: the worker inherits it instead of importing it again
import os
import sys

_PR_SET_DUMPABLE = 4
_WRITE = os.write  # bound before the model's code runs: replacing os.write does not silence the worker
_MAX_LINE = 1 << 28  # one message, 256 MB at most
_DEPTH = 200  # nesting of one value


class Gone(BaseException):
    """The other process died or spoke out of turn (not an Exception: tests' `except Exception` cannot hide it)."""


class SolutionError(Exception):
    """An exception of a type the judge does not know (the solution's own class)."""


def main():
    job_fd, report_fd = int(sys.argv[1]), int(sys.argv[2])
    if os.environ.get("FUSECHAT_SANDBOX_SITE"):  # packages bound in read-only for the tests (run_python's `packages`)
        sys.path[:0] = os.environ["FUSECHAT_SANDBOX_SITE"].split(os.pathsep)
    import _signal  # the C module: `signal` imports enum, 5 ms of a run
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        os.write(2, b"sandbox: the judge cannot protect its memory (prctl failed)\n")
        os._exit(1)
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)  # as PID 1 with no handler: no signal from inside arrives
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    worker_pid = os.fork()  # before the job is read: the worker's copy of memory holds no token, no tests
    if worker_pid == 0:
        for fd in (job_fd, report_fd, down_w, up_r):
            os.close(fd)
        _worker(Channel(down_r, up_w, judge=False))
    os.close(down_r)
    os.close(up_w)
    _judge(job_fd, report_fd, worker_pid, Channel(up_r, down_w, judge=True))


# --- the channel: JSON lines, values tagged by type --------------------------------------------------------

class Remote:
    """A handle on an object of the other process; every use is a request."""

    __slots__ = ("_channel", "_id", "__weakref__")

    def __init__(self, channel, ident):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_id", ident)

    def _ask(self, op, *args, **extra):
        channel = self._channel
        return channel.decoded(channel.request({"op": op, "id": self._id, "args": [channel.encode(a) for a in args], **extra})["ok"])

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._id, args, kwargs)

    def __getattr__(self, name):
        return self._ask("getattr", name=name)

    def __setattr__(self, name, value):
        self._ask("setattr", value, name=name)

    def __delattr__(self, name):
        self._ask("delattr", name=name)

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __setitem__(self, key, value):
        self._ask("setitem", key, value)

    def __delitem__(self, key):
        self._ask("delitem", key)

    def __len__(self):
        return self._ask("len")

    def __bool__(self):
        return self._ask("bool")

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __contains__(self, item):
        if isinstance(item, Remote) and item._channel is self._channel:
            return self._ask("contains", item)
        return any(x is item or x == item for x in self)  # judged here: the item may be an expected value

    def __repr__(self):
        return self._ask("repr")

    def __str__(self):
        return self._ask("str")

    def __hash__(self):
        return hash((id(self._channel), self._id))

    def __int__(self):
        return self._ask("int")

    def __float__(self):
        return self._ask("float")

    def __index__(self):
        return self._ask("index")

    def _compare(self, other, op):
        if isinstance(other, Remote) and other._channel is self._channel:
            return self._ask("compare", other, name=op)
        return NotImplemented  # an expected value is never shown to the other side

    def __eq__(self, other):
        if other is self:
            return True
        answer = self._compare(other, "eq")
        return False if answer is NotImplemented else answer

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self._compare(other, "lt")

    def __le__(self, other):
        return self._compare(other, "le")

    def __gt__(self, other):
        return self._compare(other, "gt")

    def __ge__(self, other):
        return self._compare(other, "ge")

    def __neg__(self):
        return self._ask("unary", name="neg")

    def __pos__(self):
        return self._ask("unary", name="pos")

    def __abs__(self):
        return self._ask("unary", name="abs")


def _binary(name, reflected):
    def method(self, other):
        if isinstance(other, Remote) and other._channel is self._channel:
            return self._ask("binary", other, name=name, reflected=reflected)
        return NotImplemented  # `expected - answer` would show the other side the expected value
    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift", "matmul"):
    setattr(Remote, f"__{_op}__", _binary(_op, False))
    setattr(Remote, f"__r{_op}__", _binary(_op, True))


class Channel:
    """One end of the judge–worker conversation. Strictly request/reply; while waiting for its reply a
    side answers the other's nested requests (a callback into the tests, a call back into the solution)."""

    def __init__(self, read_fd, write_fd, judge):
        self.reader = os.fdopen(read_fd, "rb")
        self.write_fd = write_fd
        self.judge = judge
        self.mine = []  # objects of this side the other holds handles on, by index
        self.ids = {}  # id(object) -> index (the objects are kept alive by `mine`)
        self.theirs = {}  # index -> Remote, so one object of theirs is one handle here

    # sending and receiving
    def send(self, message):
        data = memoryview(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        while data:
            try:
                data = data[_WRITE(self.write_fd, data):]
            except OSError:
                raise Gone("the other side of the sandbox is gone") from None

    def receive(self):
        line = self.reader.readline(_MAX_LINE)
        if not line.endswith(b"\n"):
            raise Gone("the other side of the sandbox is gone" if not line else "a message too long")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise Gone("a garbled message") from None
        if not isinstance(message, dict):
            raise Gone("a garbled message")
        return message

    def request(self, message):
        iterating = message.get("op") == "next"
        self.send(message)
        while True:
            message = self.receive()
            if "op" in message:
                self.serve(message)
                continue
            if "raise" in message:
                raise self._exception(message["raise"], stop=iterating)
            if "ok" not in message:
                raise Gone("a garbled message")
            return message

    def decoded(self, value):
        """A value from the other side; any failure to read it is the channel's, never the tests' to catch."""
        try:
            return self.decode(value)
        except Gone:
            raise
        except Exception:  # noqa: BLE001 (MemoryError, RecursionError, a dict key that is not hashable...)
            raise Gone("a value that cannot be read") from None

    def call(self, ident, args, kwargs):
        sent_args = [self.encode(a) for a in args]
        sent_kwargs = [[k, self.encode(v)] for k, v in kwargs.items()]
        reply = self.request({"op": "call", "id": ident, "args": sent_args, "kwargs": sent_kwargs})
        after = reply.get("after") or []
        if not isinstance(after, list):
            raise Gone("a garbled message")
        for arg, now in zip(list(args) + list(kwargs.values()), after):
            if now is not None:
                _refill(arg, self.decoded(now))
        return self.decoded(reply["ok"])

    # values
    def encode(self, value, depth=0):
        """Plain data as tagged JSON; anything else as a handle ("ref") on this side's object."""
        if depth > _DEPTH:
            raise ValueError("a value nested too deeply (or containing itself) to copy out of the sandbox")
        kind = type(value)
        if value is None or kind is bool or kind is str:
            return value
        if kind is int:
            return value if -(1 << 62) < value < (1 << 62) else {"int": format(value, "x")}
        if kind is float:
            return {"float": repr(value)} if value != value or value in (float("inf"), float("-inf")) else value
        if isinstance(value, Remote) and value._channel is self:
            return {"yours": value._id}
        d = depth + 1
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return self.encode(int(value), d)
        if isinstance(value, float):
            return self.encode(float(value), d)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray)):
            return {"bytearray" if isinstance(value, bytearray) else "bytes": bytes(value).hex()}
        if isinstance(value, complex):
            return {"complex": [self.encode(value.real, d), self.encode(value.imag, d)]}
        if isinstance(value, tuple) and hasattr(type(value), "_fields") and all(isinstance(f, str) for f in value._fields):
            return {"namedtuple": [str(kind.__name__), list(value._fields), [self.encode(v, d) for v in value]]}
        if isinstance(value, (list, tuple, set, frozenset)):
            tag = next(t for t in (list, tuple, frozenset, set) if isinstance(value, t)).__name__
            return {tag: [self.encode(v, d) for v in value]}
        if kind in (type({}.keys()), type({}.items())):
            return {"set": [self.encode(v, d) for v in value]}  # views compare like sets
        if kind is type({}.values()):
            return {"list": [self.encode(v, d) for v in value]}
        if isinstance(value, dict):
            return {"dict": [[self.encode(k, d), self.encode(v, d)] for k, v in value.items()]}
        if isinstance(value, range):
            return {"range": [value.start, value.stop, value.step]}
        module, name = getattr(kind, "__module__", ""), getattr(kind, "__name__", "")
        if (module, name) == ("collections", "deque"):
            return {"deque": [self.encode(v, d) for v in value]}
        if (module, name) == ("fractions", "Fraction"):
            return {"fraction": [self.encode(value.numerator, d), self.encode(value.denominator, d)]}
        if (module, name) == ("decimal", "Decimal"):
            return {"decimal": str(value)}
        if module == "datetime" and name in ("date", "datetime", "time"):
            return {name: value.isoformat()}
        if (module, name) == ("datetime", "timedelta"):
            return {"timedelta": [value.days, value.seconds, value.microseconds]}
        key = id(value)
        if key not in self.ids:
            self.ids[key] = len(self.mine)
            self.mine.append(value)
        return {"ref": self.ids[key]}

    def decode(self, value, depth=0):
        if depth > _DEPTH:
            raise Gone("a value nested too deeply")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if not isinstance(value, dict) or len(value) != 1:
            raise Gone("a garbled value")
        (tag, body), = value.items()
        d = depth + 1
        try:
            if tag == "yours":
                return self.mine[body]
            if tag == "ref":
                if body not in self.theirs:
                    self.theirs[body] = Remote(self, int(body))
                return self.theirs[body]
            if tag == "int":
                return int(body, 16)
            if tag == "float":
                return float(body)
            if tag in ("list", "tuple", "set", "frozenset"):
                return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](self.decode(v, d) for v in body)
            if tag == "dict":
                return {self.decode(k, d): self.decode(v, d) for k, v in body}
            if tag == "bytes":
                return bytes.fromhex(body)
            if tag == "bytearray":
                return bytearray.fromhex(body)
            if tag == "complex":
                return complex(float(self.decode(body[0], d)), float(self.decode(body[1], d)))
            if tag == "range":
                return range(int(body[0]), int(body[1]), int(body[2]))
            if tag == "deque":
                import collections
                return collections.deque(self.decode(v, d) for v in body)
            if tag == "fraction":
                import fractions
                return fractions.Fraction(int(self.decode(body[0], d)), int(self.decode(body[1], d)))
            if tag == "decimal":
                import decimal
                return decimal.Decimal(str(body))
            if tag == "namedtuple":
                import collections
                fields = [str(f) for f in body[1]]
                return collections.namedtuple(str(body[0]), fields, rename=True)(*(self.decode(v, d) for v in body[2]))
            if tag in ("date", "datetime", "time"):
                import datetime
                return getattr(datetime, tag).fromisoformat(str(body))
            if tag == "timedelta":
                import datetime
                return datetime.timedelta(int(body[0]), int(body[1]), int(body[2]))
            if tag == "module" and self.judge:  # a module the solution imported: the judge's own copy
                return _own_module(str(body))
            if tag == "import" and self.judge:  # `from math import isclose` in the solution: the judge's own
                found = _own_module(str(body[0]))
                for part in str(body[1]).split("."):
                    found = getattr(found, part)
                return found
        except Gone:
            raise
        except Exception:
            raise Gone("a garbled value") from None
        raise Gone("a garbled value")

    def _exception(self, raised, stop=False):
        """The exception the other side raised, as the first built-in exception class in its class's MRO
        (`class Bad(ValueError)` arrives as a ValueError). StopIteration only ends an iteration (`next`):
        from anything else it would silently end the tests' own loops."""
        import builtins

        names, text = (raised[0], str(raised[1])) if isinstance(raised, list) and len(raised) == 2 else ([], "")
        names = [str(n) for n in names] if isinstance(names, list) else [str(names)]
        for name in names:
            kind = getattr(builtins, name, None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                continue
            if issubclass(kind, StopIteration) and not stop:
                return RuntimeError(f"{names[0]} raised by the solution outside an iteration: {text}")
            try:
                return kind(text)
            except Exception:  # noqa: BLE001 (a constructor that wants more arguments)
                break
        return SolutionError(f"{names[0] if names else 'an exception'}: {text}")

    # answering the other side
    def serve(self, message):
        try:
            obj = self.mine[message["id"]]
            op = message["op"]
            if self.judge:
                _judge_allows(op, obj, message)
            args = [self.decode(a) for a in message.get("args", [])]
            after = None
            if op == "call":
                kwargs = {str(k): self.decode(v) for k, v in message.get("kwargs", [])}
                result = obj(*args, **kwargs)
                passed = args + list(kwargs.values())
                sent = message.get("args", []) + [v for _, v in message.get("kwargs", [])]
                after = [None] * len(passed)
                for i, (arg, before) in enumerate(zip(passed, sent)):
                    if isinstance(arg, (list, dict, set, bytearray)):
                        now = self.encode(arg)
                        if now != before:
                            after[i] = now
            else:
                result = _operate(op, obj, args, message)
            reply = {"ok": self.encode(result), "after": after}
        except Gone:
            raise
        except BaseException as e:  # noqa: BLE001 (whatever the code raised goes back to the caller)
            names = [k.__name__ for k in type(e).__mro__ if isinstance(k.__name__, str)]
            try:
                text = "" if isinstance(e, StopIteration) else str(e)[:2000]
            except BaseException:  # noqa: BLE001 (a __str__ that raises)
                text = ""
            reply = {"raise": [names, text]}
        self.send(reply)


def _operate(op, obj, args, message):
    import operator

    name = message.get("name")
    if op == "getattr":
        return getattr(obj, name)
    if op == "setattr":
        return setattr(obj, name, args[0])
    if op == "delattr":
        return delattr(obj, name)
    if op == "getitem":
        return obj[args[0]]
    if op == "setitem":
        obj[args[0]] = args[1]
        return None
    if op == "delitem":
        del obj[args[0]]
        return None
    if op == "len":
        return len(obj)
    if op == "bool":
        return bool(obj)
    if op == "iter":
        return iter(obj)
    if op == "next":
        return next(obj)
    if op == "contains":
        return args[0] in obj
    if op == "repr":
        return repr(obj)
    if op == "str":
        return str(obj)
    if op in ("int", "float", "index"):
        return {"int": int, "float": float, "index": operator.index}[op](obj)
    if op == "compare" and name in ("eq", "lt", "le", "gt", "ge"):
        return bool(getattr(operator, name)(obj, args[0]))
    if op == "unary" and name in ("neg", "pos", "abs"):
        return getattr(operator, name)(obj)
    if op == "binary" and name in _BINARY:
        a, b = (args[0], obj) if message.get("reflected") else (obj, args[0])
        return getattr(operator, name + "_" if name in ("and", "or") else name)(a, b)
    raise TypeError(f"the sandbox does not forward {op!r}")


_BINARY = {"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift", "matmul"}
_JUDGE_OPS = {"call", "iter", "next", "len", "bool", "repr", "str", "getattr", "setattr"}


def _judge_allows(op, obj, message):
    """What the worker may do with the judge's objects: call what the tests defined (and data types),
    iterate, read the tests' own objects' public attributes. Nothing that reaches the judge's internals."""
    if op not in _JUDGE_OPS:
        raise TypeError(f"the tests' objects cannot be asked {op!r}")
    if op == "call" and not (_made_by_tests(obj) or any(obj is t for t in _DATA_TYPES + _DATA_FUNCTIONS)
                             or getattr(obj, "__objclass__", None) in _DATA_TYPES):  # str.lower, list.sort...
        raise TypeError("only the tests' own functions and classes can be called from the solution")
    if op in ("getattr", "setattr") and (str(message.get("name", "_")).startswith("_") or not _made_by_tests(type(obj))):
        raise TypeError("only public attributes of the tests' own objects can be used by the solution")


_DATA_TYPES = (int, float, str, bool, list, tuple, dict, set, frozenset, bytes, complex)
_DATA_FUNCTIONS = (len, abs, min, max, sum, sorted)


def _made_by_tests(obj):
    """A function, method or class the tests' code defined (tests.py runs as module __main__)."""
    code = getattr(getattr(obj, "__func__", obj), "__code__", None)
    if isinstance(code, type(_made_by_tests.__code__)):
        return code.co_filename == "tests.py"
    return isinstance(obj, type) and obj.__module__ == "__main__" and obj not in (Remote, Channel, Gone, SolutionError)


# Modules whose functions a solution may hand the tests by name (`from math import isclose`): the judge uses
# its own copy, so a patched one in the worker decides nothing. Others stay handles.
_PURE_MODULES = {"math", "cmath", "statistics", "fractions", "decimal", "operator", "functools", "itertools",
                 "collections", "heapq", "bisect", "re", "string", "typing", "datetime", "copy", "numbers", "json",
                 "textwrap", "unicodedata", "array", "enum", "dataclasses", "abc", "random", "struct", "unittest",
                 "collections.abc", "difflib", "calendar", "hashlib", "base64", "binascii", "zlib", "time"}


def _own_module(name):
    import importlib

    if name not in _PURE_MODULES:
        raise Gone("a module the judge does not load")
    return importlib.import_module(name)


def _refill(original, now):
    """Give a container the contents the other side left in its copy."""
    if isinstance(original, (list, bytearray)) and isinstance(now, (list, bytearray)):
        original[:] = now
    elif isinstance(original, dict) and isinstance(now, dict):
        original.clear()
        original.update(now)
    elif isinstance(original, set) and isinstance(now, set):
        original.clear()
        original.update(now)


# --- the worker: runs the model's code, answers ---------------------------------------------------------

def _by_name(value):
    """A module of _PURE_MODULES, or a function or class from one, named instead of sent as a handle."""
    import types

    if isinstance(value, types.ModuleType):
        return {"module": value.__name__} if value.__name__ in _PURE_MODULES else None
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if module in _PURE_MODULES and isinstance(qualname, str) and "<" not in qualname and callable(value):
        try:
            found = sys.modules[module]
            for part in qualname.split("."):
                found = getattr(found, part)
        except (KeyError, AttributeError):
            return None
        if found is value:
            return {"import": [module, qualname]}
    return None


def _worker(channel):
    import resource
    import types

    try:
        setup = channel.receive()
        for name, soft, hard in setup["limits"]:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        module = types.ModuleType("solution")
        sys.modules["solution"] = module
        code = setup["code"]
        if setup.get("stdin") is not None:  # the program's standard input (a contest problem's test case)
            import io

            sys.stdin = io.TextIOWrapper(io.BytesIO(setup["stdin"].encode("utf-8")), encoding="utf-8")
    except BaseException:  # noqa: BLE001 (the judge went away)
        os._exit(1)
    outcome = "raised"
    try:
        exec(compile(code, "solution.py", "exec"), module.__dict__)
        outcome = "ran"
    except SystemExit as e:
        outcome = "ran" if not setup["tests"] and e.code in (None, 0) else f"exited (SystemExit({e.code!r}))"
    except BaseException:  # noqa: BLE001 (the program's own error, printed for whoever reads the log)
        import traceback
        traceback.print_exc()
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    try:
        if outcome != "ran" or not setup["tests"]:
            channel.send({"outcome": outcome})
            os._exit(0)
        names = []
        for name, value in list(module.__dict__.items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            try:
                names.append([name, _by_name(value) or channel.encode(value)])
            except ValueError:  # data that cannot be copied (it contains itself): a handle instead
                channel.ids[id(value)] = len(channel.mine)
                channel.mine.append(value)
                names.append([name, {"ref": channel.ids[id(value)]}])
        channel.send({"outcome": "ran", "names": names})
        while True:
            channel.serve(channel.receive())
    except BaseException:  # noqa: BLE001 (the judge is done or gone)
        os._exit(0)


# --- the judge: runs the tests, never the model's code ------------------------------------------------------

def _judge(job_fd, report_fd, worker_pid, channel):
    import _thread
    import builtins
    import resource
    import types

    with open(job_fd, "rb") as f:
        job = json.loads(f.read())
    token, tests, watch = job["token"].encode(), job["tests"], job.get("watch")

    def verdict(word, code=0):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os.write(report_fd, word + b"\n")
        os._exit(code)

    def fail(message):
        if _worker_status(worker_pid) == "timeout":
            verdict(b"timeout", 1)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(1)

    try:
        channel.send({"limits": job["limits"], "code": job["code"], "tests": tests is not None,
                      "stdin": job.get("stdin")})
    except Gone:
        fail("sandbox: the program ended before it started")
    for name, soft, hard in job["limits"]:
        if name != "RLIMIT_NPROC":  # the judge must still be able to reap and watch
            resource.setrlimit(getattr(resource, name), (soft, hard))
    del job
    if watch:
        _thread.start_new_thread(_watch, (watch, worker_pid, verdict))
    try:
        loaded = channel.receive()
    except Gone:
        fail("sandbox: the program ended before its tests ran")
    outcome = loaded.get("outcome")
    if outcome != "ran":
        fail("sandbox: the program raised before its tests ran" if outcome == "raised" else
             f"sandbox: the program {outcome} before its tests ran" if str(outcome).startswith("exited") else
             "sandbox: the program ended before its tests ran")
    if tests is None:
        verdict(token)
    try:
        # The tests run as the main program (a `__main__` guard runs, `unittest.main()` finds their cases),
        # seeing the solution's names, except those that would hide a built-in or a dunder from them.
        tests_module = types.ModuleType("__main__")
        namespace = tests_module.__dict__
        solution = types.ModuleType("solution")
        for name, value in loaded["names"]:
            name = str(name)
            if not (name.startswith("__") or name in builtins.__dict__):
                namespace[name] = channel.decoded(value)
                setattr(solution, name, namespace[name])
        namespace["__builtins__"] = builtins
        sys.modules["solution"], sys.modules["__main__"] = solution, tests_module
        sys.argv = ["tests.py"]
        try:
            exec(compile(tests, "tests.py", "exec"), namespace)
            for name, test in list(namespace.items()):  # pytest-style `def test_x():` the file never calls
                code = getattr(test, "__code__", None)
                if (name == "test" or name.startswith("test_")) and _made_by_tests(test) and code is not None \
                        and code.co_argcount == 0:
                    test()
        except SystemExit as e:  # unittest.main() ends this way: False/0/None when every test passed
            if e.code not in (None, 0, False):
                raise
    except BaseException:  # noqa: BLE001 (a failed assert, an error, the worker gone: all fail)
        import traceback
        traceback.print_exc()
        fail("sandbox: the tests failed")
    verdict(token)


def _worker_status(pid):
    """'timeout' when the worker was stopped by its CPU limit, else None (waits a moment for it to end)."""
    import _signal
    import time

    for _ in range(50):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return "timeout" if os.WIFSIGNALED(status) and os.WTERMSIG(status) == _signal.SIGXCPU else None
        time.sleep(0.01)
    return None


def _watch(watch, worker_pid, verdict):
    """The whole cage's memory and files, every 10 ms; orphans reaped (we are its PID 1)."""
    import _signal
    import time

    page = os.sysconf("SC_PAGE_SIZE")
    limit, max_files = watch["memory_bytes"], watch["max_files"]

    def files():
        used = 0
        for folder in ("/tmp", "/dev/shm"):
            try:
                s = os.statvfs(folder)
                used += s.f_files - s.f_ffree
            except OSError:
                pass
        return used

    baseline = files()
    while True:
        try:
            over = _over(limit, max_files, baseline, files, page, worker_pid)
        except Exception:  # noqa: BLE001 (a look that failed: look again, never stop watching)
            over = None
        if over:
            try:
                os.kill(-1, _signal.SIGKILL)  # PID 1: every other process of the cage
            except OSError:
                pass
            verdict(over, 1)
        time.sleep(0.01)


def _over(limit, max_files, baseline, files, page, worker_pid):
    """b"memory" or b"output_limit" when the cage is past a limit, else None; reaps orphans on the way."""
    resident = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        resident += int(fields[21]) * page
        if fields[0] == b"Z" and int(entry) not in (1, worker_pid):
            try:
                os.waitpid(int(entry), os.WNOHANG)  # an orphan the solution left: ours to reap
            except ChildProcessError:
                pass
    return b"memory" if resident > limit else b"output_limit" if files() - baseline > max_files else None


if __name__ == "__main__":
    main()
