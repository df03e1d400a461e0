"""What may reach ssh: host names, addresses, user names, ProxyJump chains and URLs, checked before use.

paramiko puts a host's address, user and port into ssh_config's ``ProxyCommand`` and ``Match exec`` (``%h``,
``%r``, ``%p``), which a shell runs. So, as OpenSSH does for its command line, only what a host name, an address
or a user can be is accepted: letters, digits, ``.``, ``-`` and ``_`` (an ssh_config alias too), an IPv4
address, an IPv6 address (in brackets, optionally with ``%zone``); never whitespace, a shell metacharacter or a
leading ``-``. Each check returns what is wrong (for ``FILE:LINE: KEY: ...``) or None. Pure.
"""

from __future__ import annotations

import ipaddress
import json
import re
from urllib.parse import urlsplit

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_IPV6_LIKE = re.compile(r"\[[^\]]*\]|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(%\S*)?")
_ZONE = re.compile(r"[A-Za-z0-9._-]+")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)(?:%([^\]]*))?\]")
_HOP = re.compile(r"(?:ssh://)?(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>.*))?")
NAME_RULE = 'letters, digits, ".", "-" or "_", not starting with "-" or "."'
MAX_LABEL = 63  # RFC 1035; longer labels are an IDNA error deep in the resolver
MAX_NAME = 253


def shown(value: str) -> str:
    """``value`` in double quotes with control and non-ASCII characters escaped, so a message stays one line
    of plain text whatever the file held."""
    return json.dumps(value)


def host_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a host to connect to (name, alias, IPv4, IPv6), or None."""
    if _IPV6_LIKE.fullmatch(value):
        return _ipv6_problem(value)
    if not _NAME.fullmatch(value):
        return f"must be a host name, an IP address or an ssh_config alias ({NAME_RULE}), got {shown(value)}"
    if len(value) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters, got {len(value)}"
    labels = value.removesuffix(".").split(".")
    if "" in labels:
        return f"has an empty label (two dots in a row), got {shown(value)}"
    long = next((label for label in labels if len(label) > MAX_LABEL), None)
    if long is not None:
        return f"label {shown(long[:20] + '...')} is {len(long)} characters long (at most {MAX_LABEL})"
    return None


def _ipv6_problem(value: str) -> str | None:
    bracketed = _BRACKETED.fullmatch(value)
    address, zone = bracketed.groups() if bracketed else (value, None)
    if not bracketed and "%" in value:
        address, zone = value.split("%", 1)
    why = f"must be an IPv6 address ([addr] or [addr%zone]), got {shown(value)}"
    if zone is not None and not _ZONE.fullmatch(zone):
        return why
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return why
    return None


def unbracketed(address: str) -> str:
    """``[fe80::1%eth0]`` -> ``fe80::1%eth0``: what a socket (and ssh_config's ``Host``) expects."""
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


def user_problem(value: str) -> str | None:
    if _NAME.fullmatch(value):
        return None
    return f"must be a user name ({NAME_RULE}), got {shown(value)}"


def jump_problem(spec: str) -> str | None:
    """What is wrong with a ProxyJump chain ``[ssh://][user@]host[:port],...`` (or ``none``), or None."""
    if spec.lower() == "none":
        return None
    for number, hop in enumerate(spec.split(","), start=1):
        problem = _hop_problem(hop)
        if problem:
            return f"hop {number} {shown(hop)}: {problem}" if hop else f"hop {number} is empty"
    return None


def _hop_problem(hop: str) -> str | None:
    if not hop:
        return "empty"
    parts = _HOP.fullmatch(hop)
    if parts is None:
        return f"must be [user@]host[:port], got {shown(hop)}"
    user, host, port = parts.group("user", "host", "port")
    if user is not None and (problem := user_problem(user)):
        return f"user {problem}"
    if problem := host_problem(host):
        return f"host {problem}"
    if port is not None and (problem := port_problem(port)):
        return problem
    return None


def port_problem(port: str) -> str | None:
    if port.isascii() and port.isdigit() and 1 <= int(port) <= 65535:
        return None
    return f"port must be a number from 1 to 65535, got {shown(port)}"


def http_url_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an ``http://`` or ``https://`` URL of a host and port, or None."""
    wrong = f"must be an http:// or https:// URL, got {shown(value)}"
    if not value.isprintable() or any(c.isspace() for c in value):
        return wrong
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        port_text = value.split("://", 1)[-1].split("/", 1)[0].rpartition(":")[2]
        return f"port must be a number from 1 to 65535, got {shown(port_text)}"
    if url.scheme not in ("http", "https") or not url.hostname:
        return wrong
    if port == 0:
        return 'port must be a number from 1 to 65535, got "0"'
    return None
