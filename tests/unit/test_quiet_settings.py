"""[rollout] min_requests, interval_s, failure_limit, smoke_rps, max_ttft_p95_ms and [rollout.smoke] prompts, in
the fleet file and as a profile's overrides: read, defaulted, and refused with FILE:LINE when wrong."""

from __future__ import annotations

import pytest

from fleetctl.core.compat.profile import parse_profile
from fleetctl.core.fleet import RolloutSettings
from fleetctl.core.fleetfile import parse_fleet
from fleetctl.errors import ConfigError
from tests.unit.test_compat_rules import MATRIX

FLEET = '[fleet]\nname = "f"\n\n{rollout}\n[[hosts]]\nname = "gpu-01"\naddress = "10.0.0.1"\n'
PROFILE = (
    '[profile]\nname = "p"\n[image]\nref = "vllm/vllm-openai:v0.11.0"\ncuda = "12.8"\nvllm = "0.11.0"\n{rollout}\n'
)


def fleet(rollout: str) -> RolloutSettings:
    return parse_fleet(FLEET.format(rollout=rollout), "fleet.toml").rollout


def test_the_defaults_ask_for_twenty_requests_judged_every_five_seconds():
    settings = fleet("")
    assert (settings.min_requests, settings.interval_s, settings.failure_limit, settings.smoke_rps) == (20, 5.0, 0, 2.0)
    assert settings.max_ttft_p95_ms is None and settings.smoke_prompts == ()


def test_the_fleet_file_sets_the_bake_and_the_smoke_prompts():
    settings = fleet(
        "[rollout]\nmin_requests = 40\ninterval_s = 2\nfailure_limit = 1\nsmoke_rps = 0.5\nmax_ttft_p95_ms = 250\n"
        '[rollout.smoke]\nprompts = ["ping", "a longer prompt"]\n'
    )
    assert (settings.min_requests, settings.interval_s, settings.failure_limit, settings.smoke_rps) == (40, 2.0, 1, 0.5)
    assert settings.max_ttft_p95_ms == 250.0 and settings.smoke_prompts == ("ping", "a longer prompt")


@pytest.mark.parametrize(
    ("rollout", "line", "words"),
    [
        ("[rollout]\nmin_requests = 0\n", 5, "rollout.min_requests: must be at least 1"),
        ("[rollout]\ninterval_s = 0\n", 5, "rollout.interval_s: must be greater than 0"),
        ("[rollout]\nfailure_limit = -1\n", 5, "rollout.failure_limit: must be at least 0"),
        ('[rollout]\nsmoke_rps = "2"\n', 5, "rollout.smoke_rps: expected a number"),
        ("[rollout.smoke]\nprompts = []\n", 5, "rollout.smoke.prompts: must be non-empty prompts"),
        ('[rollout.smoke]\nprompt = ["x"]\n', 5, "unknown key rollout.smoke.prompt"),
        ("[rollout]\nsmoke = 3\n", 5, "rollout.smoke: expected a table"),
    ],
)
def test_a_wrong_bake_setting_is_one_line_with_its_place(rollout, line, words):
    with pytest.raises(ConfigError) as e:
        fleet(rollout)
    assert str(e.value).startswith(f"fleet.toml:{line}: {words}"), str(e.value)


def test_a_profile_overrides_the_bake_and_the_smoke_prompts():
    text = PROFILE.format(rollout='[rollout]\nmin_requests = 5\nfailure_limit = 2\n[rollout.smoke]\nprompts = ["hi"]\n')
    assert parse_profile(text, "p.toml", MATRIX).rollout == {
        "min_requests": 5,
        "failure_limit": 2,
        "smoke_prompts": ("hi",),
    }


@pytest.mark.parametrize(
    "rollout",
    [
        "[rollout]\ninterval_s = 0\n",
        "[rollout]\nmin_requests = 0\n",
        '[rollout.smoke]\nprompts = [""]\n',
        "[rollout.smoke]\nx = 1\n",
    ],
)
def test_a_wrong_profile_override_is_refused(rollout):
    with pytest.raises(ConfigError, match=r"^p\.toml:\d+: "):
        parse_profile(PROFILE.format(rollout=rollout), "p.toml", MATRIX)
