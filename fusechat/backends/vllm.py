"""vLLM backend (optional: `pip install 'fusechat[vllm]'`, imported only when a recipe names it).

Offline `LLM.chat` over the whole shard at once: vLLM schedules the sequences itself (continuous
batching, paged KV cache, prefix caching so a prompt's N samples share its prefix). Each sample is its
own sequence with its own seed. This class is one engine in this process; `open_backend` runs it in
child processes, one per group of GPUs (fusechat.backends.replicas), so that each source starts on
clean GPUs and a tensor-parallel-1 source uses all of them.

Multi-node: `fusechat sample --part I/K` per node on a shared run folder (`fusechat plan --nodes N`
writes the Slurm array), or vLLM's own OpenAI server per node behind an `openai` source.
"""

from __future__ import annotations

from fusechat import FusechatError
from fusechat.hardware import release_memory
from fusechat.recipe import Sampling
from fusechat.backends.base import Backend, Generation, Request, over_context, read_template


class VLLMBackend(Backend):
    def __init__(self, path: str, chat_template: str | None = None, dtype: str = "auto",
                 tensor_parallel_size: int = 1, max_model_len: int = 4096):
        try:
            from vllm import LLM
        except ImportError:
            raise FusechatError("backend vllm needs vLLM: pip install 'fusechat[vllm]'") from None
        try:
            self.llm = LLM(model=path, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                           max_model_len=max_model_len, enable_prefix_caching=True)
        except Exception as e:
            raise FusechatError(f"model '{path}' will not load in vLLM ({str(e).splitlines()[0][:200]})") from None
        self.chat_template = read_template(chat_template)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        """Every request its own sequence with its own seed (prefix caching makes a prompt's N samples share
        its prompt's work), so each sample records the seed that made it; a prompt longer than the model's
        context is an `error` sample (vLLM would raise for the whole call, and the rerun again)."""
        from vllm import SamplingParams

        results: list[Generation | None] = [None] * len(requests)
        context = self.llm.llm_engine.model_config.max_model_len
        tokenizer = self.llm.get_tokenizer()
        for i, r in enumerate(requests):
            # rendered as text, then counted: transformers 5's tokenize=True returns a mapping, not ids
            text = tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False,
                                                 **({"chat_template": self.chat_template} if self.chat_template else {}))
            n = len(tokenizer.encode(text, add_special_tokens=False))
            if n >= context:
                results[i] = over_context(n, context, r.seed)
        todo = [i for i, g in enumerate(results) if g is None]
        params = [SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                                 repetition_penalty=sampling.repetition_penalty, max_tokens=sampling.max_new_tokens,
                                 seed=requests[i].seed) for i in todo]
        outputs = self.llm.chat([requests[i].messages for i in todo], params, chat_template=self.chat_template,
                                use_tqdm=False) if todo else []
        for i, out in zip(todo, outputs):
            completion = out.outputs[0]
            results[i] = Generation(
                text=completion.text, prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(completion.token_ids),
                finish_reason="length" if completion.finish_reason == "length" else "stop", seed=requests[i].seed)
        return results

    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        from vllm import SamplingParams

        out = self.llm.chat([messages], SamplingParams(max_tokens=1, temperature=0.0, logprobs=top),
                            chat_template=self.chat_template, use_tqdm=False)[0].outputs[0]
        first = out.logprobs[0] if out.logprobs else {}
        return {lp.decoded_token: lp.logprob for lp in first.values()}

    def close(self) -> None:
        del self.llm
        release_memory()  # the process's own next model; the sample stage runs each source in its own process
