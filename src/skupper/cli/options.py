"""Options every command takes, and turning them into a platform to work on."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from skupper.cli.target import Target, namespace_for_hints, resolve_target
from skupper.cli.values import duration_value
from skupper.platforms.select import PLATFORMS

# Commands import these from here, beside the decorators.
__all__ = ["Target", "context_options", "duration_value", "namespace_for_hints",
           "output_option", "root_context_options", "run", "timeout_option"]

F = TypeVar("F", bound=Callable[..., Any])
_ROOT_KEY = "skupper.root-context"
T = TypeVar("T")


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
        given = (namespace, context, platform, kubeconfig)
        return func(*args, target=resolve_target(given, root), **kwargs)

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


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # not at module level: --help must not pay for it

    return asyncio.run(coro)
