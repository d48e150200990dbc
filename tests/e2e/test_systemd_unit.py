"""The systemd path: `site create` writes a user unit and asks systemctl to start it.

No user bus runs here, so a stand-in `systemctl` on PATH plays systemd's part: it
records every call and, for `enable --now`, starts the unit's ExecStart with its
Environment lines, as systemd would. The daemon it starts is the real one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests_support import Skupper

FAKE_SYSTEMCTL = r'''#!/usr/bin/env python3
import os, shlex, subprocess, sys
log = os.environ["FAKE_SYSTEMCTL_LOG"]
with open(log, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[:1] != ["--user"]:
    sys.exit(1)
if args[1:3] == ["enable", "--now"]:
    unit = os.path.join(os.environ["XDG_CONFIG_HOME"], "systemd", "user", args[3])
    env, argv = {"HOME": os.environ["HOME"]}, None
    for line in open(unit):
        line = line.strip()
        if line.startswith("ExecStart="):
            argv = shlex.split(line[len("ExecStart="):])
        elif line.startswith("Environment="):
            key, _, value = shlex.split(line[len("Environment="):])[0].partition("=")
            env[key] = value
    subprocess.Popen(argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
sys.exit(0)
'''


def _with_fake_systemctl(skupper: Skupper) -> Path:
    bin_dir = skupper.home / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = skupper.home / "systemctl.log"
    skupper.env.pop("SKUPPER_SERVICE_MANAGER", None)
    skupper.env["PATH"] = f"{bin_dir}{os.pathsep}{skupper.env['PATH']}"
    skupper.env["FAKE_SYSTEMCTL_LOG"] = str(log)
    return log


def test_site_runs_as_a_systemd_user_unit_where_systemctl_works(skupper: Skupper) -> None:
    log = _with_fake_systemctl(skupper)
    done = skupper.run("site", "create", "west", "--enable-link-access")
    assert done.stdout.endswith('Site "west" is ready.\n')

    unit = skupper.home / "config" / "systemd" / "user" / "skupper-site-default.service"
    text = unit.read_text()
    assert "ExecStart=" in text and "-m skupper.daemon --namespace default" in text
    assert f'Environment="XDG_DATA_HOME={skupper.home / "data"}"' in text
    assert 'Environment="SKUPPER_LINK_ACCESS_HOST=127.0.0.1"' in text
    assert "Restart=on-failure" in text
    calls = log.read_text().splitlines()
    assert "--user daemon-reload" in calls
    assert "--user enable --now skupper-site-default.service" in calls

    skupper.run("site", "delete")
    calls = log.read_text().splitlines()
    assert "--user stop skupper-site-default.service" in calls
    assert "--user disable skupper-site-default.service" in calls
    assert not unit.exists()
    assert skupper.daemon_pid() is None


def test_without_systemd_the_daemon_is_a_detached_process(skupper: Skupper) -> None:
    skupper.run("site", "create", "west")
    pid = skupper.daemon_pid()
    assert pid is not None
    # Its own session: closing the terminal that ran `site create` does not stop it.
    assert os.getsid(pid) == pid
    assert not (skupper.home / "config" / "systemd").exists()
