"""ProjectCi: the CI/CD variables of the application project (pulumi-gitlab).

One `gitlab.ProjectVariable` per variable of `CiConfig` (components/config/gitlab.py):
DNS_PROVIDER_API_TOKEN, LETSENCRYPT_EMAIL and TZ by default, more from `ciVariables`
and `ciSecretVariables`. Values that come from secret config, or that are masked, stay
secret Outputs (the SDK does not mark `value` secret). Masked values were checked
against GitLab's masking rules when the config was read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_gitlab as gitlab

from ..config.gitlab import CiVariable


@dataclass(frozen=True)
class ProjectCiArgs:
    project: str
    """Path of the project (`group/app`); ProjectVariable accepts the path as the project."""
    variables: Sequence[CiVariable]
    """The variables, each with its flags and environment scope."""


class ProjectCi(pulumi.ComponentResource):
    """CI/CD variables of one GitLab project."""

    keys: pulumi.Output[list[str]]
    variables: dict[str, gitlab.ProjectVariable]

    def __init__(self, name: str, args: ProjectCiArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("delivery:gitlab:ProjectCi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.variables = {}
        for v in args.variables:
            value = pulumi.Output.secret(v.value) if (v.secret or v.masked) else v.value
            suffix = v.key if v.environment_scope == "*" else f"{v.key}-{v.environment_scope}"
            self.variables[v.key] = gitlab.ProjectVariable(
                f"{name}-{suffix}",
                project=args.project,
                key=v.key,
                value=value,
                variable_type="env_var",
                masked=v.masked,
                protected=v.protected,
                # `hidden` is sent only when wanted: it exists from GitLab 17.4 and can only
                # be set when the variable is created.
                hidden=True if v.hidden else None,
                raw=v.raw,
                environment_scope=v.environment_scope,
                description=v.description,
                opts=child,
            )
        self.keys = pulumi.Output.from_input(sorted(self.variables))
        self.register_outputs({"keys": self.keys})
