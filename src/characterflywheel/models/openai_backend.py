"""The ``openai`` generation backend: any OpenAI-compatible chat server (vLLM, SGLang, ...).

Uses the official ``openai`` client, one ``chat.completions.create`` request per
conversation with ``n`` passed through, ``concurrency`` requests in flight (thread pool:
the client is thread-safe and the work is I/O-bound). Servers that return fewer than ``n``
choices (some ignore ``n``) are asked again for the remainder. ``seed`` is forwarded unless
``forward_seed`` is off (vLLM's CPU build 0.32 fails a seeded request whose prompt is prefilled in
chunks, ``CPU Generator does not use offset``, and its engine stops with it); a
server may or may not honour it. The chat template is the server's business. A conversation
ending with an assistant opening (``"prefix": True``) asks the server to continue it (vLLM's
``continue_final_message``) and the reply leaves that opening out, as the local backends do.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from characterflywheel.models.generation import (
    Conversation,
    SamplingParams,
    ends_with_opening,
    validate_conversation,
)
from characterflywheel.models.progress import progress_bar


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        model: str | Path,
        base_url: str,
        api_key: str = "EMPTY",
        served_model: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        forward_seed: bool = True,
    ) -> None:
        from openai import OpenAI

        if not base_url:
            raise ValueError("the openai backend needs a base_url, e.g. http://127.0.0.1:8000/v1")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.model = served_model or str(model)
        self.concurrency = concurrency
        self.forward_seed = forward_seed
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=max_retries)

    def chat(
        self, conversations: Sequence[Conversation], params: SamplingParams, progress: bool = False
    ) -> list[list[str]]:
        messages = [(validate_conversation(c), ends_with_opening(c)) for c in conversations]
        with progress_bar(len(messages) * params.n, "openai generation", progress) as bar:

            def one(item: tuple[list[dict[str, str]], bool]) -> list[str]:
                replies = self._complete(*item, params)
                bar.update(len(replies))
                return replies

            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                return list(pool.map(one, messages))

    def _complete(self, conversation: list[dict[str, str]], continued: bool, params: SamplingParams) -> list[str]:
        replies: list[str] = []
        while len(replies) < params.n:
            wanted = params.n - len(replies)
            response = self.client.chat.completions.create(
                model=self.model,
                messages=conversation,  # type: ignore[arg-type]
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                n=wanted,
                **({"seed": params.seed + len(replies)} if params.seed is not None and self.forward_seed else {}),
                **({"extra_body": {"continue_final_message": True, "add_generation_prompt": False}}
                   if continued else {}),
            )
            if not response.choices:
                raise RuntimeError(f"{self.model}: the server returned no choices")
            choices = sorted(response.choices, key=lambda choice: choice.index)[:wanted]
            replies.extend((choice.message.content or "").strip() for choice in choices)
        return replies
