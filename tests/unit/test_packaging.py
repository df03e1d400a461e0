"""The wheel's package list: every package on disk, plus profiles/ shipped inside it as fleetctl/profiles."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_listed_packages_are_the_packages_on_disk_plus_the_profiles():
    listed = setuptools_table()["packages"]
    on_disk = [".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fleetctl").rglob("__init__.py")]
    assert sorted(listed) == sorted(on_disk + ["fleetctl.profiles", "fleetctl.profiles.matrix"])


def test_the_profiles_package_is_the_profiles_folder_with_its_matrix():
    table = setuptools_table()
    folder = ROOT / table["package-dir"]["fleetctl.profiles"]
    assert sorted(folder.glob("*.toml")) and sorted((folder / "matrix").glob("*.toml"))
    assert table["package-data"]["fleetctl.profiles"] == ["*.toml"]
    assert table["package-data"]["fleetctl.profiles.matrix"] == ["*.toml"]
