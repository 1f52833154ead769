#!/usr/bin/env python3
"""Install the Pulumi CLI this project pins, when `pulumi` is not on PATH (make preview/up).

usage: install-pulumi-cli.py [--version V] [--tools DIR] [--base-url URL] [--pins FILE] [--force]

Prints the folder that holds the `pulumi` to use (the one on PATH, or the installed one) on
stdout; everything else goes to stderr. With `pulumi` on PATH (and no --force) nothing is
downloaded.

* Version: the one the pinned `pulumi` SDK has in constraints.txt (`pulumi==3.272.0` -> CLI
  v3.272.0): the CLI and the SDK are released together under one version.
* Source: `<base-url>/pulumi-v<V>-linux-<x64|arm64>.tar.gz` and the release's checksums file
  `<base-url>/pulumi-<V>-checksums.txt` (base URL https://get.pulumi.com/releases/sdk, where
  Pulumi's release workflow publishes both; override with --base-url or
  $PULUMI_DOWNLOAD_BASE_URL). Only https:// is used, plus file:// (a local mirror) and
  http:// to this machine's loopback (tests).
* Checks: the archive's SHA-256 must equal the release checksums file's entry for it, and the
  entry kept in this repository (scripts/pulumi-cli.sha256) when that has one; the archive
  may only hold files under `pulumi/`, and must hold `pulumi/pulumi`.
* Atomic: download, check and unpack happen in a temporary folder inside the tools folder;
  only a complete, checked CLI is renamed into place as `<tools>/pulumi-<V>/`. On any failure
  the temporary folder is removed and the message says so: nothing is left half-installed.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE_URL = "https://get.pulumi.com/releases/sdk"
BASE_URL_ENV = "PULUMI_DOWNLOAD_BASE_URL"
DEFAULT_PINS = ROOT / "scripts" / "pulumi-cli.sha256"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
TIMEOUT_SECONDS = 60
ARCHES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


class InstallError(Exception):
    """A failure the user can act on; nothing was installed."""


def log(message: str) -> None:
    print(f"install-pulumi-cli: {message}", file=sys.stderr)


def pinned_sdk_version(constraints: Path = ROOT / "constraints.txt") -> str:
    m = re.search(r"^pulumi==([0-9]+\.[0-9]+\.[0-9]+)\s*$", constraints.read_text(), flags=re.M)
    if m is None:
        raise InstallError(f"{constraints} pins no pulumi==X.Y.Z")
    return m.group(1)


def archive_name(version: str, machine: str | None = None) -> str:
    arch = ARCHES.get((machine or platform.machine()).lower())
    if arch is None or platform.system() != "Linux":
        raise InstallError(f"no Pulumi CLI archive for {platform.system()} {machine or platform.machine()}; install it by hand: https://www.pulumi.com/docs/install/")
    return f"pulumi-v{version}-linux-{arch}.tar.gz"


def checked_base_url(url: str) -> str:
    """https://, file://, or http:// to a loopback address; anything else is refused."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("https", "file"):
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname is not None:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url.rstrip("/")
    raise InstallError(f"refusing base URL {url!r}: the CLI is downloaded over https:// only (file:// and loopback http:// for local mirrors)")


def fetch(url: str, dest: Path, limit: int = MAX_ARCHIVE_BYTES) -> str:
    """Download `url` to `dest`; return its SHA-256."""
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, dest.open("wb") as out:
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise InstallError(f"{url} is larger than {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise InstallError(f"could not download {url}: {e}") from e
    return digest.hexdigest()


def parse_checksums(text: str) -> dict[str, str]:
    """`sha256sum` lines (`<hex>  <file>`) -> {file: hex}."""
    sums = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(\S+)", line.strip())
        if m:
            sums[m.group(2)] = m.group(1).lower()
    return sums


def parse_pins(path: Path) -> dict[str, str]:
    """scripts/pulumi-cli.sha256: `<file>: <hex>` lines; an empty hex means none is known."""
    pins: dict[str, str] = {}
    if not path.exists():
        return pins
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(\S+):\s*([0-9a-fA-F]{64})?", line)
        if m is None:
            raise InstallError(f"{path}:{n}: expected '<archive>: <sha256>' (or an empty sha256), got {line!r}")
        pins[m.group(1)] = (m.group(2) or "").lower()
    return pins


def unpack(archive: Path, into: Path) -> Path:
    """Extract the archive's `pulumi/` folder (nothing else, no links out, no devices)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.rstrip("/")
                if not (name == "pulumi" or name.startswith("pulumi/")) or ".." in Path(name).parts:
                    raise InstallError(f"the archive holds {member.name!r}, outside pulumi/; nothing was installed")
                if not (member.isfile() or member.isdir()):
                    raise InstallError(f"the archive holds {member.name!r}, which is not a regular file; nothing was installed")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InstallError(f"the archive does not unpack: {e}; nothing was installed") from e
    binary = into / "pulumi" / "pulumi"
    if not binary.is_file():
        raise InstallError("the archive holds no pulumi/pulumi; nothing was installed")
    for f in (into / "pulumi").iterdir():
        if f.is_file():
            f.chmod(0o755)
    return into / "pulumi"


def install(version: str, tools: Path, base_url: str, pins_file: Path, machine: str | None = None) -> Path:
    target = tools / f"pulumi-{version}"
    if (target / "pulumi").is_file():
        log(f"Pulumi CLI {version} is already installed in {target}")
        return target
    base = checked_base_url(base_url)
    name = archive_name(version, machine)
    pins = parse_pins(pins_file)
    tools.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".pulumi-{version}.", dir=tools))
    try:
        sums_url = f"{base}/pulumi-{version}-checksums.txt"
        log(f"downloading {sums_url}")
        fetch(sums_url, scratch / "checksums.txt", limit=1 << 20)
        published = parse_checksums((scratch / "checksums.txt").read_text(errors="replace")).get(name)
        if published is None:
            raise InstallError(f"{sums_url} lists no SHA-256 for {name}; nothing was installed")
        url = f"{base}/{name}"
        log(f"downloading {url}")
        actual = fetch(url, scratch / name)
        if actual != published:
            raise InstallError(
                f"SHA-256 mismatch for {name}: the release's checksums file says {published}, the download is {actual}; "
                "nothing was installed"
            )
        pinned = pins.get(name, "")
        if pinned and pinned != actual:
            raise InstallError(
                f"SHA-256 of {name} ({actual}) does not match the checksum kept in the repository ({pins_file}: {pinned}); "
                "nothing was installed"
            )
        log(f"{name}: SHA-256 {actual} matches the release's checksums file"
            + (" and the repository's pin" if pinned else f" (no checksum for it is kept in {pins_file.name} yet)"))
        unpacked = unpack(scratch / name, scratch / "unpacked")
        try:
            os.rename(unpacked, target)
        except OSError as e:
            if (target / "pulumi").is_file():  # another run installed it meanwhile
                return target
            raise InstallError(f"could not move the CLI into {target}: {e}; nothing was installed") from e
        log(f"installed the Pulumi CLI {version} in {target}")
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="CLI version (default: the pulumi pin of constraints.txt)")
    parser.add_argument("--tools", type=Path, default=ROOT / ".tools", help="where CLIs are installed (default .tools/)")
    parser.add_argument("--base-url", default=os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL))
    parser.add_argument("--pins", type=Path, default=DEFAULT_PINS, help="checksums kept in the repository")
    parser.add_argument("--force", action="store_true", help="install even when pulumi is on PATH")
    args = parser.parse_args(argv)
    try:
        on_path = shutil.which("pulumi")
        if on_path and not args.force:
            print(Path(on_path).parent)
            return 0
        version = args.version or pinned_sdk_version()
        print(install(version, args.tools, args.base_url, args.pins))
        return 0
    except InstallError as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
