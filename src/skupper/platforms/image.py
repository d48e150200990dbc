"""The site image ``skupper-py:<version>``, built on this machine from this package.

No registry holds the image. ``pip wheel`` builds this package and its dependencies
into wheels on the host (which may reach PyPI when a build container cannot); the
image installs exactly those wheels with ``--no-index`` into a venv FROM the chosen
base image, with no network at all. A label records a digest of the wheels' contents,
so installing again with nothing changed is a no-op, and a changed package or
dependency rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from skupper import __version__
from skupper.base.errors import SkupperError
from skupper.platforms.container import IMAGE_REPOSITORY, MANAGED_BY, image_tag
from skupper.platforms.engine import BUILD_TIMEOUT_SECONDS, Engine, last_line

# The wheels are built for this Python, so the default base runs the same minor version.
DEFAULT_BASE_IMAGE = f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim"
DISTRIBUTION = "skupper-py"
WHEELS_LABEL = "skupper.io/wheels"
BASE_LABEL = "skupper.io/base-image"
# Marks the build stage, which the engine keeps as a dangling image: pruned after a build.
STAGE_LABEL = "skupper.io/build-stage"
_PIP_TIMEOUT_SECONDS = 600.0

# Two stages: the wheels never reach the final image, only the venv made from them.
DOCKERFILE = """\
FROM {base} AS build
COPY wheels /wheels
RUN python3 -c 'import sys; assert sys.version_info[:2] == ({major}, {minor}), \\
        "the base image has Python %d.%d; the wheels are for {major}.{minor}" \\
        % sys.version_info[:2]' \\
 && python3 -m venv /opt/skupper \\
 && /opt/skupper/bin/pip install --quiet --no-cache-dir --no-index \\
        --find-links /wheels {dist}=={version}
LABEL {stage_label}=true

FROM {base}
COPY --from=build /opt/skupper /opt/skupper
ENV PATH=/opt/skupper/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL {labels}
ENTRYPOINT ["/opt/skupper/bin/python", "-m", "skupper.daemon"]
"""


def package_source() -> Path:
    """The folder this package was installed from (``pip install [-e] <folder>``)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        dist = None
    direct = dist.read_text("direct_url.json") if dist is not None else None
    if direct:
        url = str(json.loads(direct).get("url") or "")
        parsed = urlparse(url)
        if parsed.scheme == "file" and (Path(unquote(parsed.path)) / "pyproject.toml").is_file():
            return Path(unquote(parsed.path))
    # Run from a checkout without installing: src/skupper/platforms/image.py.
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "skupper").is_dir():
        return checkout
    raise SkupperError(
        "Cannot find the source of this skupper to build the image from",
        f"{DISTRIBUTION} was not installed from a folder (pip install <folder>)",
        "Install it from a checkout (bash scripts/setup.sh), then run this again.",
    )


def build_wheels(source: Path, folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--prefer-binary", "--wheel-dir", str(folder), str(source)],
        capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECONDS, check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SkupperError("Cannot build the wheels for the site image",
                           f"pip wheel failed: {last_line(done.stderr or done.stdout)}",
                           "Check that pip reaches its package index from this machine.")


def wheels_digest(folder: Path) -> str:
    """A digest of what the wheels hold (names and bytes), not of their zip timestamps."""
    digest = hashlib.sha256()
    for wheel in sorted(folder.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0")
        with zipfile.ZipFile(wheel) as archive:
            for member in sorted(archive.namelist()):
                digest.update(member.encode() + b"\0")
                digest.update(hashlib.sha256(archive.read(member)).digest())
    return digest.hexdigest()[:32]


def _labels(base: str, wheels: str) -> str:
    pairs = {MANAGED_BY: "skupper", WHEELS_LABEL: wheels, BASE_LABEL: base,
             "org.opencontainers.image.version": __version__}
    return " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in pairs.items())


def _build_env(engine: Engine) -> dict[str, str] | None:
    """docker without its buildx plugin builds with the classic builder."""
    if engine.kind != "docker":
        return None
    done = engine.run(["buildx", "version"])
    return None if done.returncode == 0 else {"DOCKER_BUILDKIT": "0"}


def install_image(engine: Engine, base: str, say: Callable[[str], None]) -> bool:
    """Build ``skupper-py:<version>`` unless it is there, up to date; True if built."""
    engine.reachable()
    base_image = engine.inspect("image", base)
    if base_image is None:
        raise SkupperError(
            f"The base image {base} is not in the {engine.kind} engine",
            f"{engine.kind} ({engine.where}) has no image of that name",
            f'Pull it ("{engine.kind} pull {base}"), or make one locally and pass '
            "--base-image (see the README).",
        )
    source = package_source()
    with tempfile.TemporaryDirectory(prefix="skupper-image-") as context:
        folder = Path(context) / "wheels"
        folder.mkdir()
        say(f"Building wheels of {DISTRIBUTION} {__version__} and its dependencies...")
        build_wheels(source, folder)
        digest = wheels_digest(folder)
        current = engine.inspect("image", image_tag())
        labels = ((current or {}).get("Config") or {}).get("Labels") or {}
        # The base by name and by id: a base made anew under the same name rebuilds too.
        based_on = f"{base}@{base_image.get('Id')}"
        if labels.get(WHEELS_LABEL) == digest and labels.get(BASE_LABEL) == based_on:
            return False
        major, minor = sys.version_info[:2]
        (Path(context) / "Dockerfile").write_text(DOCKERFILE.format(
            base=base, major=major, minor=minor, dist=DISTRIBUTION, version=__version__,
            labels=_labels(based_on, digest), stage_label=STAGE_LABEL))
        say(f"Building the image {image_tag()} FROM {base}...")
        # --network none: the build installs offline, and a build network would have
        # the engine set up a bridge, firewall rules and IP forwarding on the host.
        engine.check(["build", "--network", "none", "--tag", image_tag(), "--file",
                      str(Path(context) / "Dockerfile"), context],
                     f"Cannot build the image {image_tag()}",
                     hint=f"Check that {base} has python3 {major}.{minor} with venv and pip.",
                     timeout=BUILD_TIMEOUT_SECONDS, env=_build_env(engine))
    engine.run(["image", "prune", "--force", "--filter", f"label={STAGE_LABEL}=true"])
    built = engine.inspect("image", image_tag()) or {}
    if current is not None and current.get("Id") and current.get("Id") != built.get("Id"):
        # The image this one replaced, untagged now; kept while a site container uses it
        # (that container is made anew from the new image at its next start).
        engine.run(["image", "rm", str(current["Id"])])
    return True


def uninstall_image(engine: Engine) -> bool:
    """Remove the image; refuse while a site container uses it. True if one was there."""
    engine.reachable()
    if engine.inspect("image", image_tag()) is None:
        return False
    users = engine.check(["ps", "--all", "--quiet", "--filter", f"label={MANAGED_BY}=skupper",
                          "--filter", f"ancestor={image_tag()}"],
                         "Cannot list the site containers").split()
    if users:
        raise SkupperError(
            f"Cannot remove the image {image_tag()}",
            f"{len(users)} site container(s) use it",
            'Delete those sites first ("skupper site delete -n <namespace>"), see '
            f'"{engine.kind} ps -a --filter label={MANAGED_BY}=skupper".',
        )
    engine.check(["image", "rm", image_tag()], f"Cannot remove the image {image_tag()}")
    return True


__all__ = ["DEFAULT_BASE_IMAGE", "IMAGE_REPOSITORY", "image_tag", "install_image",
           "uninstall_image"]
