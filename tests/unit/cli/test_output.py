"""Tables print what peers named, escaped: one row per resource, whatever the name holds."""

from __future__ import annotations

import pytest

from skupper.cli.output import table


def test_a_cell_with_line_breaks_and_escapes_stays_on_its_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table(["NAME", "REMOTE SITE"], [["l1", "east\nl2   east-forged\x1b[31m"], ["l3", "west"]])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "\x1b" not in lines[1] and "\\x0a" in lines[1] and "\\x1b" in lines[1]
    assert lines[2].split() == ["l3", "west"]


def test_yaml_prints_pem_blocks_as_literal_blocks() -> None:
    import yaml

    from skupper.cli.output import to_yaml

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    doc = {"status": {"ca": pem, "name": "west", "odd": "a \nb\x07"}}
    text = to_yaml(doc)
    assert "ca: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n" in text
    assert yaml.safe_load(text) == doc


def test_tables_are_sorted_by_their_first_column(capsys: pytest.CaptureFixture[str]) -> None:
    table(["NAME", "STATUS"], [["west-b", "Ready"], ["east", "Ready"], ["west-a", "Error"]])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["east", "west-a", "west-b"]
