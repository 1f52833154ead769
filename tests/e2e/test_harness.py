"""The harness itself: the disposable host is a booted server, SSH is pinned, and a remote
Command under RealMocks really runs there, with stdin, in dependency order."""

from __future__ import annotations

import pulumi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pulumi_command import remote

from .conftest import DisposableHost
from .real_mocks import RealMocks, RemoteCommandError

pytestmark = pytest.mark.e2e


def _mocks() -> RealMocks:
    m = RealMocks(command_timeout=300)
    pulumi.runtime.set_mocks(m, project="delivery", stack="e2e", preview=False)
    return m


def test_systemd_is_pid_1_and_the_system_is_up(disposable_host: DisposableHost):
    assert disposable_host.exec("cat /proc/1/comm").stdout.strip() == "systemd"
    state = disposable_host.exec("systemctl is-system-running", check=False).stdout.strip()
    assert state in ("running", "degraded"), disposable_host.exec("systemctl --failed --no-pager", check=False).stdout
    assert disposable_host.exec("systemctl is-active ssh").stdout.strip() == "active"


def test_the_host_is_bare_debian_bookworm_without_docker(disposable_host: DisposableHost):
    assert "VERSION_CODENAME=bookworm" in disposable_host.exec("cat /etc/os-release").stdout
    probe = disposable_host.exec("command -v dockerd || command -v docker || dpkg -s docker.io", check=False)
    assert probe.returncode != 0, f"Docker is already on the host: {probe.stdout}"


def test_ssh_works_with_the_pinned_host_key_and_refuses_another(disposable_host: DisposableHost):
    code, out, _ = disposable_host.ssh("id -un; hostname")
    assert (code, out.split()) == (0, ["root", "delivery-e2e-host"])

    other = ed25519.Ed25519PrivateKey.generate().public_key()
    wrong = other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    from .real_mocks import run_remote

    conn = {
        "host": disposable_host.ssh_host,
        "port": disposable_host.ssh_port,
        "privateKey": disposable_host.private_key_pem,
        "hostKey": wrong,
        "dialErrorLimit": 1,
    }
    with pytest.raises(RemoteCommandError, match="host key mismatch"):
        run_remote(conn, "true", timeout=30)


def test_password_login_is_refused(disposable_host: DisposableHost):
    sshd = disposable_host.exec("sshd -T").stdout
    assert "permitrootlogin without-password" in sshd or "permitrootlogin prohibit-password" in sshd
    assert "passwordauthentication no" in sshd


def test_apt_on_the_host_reaches_debian_through_the_private_bridge(disposable_host: DisposableHost):
    code, out, err = disposable_host.ssh("apt-get -q update", timeout=300)
    assert code == 0, out + err
    assert "bookworm" in out


def test_remote_command_under_real_mocks_runs_create_with_stdin(disposable_host: DisposableHost):
    mocks = _mocks()
    payload = "line one\nsecret: s3cr3t\n"

    @pulumi.runtime.test
    def program():
        cmd = remote.Command(
            "write-file",
            connection=remote.ConnectionArgs(**disposable_host.connection()),
            create="set -euo pipefail; umask 077; cat > /root/e2e-stdin.txt; stat -c '%a %s' /root/e2e-stdin.txt",
            stdin=pulumi.Output.secret(payload),
        )

        def check(args):
            stdout, stderr = args
            assert stdout == f"600 {len(payload)}"  # one trailing newline trimmed
            assert stderr == ""

        return pulumi.Output.all(cmd.stdout, cmd.stderr).apply(check)

    program()
    assert disposable_host.exec("cat /root/e2e-stdin.txt").stdout == payload
    run = mocks.run_named("write-file")
    assert run.exit_code == 0 and run.elapsed > 0


def test_a_failing_remote_command_fails_the_program_with_code_and_output(disposable_host: DisposableHost):
    _mocks()

    @pulumi.runtime.test
    def program():
        remote.Command(
            "fails",
            connection=remote.ConnectionArgs(**disposable_host.connection()),
            create="echo to-stdout; echo to-stderr >&2; exit 3",
        )

    with pytest.raises(RemoteCommandError) as info:
        program()
    assert "status 3" in str(info.value)
    assert "to-stdout" in str(info.value) and "to-stderr" in str(info.value)


def test_depends_on_orders_remote_commands(disposable_host: DisposableHost):
    """A command that depends_on another starts only after the other has finished."""
    mocks = _mocks()
    log = "/root/e2e-order.log"

    @pulumi.runtime.test
    def program():
        conn = remote.ConnectionArgs(**disposable_host.connection())
        first = remote.Command("first", connection=conn, create=f"sleep 2; echo first >> {log}")
        second = remote.Command(
            "second", connection=conn, create=f"echo second >> {log}", opts=pulumi.ResourceOptions(depends_on=[first])
        )
        third = remote.Command(  # depends through an input, not depends_on
            "third", connection=conn, create=second.stdout.apply(lambda _: f"echo third >> {log}")
        )
        return third.stdout

    disposable_host.exec(f"rm -f {log}")
    program()
    assert disposable_host.exec(f"cat {log}").stdout.split() == ["first", "second", "third"]
    first, second, third = (mocks.run_named(n) for n in ("first", "second", "third"))
    assert second.started >= first.started + first.elapsed
    assert third.started >= second.started + second.elapsed
