"""traefikDashboardUsers: bcrypt htpasswd lines only (`htpasswd -nbB`). Unsalted {SHA}, MD5
(apr1), crypt and plain text are refused, and the error never shows the value."""

from __future__ import annotations

import json

import pulumi
import pytest

from conftest import PRODUCTION_SECRETS, production_config

from components.config import load_stack_config

ADMIN = "admin:$2y$05$Yjbx6uDjVn.KmF.QfdNASef9tXCH2kTE8mBb8xF2ir.HGy.mN3V9q"
OPS = "ops:$2b$10$rqC.k/aol0AdK3use4mOxOkrRX7YHgChFeHSu55uTQALNclaDNbCy"


def load(users: str):
    config = production_config(traefikDashboardUsers=users)
    pulumi.runtime.set_all_config(
        {f"delivery:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=[f"delivery:{k}" for k in PRODUCTION_SECRETS],
    )
    return load_stack_config(project="delivery", stack="production")


def errors_of(users: str) -> str:
    with pytest.raises(pulumi.RunError) as e:
        load(users)
    return str(e.value)


@pytest.mark.parametrize(
    "users",
    [
        ADMIN,
        OPS,
        ADMIN.replace("$2y$", "$2a$"),
        f"{ADMIN}\n{OPS}\n",  # htpasswd -nbB prints a line break (and an empty line) after it
        f"{ADMIN}\n\n",
    ],
)
def test_bcrypt_lines_are_accepted(users: str):
    assert load(users).services.traefik.dashboard_users is not None


@pytest.mark.parametrize(
    "line, why",
    [
        ("admin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "unsalted SHA-1"),
        ("admin:$apr1$kL3C5Vm2$0WsY3hxR6lXHN6P0R1BEr/", "MD5 (apr1)"),
        ("admin:rl4Ytb3xBB2Gk", "crypt(3)"),
        ("admin:password-in-clear", "plain text"),
        ("admin:$2y$05$short", "a truncated bcrypt hash"),
        ("admin:$2y$03$" + "a" * 53, "bcrypt cost below 4"),
        ("admin:$2y$32$" + "a" * 53, "bcrypt cost above 31"),
        ("admin:$2x$05$" + "a" * 53, "the buggy $2x$ variant"),
        ("admin:$2y$05$" + "a" * 52 + "!", "a character outside bcrypt's alphabet"),
        (":$2y$05$" + "a" * 53, "no user name"),
    ],
)
def test_other_hashes_are_refused_without_showing_them(line: str, why: str):
    msg = errors_of(f"{ADMIN}\n{line}")
    assert "delivery:traefikDashboardUsers: expected bcrypt htpasswd lines" in msg, why
    assert "(line 2)" in msg and "line 1" not in msg, why
    secret_part = line.split(":", 1)[1]
    assert secret_part not in msg and ADMIN.split(":", 1)[1] not in msg, why


def test_the_error_says_how_to_make_a_bcrypt_line():
    assert "htpasswd -nbB <user> <password>" in errors_of("admin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")
