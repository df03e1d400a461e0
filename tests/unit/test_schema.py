"""core.schema: the one wording for a key that is missing, of the wrong type, unknown or failing a check."""

from __future__ import annotations

import pytest

from fleetctl.core.compat.document import Fields, parse_document
from fleetctl.core.schema import Field, check_value, failed, missing_key, unknown_key, unknown_table, wrong_type
from fleetctl.errors import ConfigError


@pytest.mark.parametrize(
    "message, expected",
    [
        (wrong_type(("ssh", "user"), "string", 3), "ssh.user: expected a string, got integer"),
        (wrong_type(("gpu", 2, "names"), "strings", "x"), "gpu.names: expected an array of strings, got string"),
        (wrong_type(("x",), '"all" or a count', True), 'x: expected "all" or a count, got boolean'),
        (failed(("image", "cuda"), "must be a version"), "image.cuda: must be a version"),
        (missing_key(("image", "ref")), "missing key image.ref"),
        (unknown_key(("ssh", "usr"), ("user", "port")), "unknown key ssh.usr (did you mean user?)"),
        (unknown_key(("ssh", "zzz"), ("user", "port")), "unknown key ssh.zzz (known: user, port)"),
        (unknown_table("imgae", ("image", "serve")), "unknown table [imgae] (did you mean [image]?)"),
        (unknown_table("zzz", ("image", "serve")), "unknown table [zzz] (known: image, serve)"),
    ],
)
def test_each_message_has_one_wording(message, expected):
    assert message == expected


@pytest.mark.parametrize(
    "value, field, expected",
    [
        ("a", Field("string"), None),
        ("", Field("string"), ": must not be empty"),
        ("", Field("text"), None),
        (True, Field("integer"), ": expected an integer, got boolean"),
        (True, Field("boolean"), None),
        (1, Field("boolean"), ": expected true or false, got integer"),
        (["a", 1], Field("strings"), "[1]: expected a string, got integer"),
        ({"a": 1}, Field("string-table"), ".a: expected a string, got integer"),
    ],
)
def test_check_value_row_by_row(value, field, expected):
    assert check_value(value, field) == expected


def _fields(text: str) -> Fields:
    doc = parse_document(text, "p.toml")
    return Fields(doc, ("image",), doc.data["image"])


@pytest.mark.parametrize(
    "text, read, expected",
    [
        ("[image]\nref = 1\n", lambda f: f.text("ref"), "p.toml:2: image.ref: expected a string, got integer"),
        ('[image]\nrfe = "x"\n', lambda f: f.text("ref"), "p.toml:2: unknown key image.rfe (did you mean ref?)"),
        ("[image]\n", lambda f: f.text("ref"), "p.toml:1: missing key image.ref"),
        ('[image]\ncuda = "x.y"\n', lambda f: f.version("cuda"), 'p.toml:2: image.cuda: must be a version, got "x.y"'),
        ('[image]\nref = "x"\nzzz = 1\n', lambda f: (f.text("ref"), f.finish()), "p.toml:3: unknown key image.zzz"),
    ],
)
def test_compat_fields_speak_the_fleet_files_wording(text, read, expected):
    with pytest.raises(ConfigError) as e:
        read(_fields(text))
    assert str(e.value).startswith(expected)
