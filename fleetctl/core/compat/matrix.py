"""Parse and validate the matrix TOML files into one ``Matrix`` with precomputed lookups.

``parse_matrix({path: text, ...})``: every file may hold any of the known top-level tables, each table once
across the files. An unknown key, a wrong type, a version or specifier that does not parse, a missing
source: ``ConfigError`` with ``FILE:LINE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from packaging.specifiers import SpecifierSet

from fleetctl.core.addresses import shown
from fleetctl.core.compat.document import Document, Fields, parse_document, ver, within
from fleetctl.core.compat.model import (
    UNKNOWN_CLASS,
    Architecture,
    ClassByName,
    CudaRelease,
    FeatureGate,
    ForwardCompat,
    GpuDriverFloor,
    GpuModel,
    MinorCompat,
    Runtime,
    VllmImage,
    VllmMinCc,
    VllmRelease,
)
from fleetctl.core.schema import unknown_table, wrong_type
from fleetctl.errors import ConfigError

_STATUSES = ("fail", "warn")
_CLASSES = ("datacenter", "workstation", "geforce")
_HEALTH_KEYS = ("lost", "ecc_uncorrected_volatile", "remapped_rows_pending", "remapped_rows_failed")

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Index:
    """A matrix's rows by key, and the answers it has given: lookups repeat for every host."""

    releases: dict[str, CudaRelease]
    minor: dict[str, MinorCompat]
    forward: dict[str, ForwardCompat]
    arch: dict[str, Architecture]
    prefixes: list[tuple[str, GpuModel]]  # (normalized name prefix, row), longest prefix first
    by_driver: list[CudaRelease]
    by_name: dict[str, GpuModel | None] = field(default_factory=dict)
    newest: dict[str, str | None] = field(default_factory=dict)
    vllm_release: dict[str | None, VllmRelease | None] = field(default_factory=dict)
    vllm_min_cc: dict[str | None, VllmMinCc | None] = field(default_factory=dict)
    feature: dict[tuple[str, str], FeatureGate | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Matrix:
    releases: tuple[CudaRelease, ...]
    minor_compat: tuple[MinorCompat, ...]
    forward_compat: tuple[ForwardCompat, ...]
    forward_classes: tuple[str, ...]
    forward_source: str
    gpus: tuple[GpuModel, ...]
    classes_by_name: tuple[ClassByName, ...]
    driver_floors: tuple[GpuDriverFloor, ...]
    architectures: tuple[Architecture, ...]
    vllm_image: VllmImage
    vllm_releases: tuple[VllmRelease, ...]
    vllm_min_cc: tuple[VllmMinCc, ...]
    features: tuple[FeatureGate, ...]
    runtime: Runtime
    _index: _Index = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        index = _Index(
            releases={r.cuda: r for r in self.releases},
            minor={m.cuda_major: m for m in self.minor_compat},
            forward={f.cuda: f for f in self.forward_compat},
            arch={cc: a for a in self.architectures for cc in a.compute_capabilities},
            prefixes=sorted(((n, g) for g in self.gpus for n in g.names), key=lambda p: -len(p[0])),
            by_driver=sorted((r for r in self.releases if r.confirmed), key=lambda r: ver(r.min_driver)),
        )
        object.__setattr__(self, "_index", index)  # frozen: the one write, while the matrix is being built

    def cuda_release(self, cuda: str) -> tuple[CudaRelease | None, bool]:
        """The release row for an image's CUDA, and whether it is that exact release.

        ``"12.8"`` and ``"12.8.0"`` are the GA release. An update the matrix does not list (``"13.0.3"``)
        gets the newest listed update of that minor version, flagged as inexact.
        """
        key = _release_key(cuda)
        releases = self._index.releases
        if key in releases:
            return releases[key], True
        wanted = ver(cuda)
        if wanted.micro == 0:
            return None, False
        xy = minor_of(cuda)
        below = [r for r in self.releases if minor_of(r.cuda) == xy and _update(r.cuda) <= wanted.micro]
        return (max(below, key=lambda r: _update(r.cuda)), False) if below else (None, False)

    def newest_cuda_for(self, driver: str) -> str | None:
        """The newest CUDA minor version (``"12.4"``) whose GA or update release ``driver`` can run natively."""
        return _memo(self._index.newest, driver, self._newest_cuda_for)

    def _newest_cuda_for(self, driver: str) -> str | None:
        fits = [r for r in self._index.by_driver if ver(r.min_driver) <= ver(driver)]
        return max((minor_of(r.cuda) for r in fits), key=ver, default=None)

    def minor_for(self, cuda: str) -> MinorCompat | None:
        return self._index.minor.get(str(ver(cuda).major))

    def forward_for(self, cuda: str) -> ForwardCompat | None:
        return self._index.forward.get(minor_of(cuda))

    def architecture(self, cc: str) -> Architecture | None:
        arch = self._index.arch
        return arch[cc] if cc in arch else arch.get(_cc_key(cc))

    def gpu(self, name: str | None) -> GpuModel | None:
        """The matrix row for an NVML product name (longest matching prefix), cached per name."""
        if name is None:
            return None
        return _memo(self._index.by_name, name, lambda n: _match_gpu(normalize_gpu_name(n), self._index.prefixes))

    def gpu_class(self, name: str | None) -> tuple[str, bool]:
        """The GPU's class (datacenter, workstation, geforce or unknown) and whether the row is confirmed."""
        row = self.gpu(name)
        if row is not None:
            return row.gpu_class, row.confirmed
        lowered = (name or "").lower()
        match = next((c for c in self.classes_by_name if c.contains in lowered), None)
        return (match.gpu_class, True) if match else (UNKNOWN_CLASS, True)

    def floors_for(self, family: str) -> tuple[GpuDriverFloor, ...]:
        return tuple(f for f in self.driver_floors if f.family == family)

    def vllm_release(self, vllm: str | None) -> VllmRelease | None:
        return _memo(self._index.vllm_release, vllm, lambda v: _first(self.vllm_releases, v))

    def vllm_min_compute_capability(self, vllm: str | None) -> VllmMinCc | None:
        return _memo(self._index.vllm_min_cc, vllm, lambda v: _first(self.vllm_min_cc, v))

    def feature(self, feature_id: str, cuda: str) -> FeatureGate | None:
        return _memo(
            self._index.feature,
            (feature_id, cuda),
            lambda key: next(
                (f for f in self.features if f.id == key[0] and (f.cuda_spec is None or within(f.cuda_spec, key[1]))),
                None,
            ),
        )

    @property
    def feature_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.id for f in self.features))

    def bundles_cuda_compat(self, image_ref: str) -> bool:
        return self.vllm_image.bundles_cuda_compat and image_repository(image_ref) in self.vllm_image.repositories


CUDA_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")  # what --cuda and the matrix rows give: X.Y or X.Y.Z


def minor_of(cuda: str) -> str:
    """``12.8.1`` -> ``12.8``."""
    v = ver(cuda)
    return f"{v.major}.{v.minor}"


def image_repository(ref: str) -> str:
    """``vllm/vllm-openai:v0.11.0`` -> ``vllm/vllm-openai`` (digest and tag dropped)."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def normalize_gpu_name(name: str) -> str:
    lowered = re.sub(r"[-_\s]+", " ", name.lower()).strip()
    for prefix in ("nvidia ", "tesla "):
        lowered = lowered.removeprefix(prefix)
    return lowered


def _match_gpu(normalized: str, prefixes: list[tuple[str, GpuModel]]) -> GpuModel | None:
    for prefix, row in prefixes:
        if normalized == prefix or normalized.startswith(prefix + " "):
            return row
    return None


def _memo(memo: dict[K, V], key: K, compute: Callable[[K], V]) -> V:
    """``memo[key]``, computed once: lookups repeat for every host."""
    if key not in memo:
        memo[key] = compute(key)
    return memo[key]


class _ForVllm(Protocol):
    @property
    def vllm_spec(self) -> SpecifierSet: ...


R = TypeVar("R", bound=_ForVllm)


def _first(rows: tuple[R, ...], vllm: str | None) -> R | None:
    """The first row whose ``vllm_spec`` holds ``vllm``."""
    if vllm is None:
        return None
    return next((r for r in rows if within(r.vllm_spec, vllm)), None)


def _release_key(cuda: str) -> str:
    """``12.8`` and ``12.8.0`` are one release (the GA); ``12.8.1`` is an update."""
    v = ver(cuda)
    return f"{v.major}.{v.minor}" + (f".{v.micro}" if v.micro else "")


def _update(cuda: str) -> int:
    return ver(cuda).micro


def _cc_key(cc: str) -> str:
    return str(ver(cc))


# ---------------------------------------------------------------------------------------------- parsing

_Parser = Callable[[Fields], Any]


def parse_matrix(files: Mapping[str, str]) -> Matrix:
    """The matrix from ``{path: text}`` of its TOML files."""
    sections: dict[str, Any] = {}
    places: dict[str, str] = {}
    for path, text in sorted(files.items()):
        doc = parse_document(text, path)
        for name, value in doc.data.items():
            if name not in _SECTIONS:
                raise doc.error(unknown_table(name, sorted(_SECTIONS)), (name,))
            if name in sections:
                raise doc.error(f"table {name!r} is already defined in {places[name]}", (name,))
            sections[name], places[name] = _parse_section(doc, name, value), path
    missing = [name for name in _SECTIONS if name not in sections]
    if missing:
        raise ConfigError(f"the matrix has no {', '.join(missing)} table(s)", path=", ".join(sorted(files)) or None)
    return _assemble(sections)


def _parse_section(doc: Document, name: str, value: Any) -> Any:
    parser, is_array = _SECTIONS[name]
    if not is_array:
        fields = Fields(doc, (name,), value)
        row = parser(fields)
        fields.finish()
        return row
    if not isinstance(value, list):
        raise doc.error(wrong_type((name,), f"an array of tables ([[{name}]])", value), (name,))
    rows = []
    for i, table in enumerate(value):
        fields = Fields(doc, (name, i), table)
        rows.append(parser(fields))
        fields.finish()
    return tuple(rows)


def _release(f: Fields) -> CudaRelease:
    return CudaRelease(
        cuda=f.version("cuda"),
        min_driver=f.version("min_driver"),
        source=f.source(),
        confirmed=f.flag("confirmed", True),
        note=f.text("note", required=False, default=""),
    )


def _minor(f: Fields) -> MinorCompat:
    return MinorCompat(
        cuda_major=f.version("cuda_major"),
        min_driver=f.version("min_driver"),
        driver_below=f.version("driver_below", required=False),
        source=f.source(),
    )


def _forward(f: Fields) -> ForwardCompat:
    branches = f.texts("branches")
    for branch in branches:
        if not branch.isdigit():
            raise f.error("branches", f'{shown(branch)} is not a driver branch number like "535"')
    return ForwardCompat(cuda=f.version("cuda"), branches=branches, source=f.source())


def _forward_policy(f: Fields) -> tuple[tuple[str, ...], str]:
    return f.texts("gpu_classes"), f.source()


def _gpu(f: Fields) -> GpuModel:
    names = f.texts("names")
    if any(n != normalize_gpu_name(n) for n in names):
        raise f.error("names", 'must be lower case, without "nvidia "/"tesla ", with spaces for dashes')
    return GpuModel(
        model=f.text("model"),
        family=f.text("family"),
        names=names,
        compute_capability=f.version("compute_capability"),
        gpu_class=_gpu_class(f),
        source=f.source(),
        nvswitch_at=f.number("nvswitch_at"),
        confirmed=f.flag("confirmed", True),
        note=f.text("note", required=False, default=""),
    )


def _class_by_name(f: Fields) -> ClassByName:
    return ClassByName(contains=f.text("contains").lower(), gpu_class=_gpu_class(f), source=f.source())


def _gpu_class(f: Fields) -> str:
    value = f.text("class")
    if value not in _CLASSES:
        raise f.error("class", f"must be one of {', '.join(_CLASSES)}, got {shown(value)}")
    return value


def _floor(f: Fields) -> GpuDriverFloor:
    when = f.text("when")
    if when not in ("always", "mig"):
        raise f.error("when", f'must be "always" or "mig", got {shown(when)}')
    return GpuDriverFloor(
        family=f.text("family"),
        min_driver=f.version("min_driver"),
        when=when,
        source=f.source(),
        note=f.text("note", required=False, default=""),
    )


def _architecture(f: Fields) -> Architecture:
    ccs = f.texts("compute_capabilities")
    for cc in ccs:
        f.check_version("compute_capabilities", cc)
    return Architecture(
        name=f.text("name"),
        compute_capabilities=ccs,
        first_cuda=f.version("first_cuda"),
        source=f.source(),
        removed_in_cuda=f.version("removed_in_cuda", required=False),
        min_driver=f.version("min_driver", required=False),
        confirmed=f.flag("confirmed", True),
        note=f.text("note", required=False, default=""),
    )


def _vllm_image(f: Fields) -> VllmImage:
    return VllmImage(
        repositories=f.texts("repositories"),
        bundles_cuda_compat=f.flag("bundles_cuda_compat", False),
        source=f.source(),
        note=f.text("note", required=False, default=""),
    )


def _vllm_release(f: Fields) -> VllmRelease:
    return VllmRelease(
        vllm=f.text("vllm"),
        vllm_spec=f.specifier("vllm"),
        cuda=f.version("cuda"),
        source=f.source(),
        torch=f.version("torch", required=False),
        confirmed=f.flag("confirmed", True),
        note=f.text("note", required=False, default=""),
    )


def _vllm_min_cc(f: Fields) -> VllmMinCc:
    return VllmMinCc(
        vllm=f.text("vllm"),
        vllm_spec=f.specifier("vllm"),
        compute_capability=f.version("compute_capability"),
        source=f.source(),
        confirmed=f.flag("confirmed", True),
        note=f.text("note", required=False, default=""),
    )


def _feature(f: Fields) -> FeatureGate:
    ccs = f.texts("compute_capability")
    if not ccs:
        raise f.error("compute_capability", "needs at least one specifier")
    cuda = f.text("cuda", required=False)
    return FeatureGate(
        id=f.text("id"),
        description=f.text("description"),
        compute_capability=ccs,
        cc_specs=tuple(f.parse_specifier("compute_capability", c) for c in ccs),
        source=f.source(),
        cuda=cuda,
        cuda_spec=None if cuda is None else f.parse_specifier("cuda", cuda),
        fallback=f.text("fallback", required=False, default=""),
        note=f.text("note", required=False, default=""),
    )


def _status(f: Fields, key: str) -> str:
    value = f.text(key)
    if value not in _STATUSES:
        raise f.error(key, f"must be one of {', '.join(_STATUSES)}, got {shown(value)}")
    return value


def _docker(f: Fields) -> tuple[str, str]:
    f.text("note", required=False)
    return f.version("min_version"), f.source()


def _toolkit(f: Fields) -> tuple[bool, str]:
    f.text("note", required=False)
    return f.flag("required", True), f.source()


def _fabric_manager(f: Fields) -> tuple[bool, str]:
    f.text("note", required=False)
    return f.flag("must_equal_driver", True), f.source()


def _health(f: Fields) -> tuple[dict[str, str], str]:
    return {key: _status(f, key) for key in _HEALTH_KEYS}, f.source()


def _mixed(f: Fields) -> tuple[str, str]:
    f.text("note", required=False)
    return _status(f, "status"), f.source()


_SECTIONS: dict[str, tuple[_Parser, bool]] = {
    "release": (_release, True),
    "minor_compat": (_minor, True),
    "forward_compat": (_forward, True),
    "forward_compat_policy": (_forward_policy, False),
    "gpu": (_gpu, True),
    "gpu_class_by_name": (_class_by_name, True),
    "gpu_driver_floor": (_floor, True),
    "architecture": (_architecture, True),
    "vllm_image": (_vllm_image, False),
    "vllm_release": (_vllm_release, True),
    "vllm_min_compute_capability": (_vllm_min_cc, True),
    "feature": (_feature, True),
    "docker": (_docker, False),
    "container_toolkit": (_toolkit, False),
    "fabric_manager": (_fabric_manager, False),
    "gpu_health": (_health, False),
    "mixed_gpus": (_mixed, False),
}


def _assemble(s: dict[str, Any]) -> Matrix:
    classes, fc_source = s["forward_compat_policy"]
    runtime = Runtime(
        docker_min=s["docker"][0],
        docker_source=s["docker"][1],
        toolkit_required=s["container_toolkit"][0],
        toolkit_source=s["container_toolkit"][1],
        fm_must_equal_driver=s["fabric_manager"][0],
        fm_source=s["fabric_manager"][1],
        health=s["gpu_health"][0],
        health_source=s["gpu_health"][1],
        mixed_status=s["mixed_gpus"][0],
        mixed_source=s["mixed_gpus"][1],
    )
    return Matrix(
        releases=s["release"],
        minor_compat=s["minor_compat"],
        forward_compat=s["forward_compat"],
        forward_classes=classes,
        forward_source=fc_source,
        gpus=s["gpu"],
        classes_by_name=s["gpu_class_by_name"],
        driver_floors=s["gpu_driver_floor"],
        architectures=s["architecture"],
        vllm_image=s["vllm_image"],
        vllm_releases=s["vllm_release"],
        vllm_min_cc=s["vllm_min_compute_capability"],
        features=s["feature"],
        runtime=runtime,
    )
