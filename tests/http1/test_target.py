"""The request target, normalized: dot segments (RFC 3986 5.2.4), encoded dots, repeated
slashes; what is refused outright."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.http1.request_head import Rejection
from relay.http1.target import normalize_target, remove_dot_segments

CASES = [
    (b"/v1/chat/completions", b"/v1/chat/completions", b""),
    (b"/v1/models?limit=3&x=..", b"/v1/models", b"?limit=3&x=.."),  # the query is not a path
    (b"/v1/../admin", b"/admin", b""),
    (b"/v1/%2e%2e/admin", b"/admin", b""),
    (b"/v1/%2E%2E/admin", b"/admin", b""),
    (b"/v1/.%2e/admin", b"/admin", b""),
    (b"/v1/./chat/./completions", b"/v1/chat/completions", b""),
    (b"/v1//chat///completions", b"/v1/chat/completions", b""),
    (b"//v1/models", b"/v1/models", b""),
    (b"/v1/chat/../../../../etc", b"/etc", b""),  # never above the root
    (b"/v1/a/..", b"/v1/", b""),
    (b"/v1/.", b"/v1/", b""),
    (b"/v1/..;/admin", b"/v1/..;/admin", b""),  # not a dot segment (a path parameter)
    (b"/v1/%41bc", b"/v1/Abc", b""),  # other escapes stay as they came
    (b"/", b"/", b""),
]


@pytest.mark.parametrize(("target", "path", "query"), CASES)
def test_normalized(target: bytes, path: bytes, query: bytes) -> None:
    assert normalize_target(target) == (path, query)


@pytest.mark.parametrize("target", [
    b"/v1/%2e%2e%2fadmin", b"/v1/..%2Fadmin", b"/v1\\..\\admin", b"/v1/%5c../admin",
    b"/v1/%252e%252e/admin", b"/v1/x#frag", b"/v1/%00x", b"/v1/x\x00",
])
def test_refused(target: bytes) -> None:
    verdict = normalize_target(target)
    assert isinstance(verdict, Rejection) and verdict.status == 400


def test_rfc_3986_examples() -> None:
    """Section 5.2.4's own examples (absolute paths)."""
    assert remove_dot_segments(b"/a/b/c/./../../g") == b"/a/g"
    assert remove_dot_segments(b"/mid/content=5/../6") == b"/mid/6"
    assert remove_dot_segments(b"/a/b/c/.") == b"/a/b/c/"
    assert remove_dot_segments(b"/a/b/c/..") == b"/a/b/"


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(st.sampled_from(["v1", "chat", ".", "..", "%2e", "%2E%2e", "",
                                          "x.y", "..a"]), max_size=8))
def test_normal_form_has_no_dot_segment_and_is_stable(segments: list[str]) -> None:
    target = ("/" + "/".join(segments)).encode()
    verdict = normalize_target(target)
    assert not isinstance(verdict, Rejection)
    path, _ = verdict
    assert path.startswith(b"/") and b"//" not in path
    assert not {b".", b".."} & set(path.split(b"/"))
    assert normalize_target(path) == (path, b"")  # normalizing twice changes nothing
