"""parse_token against hostile files: every problem is one SkupperError, never a crash.

A token file arrives from another party, so the parser is an attack surface: whatever
the bytes, ``parse_token`` either returns a checked AccessToken or raises one
SkupperError with a one-line message. Hypothesis drives arbitrary bytes, YAML-ish
text and mutated tokens through it; a table pins the message for each kind of bad file.
"""

from __future__ import annotations

import itertools
import json
import string
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skupper.base.errors import SkupperError
from skupper.certs.issue import generate_ca, is_ca_certificate, issue_certificate
from skupper.grants.token_file import MAX_TOKEN_FILE_BYTES, parse_token, render_token
from skupper.resources.model import MAX_LINK_COST

CAS = [generate_ca(f"grant server CA {i}").cert_pem.decode() for i in range(3)]
LEAF = issue_certificate(generate_ca("some CA"), "west", usage="server").cert_pem.decode()
GRANT_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
GENUINE: dict[str, Any] = {
    "apiVersion": "skupper.io/v2alpha1",
    "kind": "AccessToken",
    "metadata": {"name": "west-0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"},
    "spec": {
        "ca": CAS[0],
        "code": "Abcdefghijklmnopqrstuvw1",
        "linkCost": 1,
        "url": f"https://127.0.0.1:9090/{GRANT_ID}",
    },
}

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Module-scoped: Hypothesis refuses function-scoped fixtures in @given tests.
    return tmp_path_factory.mktemp("tokens")


_names = itertools.count()


def _file(folder: Path, content: bytes | str) -> str:
    path = folder / f"token-{next(_names)}.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


def _outcome(path: str) -> dict[str, Any] | SkupperError:
    """parse_token's token, or the SkupperError it raised; anything else fails the test."""
    try:
        return parse_token(path)
    except SkupperError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith(f"Cannot use token file {path}"), line
        assert exc.exit_code != 0
        return exc


def _assert_checked(token: dict[str, Any]) -> None:
    """What a returned token guarantees to the redeemer."""
    assert token["kind"] == "AccessToken"
    spec = token["spec"]
    assert spec["url"].startswith("https://")
    assert isinstance(spec["code"], str) and spec["code"].strip()
    assert is_ca_certificate(spec["ca"].encode())
    cost = spec.get("linkCost", 1)
    assert isinstance(cost, int) and not isinstance(cost, bool) and 1 <= cost <= MAX_LINK_COST
    assert not token["metadata"]["name"].startswith("skupper-")
    assert "@" not in urlsplit(spec["url"]).netloc


# --- properties -----------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(content=st.binary(max_size=4096))
def test_arbitrary_bytes_are_a_skupper_error_or_a_checked_token(
    folder: Path, content: bytes
) -> None:
    result = _outcome(_file(folder, content))
    if isinstance(result, dict):
        _assert_checked(result)


# YAML's punctuation, indicators, tags and anchors, with a few words that mean something.
_YAML_ALPHABET = string.ascii_letters[:8] + string.digits[:4] + " \t\n:-?[]{},#&*!|>'\"%@`.\\"
_YAML_WORDS = st.sampled_from([
    "kind: AccessToken\n", "apiVersion: skupper.io/v2alpha1\n", "metadata:\n", "  name: a\n",
    "spec:\n", "  url: https://127.0.0.1:1/x\n", "  code: c\n", "  ca: |\n", "---\n", "...\n",
    "!!binary ", "!!python/object:os.system ", "!!set ", "!!omap ", "&a ", "*a ", "<<: ",
    "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "? ", "- ", "~", "null", "yes", "0x1F", ".nan",
    "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----", "\ufeff", "\u2028", "é",
])
_NESTING = st.tuples(st.sampled_from(["[", "{a: ", "- ", "{", "? "]),
                     st.integers(0, 600)).map(lambda t: t[0] * t[1])
_YAML_TEXT = st.lists(
    st.one_of(st.text(alphabet=_YAML_ALPHABET, max_size=40), _YAML_WORDS, _NESTING),
    max_size=30,
).map("".join)


@PROPERTY_SETTINGS
@given(text=_YAML_TEXT)
def test_yaml_ish_text_is_a_skupper_error_or_a_checked_token(folder: Path, text: str) -> None:
    result = _outcome(_file(folder, text))
    if isinstance(result, dict):
        _assert_checked(result)


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=30), st.binary(max_size=10),
    st.sampled_from([CAS[2].replace("-----END", "é-----END"), CAS[2][:-30] + "\x00",
                     "", " ", "http://127.0.0.1:9090/x", "https://", "https://:0/",
                     "https://[::1/", "https://h:99999/", "ftp://h/", "//h/x",
                     "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                     LEAF, CAS[1], "AccessToken", "skupper.io/v2alpha1", "x" * 64]),
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
_PATHS = [("apiVersion",), ("kind",), ("metadata",), ("metadata", "name"), ("spec",),
          ("spec", "url"), ("spec", "code"), ("spec", "ca"), ("spec", "linkCost"), ("extra",)]


def _mutated(path: tuple[str, ...], value: Any, delete: bool) -> dict[str, Any]:
    token = json.loads(json.dumps(GENUINE))
    parent = token
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return token


@PROPERTY_SETTINGS
@given(path=st.sampled_from(_PATHS), value=_VALUES, delete=st.booleans(),
       flow=st.booleans())
def test_a_token_with_any_field_changed_is_a_skupper_error_or_a_checked_token(
    folder: Path, path: tuple[str, ...], value: Any, delete: bool, flow: bool
) -> None:
    token = _mutated(path, value, delete)
    result = _outcome(_file(folder, yaml.safe_dump(token, default_flow_style=flow)))
    if isinstance(result, dict):
        _assert_checked(result)
        assert result == token  # nothing is silently rewritten


# Names starting with "skupper-" are reserved for a site's own credentials.
_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True).filter(
    lambda name: not name.startswith("skupper-"))
_HOSTS = st.one_of(
    st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)


@st.composite
def _valid_tokens(draw: st.DrawFn) -> dict[str, Any]:
    port = draw(st.none() | st.integers(1, 65535))
    host = draw(_HOSTS)
    netloc = host if port is None else f"{host}:{port}"
    spec: dict[str, Any] = {
        "ca": draw(st.sampled_from(CAS)),
        "code": draw(st.text(string.ascii_letters + string.digits, min_size=1, max_size=64)),
        "url": f"https://{netloc}/{draw(st.uuids())}",
    }
    if draw(st.booleans()):
        spec["linkCost"] = draw(st.integers(1, MAX_LINK_COST))
    return {"apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
            "metadata": {"name": draw(_NAMES)}, "spec": spec}


def _render(token: dict[str, Any], style: str) -> str:
    if style == "ours":
        return render_token(token)
    if style == "json":  # JSON is YAML
        return json.dumps(token, indent=2)
    if style == "flow":
        return yaml.safe_dump(token, default_flow_style=True)
    if style == "framed":
        return "%YAML 1.1\n---\n# a comment\n" + yaml.safe_dump(token) + "...\n"
    return yaml.safe_dump(token, default_style='"')  # every scalar double-quoted


@PROPERTY_SETTINGS
@given(token=_valid_tokens(),
       style=st.sampled_from(["ours", "json", "flow", "framed", "quoted"]))
def test_every_valid_token_parses_to_itself(
    folder: Path, token: dict[str, Any], style: str
) -> None:
    result = _outcome(_file(folder, _render(token, style)))
    assert isinstance(result, dict), f"a valid token was refused: {result}"
    assert result == token


# --- a table of bad files ------------------------------------------------------------------


def _doc(**changes: Any) -> str:
    token = json.loads(json.dumps(GENUINE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = token
        for key in parents:
            target = target[key]
        if value is _DROP:
            target.pop(last)
        else:
            target[last] = value
    return yaml.safe_dump(token)


_DROP = object()

ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
              for i in range(8))
)

BAD_FILES: dict[str, tuple[bytes | str | None, str]] = {
    "empty": ("", "it is empty"),
    "only whitespace": (" \n\t\n", "it is empty"),
    "only a comment": ("# nothing here\n", "holds 0 YAML documents"),
    "binary": (bytes(range(256)) * 4, "it is not a text file"),
    "NUL bytes in text": ("kind: AccessToken\x00\n", "not valid YAML"),
    "10 MB": (b"a" * (10 * 1024 * 1024), "a token is a few KiB at most"),
    "just over the limit": (b"#" * (MAX_TOKEN_FILE_BYTES + 1), "a token is a few KiB at most"),
    "alias bomb": (ALIAS_BOMB, "YAML aliases are not allowed"),
    "one alias": (_doc() + "x: &x 1\ny: *x\n", "YAML aliases are not allowed"),
    "a python tag": ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "not YAML": ("kind: AccessToken\nspec: {url: [\n", "not valid YAML"),
    "a list": ("- kind\n- AccessToken\n", "not an AccessToken resource"),
    "a scalar": ("AccessToken\n", "not an AccessToken resource"),
    "wrong kind": (_doc(kind="Secret"), "its kind is 'Secret', not 'AccessToken'"),
    "no kind": (_doc(kind=_DROP), "its kind is None"),
    "wrong apiVersion": (_doc(apiVersion="v1"), "apiVersion 'v1' is not skupper.io"),
    "two documents": (_doc() + "---\n" + _doc(), "it holds 2 YAML documents"),
    "no metadata": (_doc(metadata=_DROP), "it has no metadata.name"),
    "name not a string": (_doc(metadata__name=5), "it has no metadata.name"),
    "invalid name": (_doc(metadata__name="../etc"), "is not a valid resource name"),
    "name too long": (_doc(metadata__name="a" * 201), "is not a valid resource name"),
    "no spec": (_doc(spec=_DROP), "it has no spec"),
    "spec a list": (_doc(spec=["url"]), "it has no spec"),
    "no url": (_doc(spec__url=_DROP), "spec.url is missing or not a string"),
    "no code": (_doc(spec__code=_DROP), "spec.code is missing or not a string"),
    "no ca": (_doc(spec__ca=_DROP), "spec.ca is missing or not a string"),
    "url a number": (_doc(spec__url=443), "spec.url is missing or not a string"),
    "code a list": (_doc(spec__code=["a"]), "spec.code is missing or not a string"),
    "code blank": (_doc(spec__code="   "), "spec.code is missing or not a string"),
    "ca a mapping": (_doc(spec__ca={"pem": "x"}), "spec.ca is missing or not a string"),
    "linkCost a string": (_doc(spec__linkCost="1"), "spec.linkCost must be a whole number"),
    "linkCost zero": (_doc(spec__linkCost=0), "spec.linkCost must be a whole number"),
    "linkCost a bool": (_doc(spec__linkCost=True), "spec.linkCost must be a whole number"),
    "linkCost a float": (_doc(spec__linkCost=1.5), "spec.linkCost must be a whole number"),
    "linkCost too large": (_doc(spec__linkCost=MAX_LINK_COST + 1),
                           "spec.linkCost must be a whole number from 1 to 1000000"),
    "linkCost huge": (_doc(spec__linkCost=2**64), "spec.linkCost must be a whole number"),
    "linkCost negative": (_doc(spec__linkCost=-1), "spec.linkCost must be a whole number"),
    "name reserved for the site CA": (_doc(metadata__name="skupper-site-ca"),
                                      "reserved for the site's own credentials"),
    "name reserved for the grant server": (_doc(metadata__name="skupper-grant-server"),
                                           "reserved for the site's own credentials"),
    "name in the reserved prefix": (_doc(metadata__name="skupper-later-added"),
                                    "reserved for the site's own credentials"),
    # Python's int() refuses 4300+ digits with ValueError from inside PyYAML's loader.
    "linkCost of 5000 digits": (_doc(spec__linkCost=1).replace("linkCost: 1", "linkCost: "
                                                               + "9" * 5000),
                                "a number in it has far too many digits"),
    "another field of 5000 digits": (_doc() + "extra: " + "9" * 5000 + "\n",
                                     "far too many digits"),
    "an impossible date": (_doc(spec__linkCost=1).replace("linkCost: 1",
                                                          "linkCost: 2026-13-45"),
                           "a value in it cannot be read"),
    "url with user and password": (_doc(spec__url=f"https://u:p@127.0.0.1:9090/{GRANT_ID}"),
                                   "spec.url carries user information"),
    "url with a user": (_doc(spec__url=f"https://admin@127.0.0.1:9090/{GRANT_ID}"),
                        "spec.url carries user information"),
    "url with an empty user": (_doc(spec__url=f"https://@127.0.0.1:9090/{GRANT_ID}"),
                               "spec.url carries user information"),
    "url port 0": (_doc(spec__url=f"https://127.0.0.1:0/{GRANT_ID}"), "port 0"),
    "url with a newline": (_doc(spec__url=f"https://127.0.0.1:9090/{GRANT_ID}\nx"),
                           "spec.url is not a valid URL"),
    "http url": (_doc(spec__url=f"http://127.0.0.1:9090/{GRANT_ID}"), "must be https, not 'http'"),
    "no scheme": (_doc(spec__url=f"127.0.0.1:9090/{GRANT_ID}"), "must be https"),
    "url without host": (_doc(spec__url="https:///x"), "spec.url has no host"),
    "url port not a number": (_doc(spec__url="https://h:port/x"), "spec.url is not a valid URL"),
    "url port out of range": (_doc(spec__url="https://h:70000/x"), "spec.url is not a valid URL"),
    "ca not PEM": (_doc(spec__ca="just some text"), "spec.ca is not a PEM certificate"),
    "ca garbage PEM": (
        _doc(spec__ca="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"),
        "spec.ca is not a valid PEM certificate"),
    "ca truncated": (_doc(spec__ca=CAS[0][:200]), "spec.ca is not a valid PEM certificate"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_token_file_is_one_clear_error(tmp_path: Path, case: str) -> None:
    content, fragment = BAD_FILES[case]
    path = _file(tmp_path, content) if content is not None else str(tmp_path / "missing")
    result = _outcome(path)
    assert isinstance(result, SkupperError), f"{case}: accepted"
    assert fragment in str(result), str(result)


def test_a_missing_file_and_a_folder_are_clear_errors(tmp_path: Path) -> None:
    missing = _outcome(str(tmp_path / "missing.yaml"))
    assert isinstance(missing, SkupperError) and "no such file" in str(missing)
    folder = _outcome(str(tmp_path))
    assert isinstance(folder, SkupperError) and "it is a directory" in str(folder)


def test_a_non_ca_certificate_is_refused(tmp_path: Path) -> None:
    # A server certificate where the CA belongs: it would "trust" exactly one server,
    # by accident; the lead adds this check to parse_token.
    assert not is_ca_certificate(LEAF.encode())
    result = _outcome(_file(tmp_path, _doc(spec__ca=LEAF)))
    assert isinstance(result, SkupperError), "a leaf certificate was accepted as spec.ca"
    assert "not a CA certificate" in str(result)


def test_the_genuine_token_parses(tmp_path: Path) -> None:
    assert _outcome(_file(tmp_path, render_token(GENUINE))) == GENUINE
    fresh = _doc(metadata__name=f"west-{uuid.uuid4()}")
    assert isinstance(_outcome(_file(tmp_path, fresh)), dict)


# --- once bugs, now pinned -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 3000, "{a: " * 3000, "- " * 3000 + "x"])
def test_deeply_nested_yaml_is_one_clear_error(tmp_path: Path, text: str) -> None:
    # PyYAML composes recursively: this once escaped parse_token as RecursionError.
    assert len(text.encode()) < MAX_TOKEN_FILE_BYTES
    result = _outcome(_file(tmp_path, text))
    assert isinstance(result, SkupperError)
    assert "nested far too deeply" in str(result) or "not valid YAML" in str(result)


def test_a_non_ascii_ca_is_one_clear_error(tmp_path: Path) -> None:
    # This once escaped _check_ca as TypeError ("cadata should be an ASCII string").
    ca = CAS[0].replace("-----END CERTIFICATE-----", "é-----END CERTIFICATE-----")
    result = _outcome(_file(tmp_path, _doc(spec__ca=ca)))
    assert isinstance(result, SkupperError)
    assert "spec.ca is not a PEM certificate" in str(result)
