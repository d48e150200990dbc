"""Options every command takes, and turning them into a platform to work on."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from skupper.base.durations import parse_duration
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

F = TypeVar("F", bound=Callable[..., Any])
_ROOT_KEY = "skupper.root-context"
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
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


def _context_option_decorators() -> list[Callable[[Any], Any]]:
    return [
        click.option("-n", "--namespace", default=None,
                     help="Select the current namespace (default: default)."),
        click.option("--context", default=None, help="Select the current kubeconfig context."),
        click.option("--kubeconfig", default=None,
                     help="Path to the kubeconfig file to use (kubernetes platform)."),
        click.option("--platform", type=click.Choice(PLATFORMS), default=None,
                     help="Set the Skupper platform; linux is systemd (default: "
                          "SKUPPER_PLATFORM, else the namespace's own, else kubernetes "
                          "when a kubeconfig is found, else systemd)."),
    ]


def root_context_options(func: F) -> F:
    """The same options before the command (``skupper -n west site status``)."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, namespace: str | None, context: str | None, platform: str | None,
        kubeconfig: str | None, **kwargs: Any,
    ) -> Any:
        click.get_current_context().meta[_ROOT_KEY] = (namespace, context, platform, kubeconfig)
        return func(*args, **kwargs)

    decorated: Any = wrapper
    for decorate in reversed(_context_option_decorators()):
        decorated = decorate(decorated)
    return decorated  # type: ignore[no-any-return]


# The -n of the command being run: error hints that quote a command repeat it
# (cli.hints), so every hint runs as printed.
_hint_namespace: list[str] = []


def namespace_for_hints() -> str | None:
    return _hint_namespace[-1] if _hint_namespace else None


def context_options(func: F) -> F:
    """-n/--namespace, --context and --platform, handed to the command as ``target``.

    Given after the command they win; given before it (on the root) they apply too.
    """

    @functools.wraps(func)
    def wrapper(
        *args: Any, namespace: str | None, context: str | None, platform: str | None,
        kubeconfig: str | None, **kwargs: Any,
    ) -> Any:
        root = click.get_current_context().meta.get(_ROOT_KEY, (None, None, None, None))
        flag, chosen = namespace or root[0], platform or root[2]
        if flag:
            _hint_namespace.append(flag)
        config, ctx = kubeconfig or root[3], context or root[1]
        target = Target(_namespace(flag, chosen, config, ctx), ctx, chosen, config, flag)
        return func(*args, target=target, **kwargs)

    decorated: Any = wrapper
    for decorate in reversed(_context_option_decorators()):
        decorated = decorate(decorated)
    return decorated  # type: ignore[no-any-return]


output_option = click.option(
    "-o", "--output", type=click.Choice(["json", "yaml"]), default=None,
    help="Print resources as json or yaml instead of a table.",
)


def timeout_option(default: str = "60s") -> Callable[[F], F]:
    return click.option(
        "--timeout", default=default, show_default=True, metavar="<duration>",
        help="How long to wait for the result (a duration such as 30s or 2m).",
    )


def duration_value(text: str, option: str, *, minimum: float = 0.0) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"Invalid value for {option}", str(exc)) from None
    if seconds <= minimum:
        raise UsageError(f"Invalid value for {option}", f"{text!r} must be longer than zero")
    return seconds


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # not at module level: --help must not pay for it

    return asyncio.run(coro)
