"""Access grants: codes, token files, the redemption transaction and the grant server.

``redemption`` decides and counts (no HTTP); ``server`` speaks upstream's HTTPS
protocol around it; ``token_file`` writes what ``access-token issue`` hands out.
Must not import cli, daemon or router.
"""
