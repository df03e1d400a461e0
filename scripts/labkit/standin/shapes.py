"""vLLM 0.32's OpenAI-API JSON, key for key as recorded from the real server: requests in, bodies and chunks out.

Pure functions on plain data; the HTTP handler does the I/O.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

COMPLETION_DEFAULT_MAX_TOKENS = 16


class ApiError(Exception):
    """An answer in vLLM's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class Served:
    """What the server says about itself."""

    names: tuple[str, ...]
    root: str
    version: str
    max_model_len: int
    started: int

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.root}{self.version}".encode()).hexdigest()[:8]
        return f"vllm-{self.version}-{digest}"


@dataclass(frozen=True)
class Ask:
    """One parsed generation request."""

    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError as e:
        raise ApiError(
            400,
            "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.0', 'msg': "
            f"'JSON decode error', 'ctx': {{'error': '{e.msg}'}}}}",
            "Bad Request",
            "body.0",
        ) from e
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "1 validation error:\n  {'type': 'model_attributes_type', 'loc': 'body', "
            "'msg': 'Input should be a valid dictionary or object'}",
            "Bad Request",
            "body",
        )
    return body


def parse_ask(body: dict[str, Any], chat: bool, served: Served) -> Ask:
    """Validate a completions or chat body as vLLM does (model, prompt/messages, max_tokens)."""
    model = body.get("model") or served.names[0]
    if model not in served.names:
        raise ApiError(
            404,
            f"The model `{model}` does not exist. Valid aliases: {', '.join(served.names)}.",
            "NotFoundError",
            "model",
        )
    prompt_tokens = _chat_tokens(body) if chat else _prompt_tokens(body)
    default = served.max_model_len - prompt_tokens if chat else COMPLETION_DEFAULT_MAX_TOKENS
    max_tokens = body.get("max_completion_tokens") if chat else None
    max_tokens = max_tokens if max_tokens is not None else body.get("max_tokens")
    max_tokens = default if max_tokens is None else max_tokens
    _check_max_tokens(max_tokens, prompt_tokens, served.max_model_len)
    options = body.get("stream_options") or {}
    return Ask(
        chat,
        model,
        prompt_tokens,
        max_tokens,
        bool(body.get("ignore_eos")),
        bool(body.get("stream")),
        bool(options.get("include_usage")),
    )


def _prompt_tokens(body: dict[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    if not prompt:
        raise ApiError(
            400,
            "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
            "BadRequestError",
            "prompt",
        )
    return count_tokens(str(prompt))


def _chat_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ApiError(
            400,
            "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required'}",
            "Bad Request",
            "body.messages",
        )
    text = "".join(f"{m.get('role', '')}: {_content(m.get('content'))}\n" for m in messages if isinstance(m, dict))
    return count_tokens(text + "assistant: ")


def _content(content: Any) -> str:
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _check_max_tokens(max_tokens: Any, prompt_tokens: int, max_model_len: int) -> None:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(
            400,
            f"max_tokens must be at least 1, got {max_tokens}. (parameter=max_tokens, value={max_tokens})",
            "BadRequestError",
            "max_tokens",
        )
    if max_tokens > max_model_len:
        raise ApiError(
            400,
            f"max_tokens={max_tokens} cannot be greater than max_model_len={max_model_len}. "
            f"Please request fewer output tokens. (parameter=max_tokens, value={max_tokens})",
            "BadRequestError",
            "max_tokens",
        )
    if prompt_tokens + max_tokens > max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens} in the completion).",
            "BadRequestError",
            "max_tokens",
        )


def count_tokens(text: str) -> int:
    """The stand-in's tokenizer: one token per word, at least one."""
    return max(1, len(text.split()))


def new_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(8)}"


def models(served: Served) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(name, served) for name in served.names]}


def _model_card(name: str, served: Served) -> dict[str, Any]:
    permission = {
        "id": f"modelperm-{secrets.token_hex(8)}",
        "object": "model_permission",
        "created": int(time.time()),
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    return {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": served.root,
        "parent": None,
        "max_model_len": served.max_model_len,
        "permission": [permission],
    }


def usage(prompt: int, completion: int, details: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }
    if details:
        out.update(prompt_tokens_details=None, completion_tokens_details=None)
    return out


def full_response(ask: Ask, rid: str, text: str, reason: str, completion: int, served: Served) -> dict[str, Any]:
    """The non-streaming answer of /v1/completions or /v1/chat/completions."""
    head = {
        "id": rid,
        "object": "chat.completion" if ask.chat else "text_completion",
        "created": int(time.time()),
        "model": ask.model,
    }
    if ask.chat:
        message = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "reasoning": None,
        }
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reason,
            "stop_reason": None,
            "token_ids": None,
            "routed_experts": None,
        }
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": reason,
            "stop_reason": None,
            "token_ids": None,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "routed_experts": None,
        }
    tail = {
        "service_tier": None,
        "system_fingerprint": served.fingerprint,
        "usage": usage(ask.prompt_tokens, completion),
    }
    if ask.chat:
        tail.update(prompt_logprobs=None, prompt_token_ids=None, prompt_text=None)
    tail.update(kv_transfer_params=None, ec_transfer_params=None, metrics=None)
    return {**head, "choices": [choice], **tail}


def role_chunk(ask: Ask, rid: str) -> dict[str, Any]:
    """A chat stream's first chunk: the assistant role, empty content."""
    choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    return {**_chunk_head(ask, rid), "choices": [choice], "prompt_token_ids": None, "prompt_text": None}


def token_chunk(ask: Ask, rid: str, text: str, reason: str | None, served: Served) -> dict[str, Any]:
    """One streamed token; the last one carries finish_reason (and the fingerprint unless a usage chunk follows)."""
    if ask.chat:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
    if reason is not None or not ask.chat:
        choice["stop_reason"] = None
    if not ask.chat:
        choice["prompt_token_ids"] = None
    choice["token_ids"] = None
    chunk = {**_chunk_head(ask, rid), "choices": [choice]}
    if reason is not None and not ask.include_usage:
        chunk["system_fingerprint"] = served.fingerprint
    return chunk


def usage_chunk(ask: Ask, rid: str, completion: int, served: Served) -> dict[str, Any]:
    return {
        **_chunk_head(ask, rid),
        "choices": [],
        "usage": usage(ask.prompt_tokens, completion, details=False),
        "system_fingerprint": served.fingerprint,
    }


def _chunk_head(ask: Ask, rid: str) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk" if ask.chat else "text_completion",
        "created": int(time.time()),
        "model": ask.model,
    }


def compact(obj: Any) -> bytes:
    """JSON as FastAPI/pydantic write it (no spaces)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
