"""Opening a source's backend: a plain match on the recipe's `backend` string (no registry).

Its own module, so that the interface (fusechat.backends.base) imports none of the classes built on it.
"""

from __future__ import annotations

from fusechat import FusechatError, hardware, models
from fusechat.backends.base import Backend
from fusechat.modelfacts import tensor_parallel


def open_backend(source, ctx_per_slot: int = 4096, in_process: bool = False) -> Backend:
    """Load a source's model in its backend (picked by a plain match on the recipe's string). vLLM runs in
    child processes (fusechat.backends.replicas) unless `in_process` (what each child asks for)."""
    match source.backend:
        case "llamacpp":
            from fusechat.backends.llamacpp import LlamaCppBackend

            return LlamaCppBackend(models.resolve(source.model).gguf_path(), source.chat_template, source.batch_size,
                                   source.threads, ctx_per_slot)
        case "transformers":
            from fusechat.backends.hf import TransformersBackend

            return TransformersBackend(models.resolve(source.model).hf_path(), source.chat_template, source.dtype,
                                       source.batch_size, source.threads)
        case "openai":  # `model` is the name the server knows the model by
            from fusechat.backends.openai_api import OpenAIBackend

            return OpenAIBackend(source.endpoint, source.model, source.batch_size, source.api_key_env,
                                 source.request_timeout_s or 300.0, 8 if source.max_retries is None else source.max_retries)
        case "dataset":
            from fusechat.backends.dataset import DatasetBackend

            return DatasetBackend(source.responses)
        case "vllm":
            size = source.tensor_parallel_size or tensor_parallel(source.name, source.model, ctx_per_slot)
            if not in_process:
                from fusechat.backends.replicas import Replicas

                gpus = hardware.gpus()[0]
                return Replicas(source, ctx_per_slot, source.replicas or max(1, gpus // size), size, gpus)
            from fusechat.backends.vllm import VLLMBackend

            return VLLMBackend(models.resolve(source.model).hf_path(), source.chat_template, source.dtype,
                               size, ctx_per_slot)
    raise FusechatError(f"source '{source.name}': unknown backend {source.backend!r}")
