"""``skupper system``: start and stop the site daemon without losing state; ``apply``/``delete -f``
(registered here, written in cli.apply)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, duration_value, run, timeout_option

if TYPE_CHECKING:
    from skupper.platforms.container import ContainerPlatform
    from skupper.platforms.local_platform import LocalPlatform


@click.group(help="Run the site daemon; apply and delete files of resources.")
def system() -> None:
    pass


def _register_files_commands() -> None:
    from skupper.cli.apply import apply, delete

    system.add_command(apply)
    system.add_command(delete)


_register_files_commands()


@system.command("start", help="Start the site daemon and wait until the site is ready.")
@timeout_option()
@context_options
def start(timeout: str, target: Target) -> None:
    wait = duration_value(timeout, "--timeout")
    name = run(_start(target, wait))
    click.echo(f'Site "{name}" is ready.')


async def _start(target: Target, wait: float) -> str:
    from skupper.cli.session import open_session, require_running, require_site, wait_until
    from skupper.resources.status import is_ready

    async with open_session(target) as session:
        name = str(require_site(session)["metadata"]["name"])
        if session.platform.name == "kubernetes":
            require_running(session)  # nothing to start: the cluster runs the controller
        since = await session.store.current_version()
        already = session.platform.running()
        session.platform.start()
        click.echo("Waiting for status...")
        await wait_until(session, "Site", name, is_ready, wait,
                         since=None if already else since, what=f'Site "{name}"')
        return name


@system.command("stop", help="Stop the site daemon; its state is kept.")
@context_options
def stop(target: Target) -> None:
    platform = target.platform()
    if platform.name == "kubernetes":
        raise _in_cluster_only("stop", target.namespace)
    if not platform.has_state():
        from skupper.cli.session import no_site_error

        raise no_site_error(target.namespace)
    if platform.stop():
        click.echo(f'The site daemon for namespace "{target.namespace}" is stopped.')
    else:
        click.echo(f'The site daemon for namespace "{target.namespace}" was not running.')


@system.command("status", help="Say whether the site daemon runs, and where its files are.")
@context_options
def status(target: Target) -> None:
    from skupper.platforms.container import ContainerPlatform
    from skupper.platforms.local_daemon import daemon_pid
    from skupper.platforms.local_platform import LocalPlatform

    platform = target.platform()
    if not isinstance(platform, LocalPlatform):  # kubernetes: the controller's lease
        state = "running" if platform.running() else "stopped"
        click.echo(f"Controller: {state} (lease skupper-controller in namespace "
                   f'"{target.namespace}")')
        click.echo(f"State: the Kubernetes API at {platform.server}")
        click.echo(f"Log: {platform.log_file}")
        click.echo("Metrics: port 9464 of the controller's pod (Service skupper-metrics)")
        return
    if isinstance(platform, ContainerPlatform):  # the engine's word, never a pid file
        click.echo(f"Site daemon: {_container_state(platform)}")
        click.echo(f"State: {platform.paths.root}")
        click.echo(f"Log: {platform.log_file}")
    else:
        pid = daemon_pid(platform.paths)
        state = "running" if pid is not None else "stopped"
        click.echo(f"Site daemon: {state}" + (f" (pid {pid})" if pid and pid > 0 else ""))
        click.echo(f"State: {platform.paths.root}")
        click.echo(f"Log: {platform.paths.log_file}")
    if platform.running():
        click.echo(f"Metrics: {_metrics_address(platform)}")


def _metrics_address(platform: LocalPlatform) -> str:
    """Where the running daemon serves /metrics, as its observer.json says."""
    from skupper.cli.observer_client import read_info

    where = platform.observer_file()
    info = read_info(where) if where is not None else None
    return info["metrics"] if info else "not serving yet (see the log)"


def _container_state(platform: ContainerPlatform) -> str:
    found = platform.state()
    if found is None:
        return f"stopped (no container {platform.container})"
    words = "restarting" if found.get("Restarting") else (
        "running" if found.get("Running") else "stopped")
    detail = [f"container {platform.container} {found['Id']}"]
    if found.get("Running") and found.get("Pid"):
        detail.append(f"host pid {found['Pid']}")
    if found.get("RestartCount"):
        detail.append(f"restarts: {found['RestartCount']}")
    if not found.get("Running") and found.get("ExitCode") is not None:
        detail.append(f"exit code {found['ExitCode']}")
    return f"{words} ({', '.join(detail)})"


def _engine_kind(target: Target, action: str) -> str:
    from skupper.base.errors import UsageError
    from skupper.platforms.select import ENGINES, choose_platform

    chosen = choose_platform(target.platform_flag)
    if chosen not in ENGINES:
        raise UsageError(
            f"skupper system {action} applies to the docker and podman platforms",
            f"the {chosen} platform runs the site without an image",
            'Give "--platform docker" or "--platform podman".',
        )
    return chosen


@system.command("install", help="Build the site image for the docker or podman platform.")
@click.option("--base-image", default=None,
              help="The image to build FROM: python3 with venv and pip, the same minor "
                   "version as this skupper's Python (default: python:X.Y-slim for it).")
@context_options
def install(base_image: str | None, target: Target) -> None:
    from skupper.platforms.engine import Engine
    from skupper.platforms.image import DEFAULT_BASE_IMAGE, image_tag, install_image

    engine = Engine(_engine_kind(target, "install"))
    if install_image(engine, base_image or DEFAULT_BASE_IMAGE, click.echo):
        click.echo(f"The image {image_tag()} is installed in {engine.kind}.")
    else:
        click.echo(f"The image {image_tag()} is installed in {engine.kind} (up to date).")


@system.command("uninstall", help="Remove the site image of the docker or podman platform.")
@context_options
def uninstall(target: Target) -> None:
    from skupper.platforms.engine import Engine
    from skupper.platforms.image import image_tag, uninstall_image

    engine = Engine(_engine_kind(target, "uninstall"))
    if uninstall_image(engine):
        click.echo(f"The image {image_tag()} is removed from {engine.kind}.")
    else:
        click.echo(f"The image {image_tag()} was not installed in {engine.kind}.")


def _in_cluster_only(action: str, namespace: str) -> SkupperError:
    return SkupperError(
        f"skupper system {action} does not apply to the kubernetes platform",
        "the controller runs in the cluster as the Deployment skupper-controller",
        f'Scale it with "kubectl scale deployment/skupper-controller --replicas=N -n '
        f'{namespace}".',
    )


@system.command("controller",
                help="Run the site controller of a namespace in the foreground (kubernetes).")
@context_options
def controller(target: Target) -> None:
    """What the Deployment in deploy/ runs: reconcilers, grant server and links in one.

    The namespace is -n, else SKUPPER_NAMESPACE, else the kubeconfig context's (in a pod:
    its own). Outside a cluster, --kubeconfig and --context say which API server to use.
    """
    import sys

    from skupper.daemon.cluster import main

    sys.exit(main(target.namespace_flag, target.kubeconfig, target.context))
