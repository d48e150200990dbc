"""``skupper system``: start and stop the site daemon without losing state."""

from __future__ import annotations

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, duration_value, run, timeout_option


@click.group(help="Start, stop and inspect the site daemon of a namespace.")
def system() -> None:
    pass


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
    from skupper.platforms.local_daemon import daemon_pid
    from skupper.platforms.local_platform import LocalPlatform

    platform = target.platform()
    if not isinstance(platform, LocalPlatform):  # kubernetes: the controller's lease
        state = "running" if platform.running() else "stopped"
        click.echo(f"Controller: {state} (lease skupper-controller in namespace "
                   f'"{target.namespace}")')
        click.echo(f"State: the Kubernetes API at {platform.server}")
        click.echo(f"Log: {platform.log_file}")
        return
    pid = daemon_pid(platform.paths)
    state = "running" if pid is not None else "stopped"
    click.echo(f"Site daemon: {state}" + (f" (pid {pid})" if pid and pid > 0 else ""))
    click.echo(f"State: {platform.paths.root}")
    click.echo(f"Log: {platform.paths.log_file}")


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
