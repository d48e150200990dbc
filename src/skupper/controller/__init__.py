"""The site controller: one reconciler per kind over the Store, and the loop that runs them.

Reconcilers read resources, decide, and write status only when something changed, so
a reconcile that triggers its own watch event settles at once. Everything that needs
sockets (listeners, the grant server) sits behind ``LinkAccessRuntime``, which the
daemon provides. Must not import cli, daemon or aiohttp.
"""
