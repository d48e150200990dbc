"""parse_answer against anything a grant server could send: a checked Answer naming only
what was requested, or one SkupperError line; never another exception."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skupper.base.errors import SkupperError
from skupper.certs.issue import generate_ca, issue_certificate
from skupper.grants.client import Answer, parse_answer
from skupper.grants.redemption import Credential, answer_documents

CA = generate_ca("site CA")
CLIENT = issue_certificate(CA, "east", usage="client")
ENDPOINTS = [{"name": "inter-router", "host": "127.0.0.1", "port": "55671", "group": "g"}]
URL = "https://127.0.0.1:9090/x"
HONEST = answer_documents("tok", Credential(CLIENT.cert_pem, CLIENT.key_pem, 1), CA.cert_pem,
                          ENDPOINTS)

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=20), st.sampled_from(["skupper-site-ca", "tok", "tok-1",
                                                            "inter-router", "0", "65536"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_PATHS = [(0, "metadata", "name"), (0, "data"), (0, "data", "tls.crt"), (0, "data", "ca.crt"),
          (0, "kind"), (1, "metadata"), (1, "metadata", "name"), (1, "spec"),
          (1, "spec", "endpoints"), (1, "spec", "endpoints", 0), (1, "spec", "endpoints", 0,
                                                                  "port"),
          (1, "spec", "endpoints", 0, "host"), (1, "spec", "tlsCredentials"), (1, "kind")]


def _set(documents: list[Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = documents
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _check(body: bytes) -> None:
    try:
        answer = parse_answer(URL, body, "tok")
    except SkupperError as exc:
        assert "\n" not in exc.line() and "\x1b" not in exc.line()
        return
    assert isinstance(answer, Answer)
    assert answer.secret_name == "tok"
    assert [name for name, _ in answer.links] in (["tok"], ["tok-1"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.sampled_from(_PATHS), _VALUES), min_size=1, max_size=3))
def test_a_mangled_answer_is_an_answer_or_one_error_line(
        changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    documents = copy.deepcopy(HONEST)
    for path, value in changes:
        # An earlier change may have replaced what this path goes through.
        with contextlib.suppress(TypeError, KeyError, IndexError):
            _set(documents, path, value)
    _check("".join("---\n" + yaml.safe_dump(d) for d in documents).encode())


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=512))
def test_arbitrary_bytes_are_one_error_line(body: bytes) -> None:
    _check(body)


def test_the_honest_answer_is_accepted() -> None:
    answer = parse_answer(URL, "".join("---\n" + yaml.safe_dump(d) for d in HONEST).encode(),
                          "tok")
    assert answer.links == [("tok", {"endpoints": ENDPOINTS})]
    assert answer.credentials["tls.crt"] == CLIENT.cert_pem
