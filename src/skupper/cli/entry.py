"""The console script: answers ``skupper --help`` at once, else hands over to click."""

from __future__ import annotations

import sys

# The root --help lists these instead of importing every command module to ask it
# (a test keeps them equal to each group's own help).
SHORT_HELP = {
    "site": "Create, change, inspect and delete the site of a namespace.",
    "access-token": "Issue access tokens (and redeem them at remote sites).",
    "access-grant": "Inspect and delete the access grants of the current site.",
    "link": "Generate, inspect, revoke and delete links to remote sites.",
    "listener": "Bind a local port to a service in the network (by routing key).",
    "connector": "Offer a local server to the network (by routing key).",
    "system": "Run the site daemon; apply and delete files of resources.",
    "network": "Show the network this site belongs to.",
    "connection": "Show the application connections of this site.",
    "debug": "Collect what a bug report needs.",
    "version": "Show the version of this skupper.",
}

# `skupper --help` is the first thing a new user runs: answered without importing
# click (70% of the cold start). A test keeps it identical to click's own rendering.
ROOT_HELP = """\
Usage: skupper [OPTIONS] COMMAND [ARGS]...

  Skupper site linking: create sites, issue and redeem access tokens, link
  sites.

  Aliases: 'token' for 'access-token', 'grant' for 'access-grant'.

Options:
  -n, --namespace TEXT            Select the current namespace (default:
                                  default).
  --context TEXT                  Select the current kubeconfig context.
  --kubeconfig TEXT               Path to the kubeconfig file to use (kubernetes
                                  platform).
  --platform [kubernetes|docker|podman|systemd|linux]
                                  Set the Skupper platform; linux is systemd
                                  (default: SKUPPER_PLATFORM, else the
                                  namespace's own, else kubernetes when a
                                  kubeconfig is found, else systemd).
  -h, --help                      Show this message and exit.

Commands:
""" + "".join(f"  {name:<12}  {text}\n" for name, text in SHORT_HELP.items())



def main() -> None:
    if sys.argv[1:] in (["--help"], ["-h"]):
        sys.stdout.write(ROOT_HELP)
        sys.exit(0)
    from skupper.cli.quick import parse_issue, run_issue

    # The seed's command, in its plain shapes, runs without click (a third of its run).
    call = parse_issue(sys.argv[1:])
    if call is not None:
        run_issue(call)
    from skupper.cli.main import main as click_main

    click_main()
