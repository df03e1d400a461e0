"""The probe-output parser, pinned with recorded probe documents and garbage."""

import json
from pathlib import Path

import pytest

from fleetctl.core.facts import (
    ProbeOutputError,
    parse_container_cli_version,
    parse_ctk_version,
    parse_docker_version,
    parse_fabric_manager_version,
    parse_probe_output,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "probe"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_healthy_host_all_facts():
    result = parse_probe_output(recorded("healthy-h100x2.json"))
    assert result.error_kind is None
    f = result.facts
    assert (f.hostname, f.driver_version, f.cuda_driver_version, f.nvml_version) == (
        "gpu-a01",
        "570.133.20",
        "12.8",
        "12.570.133.20",
    )
    assert (f.docker_version, f.nvidia_container_toolkit_version, f.fabric_manager_version) == (
        "27.5.1",
        "1.17.8",
        "570.133.20",
    )
    assert [g.index for g in f.gpus] == [0, 1]
    g1 = f.gpus[1]
    assert (g1.name, g1.memory_total_mib, g1.memory_used_mib, g1.compute_capability) == (
        "NVIDIA H100 80GB HBM3",
        81559,
        512,
        "9.0",
    )
    assert (g1.power_draw_w, g1.power_limit_w, g1.ecc_uncorrected_volatile, g1.lost) == (80.0, 700.0, 0, False)
    assert f.gpus[0].throttle_reasons == ["gpu_idle"]


def test_driver_not_loaded_keeps_host_facts_and_reports_kind():
    result = parse_probe_output(recorded("driver-not-loaded.json"))
    assert result.error_kind == "nvml_driver_not_loaded"
    assert "not loaded" in result.error_message
    assert result.facts.os == "Debian GNU/Linux 12 (bookworm)"
    assert result.facts.docker_version is None  # the daemon did not answer: null, not invented


def test_lost_gpu_marks_that_gpu_only():
    result = parse_probe_output(recorded("gpu-lost.json"))
    assert result.error_kind is None
    assert [g.lost for g in result.facts.gpus] == [False, True]
    assert result.facts.gpus[1].name is None
    assert result.facts.nvidia_container_toolkit_version == "1.14.6"  # fell back to nvidia-container-cli


def test_banner_lines_before_the_document_are_ignored():
    text = "Welcome to gpu-a01\nlast login: yesterday\n" + recorded("healthy-h100x2.json")
    assert parse_probe_output(text).facts.hostname == "gpu-a01"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no JSON document"),
        ("Traceback (most recent call last):\n  File x\nSyntaxError: invalid syntax", "no JSON document"),
        ('{"schema": "fleetctl.probe/v1", "facts": {', "not valid JSON"),
        ('{"schema": "fleetctl.probe/v9", "facts": {}}', "unknown probe schema"),
        ('{"schema": "fleetctl.probe/v1"}', "no facts object"),
        ('{"schema": "fleetctl.probe/v1", "facts": {"driver_version": 570}}', "driver_version: expected str"),
        ('{"schema": "fleetctl.probe/v1", "facts": {"gpus": {"0": {}}}}', "gpus must be a list"),
        ('{"schema": "fleetctl.probe/v1", "facts": {"gpus": [{"name": "x"}]}}', "without an integer index"),
        (
            '{"schema": "fleetctl.probe/v1", "facts": {"gpus": [{"index": 0, "memory_total_mib": "80GB"}]}}',
            "memory_total_mib: expected int",
        ),
        (
            '{"schema": "fleetctl.probe/v1", "facts": {"gpus": [{"index": 0, "temperature_c": true}]}}',
            "temperature_c: expected int, got a boolean",
        ),
        ('{"schema": "fleetctl.probe/v1", "facts": {}, "error": {"kind": "meltdown"}}', "unknown probe error kind"),
        ('{"schema": "fleetctl.probe/v1", "facts": {}, "tools": []}', "tools must be an object"),
    ],
)
def test_garbage_is_rejected_with_a_reason(text, message):
    with pytest.raises(ProbeOutputError, match=message):
        parse_probe_output(text)


def test_facts_round_trip_through_dict():
    facts = parse_probe_output(recorded("healthy-h100x2.json")).facts
    again = type(facts).from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again == facts


@pytest.mark.parametrize(
    "parser, out, expected",
    [
        (parse_docker_version, "20.10.24+dfsg1\n", "20.10.24+dfsg1"),
        (parse_docker_version, "28.2.2", "28.2.2"),
        (parse_docker_version, "Cannot connect to the Docker daemon", None),
        (parse_docker_version, "", None),
        (parse_docker_version, None, None),
        (parse_ctk_version, "NVIDIA Container Toolkit CLI version 1.17.8\ncommit: abc\n", "1.17.8"),
        (parse_ctk_version, "nvidia-ctk: command not found", None),
        (parse_container_cli_version, "cli-version: 1.14.3\nlib-version: 1.14.3\nbuild date: x\n", "1.14.3"),
        (parse_container_cli_version, "version: 1.3.0\nbuild date: 2020\n", "1.3.0"),
        (parse_fabric_manager_version, "Fabric Manager version is : 570.133.20\n", "570.133.20"),
        (parse_fabric_manager_version, "usage: nv-fabricmanager [options]", None),
    ],
)
def test_tool_output_parsers(parser, out, expected):
    assert parser(out) == expected


def test_tool_that_failed_is_null_even_if_it_printed_a_version():
    doc = json.loads(recorded("healthy-h100x2.json"))
    doc["tools"]["docker"]["rc"] = 1
    assert parse_probe_output(json.dumps(doc)).facts.docker_version is None


def test_gpu_from_dict_builds_the_same_frozen_record_as_the_constructor():
    from dataclasses import FrozenInstanceError, fields

    from fleetctl.core.facts import GpuFacts, gpu_from_dict

    doc = {"index": 1, "name": "NVIDIA H100", "compute_capability": "9.0", "memory_total_mib": 81559, "lost": None}
    gpu = gpu_from_dict(doc)
    assert gpu == GpuFacts(index=1, name="NVIDIA H100", compute_capability="9.0", memory_total_mib=81559)
    assert {f.name for f in fields(GpuFacts)} == set(vars(gpu))  # every field set, nothing more
    with pytest.raises(FrozenInstanceError):
        gpu.name = "x"  # type: ignore[misc]


def _full_gpu(**changes):
    from fleetctl.core.facts import _GPU_KEYS

    doc = dict.fromkeys(_GPU_KEYS)
    doc.update(index=0, name="NVIDIA H100", memory_total_mib=81559, power_draw_w=70, lost=False, throttle_reasons=[])
    doc.update(changes)
    return doc


class _Dict(dict):
    pass


@pytest.mark.parametrize(
    "doc",
    [
        _full_gpu(),
        _full_gpu(power_draw_w=71.5, power_limit_w=700, throttle_reasons=["idle"], ecc_mode=True, lost=None),
        _full_gpu(index=True),
        _full_gpu(index=None),
        _full_gpu(memory_total_mib=1.5),
        _full_gpu(memory_used_mib=True),
        _full_gpu(name=3),
        _full_gpu(lost=1),
        _full_gpu(throttle_reasons=[1]),
        _full_gpu(throttle_reasons="idle"),
        _full_gpu(compute_capability="nine"),
        _full_gpu(memory_used_mib=-1),
        _full_gpu(power_draw_w=float("inf")),
        _full_gpu(utilization_pct=101),
        _full_gpu(extra="a newer probe's field"),
        {k: v for k, v in _full_gpu().items() if k != "uuid"},
        _Dict(_full_gpu()),
        [1, 2],
    ],
)
def test_a_whole_gpu_entry_read_at_once_is_read_as_field_by_field(doc):
    """The quick path (every value of an exact type, found in C) and the field-by-field one agree, errors too."""
    from fleetctl.core import facts

    def field_by_field(d):
        known = facts._typed_gpu(d)
        known["lost"] = bool(known["lost"])
        if known["throttle_reasons"] is not None and not all(isinstance(r, str) for r in known["throttle_reasons"]):
            raise facts.ProbeOutputError("throttle_reasons: expected a list of names")
        facts._check_gpu_values(known)
        return facts.GpuFacts(**known)

    outcomes = []
    for read in (facts.gpu_from_dict, field_by_field, facts.gpu_from_dict):  # twice: the second finds it known
        try:
            outcomes.append(("ok", read(doc)))
        except facts.ProbeOutputError as e:
            outcomes.append(("error", str(e)))
    assert outcomes[0] == outcomes[1] == outcomes[2]


@pytest.mark.parametrize(
    "changes",
    [{}, {"kernel": None}, {"kernel": 6}, {"os": True}, {"extra": 1}, {"driver_version": ["550"]}],
)
def test_host_facts_read_at_once_are_read_as_field_by_field(changes):
    from fleetctl.core import facts

    doc = {k: f"v-{k}" for k in facts._HOST_TYPES}
    doc.update(changes)
    doc.pop("hostname") if "extra" in changes else None  # a missing key: the field-by-field path, same answer
    outcomes = []
    for read in (
        lambda d: facts.HostFacts.from_dict(d),
        lambda d: facts.HostFacts(**{k: facts._typed(d, k, t) for k, t in facts._HOST_TYPES.items()}),
    ):
        try:
            outcomes.append(("ok", read(doc)))
        except facts.ProbeOutputError as e:
            outcomes.append(("error", str(e)))
    assert outcomes[0] == outcomes[1]
