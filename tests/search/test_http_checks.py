"""The search server's request checks (search/http_checks.py), case by case."""

from __future__ import annotations

import math

import pytest

from personsearch.search.http_checks import (
    RequestRefused,
    allowed_host_names,
    check_content_type,
    check_host,
    check_same_origin,
    finite_number,
    host_name,
    json_nesting_depth,
    parse_json_object,
)


@pytest.mark.parametrize("header, name", [
    ("localhost", "localhost"), ("LocalHost:8000", "localhost"), ("127.0.0.1:80", "127.0.0.1"),
    ("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("photos.lan.", "photos.lan"),
    (" evil.example.com:8000 ", "evil.example.com"),
])
def test_host_name(header, name):
    assert host_name(header) == name


def test_allowed_host_names():
    assert allowed_host_names("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_host_names("192.168.1.5", ["Photos.LAN", " "]) == {"localhost", "127.0.0.1", "::1", "192.168.1.5", "photos.lan"}
    assert allowed_host_names("0.0.0.0") == {"localhost", "127.0.0.1", "::1"}  # a wildcard is no name
    assert "fe80::1" in allowed_host_names("fe80::1")


def test_check_host():
    allowed = allowed_host_names("127.0.0.1", ["photos.lan"])
    for header in ("127.0.0.1:8000", "localhost", "photos.lan:1"):
        check_host(header, allowed)
    for header in ("evil.example.com", "127.0.0.1.evil.example", "photos.lan.evil", "", None, "10.0.0.1"):
        with pytest.raises(RequestRefused) as refused:
            check_host(header, allowed)
        assert refused.value.status == 403


def test_check_same_origin():
    host = "127.0.0.1:8000"
    for headers in ({}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"},
                    {"Sec-Fetch-Site": "none"}, {"Origin": "HTTP://127.0.0.1:8000"}):
        check_same_origin(headers, host)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example.com"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9000"},
                    {"Origin": "https://127.0.0.1:8000"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost:8000"}):
        with pytest.raises(RequestRefused) as refused:
            check_same_origin(headers, host)
        assert refused.value.status == 403, headers


def test_check_content_type():
    assert check_content_type("application/json; charset=UTF-8", ("application/json",)) == "application/json"
    assert check_content_type("image/png", ("image/*", "application/octet-stream")) == "image/png"
    assert check_content_type("Application/Octet-Stream", ("image/*", "application/octet-stream")) == "application/octet-stream"
    for bad in ("text/plain", "image/", "image", "", None, "multipart/form-data; boundary=x", "application/jsonx"):
        with pytest.raises(RequestRefused) as refused:
            check_content_type(bad, ("image/*", "application/json"))
        assert refused.value.status == 415, bad


@pytest.mark.parametrize("raw, depth", [
    (b"", 0), (b"1", 0), (b"{}", 1), (b"[[1], {\"a\": \"[[\"}]", 2), (b"[" * 5 + b"]" * 5, 5),
    (b'{"a": "\\"[[[["}', 1), (b'{"a": "\\\\", "b": [[]]}', 3), (b"[]" * 100, 1), (b"]]]", 0),
])
def test_json_nesting_depth(raw, depth):
    assert json_nesting_depth(raw) == depth


def test_parse_json_object():
    assert parse_json_object(b'{"a": [1, {"b": 2}]}', 3) == {"a": [1, {"b": 2}]}
    assert parse_json_object(b"", 3) == {}
    cases = [(b'{"a": [[[1]]]}', "nested 4 deep, limit 3"), (b"[" * 30000 + b"]" * 30000, "nested 30000 deep"),
             (b'{"a": NaN}', "NaN is not allowed"), (b'{"a": -Infinity}', "-Infinity is not allowed"),
             (b"{nope", "not JSON"), (b"\xff\xfe", "not JSON"), (b"[1]", "must be a JSON object")]
    for raw, message in cases:
        with pytest.raises(RequestRefused, match=message.replace("[", r"\[")) as refused:
            parse_json_object(raw, 3)
        assert refused.value.status == 400


def test_finite_number():
    assert finite_number(0, "x", 0, 1) == 0.0 and finite_number(0.25, "x", 0, 1) == 0.25
    for value in (math.nan, math.inf, -math.inf, 1.5, -0.1, 10**400, True, None, "0.5", [0.5]):
        with pytest.raises(RequestRefused) as refused:
            finite_number(value, "min_score", 0, 1)
        assert refused.value.status == 400 and "min_score" in refused.value.message
