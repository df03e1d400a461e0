"""Deployment profiles (``profiles/*.toml``): what a deployment runs and needs, parsed and checked.

``[profile]`` name/description, ``[image]`` ref/cuda/vllm/cuda_compat, ``[requires]`` gpus/gpu_memory_mib/
compute_capability/features, ``[serve]`` (the container settings; ``check`` ignores them). Unknown keys and
tables are errors with ``FILE:LINE``. Pure: takes the text, its path and the matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import SpecifierSet

from fleetctl.core.addresses import shown
from fleetctl.core.compat.document import Document, Fields, parse_document, spec, ver
from fleetctl.core.compat.matrix import Matrix, image_repository, minor_of
from fleetctl.core.schema import failed, unknown_key, unknown_table
from fleetctl.core.serve import ServeSettings, served_names

_TABLES = ("profile", "image", "requires", "serve", "rollout")
_TAG = re.compile(r":v?(\d+(?:\.\d+)+(?:\.post\d+|rc\d+)?)(?:-cu(\d+)(\d))?$")
_RESTART = ("no", "always", "unless-stopped", "on-failure")


@dataclass(frozen=True)
class Requirements:
    gpus: SpecifierSet = field(default_factory=lambda: spec(">=1"))
    gpu_memory_mib: SpecifierSet | None = None
    compute_capability: SpecifierSet | None = None
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    path: str
    image: str
    cuda: str
    description: str = ""
    vllm: str | None = None
    cuda_compat: bool = False  # the image carries cuda-compat libraries (forward compatibility)
    requires: Requirements = Requirements()
    serve: ServeSettings | None = None
    rollout: dict[str, Any] = field(default_factory=dict)  # overrides of the fleet file's [rollout] thresholds


def parse_profile(text: str, path: str, matrix: Matrix) -> Profile:
    doc = parse_document(text, path)
    for name in doc.data:
        if name not in _TABLES:
            raise doc.error(unknown_table(name, _TABLES), (name,))
    head = _table(doc, "profile", required=True)
    name, description = head.text("name"), head.text("description", required=False, default="")
    head.finish()
    image = _table(doc, "image", required=True)
    ref, vllm, cuda, compat = _image(image, matrix)
    requires = _requires(_table(doc, "requires"), matrix)
    serve = _serve(_table(doc, "serve")) if "serve" in doc.data else None
    rollout = _rollout(_table(doc, "rollout"))
    return Profile(
        name=name,
        path=path,
        image=ref,
        cuda=cuda,
        description=description,
        vllm=vllm,
        cuda_compat=compat,
        requires=requires,
        serve=serve,
        rollout=rollout,
    )


def _table(doc: Document, name: str, *, required: bool = False) -> Fields:
    if required and name not in doc.data:
        raise doc.error(f"missing table [{name}]")
    return Fields(doc, (name,), doc.data.get(name, {}))


def _image(f: Fields, matrix: Matrix) -> tuple[str, str | None, str, bool]:
    ref = f.text("ref")
    vllm = f.version("vllm", required=False)
    cuda = f.version("cuda", required=False)
    compat = f.flag("cuda_compat", matrix.bundles_cuda_compat(ref))
    f.finish()
    tag = _TAG.search(ref.split("@", 1)[0])
    if (
        vllm is not None
        and tag
        and image_repository(ref) in matrix.vllm_image.repositories
        and ver(tag.group(1)) != ver(vllm)
    ):
        raise f.error("vllm", f"{shown(vllm)} but the image tag says {tag.group(1)}")
    expected, why = _expected_cuda(ref, vllm, matrix)
    if cuda is None:
        if expected is None:
            raise f.error("cuda", f"is required: {why or 'the matrix cannot tell the CUDA of ' + ref}")
        cuda = expected
    elif expected is not None and minor_of(cuda) != expected:
        raise f.error("cuda", f"{shown(cuda)} but {ref} is built with CUDA {expected} ({why})")
    if matrix.cuda_release(cuda)[0] is None:
        known = ", ".join(dict.fromkeys(minor_of(r.cuda) for r in matrix.releases))
        raise f.error("cuda", f"CUDA {cuda} is not in the matrix (known: {known})")
    return ref, vllm, cuda, compat


def _expected_cuda(ref: str, vllm: str | None, matrix: Matrix) -> tuple[str | None, str]:
    """The CUDA an official vLLM image is built with: from a ``-cuXYZ`` tag, else from its confirmed line."""
    if image_repository(ref) not in matrix.vllm_image.repositories:
        return None, ""
    tag = _TAG.search(ref.split("@", 1)[0])
    if tag and tag.group(2):
        return f"{tag.group(2)}.{tag.group(3)}", f"the -cu{tag.group(2)}{tag.group(3)} tag"
    line = matrix.vllm_release(vllm or (tag.group(1) if tag else None))
    if line is None:
        return None, f"no vLLM release line in the matrix matches {ref}"
    if not line.confirmed:
        return None, f"the CUDA of the vLLM {line.vllm} image is not confirmed ({line.note or line.source})"
    return line.cuda, f"the default image of vLLM {line.vllm}, {line.source}"


def _requires(f: Fields, matrix: Matrix) -> Requirements:
    gpus = f.specifier("gpus", required=False)
    memory = f.specifier("gpu_memory_mib", required=False)
    cc = f.specifier("compute_capability", required=False)
    features = f.texts("features", required=False)
    for feature in features:
        if feature not in matrix.feature_ids:
            raise f.error("features", f"unknown feature {shown(feature)} (known: {', '.join(matrix.feature_ids)})")
    f.finish()
    return Requirements(
        gpus=gpus if gpus is not None else spec(">=1"), gpu_memory_mib=memory, compute_capability=cc, features=features
    )


_ROLLOUT = {  # key: (types, type name, lowest allowed, highest allowed)
    "bake_s": ((int, float), "number", 0, None),
    "max_error_rate": ((int, float), "number", 0, 1),
    "max_ttft_p95_ratio": ((int, float), "number", 0, None),
    "max_unavailable": ((int,), "integer", 1, None),
    "min_requests": ((int,), "integer", 1, None),
    "interval_s": ((int, float), "number", 0, None),
    "failure_limit": ((int,), "integer", 0, None),
    "smoke_rps": ((int, float), "number", 0, None),
    "max_ttft_p95_ms": ((int, float), "number", 0, None),
}
_POSITIVE = ("max_ttft_p95_ratio", "interval_s", "smoke_rps", "max_ttft_p95_ms")


def _rollout(f: Fields) -> dict[str, Any]:
    """Per-profile overrides of the fleet's [rollout] thresholds (rings stay the fleet's business)."""
    out: dict[str, Any] = {}
    for key, (types, type_name, low, high) in _ROLLOUT.items():
        value = f.value(key, types, type_name, required=False)
        if value is None:
            continue
        if value < low or (high is not None and value > high) or (key in _POSITIVE and value == 0):
            raise f.error(key, _out_of_range(key, value, low, high))
        out[key] = value
    smoke = f.value("smoke", (dict,), "smoke-table", required=False)
    if smoke is not None:
        out["smoke_prompts"] = _smoke_prompts(f, smoke)
    f.finish()
    return out


def _out_of_range(key: str, value: float, low: float, high: float | None) -> str:
    if high is not None:
        return f"must be between {low} and {high}, got {value}"
    if key in _POSITIVE:
        return f"must be greater than 0, got {value}"
    return f"must be at least {low}, got {value}"


def _smoke_prompts(f: Fields, smoke: dict[str, Any]) -> tuple[str, ...]:
    """[rollout.smoke] prompts: at least one non-empty string; no other key."""
    prompts = smoke.get("prompts")
    at = (*f.where, "smoke")
    unknown = next((k for k in smoke if k != "prompts"), None)
    if unknown is not None:
        raise f.doc.error(unknown_key((*at, unknown), ("prompts",)), at)
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise f.doc.error(failed((*at, "prompts"), "must be non-empty prompts (at least one)"), at)
    return tuple(prompts)


def _serve(f: Fields) -> ServeSettings:
    values: dict[str, Any] = {"model": f.text("model")}
    optional = {
        "port": ((int,), "integer"),
        "args": ((list,), "strings"),
        "gpus": ((str, int), '"all" or a count'),
        "env": ((dict,), "string-table"),
        "volumes": ((dict,), "string-table"),
        "shm_size": ((str,), "string"),
        "ipc_host": ((bool,), "boolean"),
        "restart": ((str,), "string"),
        "health_timeout_s": ((int, float), "number"),
        "shutdown_timeout_s": ((int,), "integer"),
        "served_model_name": ((str,), "string"),
    }
    for key, (types, type_name) in optional.items():
        value = f.value(key, types, type_name, required=False)
        if value is not None:
            values[key] = _checked_serve_value(f, key, value)
    named = served_names(values.get("args", ()))
    if "served_model_name" in values and named and named[0] != values["served_model_name"]:
        raise f.error(
            "served_model_name",
            f"served_model_name = {values['served_model_name']!r} but args give --served-model-name {named[0]!r}",
        )
    f.finish()
    return ServeSettings(**values)


def _checked_serve_value(f: Fields, key: str, value: Any) -> Any:
    if key in ("args",) and not all(isinstance(v, str) for v in value):
        raise f.error(key, "expected an array of strings")
    if key in ("env", "volumes") and not all(isinstance(v, str) for v in value.values()):
        raise f.error(key, "expected a table of strings")
    if key == "port" and not 0 < value < 65536:
        raise f.error(key, f"must be between 1 and 65535, got {value}")
    if key == "gpus" and value != "all" and not (isinstance(value, int) and value >= 0):
        raise f.error(key, f'must be "all" or a count of at least 0, got {value}')
    if key == "restart" and value not in _RESTART:
        raise f.error(key, f"must be one of {', '.join(_RESTART)}, got {shown(value)}")
    if key == "served_model_name" and (not value.strip() or any(c.isspace() or ord(c) < 32 for c in value)):
        raise f.error(key, f"must be a name without spaces or control characters, got {shown(value)}")
    if key in ("health_timeout_s", "shutdown_timeout_s") and value < 0:
        raise f.error(key, f"must not be negative, got {value}")
    return tuple(value) if key == "args" else value
