"""Day-two maintenance: registry clean-up and Docker CA rotation (docs/operations.md,
"Registry clean-up", "Certificate renewal", "Docker CA rotation").

Keys:

* `registryCleanup` (default true), `registryCleanupProjects` (default: `ciProject`),
  `registryCleanupOlderThanDays`, `registryCleanupKeepN`, `registryCleanupCadence`,
  `registryCleanupDeleteRegex`, `registryCleanupKeepRegex`: GitLab's container expiration
  policy on the application projects (pulumi-gitlab `Project.container_expiration_policy`).
* `registryGc` (default true), `registryGcSchedule`, `registryGcDeleteUntagged`: the systemd
  timer on the `gitlab` host that runs `gitlab-ctl registry-garbage-collect`.
* `dockerCaGeneration`, `dockerCaRotation`: which generation of the two Docker CAs issues
  certificates, and the phase of a rotation to the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from .reader import ConfigReader, check_list, check_string

#: GitLab's allowed values (API `container_expiration_policy_attributes`).
OLDER_THAN_DAYS = (7, 14, 30, 60, 90)
KEEP_N = (1, 5, 10, 25, 50, 100)
CADENCES = ("1d", "7d", "14d", "1month", "3month")

#: Tags the review-app template pushes: `review:<CI_COMMIT_REF_SLUG>-<CI_COMMIT_SHORT_SHA>`
#: (templates/review-app.yml); GitLab matches the whole tag name.
DEFAULT_DELETE_REGEX = r".+-[0-9a-f]{8,40}"
#: main/master (and their commit tags, `main-<sha>`) and release tags (`v1.2`, `1.2.3`, `v1.2.3-rc.1`).
DEFAULT_KEEP_REGEX = r"(main|master)([-.].*)?|v?[0-9]+\.[0-9]+(\.[0-9]+)?([-+.].*)?"

#: systemd OnCalendar: Sunday 03:30 in the host's time zone (timezone).
DEFAULT_GC_SCHEDULE = "Sun *-*-* 03:30:00"
#: A calendar expression's characters (systemd-analyze calendar checks it on the host).
CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,100}")
PROJECT_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")
#: RE2 (GitLab's untrusted regexp) has no look-around or back-references.
NOT_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")

ROTATION_PHASES = ("none", "trust", "switch")


@dataclass(frozen=True)
class RegistryCleanupConfig:
    projects: tuple[str, ...]
    """Paths (`group/app`) of the projects whose registry gets the policy."""
    older_than_days: int = 14
    keep_n: int = 5
    cadence: str = "1d"
    delete_regex: str = DEFAULT_DELETE_REGEX
    keep_regex: str = DEFAULT_KEEP_REGEX


@dataclass(frozen=True)
class RegistryGcConfig:
    schedule: str = DEFAULT_GC_SCHEDULE
    """systemd OnCalendar of the garbage collection (its registry downtime falls in it)."""
    delete_untagged: bool = True
    """`-m`: also delete manifests without a tag (what the expiration policy leaves behind)."""


@dataclass(frozen=True)
class CaRotationConfig:
    generation: int = 1
    """The generation of both Docker CAs that issues certificates (1: the first CA)."""
    phase: str = "none"
    """none; trust: the next generation exists and every daemon and client trusts both;
    switch: the next generation issues every certificate, both still trusted, the old CA
    unprotected. Finish by setting generation to the next one and phase back to none."""

    @property
    def rotating(self) -> bool:
        return self.phase != "none"


@dataclass(frozen=True)
class MaintenanceConfig:
    registry_cleanup: Optional[RegistryCleanupConfig] = None
    """None: no expiration policy is managed."""
    registry_gc: Optional[RegistryGcConfig] = RegistryGcConfig()
    """None: no garbage collection timer."""
    ca_rotation: CaRotationConfig = CaRotationConfig()


def _regex(r: ConfigReader, key: str, default: str) -> str:
    value = r.string(key, default=default, expected="a regular expression (RE2 syntax)")
    if value is None:
        return default
    try:
        re.compile(value)
    except re.error as e:
        r.error(key, f"expected a regular expression, got {value!r} ({e})")
        return default
    if NOT_RE2.search(value) or "\n" in value:
        r.error(key, f"expected an RE2 regular expression (no look-around, no back-references, one line), got {value!r}")
    return value


def _choice_int(r: ConfigReader, key: str, default: int, allowed: tuple[int, ...]) -> int:
    value = r.integer(key, default=default)
    if value is not None and value not in allowed:
        r.error(key, f"expected one of {', '.join(map(str, allowed))} (GitLab's values), got {value}")
    return value if value in allowed else default


def _cleanup(r: ConfigReader, owns_ca: bool) -> Optional[RegistryCleanupConfig]:
    enabled = r.boolean("registryCleanup", default=True)
    raw = r.structured("registryCleanupProjects", expected="a list of project paths such as group/app")
    projects: tuple[str, ...] = ()
    if raw is not None:
        parsed = check_list(
            r, "registryCleanupProjects", raw,
            lambda p, v: check_string(r, p, v, pattern=PROJECT_PATH, expected="a project path such as group/app"),
        )  # fmt: skip
        projects = tuple(dict.fromkeys(parsed or ()))
        if projects and not owns_ca:
            r.error("registryCleanupProjects", "only in the stack that runs GitLab (the one without productionStack): one stack owns each project's policy")
    elif owns_ca:
        ci = r.raw("ciProject")
        if ci and PROJECT_PATH.fullmatch(ci):
            projects = (ci,)
    older = _choice_int(r, "registryCleanupOlderThanDays", 14, OLDER_THAN_DAYS)
    keep_n = _choice_int(r, "registryCleanupKeepN", 5, KEEP_N)
    cadence = r.string("registryCleanupCadence", default="1d", choices=CADENCES) or "1d"
    delete = _regex(r, "registryCleanupDeleteRegex", DEFAULT_DELETE_REGEX)
    keep = _regex(r, "registryCleanupKeepRegex", DEFAULT_KEEP_REGEX)
    if not enabled or not projects:
        return None
    return RegistryCleanupConfig(projects, older, keep_n, cadence, delete, keep)


def _gc(r: ConfigReader) -> Optional[RegistryGcConfig]:
    enabled = r.boolean("registryGc", default=True)
    schedule = r.string(
        "registryGcSchedule", default=DEFAULT_GC_SCHEDULE, pattern=CALENDAR,
        expected="a systemd calendar expression such as 'Sun *-*-* 03:30:00'",
    )  # fmt: skip
    untagged = r.boolean("registryGcDeleteUntagged", default=True)
    if not enabled:
        return None
    return RegistryGcConfig(schedule=schedule or DEFAULT_GC_SCHEDULE, delete_untagged=untagged)


def _rotation(r: ConfigReader, owns_ca: bool) -> CaRotationConfig:
    generation = r.integer("dockerCaGeneration", default=1, minimum=1, maximum=1000)
    phase = r.string("dockerCaRotation", default="none", choices=ROTATION_PHASES)
    if not owns_ca:
        for key, value, default in (("dockerCaGeneration", generation, 1), ("dockerCaRotation", phase, "none")):
            if value not in (None, default):
                r.error(key, "only in the stack that owns the Docker CA (no productionStack): this stack reads its certificates from there")
    return CaRotationConfig(generation=generation or 1, phase=phase or "none")


def parse_maintenance(r: ConfigReader, owns_ca: Any = True) -> MaintenanceConfig:
    """The maintenance keys; errors are collected in `r`."""
    return MaintenanceConfig(registry_cleanup=_cleanup(r, bool(owns_ca)), registry_gc=_gc(r), ca_rotation=_rotation(r, bool(owns_ca)))
