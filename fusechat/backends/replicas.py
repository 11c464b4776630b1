"""A source's model in child processes: one engine per group of GPUs, the prompts shared out among them.

Why children: a vLLM engine's memory is given back for certain only when its process ends (vLLM's own
tracker calls freeing it in-process unreliable: vllm-project/vllm#21073, #23793; worse with tensor
parallelism, #1908), so each source runs in processes of its own and the next source finds clean GPUs.
Why several: a source at tensor-parallel size 1 on 8 GPUs is 8 engines in data parallel. Each engine gets
whole prompts (a prompt's N samples on one engine share its prefix cache), about as many sequences each.

A child is `python -m fusechat.backends.replica FD` with its devices in the environment (CUDA_VISIBLE_DEVICES,
or vLLM-CPU's core binding); it opens the source in-process and answers one JSON line per request on a
socket (stdout stays vLLM's log). A child that dies takes its batch with it: the stage stops in one line
and its finished shards are kept.

Why not vLLM's own data parallelism (`data_parallel_size` in LLM): in the versions we read it is for
`vllm serve` and Ray deployments, and it still keeps the engines in this process's lifetime.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import asdict

from fusechat import FusechatError
from fusechat.backends.base import Backend, Generation, Request
from fusechat.hardware import usable_cores


def device_groups(replicas: int, tensor_parallel: int, gpus: int) -> list[dict[str, str]]:
    """Each replica's environment: its `tensor_parallel` GPUs, or on a CPU its own share of the cores
    (vLLM-CPU binds its threads to cores; two engines on the same ones would fight)."""
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
        return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[k * tensor_parallel:(k + 1) * tensor_parallel])}
                for k in range(replicas)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(usable_cores()))
    per = max(1, len(cores) // replicas)
    groups = [cores[(k * per) % len(cores):][:per] for k in range(replicas)]
    return [{"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, g)), "OMP_NUM_THREADS": str(len(g))} for g in groups]


def share_out(requests: list[Request], replicas: int) -> list[list[int]]:
    """Request indices per replica: a prompt's requests stay together, prompts go to the least loaded."""
    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        by_prompt.setdefault(json.dumps(r.messages, sort_keys=True), []).append(i)
    shares: list[list[int]] = [[] for _ in range(replicas)]
    for group in sorted(by_prompt.values(), key=len, reverse=True):
        min(shares, key=len).extend(group)
    return shares


class Replica:
    def __init__(self, source_json: dict, context: int, env: dict[str, str], number: int):
        self.number = number
        parent, child = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, "-m", "fusechat.backends.replica", str(child.fileno())],
                                        pass_fds=[child.fileno()], env=dict(os.environ, **env))
        child.close()
        self.stream = parent.makefile("rwb")
        self.socket = parent
        self.lock = threading.Lock()
        try:
            self.call({"op": "open", "source": source_json, "context": context})
        except BaseException:
            self.close()
            raise

    def call(self, message: dict):
        with self.lock:
            try:
                self.stream.write(json.dumps(message).encode() + b"\n")
                self.stream.flush()
                line = self.stream.readline()
            except OSError:
                line = b""
        if not line:
            code = self.process.wait()
            raise FusechatError(f"model replica {self.number} stopped (exit code {code}; its log is above); rerun "
                                "to go on from the finished shards")
        answer = json.loads(line)
        if "error" in answer:
            raise FusechatError(answer["error"])
        return answer["ok"]

    def close(self) -> None:
        try:
            self.stream.write(b'{"op": "exit"}\n')
            self.stream.flush()
        except OSError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        try:
            self.stream.close()  # flushes what a dead child never read: a broken pipe then
        except OSError:
            pass
        self.socket.close()


class Replicas(Backend):
    """`replicas` child processes serving one source (each with `tensor_parallel` of the GPUs)."""

    def __init__(self, source, context: int, replicas: int, tensor_parallel: int = 1, gpus: int = 0):
        source_json = source.model_dump(mode="json")
        self.replicas: list[Replica] = []
        try:
            groups = device_groups(replicas, tensor_parallel, gpus)
            starting = [threading.Thread(target=self._start, args=(source_json, context, env, k))
                        for k, env in enumerate(groups)]
            self._errors: list[Exception] = []
            for t in starting:  # they load at once: the model's load time is paid once, not per replica
                t.start()
            for t in starting:
                t.join()
            if self._errors:
                raise self._errors[0]
            self.replicas.sort(key=lambda r: r.number)
        except BaseException:
            self.close()
            raise
        self.next_judge = 0

    def _start(self, source_json: dict, context: int, env: dict, number: int) -> None:
        try:
            self.replicas.append(Replica(source_json, context, env, number))
        except Exception as e:  # noqa: BLE001 - handed to the caller's thread
            self._errors.append(e)

    def generate(self, requests: list[Request], sampling) -> list[Generation]:
        shares = share_out(requests, len(self.replicas))
        results: list[Generation | None] = [None] * len(requests)
        errors: list[Exception] = []

        def run(replica: Replica, share: list[int]) -> None:
            try:
                answers = replica.call({"op": "generate", "sampling": sampling.model_dump(mode="json"),
                                        "requests": [asdict(requests[i]) for i in share]})
                for i, g in zip(share, answers):
                    results[i] = Generation(**g)
            except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(r, s)) for r, s in zip(self.replicas, shares) if s]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        replica = self.replicas[self.next_judge % len(self.replicas)]
        self.next_judge += 1
        return replica.call({"op": "logprobs", "messages": messages, "top": top})

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
        self.replicas = []
