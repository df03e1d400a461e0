"""The profiles a fleet's pools declare: each must exist and serve a model name no other pool serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleetctl.core.compat.profile import Profile
from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.pools import duplicate_served_name
from fleetctl.errors import ConfigError, UsageError


def pool_profiles(environ: Mapping[str, str], fleet: Fleet) -> dict[str, Profile]:
    """Pool name → its declared profile; ConfigError ``FLEET:LINE`` for an unknown or unreadable profile, or two
    pools serving the same model name. Empty for a fleet without ``[[pools]]``."""
    if not fleet.pools:
        return {}
    from fleetctl.services.profiles import load_matrix, profile_dirs
    from fleetctl.services.profiles import load_profile as load

    dirs = profile_dirs(environ, fleet.path)
    matrix = load_matrix(dirs)
    found: dict[str, Profile] = {}
    for pool in fleet.pools:
        try:
            found[pool.name] = load(pool.profile, dirs, matrix)
        except ConfigError as e:
            raise ConfigError(f"pool {pool.name}: {e.message}", path=fleet.path, line=pool.line, hint=e.hint) from e
    served = {name: p.serve.served_name for name, p in found.items() if p.serve is not None}
    twice = duplicate_served_name(served)
    if twice is not None:
        first, second, model = twice
        line = next(p.line for p in fleet.pools if p.name == second)
        raise ConfigError(f"pools {first} and {second} both serve model {model}", path=fleet.path, line=line)
    return found


@dataclass(frozen=True)
class DeployScope:
    profile: Profile
    hosts: tuple[Host, ...]  # to deploy on
    already: tuple[str, ...] = ()  # a pool's hosts that serve already: left alone


def deploy_scope(
    environ: Mapping[str, str], fleet: Fleet, pool_name: str | None, profile_ref: str | None, limit: str | None
) -> DeployScope:
    """``deploy``'s profile and hosts: on a fleet with pools, the pool's declared profile on its hosts that run
    nothing yet (``--pool`` required, ``--profile`` refused); else ``--profile`` on the ``--limit`` hosts."""
    from fleetctl.core.pools import chosen_pool
    from fleetctl.core.selector import select_hosts
    from fleetctl.services.statefile import load_state

    pool = chosen_pool(fleet, pool_name, "deploy")
    if pool is None:
        if profile_ref is None:
            raise UsageError("deploy needs --profile NAME")
        return DeployScope(_load(environ, fleet, profile_ref), select_hosts(fleet.hosts, limit, fleet_name=fleet.name))
    if profile_ref is not None:
        raise UsageError(
            f"deploy --pool {pool.name}: the pool's profile is the one its [[pools]] table declares "
            f"({pool.profile}); leave out --profile (to move the pool, change the fleet file or use upgrade)"
        )
    members = tuple(h for h in fleet.hosts if h.name in pool.members)
    chosen = select_hosts(members, limit, fleet_name=f"{fleet.name}, pool {pool.name}")
    serving = load_state(fleet).serving
    fresh = tuple(h for h in chosen if h.name not in serving)
    return DeployScope(
        pool_profiles(environ, fleet)[pool.name], fresh, tuple(h.name for h in chosen if h.name in serving)
    )


def _load(environ: Mapping[str, str], fleet: Fleet, ref: str) -> Profile:
    from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs

    dirs = profile_dirs(environ, fleet.path)
    return load_profile(ref, dirs, load_matrix(dirs))
