"""Which namespace and platform a command works on, from its options, without click.

Shared by the click commands (``cli.options``) and the commands answered without click
(``cli.quick``), so both choose alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from skupper.base.errors import UsageError
from skupper.platforms.select import (
    ENGINES,
    PLATFORMS,
    check_recorded,
    choose_platform,
    explicit_platform,
    recorded_platform,
)

if TYPE_CHECKING:
    from skupper.platforms.kubernetes import KubernetesPlatform
    from skupper.platforms.local_platform import LocalPlatform

# namespace, context, platform, kubeconfig: as given (None: not given).
ContextFlags = tuple[str | None, str | None, str | None, str | None]


# A NamedTuple, not a dataclass: dataclasses imports inspect, a tenth of a quick command.
class Target(NamedTuple):
    namespace: str
    context: str | None
    platform_flag: str | None
    kubeconfig: str | None = None
    # What -n said (None: the default, or on kubernetes the kubeconfig context's namespace).
    namespace_flag: str | None = None

    def platform(self) -> LocalPlatform | KubernetesPlatform:
        """The platform to work on; a local namespace keeps the one that made it."""
        chosen = choose_platform(self.platform_flag)
        if chosen not in PLATFORMS:
            raise UsageError(
                f'Unknown platform "{chosen}"', f"choose one of {', '.join(PLATFORMS)}"
            )
        if chosen == "kubernetes":
            from skupper.platforms.kubernetes import KubernetesPlatform

            return KubernetesPlatform(self.namespace, self.context, self.kubeconfig)
        from skupper.platforms.local import NamespacePaths

        root = NamespacePaths.for_namespace(self.namespace).root
        recorded = recorded_platform(root)
        if recorded is not None and explicit_platform(self.platform_flag) is None:
            chosen = recorded  # nothing asked for a platform: the namespace's own
        check_recorded(root, self.namespace, chosen)
        if chosen in ENGINES:
            from skupper.platforms.container import ContainerPlatform

            return ContainerPlatform(self.namespace, chosen)
        from skupper.platforms.local_platform import LocalPlatform

        return LocalPlatform(self.namespace)


def _namespace(flag: str | None, platform: str | None, kubeconfig: str | None,
               context: str | None) -> str:
    # Like kubectl: without -n, the kubeconfig context's namespace (only read on kubernetes).
    if flag:
        return flag
    if choose_platform(platform) == "kubernetes":
        from skupper.platforms.kubeconfig import context_namespace

        return context_namespace(kubeconfig, context)
    return "default"


def resolve_target(given: ContextFlags, root: ContextFlags) -> Target:
    """The target of a command: its own flags win over those given before it."""
    flag, chosen = given[0] or root[0], given[2] or root[2]
    if flag:
        _hint_namespace.append(flag)
    config, context = given[3] or root[3], given[1] or root[1]
    return Target(_namespace(flag, chosen, config, context), context, chosen, config, flag)


# The -n of the command being run: error hints that quote a command repeat it
# (cli.hints), so every hint runs as printed.
_hint_namespace: list[str] = []


def namespace_for_hints() -> str | None:
    return _hint_namespace[-1] if _hint_namespace else None
