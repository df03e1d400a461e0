"""The one TOML reader: tomllib parses, lines are found only when asked, syntax errors name FILE:LINE."""

from __future__ import annotations

import pytest

from fleetctl.core.compat.document import parse_document
from fleetctl.core.tomldoc import KeyLines, read_toml
from fleetctl.errors import ConfigError

HOSTS = '[fleet]\nname = "t"\n\n[[hosts]]\nname = "a"\n[[ hosts ]]   # spaced\nname = "b"\n\n[[hosts]]\nname = "c"\n'


def test_array_lines_finds_each_header():
    assert read_toml(HOSTS, "f.toml").array_lines("hosts") == [4, 6, 9]


@pytest.mark.parametrize(
    "text, expected",
    [
        # a multi-line string that holds a header-like line: the full reading, not the regex
        ('[fleet]\nname = "t"\nmotd = """\n[[hosts]]\n"""\n[[hosts]]\nname = "a"\n', [6]),
        ("[fleet]\nname = 't'\nmotd = '''\n[[hosts]]\n'''\n[[hosts]]\nname = 'a'\n", [6]),
        # a quoted header the regex does not see: counts differ, so the full reading
        ('[[hosts]]\nname = "a"\n[["hosts"]]\nname = "b"\n', [1, 3]),
        # an inline array: every element is on the array's line
        ('hosts = [\n  { name = "a" },\n  { name = "b" },\n]\n', [1, 1]),
        ("", []),
    ],
)
def test_array_lines_falls_back_to_the_full_reading(text, expected):
    assert read_toml(text, "f.toml").array_lines("hosts") == expected


def test_lines_are_read_only_when_asked():
    doc = read_toml(HOSTS, "f.toml")
    assert doc._lines is None
    assert doc.line(("hosts", 1, "name")) == 7 and doc._lines is not None
    assert str(doc.error("bad", ("hosts", 2))) == "f.toml:9: bad"
    assert str(doc.error("bad")) == "f.toml: bad"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[a]\nx = 1\n[b]\n[a]\n", "p.toml:4: a is defined twice (first at line 1)"),
        ("[a]\nx = 1\nx = 2\n", "p.toml:3: a.x is defined twice (first at line 2)"),
        ("[a]\nx = 1s\n", "p.toml:2: not valid TOML: Invalid number (column 7)"),
        ('[a]\nx = "open\n', "p.toml:2: not valid TOML: Control characters (codes less than 0x1f and 0x7f) are not"),
    ],
)
def test_profiles_and_the_matrix_get_the_same_syntax_errors_as_the_fleet_file(text, expected):
    with pytest.raises(ConfigError) as e:
        parse_document(text, "p.toml")
    assert str(e.value).startswith(expected)


def test_key_lines_skip_strings_of_every_kind_and_count_their_newlines():
    text = 'a = "x # [y]"\nb = \'\'\'\n\n\'\'\'\nc = """q\\"""\n"""\nd = [\n "]",\n]\ne = 1\n'
    lines = KeyLines.read(text).lines
    assert lines == {("a",): 1, ("b",): 2, ("c",): 5, ("d",): 7, ("e",): 10}


def test_key_lines_of_broken_text_is_empty_not_an_exception():
    assert KeyLines.read('a = "never closed\n').lines == {}
    assert KeyLines.read("[unclosed\n").lines == {}


BIG = '[fleet]\nname = "t"\n' + "".join(f'\n[[hosts]]\nname = "h{i}"\n[hosts.labels]\nrack = "r"\n' for i in range(200))


@pytest.mark.parametrize(
    "tail",
    [
        "port = 22s\n",
        'port = "22\n',
        "x = [1,\n",
        'x = """never closed\n',
        "x = [\n  1,\n  2 3,\n]\n",
        "[[hosts]\n",
        'motd = """\n[[hosts]]\n"""\nport = 1x\n',
    ],
)
def test_a_syntax_error_deep_in_a_big_file_reads_as_tomlkit_reads_the_whole_file(tail):
    """tomlkit is asked about the lines from the header above the error only; the answer must be the same."""
    from fleetctl.core.tomldoc import _tomlkit_reason

    text = BIG + tail
    reason, line, col = _tomlkit_reason(text)
    with pytest.raises(ConfigError) as e:
        read_toml(text, "f.toml")
    assert str(e.value) == f"f.toml:{line}: TOML syntax error: {reason} (column {col + 1})"
