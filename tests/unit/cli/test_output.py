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
