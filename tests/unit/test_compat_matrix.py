"""The compatibility matrix and profiles as data: the shipped files load, bad files fail with FILE:LINE."""

from pathlib import Path

import pytest

from fleetctl.core.compat.document import key_lines
from fleetctl.core.compat.matrix import parse_matrix
from fleetctl.core.compat.profile import parse_profile
from fleetctl.errors import ConfigError
from fleetctl.services.profiles import find_profile, load_matrix, load_profile, profile_dirs, profile_names

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
MATRIX_FILES = {str(p): p.read_text() for p in sorted((PROFILES / "matrix").glob("*.toml"))}


@pytest.fixture(scope="module")
def matrix():
    return parse_matrix(MATRIX_FILES)


# ------------------------------------------------------------------------------------------- shipped data


def test_the_shipped_matrix_loads_and_every_row_has_a_source(matrix):
    rows = [
        *matrix.releases,
        *matrix.minor_compat,
        *matrix.forward_compat,
        *matrix.gpus,
        *matrix.classes_by_name,
        *matrix.driver_floors,
        *matrix.architectures,
        *matrix.vllm_releases,
        *matrix.vllm_min_cc,
        *matrix.features,
    ]
    assert len(rows) > 100
    assert all(r.source.startswith("https://") for r in rows)


def test_unconfirmed_facts_are_flagged_not_silently_trusted(matrix):
    assert not matrix.cuda_release("13.4")[0].confirmed
    assert not matrix.gpu("NVIDIA A10G").confirmed
    assert not matrix.vllm_release("0.11.0").confirmed and matrix.vllm_release("0.12.0").confirmed
    assert [r.confirmed for r in matrix.vllm_min_cc] == [True, False, True]


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.toml")))
def test_every_shipped_profile_loads(name, matrix):
    profile = load_profile(name, (str(PROFILES),), matrix)
    assert profile.name == name and profile.serve is not None and profile.serve.model


def test_the_issue_asks_for_cuda_128_129_130_and_an_fp8_profile(matrix):
    profiles = [load_profile(n, (str(PROFILES),), matrix) for n in profile_names((str(PROFILES),))]
    assert {"12.8", "12.9", "13.0"} <= {p.cuda[:4] for p in profiles}
    assert any("fp8" in p.requires.features for p in profiles)


@pytest.mark.parametrize(
    "cuda, row, exact",
    [
        ("12.8", "12.8", True),
        ("12.8.0", "12.8", True),
        ("12.8.1", "12.8.1", True),
        ("13.0.3", "13.0.2", False),
        ("12.7", None, False),
        ("12.7.1", None, False),
    ],
)
def test_cuda_release_lookup(matrix, cuda, row, exact):
    found, is_exact = matrix.cuda_release(cuda)
    assert (found.cuda if found else None, is_exact) == (row, exact)


@pytest.mark.parametrize(
    "driver, newest",
    [
        ("550.54.15", "12.4"),
        ("550.54.14", "12.4"),
        ("550.54.13", "12.3"),
        ("535.183.01", "12.2"),
        ("580.95.05", "13.0"),
        ("450.80.02", None),
    ],
)
def test_newest_cuda_a_driver_runs_natively(matrix, driver, newest):
    assert matrix.newest_cuda_for(driver) == newest


@pytest.mark.parametrize(
    "nvml_name, model, gpu_class",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", "datacenter"),
        ("NVIDIA H100 PCIe", "H100 PCIe", "datacenter"),
        ("NVIDIA H100 NVL", "H100 NVL", "datacenter"),
        ("NVIDIA H200", "H200 SXM", "datacenter"),
        ("NVIDIA H200 NVL", "H200 NVL", "datacenter"),
        ("NVIDIA H20", "H20", "datacenter"),
        ("NVIDIA GH200 480GB", "GH200", "datacenter"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4", "datacenter"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe", "datacenter"),
        ("NVIDIA A10", "A10", "datacenter"),
        ("NVIDIA A10G", "A10G", "datacenter"),
        ("Tesla V100-SXM2-32GB", "V100", "datacenter"),
        ("Tesla T4", "T4", "datacenter"),
        ("NVIDIA L40S", "L40S", "datacenter"),
        ("NVIDIA B200", "B200", "datacenter"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada", "workstation"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX PRO 6000 Blackwell", "workstation"),
        ("NVIDIA GeForce RTX 4090", None, "geforce"),
        ("NVIDIA TITAN RTX", None, "geforce"),
        ("Some Future Accelerator", None, "unknown"),
    ],
)
def test_gpu_names_map_to_rows_and_classes(matrix, nvml_name, model, gpu_class):
    row = matrix.gpu(nvml_name)
    assert (row.model if row else None, matrix.gpu_class(nvml_name)[0]) == (model, gpu_class)


def test_features_depend_on_the_image_cuda(matrix):
    assert matrix.feature("fp4", "12.9").compute_capability == ("==10.0", "==10.1", "==12.0", "==12.1")
    assert matrix.feature("fp4", "13.0.2").compute_capability == (">=10.0,<13.0",)
    assert matrix.feature("nope", "12.8") is None


# -------------------------------------------------------------------------------------- broken matrix files


def _broken(filename: str, old: str, new: str) -> dict[str, str]:
    files = dict(MATRIX_FILES)
    path = next(p for p in files if p.endswith(filename))
    assert old in files[path]
    files[path] = files[path].replace(old, new, 1)
    return files


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "filename, old, new, needle, words",
    [
        (
            "cuda_driver.toml",
            'min_driver = "570.26"',
            'min_drivr = "570.26"',
            "min_drivr",
            "unknown key release.min_drivr (did you mean min_driver?)",
        ),
        (
            "cuda_driver.toml",
            'min_driver = "570.26"',
            'min_driver = "570.26"\nmaximum = "1"',
            "maximum",
            "unknown key release.maximum",
        ),
        (
            "cuda_driver.toml",
            'min_driver = "570.26"',
            'min_driver = "570.2x6"',
            '"570.2x6"',
            'release.min_driver: must be a version, got "570.2x6"',
        ),
        (
            "cuda_driver.toml",
            'cuda = "12.8"\n',
            "cuda = 12.8\n",
            "cuda = 12.8",
            "release.cuda: expected a string, got float",
        ),
        (
            "gpus.toml",
            'compute_capability = "9.0"',
            'compute_capability = "nine"',
            '"nine"',
            'gpu.compute_capability: must be a version, got "nine"',
        ),
        ("gpus.toml", 'class = "workstation"', 'class = "desk"', '"desk"', "gpu.class: must be one of"),
        (
            "vllm.toml",
            'vllm = ">=0.9,<0.10"',
            'vllm = "=>0.9"',
            '"=>0.9"',
            'vllm_release.vllm: must be a version specifier (e.g. ">=8.0"), got "=>0.9"',
        ),
        (
            "vllm.toml",
            'compute_capability = [">=8.9"]',
            'compute_capability = [">=8.9x"]',
            '">=8.9x"',
            'feature.compute_capability: must be a version specifier (e.g. ">=8.0"), got ">=8.9x"',
        ),
        (
            "runtime.toml",
            'min_version = "19.03"',
            'min_version = "nineteen"',
            '"nineteen"',
            'docker.min_version: must be a version, got "nineteen"',
        ),
        ("runtime.toml", 'lost = "fail"', 'lost = "explode"', '"explode"', "gpu_health.lost: must be one of"),
        (
            "architectures.toml",
            'first_cuda = "12.8"',
            'first_cuda = "12.8"\nremoved = "x"',
            'removed = "x"',
            "unknown key architecture.removed",
        ),
        ("runtime.toml", "[docker]", "[dockerd]", "[dockerd]", "unknown table [dockerd] (did you mean [docker]?)"),
        (
            "gpus.toml",
            'source = "https://developer.nvidia.com/cuda-legacy-gpus"',
            'source = "somewhere"',
            'source = "somewhere"',
            'source: must be an https:// URL, got "somewhere"',
        ),
    ],
)
def test_a_wrong_matrix_is_rejected_with_file_and_line(filename, old, new, needle, words):
    files = _broken(filename, old, new)
    path = next(p for p in files if p.endswith(filename))
    with pytest.raises(ConfigError) as e:
        parse_matrix(files)
    assert (e.value.path, e.value.line) == (path, _line_of(files[path], needle))
    assert words in str(e.value) and str(e.value).startswith(f"{path}:{e.value.line}: ")


def test_a_missing_source_points_at_the_row():
    files = _broken(
        "cuda_driver.toml",
        'min_driver = "575.51.03"\nsource = "https://docs.nvidia.com/cuda/archive/'
        '13.1.0/cuda-toolkit-release-notes/index.html"',
        'min_driver = "575.51.03"',
    )
    path = next(p for p in files if p.endswith("cuda_driver.toml"))
    with pytest.raises(ConfigError, match="missing key release.source") as e:
        parse_matrix(files)
    assert e.value.line == _line_of(files[path], 'cuda = "12.9"') - 1  # the [[release]] header


def test_a_table_defined_twice_and_a_missing_table_are_errors():
    twice = {**MATRIX_FILES, "extra.toml": '[docker]\nmin_version = "20.10"\nsource = "https://example.org"\n'}
    with pytest.raises(ConfigError, match="already defined in") as e:
        parse_matrix(twice)
    assert (e.value.path, e.value.line) == ("extra.toml", 1)
    without = {p: t for p, t in MATRIX_FILES.items() if not p.endswith("runtime.toml")}
    with pytest.raises(ConfigError, match="no docker, container_toolkit, fabric_manager"):
        parse_matrix(without)


def test_toml_syntax_errors_carry_the_line():
    files = _broken("gpus.toml", 'model = "V100"', 'model = "V100')
    with pytest.raises(ConfigError, match="not valid TOML") as e:
        parse_matrix(files)
    assert e.value.line == _line_of(files[next(p for p in files if p.endswith("gpus.toml"))], 'model = "V100')


def test_key_lines_follows_arrays_of_tables_multiline_values_and_comments():
    text = (
        'top = 1\n[[a]]\nx = 1\n[[a]]\n# x = 9\nx = [\n  "[b]",\n  "y = 2",\n]\ny = "q"\n[t.sub]\nk = "v"  # comment\n'
    )
    lines = key_lines(text)
    assert lines[("top",)] == 1 and lines[("a", 0, "x")] == 3 and lines[("a", 1)] == 4
    assert lines[("a", 1, "x")] == 6 and lines[("a", 1, "y")] == 10 and lines[("t", "sub", "k")] == 12
    assert ("b",) not in lines and ("a", 1, "y") in lines


# ------------------------------------------------------------------------------------------------ profiles

GOOD = """\
[profile]
name = "p"

[image]
ref = "vllm/vllm-openai:v0.12.0"
cuda = "12.9"
vllm = "0.12.0"

[requires]
gpus = ">=2"
features = ["fp8"]

[serve]
model = "m"
port = 8001
args = ["--x", "1"]
"""


def test_a_profile_parses(matrix):
    p = parse_profile(GOOD, "p.toml", matrix)
    assert (p.name, p.image, p.cuda, p.vllm, p.cuda_compat) == ("p", "vllm/vllm-openai:v0.12.0", "12.9", "0.12.0", True)
    assert str(p.requires.gpus) == ">=2" and p.requires.features == ("fp8",)
    assert (p.serve.model, p.serve.port, p.serve.args) == ("m", 8001, ("--x", "1"))


@pytest.mark.parametrize(
    "old, new, needle, words",
    [
        ("port = 8001", "port = 8001\nreplicas = 2", "replicas", "unknown key serve.replicas"),
        ('gpus = ">=2"', "gpus = 2", "gpus = 2", "requires.gpus: expected a string, got integer"),
        (
            'gpus = ">=2"',
            'gpus = "two"',
            'gpus = "two"',
            'requires.gpus: must be a version specifier (e.g. ">=8.0"), got "two"',
        ),
        (
            'features = ["fp8"]',
            'features = ["fp9"]',
            "fp9",
            'requires.features: unknown feature "fp9" (known: fp8, fa3, flashmla, fp4)',
        ),
        ('cuda = "12.9"', 'cuda = "12.8"', 'cuda = "12.8"', "is built with CUDA 12.9"),
        (
            'ref = "vllm/vllm-openai:v0.12.0"',
            'ref = "vllm/vllm-openai:v0.13.0"',
            'vllm = "0.12.0"',
            "but the image tag says 0.13.0",
        ),
        (
            'ref = "vllm/vllm-openai:v0.12.0"\ncuda = "12.9"',
            'ref = "my/image:1"\ncuda = "12.7"',
            'cuda = "12.7"',
            "CUDA 12.7 is not in the matrix",
        ),
        ("[serve]", "[served]", "[served]", "unknown table [served]"),
        ("port = 8001", "port = 70000", "port = 70000", "serve.port: must be between 1 and 65535, got 70000"),
        ("port = 8001", 'restart = "sometimes"', "restart", "serve.restart: must be one of"),
    ],
)
def test_a_bad_profile_is_rejected_with_file_and_line(matrix, old, new, needle, words):
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as e:
        parse_profile(text, "p.toml", matrix)
    assert words in e.value.reason and e.value.line == _line_of(text, needle)


def test_a_profile_may_leave_cuda_to_a_confirmed_vllm_line_or_a_cu_tag(matrix):
    without = GOOD.replace('cuda = "12.9"\n', "")
    assert parse_profile(without, "p.toml", matrix).cuda == "12.9"
    tagged = without.replace("v0.12.0", "v0.20.0-cu129").replace('vllm = "0.12.0"', 'vllm = "0.20.0"')
    assert parse_profile(tagged, "p.toml", matrix).cuda == "12.9"
    unconfirmed = without.replace("0.12.0", "0.11.0")
    with pytest.raises(
        ConfigError, match="image.cuda: is required: the CUDA of the vLLM >=0.11,<0.12 image is not confirmed"
    ):
        parse_profile(unconfirmed, "p.toml", matrix)


def test_serve_keys_of_later_issues_are_accepted(matrix):
    text = GOOD.replace(
        "port = 8001",
        'port = 8001\ngpus = "all"\nenv = { HF_TOKEN = "env:HF_TOKEN" }\n'
        'volumes = { "/models" = "/root/.cache/huggingface:ro" }\nshm_size = "32g"\n'
        'restart = "unless-stopped"\nhealth_timeout_s = 600\nshutdown_timeout_s = 30',
    )
    serve = parse_profile(text, "p.toml", matrix).serve
    assert (serve.gpus, serve.env["HF_TOKEN"], serve.shm_size, serve.health_timeout_s) == (
        "all",
        "env:HF_TOKEN",
        "32g",
        600,
    )


# ----------------------------------------------------------------------------------------- finding profiles


def test_profile_lookup_order_and_unknown_profile(tmp_path, monkeypatch, matrix):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "llama31-8b-vllm011.toml").write_text(GOOD.replace('name = "p"', 'name = "mine"'))
    fleet_dir = tmp_path / "site"
    (fleet_dir / "profiles").mkdir(parents=True)
    dirs = profile_dirs({"FLEETCTL_PROFILES": str(own)}, str(fleet_dir / "fleet.toml"))
    assert dirs[:2] == (str(own), str(fleet_dir / "profiles")) and str(PROFILES) in dirs
    assert load_profile("llama31-8b-vllm011", dirs, matrix).name == "mine"  # $FLEETCTL_PROFILES wins
    assert load_matrix(dirs).releases == matrix.releases  # the matrix comes from the repo
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'; known profiles: .*llama31-8b-vllm011"):
        find_profile("nope", dirs)
    with pytest.raises(ConfigError, match="profile file not found"):
        find_profile(str(tmp_path / "missing.toml"), dirs)


def test_a_profile_overrides_rollout_thresholds_and_bad_values_are_caught(tmp_path):
    import dataclasses

    from fleetctl.core.compat.profile import parse_profile
    from fleetctl.core.fleet import RolloutSettings
    from fleetctl.errors import ConfigError
    from fleetctl.services.profiles import load_matrix, profile_dirs

    matrix = load_matrix(profile_dirs({}, str(tmp_path / "fleet.toml")))
    base = (
        '[profile]\nname = "p"\n[image]\nref = "vllm/vllm-openai:v0.11.0"\ncuda = "12.8"\n'
        "[rollout]\nbake_s = 120\nmax_error_rate = 0.001\n"
    )
    profile = parse_profile(base, "p.toml", matrix)
    assert profile.rollout == {"bake_s": 120, "max_error_rate": 0.001}
    merged = dataclasses.replace(RolloutSettings(max_unavailable=2), **profile.rollout)
    assert (merged.bake_s, merged.max_error_rate, merged.max_unavailable) == (120, 0.001, 2)
    with pytest.raises(ConfigError, match=r"p.toml:8: rollout.max_error_rate: must be between 0 and 1, got 2"):
        parse_profile(base.replace("0.001", "2"), "p.toml", matrix)
    with pytest.raises(ConfigError, match="p.toml:9"):
        parse_profile(base + "rings = []\n", "p.toml", matrix)
