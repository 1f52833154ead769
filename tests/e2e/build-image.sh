#!/usr/bin/env bash
# Build an image of the harness from a debootstrapped Debian bookworm, imported into the
# harness's private Docker daemon. Two flavors (first argument, default "host"):
#
#   host     the disposable host: a bare server (systemd as PID 1, openssh-server, root login
#            by key only, no Docker)
#   standin  the base of the stand-in service images (tests/e2e/images/): python3, curl,
#            wget, ca-certificates, tzdata; no init, no sshd
#
# The image tag carries a hash of this script, so a changed script builds a new image. The
# rootfs tarball is cached under $DELIVERY_E2E_CACHE (default /var/cache/delivery-e2e) and
# reused by later runs on the same machine; debootstrap runs only when no tarball for this
# hash exists.
#
# Environment:
#   DOCKER_HOST            the private daemon (required; tests/e2e/dockerd.py sets it)
#   DOCKER                 docker client binary (default /usr/bin/docker, Debian's docker.io)
#   DELIVERY_E2E_CACHE     cache folder (default /var/cache/delivery-e2e)
#   DELIVERY_E2E_MIRROR    Debian mirror (default: the first deb.debian.org-style URI this
#                          machine's apt sources use, else http://deb.debian.org/debian)
#   DELIVERY_E2E_SECURITY_MIRROR  security mirror (default: derived like the mirror)
#
# Prints the image reference on the last line of stdout. (docker import cannot set STOPSIGNAL:
# the harness runs the container with --stop-signal SIGRTMIN+3, systemd's halt signal.)
set -euo pipefail

flavor="${1:-host}"
case "$flavor" in
    host|standin) ;;
    *) printf 'usage: build-image.sh [host|standin]\n' >&2; exit 2 ;;
esac
script_path="$(readlink -f "${BASH_SOURCE[0]}")"
hash="$(sha256sum "$script_path" | cut -c1-12)"
image="delivery-e2e/bookworm-${flavor}:${hash}"
cache="${DELIVERY_E2E_CACHE:-/var/cache/delivery-e2e}"
tarball="${cache}/bookworm-${flavor}-${hash}.tar"
docker_bin="${DOCKER:-/usr/bin/docker}"

log() { printf '[build-image] %s\n' "$*" >&2; }

: "${DOCKER_HOST:?DOCKER_HOST must point at the harness daemon (unix:///run/delivery-e2e/docker.sock)}"
export DOCKER_HOST

if "$docker_bin" image inspect "$image" >/dev/null 2>&1; then
    log "image ${image} already present"
    printf '%s\n' "$image"
    exit 0
fi

# The mirror the machine itself uses: the URIs line of /etc/apt/sources.list.d/debian.sources
# (deb822) or the first "deb" line of /etc/apt/sources.list.
machine_uri() {
    # $1: suite to look for (bookworm or bookworm-security)
    local suite="$1" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v want="$suite" '
            BEGIN { RS=""; FS="\n" }
            {
                uri=""; ok=0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uri=u[1] }
                    if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == want) ok=1 }
                }
                if (ok && uri != "") { print uri; exit }
            }' "$f"
    done | head -n1
    if [ -r /etc/apt/sources.list ]; then
        awk -v want="$suite" '$1 == "deb" && $3 == want { print $2; exit }' /etc/apt/sources.list
    fi
}

mirror="${DELIVERY_E2E_MIRROR:-$(machine_uri bookworm | head -n1)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security_mirror="${DELIVERY_E2E_SECURITY_MIRROR:-$(machine_uri bookworm-security | head -n1)}"
security_mirror="${security_mirror:-http://deb.debian.org/debian-security}"

if [ "$flavor" = host ]; then
    packages=(
        systemd systemd-sysv dbus libpam-systemd
        openssh-server
        ca-certificates curl gnupg apt-utils
        iproute2 procps tzdata less
    )
else
    packages=(python3 ca-certificates curl wget procps tzdata)
fi

if [ -s "$tarball" ]; then
    log "reusing cached rootfs ${tarball}"
else
    command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    mkdir -p "$cache"
    work="$(mktemp -d "${cache}/build-${hash}.XXXXXX")"
    rootfs="${work}/rootfs"
    # Unmount anything a failed chroot step left mounted, then remove the work folder.
    cleanup() {
        local m
        for m in proc sys dev/pts dev; do
            if mountpoint -q "${rootfs}/${m}" 2>/dev/null; then umount -l "${rootfs}/${m}" || true; fi
        done
        rm -rf --one-file-system "$work"
    }
    trap cleanup EXIT

    log "debootstrap bookworm from ${mirror} into ${rootfs}"
    include="$(IFS=,; printf '%s' "${packages[*]}")"
    debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" >&2

    # apt sources inside the host: the same mirrors the machine uses.
    rm -f "${rootfs}/etc/apt/sources.list"
    cat >"${rootfs}/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${security_mirror}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

    if [ "$flavor" = host ]; then
        # sshd: root by key only; no passwords anywhere.
        cat >"${rootfs}/etc/ssh/sshd_config.d/10-delivery-e2e.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
        # Host keys are made on each host's first boot, not baked into the image.
        rm -f "${rootfs}"/etc/ssh/ssh_host_*
        mkdir -p "${rootfs}/etc/systemd/system/ssh.service.d"
        cat >"${rootfs}/etc/systemd/system/ssh.service.d/10-host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
        ln -sf /lib/systemd/system/ssh.service "${rootfs}/etc/systemd/system/multi-user.target.wants/ssh.service"
        install -d -m 0700 "${rootfs}/root/.ssh"
        passwd_field="$(awk -F: '$1 == "root" { print $2 }' "${rootfs}/etc/shadow")"
        case "$passwd_field" in '*'|'!'*|'') ;; *) log "root has a password in the image"; exit 1 ;; esac

        # A fresh machine id per container (systemd makes one at boot when the file is empty).
        : >"${rootfs}/etc/machine-id"
        rm -f "${rootfs}/var/lib/dbus/machine-id"
        # Units that have no meaning in a container and only fail there.
        for unit in getty@tty1.service console-getty.service systemd-firstboot.service \
                    systemd-remount-fs.service; do
            ln -sf /dev/null "${rootfs}/etc/systemd/system/${unit}"
        done
        echo "delivery-e2e-host" >"${rootfs}/etc/hostname"
    fi

    # No package lists or .debs left over.
    chroot "$rootfs" apt-get clean
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/tmp/* \
           "${rootfs}"/var/log/*.log

    if chroot "$rootfs" sh -c 'command -v dockerd || command -v docker' >/dev/null 2>&1; then
        log "Docker must not be in the image"; exit 1
    fi

    log "packing ${tarball}"
    tar --numeric-owner --xattrs --acls -C "$rootfs" -cf "${tarball}.part" .
    mv "${tarball}.part" "$tarball"
    # Tarballs of older versions of this script are of no further use.
    find "$cache" -maxdepth 1 -name "bookworm-${flavor}-*.tar" ! -name "${tarball##*/}" -delete
fi

log "importing ${tarball} as ${image}"
if [ "$flavor" = host ]; then
    changes=(--change 'CMD ["/sbin/init"]' --change 'ENV container=docker')
else
    changes=(--change 'CMD ["/bin/bash"]')
fi
"$docker_bin" import "${changes[@]}" --message "delivery-e2e ${flavor} image ${hash}" "$tarball" "$image" >&2
# Images of older versions of this script are of no further use either.
"$docker_bin" image ls --format '{{.Repository}}:{{.Tag}}' "delivery-e2e/bookworm-${flavor}" \
    | { grep -vxF "$image" || true; } | while read -r old; do
        "$docker_bin" image rm "$old" >/dev/null 2>&1 || log "could not remove ${old} (in use?)"
    done
printf '%s\n' "$image"
