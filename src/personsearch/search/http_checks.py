"""Request checks of the search server, as small pure functions (tested one by one).

* Host allow-list (DNS rebinding): a page on ``evil.example.com`` whose name is re-pointed at
  127.0.0.1 sends ``Host: evil.example.com``; only the names in the allow-list are answered.
* Same origin for state-changing requests: a browser marks a request from another site with
  ``Sec-Fetch-Site: cross-site`` / ``same-site`` and an ``Origin`` that is not this server;
  such requests are refused. Clients that send neither (curl, scripts) are not browsers and are
  let through: the allow-listed Host already keeps remote pages out.
* Content types: a cross-site page can POST ``text/plain``, form and multipart bodies without
  a CORS preflight; the API only accepts types a browser would preflight (``application/json``,
  ``image/*``, ``application/octet-stream``), so such a request is refused even without the
  headers above.
* JSON bodies: nesting depth is measured before ``json.loads`` (a 30,000-deep array would make
  it recurse past Python's limit); ``NaN`` / ``Infinity`` are refused while parsing and numbers
  that overflow to infinity (``1e999``) by :func:`finite_number`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")


class RequestRefused(Exception):
    """A request the server will not serve: ``status`` (an HTTP code) and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header, lower case, without port or brackets:
    ``"LocalHost:8000"`` -> ``"localhost"``, ``"[::1]:8000"`` -> ``"::1"``, ``"a.b."`` -> ``"a.b"``."""
    text = host_header.strip().lower()
    if text.startswith("["):  # IPv6 literal, maybe with a port
        end = text.find("]")
        name = text[1:end] if end > 0 else text[1:]
    elif text.count(":") == 1:
        name = text.split(":", 1)[0]
    else:  # no port, or a bare IPv6 address
        name = text
    return name.rstrip(".")


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The bind address (unless it is a wildcard such as 0.0.0.0), the loopback names and
    ``extra`` (``--allowed-host``), normalised like :func:`host_name`."""
    names = {host_name(name) for name in LOOPBACK_NAMES}
    if bind_host not in WILDCARD_ADDRESSES:
        names.add(host_name(bind_host if ":" not in bind_host else f"[{bind_host}]"))
    names.update(host_name(name) for name in extra if name.strip())
    return frozenset(names)


def check_host(host_header: str | None, allowed: frozenset[str]) -> None:
    if host_header is None or not host_header.strip():
        raise RequestRefused(403, "a Host header is required")
    if host_name(host_header) not in allowed:
        raise RequestRefused(403, f"host {host_header!r} is not served here (start the server with --allowed-host "
                                  f"{host_name(host_header)} to allow it)")


def check_same_origin(headers: Mapping[str, str], host_header: str) -> None:
    """Refuse a state-changing request that a browser says comes from another site."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        raise RequestRefused(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() != f"http://{host_header.strip().lower()}":
        raise RequestRefused(403, f"cross-origin request refused (Origin: {origin})")


def media_type(content_type: str | None) -> str:
    """``"application/JSON; charset=utf-8"`` -> ``"application/json"``; ``""`` when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None, accepted: tuple[str, ...]) -> str:
    """The media type when it is one of ``accepted`` (``"image/*"`` matches any image type),
    else RequestRefused(415)."""
    kind = media_type(content_type)
    for pattern in accepted:
        if kind == pattern or (pattern.endswith("/*") and kind.startswith(pattern[:-1]) and len(kind) > len(pattern) - 1):
            return kind
    shown = kind or "none"
    raise RequestRefused(415, f"Content-Type {shown} is not accepted here (send {' or '.join(accepted)})")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)


def json_nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text, brackets inside strings ignored
    (``b'[[1], {"a": "[["}]'`` -> 2). Malformed text gives some depth; the parser rejects it."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return max(0, int(np.cumsum(steps).max()))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def parse_json_object(raw: bytes, max_depth: int) -> dict:
    """A JSON object from a request body; RequestRefused(400) for anything else, including
    nesting deeper than ``max_depth`` and the non-standard ``NaN`` / ``Infinity``."""
    depth = json_nesting_depth(raw)
    if depth > max_depth:
        raise RequestRefused(400, f"JSON nested {depth} deep, limit {max_depth}")
    try:
        body = json.loads(raw or b"{}", parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        detail = f" ({error})" if "not allowed" in str(error) else ""
        raise RequestRefused(400, f"body is not JSON{detail}") from None
    if not isinstance(body, dict):
        raise RequestRefused(400, "body must be a JSON object")
    return body


def finite_number(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a float when it is a JSON number (not a bool), finite and in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestRefused(400, f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise RequestRefused(400, f"{name} must be a finite number in [{low:g}, {high:g}]")
    return number
