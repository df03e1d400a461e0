"""Finding and reading deployment profiles and the compatibility matrix (``profiles/`` and ``profiles/matrix/``).

Lookup order for the profiles folder: ``$FLEETCTL_PROFILES``, then ``profiles/`` beside the fleet file, then
the ``profiles/`` next to the ``fleetctl`` package (a source checkout or editable install), then
``fleetctl/profiles`` inside the installed package. The matrix is ``matrix/`` in the first folder that has one.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping

from fleetctl.core.compat.matrix import Matrix, parse_matrix
from fleetctl.core.compat.profile import Profile, parse_profile
from fleetctl.errors import ConfigError

PROFILES_ENV = "FLEETCTL_PROFILES"
MATRIX_DIR = "matrix"


def profile_dirs(env: Mapping[str, str], fleet_path: str) -> tuple[str, ...]:
    """The folders that may hold profiles, in lookup order, those that exist."""
    import fleetctl

    package = os.path.dirname(os.path.abspath(fleetctl.__file__))
    candidates = [
        env.get(PROFILES_ENV) or "",
        os.path.join(os.path.dirname(os.path.abspath(fleet_path)), "profiles"),
        os.path.join(os.path.dirname(package), "profiles"),
        os.path.join(package, "profiles"),
    ]
    found = [os.path.abspath(c) for c in candidates if c and os.path.isdir(c)]
    return tuple(dict.fromkeys(found))


def load_matrix(dirs: tuple[str, ...]) -> Matrix:
    for folder in dirs:
        paths = sorted(glob.glob(os.path.join(folder, MATRIX_DIR, "*.toml")))
        if paths:
            return parse_matrix({_shown(p): _read(p) for p in paths})
    looked = ", ".join(dirs) or "nowhere: no profiles folder exists"
    raise ConfigError(
        f"no compatibility matrix (profiles/{MATRIX_DIR}/*.toml) found; looked in {looked}",
        hint=f"set ${PROFILES_ENV} to a folder that holds {MATRIX_DIR}/",
    )


def load_profile(ref: str, dirs: tuple[str, ...], matrix: Matrix) -> Profile:
    """A profile by file stem (``llama31-8b-vllm011``) or by path (``./my.toml``)."""
    path = find_profile(ref, dirs)
    return parse_profile(_read(path), _shown(path), matrix)


def find_profile(ref: str, dirs: tuple[str, ...]) -> str:
    if ref.endswith(".toml") or os.sep in ref:
        if not os.path.isfile(ref):
            raise ConfigError("profile file not found", path=ref)
        return ref
    for folder in dirs:
        path = os.path.join(folder, f"{ref}.toml")
        if os.path.isfile(path):
            return path
    known = ", ".join(profile_names(dirs)) or "none"
    raise ConfigError(
        f"unknown profile {ref!r}; known profiles: {known}",
        hint=f"give a profile's file stem or a path; profiles are looked up in {', '.join(dirs) or '-'}",
    )


def profile_names(dirs: tuple[str, ...]) -> list[str]:
    names = {os.path.basename(p)[:-5] for folder in dirs for p in glob.glob(os.path.join(folder, "*.toml"))}
    return sorted(names)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=_shown(path)) from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text: {e.reason}", path=_shown(path)) from e


def _shown(path: str) -> str:
    """The path as errors show it: relative to the working directory when it is below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
