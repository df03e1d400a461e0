"""The compatibility matrix as frozen rows. Each row keeps the URL it comes from and whether it is confirmed."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet

DATACENTER = "datacenter"
UNKNOWN_CLASS = "unknown"


@dataclass(frozen=True)
class CudaRelease:
    cuda: str  # "12.8" (GA) or "12.8.1" (Update 1)
    min_driver: str
    source: str
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class MinorCompat:
    cuda_major: str
    min_driver: str
    driver_below: str | None
    source: str


@dataclass(frozen=True)
class ForwardCompat:
    cuda: str  # X.Y of the cuda-compat-X-Y package
    branches: tuple[str, ...]  # driver branches it supports ("535")
    source: str


@dataclass(frozen=True)
class GpuModel:
    model: str
    family: str
    names: tuple[str, ...]
    compute_capability: str
    gpu_class: str
    source: str
    nvswitch_at: int | None = None
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class ClassByName:
    contains: str
    gpu_class: str
    source: str


@dataclass(frozen=True)
class GpuDriverFloor:
    family: str
    min_driver: str
    when: str  # "always" or "mig"
    source: str
    note: str = ""


@dataclass(frozen=True)
class Architecture:
    name: str
    compute_capabilities: tuple[str, ...]
    first_cuda: str
    source: str
    removed_in_cuda: str | None = None
    min_driver: str | None = None
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class VllmImage:
    repositories: tuple[str, ...]
    bundles_cuda_compat: bool
    source: str
    note: str = ""


@dataclass(frozen=True)
class VllmRelease:
    vllm: str  # specifier text, e.g. ">=0.9,<0.10"
    vllm_spec: SpecifierSet
    cuda: str
    source: str
    torch: str | None = None
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class VllmMinCc:
    vllm: str
    vllm_spec: SpecifierSet
    compute_capability: str
    source: str
    confirmed: bool = True
    note: str = ""


@dataclass(frozen=True)
class FeatureGate:
    id: str
    description: str
    compute_capability: tuple[str, ...]  # any-of specifier texts
    cc_specs: tuple[SpecifierSet, ...]
    source: str
    cuda: str | None = None  # specifier over the image's CUDA
    cuda_spec: SpecifierSet | None = None
    fallback: str = ""
    note: str = ""


@dataclass(frozen=True)
class Runtime:
    docker_min: str
    docker_source: str
    toolkit_required: bool
    toolkit_source: str
    fm_must_equal_driver: bool
    fm_source: str
    health: dict[str, str]  # finding -> "fail" | "warn"
    health_source: str
    mixed_status: str
    mixed_source: str
