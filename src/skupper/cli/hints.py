"""Hints that run as printed: quoted commands repeat the namespace the user chose.

An error's hint quotes a command to run next ("skupper site update
--enable-link-access"). Run in a namespace other than the default, that command must
say ``-n <namespace>`` too, or following the hint acts on another site. Adding it here,
where every error is printed, covers every hint at once, including those raised below
the CLI; a quoted command that already names a namespace is left as it is.
"""

from __future__ import annotations

import re

_QUOTED = re.compile(r'"(skupper [^"]*)"')
_NAMES_NAMESPACE = re.compile(r"(^| )(-n|--namespace)( |=|$)")
# Commands about the machine, not a namespace: the site image, the version.
_NOT_NAMESPACED = ("skupper system install", "skupper system uninstall", "skupper version")


def with_namespace(line: str, namespace: str | None) -> str:
    if not namespace or namespace == "default":
        return line

    def add(match: re.Match[str]) -> str:
        command = match.group(1)
        if _NAMES_NAMESPACE.search(command) or command.startswith(_NOT_NAMESPACED):
            return match.group(0)
        return f'"{command} -n {namespace}"'

    return _QUOTED.sub(add, line)
