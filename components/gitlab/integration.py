"""The stack's GitLab integration: the GitLab provider, one GitLabRunner per runner role of
the stack's hosts, the application project's CI variables (ProjectCi), and the outputs
application pipelines read.

Until the integration is enabled (`gitlabIntegration`, with `gitlabToken`: the API token
only exists once GitLab runs), the API resources, and everything that needs the runners'
tokens (config.toml, the runner containers), are left out and a warning says what to set;
the rest of the stack is built. Once enabled, a missing token stops the run in the config
(components/config/gitlab.py), and a rejected one when the GitLab provider is configured.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_gitlab as gitlab

from ..config import PlatformConfig
from ..config.gitlab import ENABLE_COMMAND, TOKEN_COMMAND, GitLabConfig, api_base_url, check_secure_url
from ..config.maintenance import RegistryCleanupConfig
from ..host.docker_ca import DockerTrustReference
from ..operations.registry_cleanup import RegistryExpirationPolicy, RegistryExpirationPolicyArgs
from ..host.docker_host import DockerHost
from .gitlab_runner import GitLabRunner, GitLabRunnerArgs
from .project_ci import ProjectCi, ProjectCiArgs

#: Outputs of this integration (a contract; see docs/gitlab.md).
GITLAB_URL_OUTPUT = "gitlabUrl"
RUNNER_TAGS_OUTPUT = "runnerTags"


#: Where the GitLab provider's CA file is written, relative to the project (Pulumi runs the
#: program and its providers there); the name carries the content's hash, so a changed CA is
#: a changed input of the provider.
TRUST_DIR = Path(".delivery")


def trust_file(pem: str) -> str:
    """Write `pem` (public CA certificates) for the GitLab provider's cacert_file; its path."""
    path = TRUST_DIR / f"acme-ca-{hashlib.sha256(pem.encode()).hexdigest()[:12]}.pem"
    if not path.exists() or path.read_text() != pem:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(pem)
        tmp.replace(path)
    return str(path)


def gitlab_url(p: PlatformConfig, g: GitLabConfig, production: Optional[DockerTrustReference]) -> pulumi.Input[str]:
    """GitLab's URL: `gitlabUrl` if set; else https://gitlab.<domain> in the stack that runs
    GitLab, and the production stack's `gitlabUrl` output in a satellite stack (refused when it
    is http://, unless gitlabAllowInsecureUrl says otherwise: tokens travel with it)."""
    if g.url_override is not None or production is None:
        return g.default_url(p.domain)
    where = f"delivery:gitlabUrl (the output gitlabUrl of {p.production_stack})"
    return pulumi.Output.from_input(production.require(GITLAB_URL_OUTPUT)).apply(
        lambda url: check_secure_url(url, g.allow_insecure_url, where)
    )


def build_gitlab(
    p: PlatformConfig,
    g: GitLabConfig,
    hosts: Mapping[str, DockerHost],
    production: Optional[DockerTrustReference] = None,
    gitlab_ready: Sequence[pulumi.Resource] = (),
    acme_ca_pem: Optional[str] = None,
    registry_cleanup: Optional[RegistryCleanupConfig] = None,
) -> dict[str, Any]:
    """Create the GitLab resources of the stack; return the outputs they add."""
    outputs: dict[str, Any] = {}
    if p.owns_ca:
        outputs[GITLAB_URL_OUTPUT] = g.default_url(p.domain)
    if g.runners:
        outputs[RUNNER_TAGS_OUTPUT] = {s.role: list(s.tags) for s in g.runners}

    if not g.enabled:
        left_out = [f"runner {s.role}" for s in g.runners]
        if g.ci is not None:
            left_out.append(f"CI/CD variables of {g.ci.project}")
        what = ", ".join(left_out) if left_out else "the GitLab API resources"
        if g.integration == "removed":
            pulumi.log.warn(
                f"delivery:gitlabIntegration is removed: this stack leaves out {what}, so `pulumi up` deletes "
                "them (GitLab's runners and variables, config.toml's container). Set it to enabled, with "
                "gitlabToken, to bring them back."
            )
        else:
            pulumi.log.warn(
                f"delivery:gitlabToken is not set, so this stack leaves out {what} until it is. "
                "Once GitLab runs, create an API token with the scopes api and create_runner "
                f"(a personal, group or project access token), then run `{TOKEN_COMMAND}`, "
                f"`{ENABLE_COMMAND}` and `pulumi up`."
            )
        return outputs

    url = gitlab_url(p, g, production)
    provider = gitlab.Provider(
        "gitlab-api",
        base_url=pulumi.Output.from_input(url).apply(api_base_url),
        token=g.token,
        # GitLab's certificate comes from a CA that is not publicly trusted (acmeCaCertificate).
        cacert_file=trust_file(acme_ca_pem) if acme_ca_pem is not None else None,
        # The provider asks GitLab who the token belongs to (GET /user) when it is configured,
        # once GitLab answers (the readiness gate) and before any GitLab resource is read or
        # changed: a revoked or mistyped token stops the preview or update there.
        early_auth_check=True,
        opts=pulumi.ResourceOptions(depends_on=list(gitlab_ready)),
    )
    uses_api = pulumi.ResourceOptions(providers={"gitlab": provider})

    for s in g.runners:
        host = p.hosts_with(s.role)[0]
        docker_host = hosts[host.name]
        assert g.runner_scope is not None  # validated with the config
        GitLabRunner(
            f"gitlab-runner-{host.name}",
            GitLabRunnerArgs(
                host=host,
                ssh_private_key=p.ssh_private_key,
                docker_provider=docker_host.provider,
                settings=s,
                scope=g.runner_scope,
                gitlab_url=url,
                runner_version=g.runner_version,
                default_image=g.runner_default_image,
                timezone=p.timezone,
                token_rotation=g.runner_token_rotation,
                host_ready=[docker_host.setup],
                gitlab_ready=list(gitlab_ready),
                acme_ca_pem=acme_ca_pem,
                registry_host=f"registry.{p.domain}",
            ),
            opts=uses_api,
        )

    if g.ci is not None:
        ProjectCi(
            "project-ci",
            ProjectCiArgs(project=g.ci.project, variables=g.ci.variables),
            opts=pulumi.ResourceOptions(providers={"gitlab": provider}, depends_on=list(gitlab_ready)),
        )
    if registry_cleanup is not None:
        # GitLab's container expiration policy on the application projects (docs/operations.md).
        RegistryExpirationPolicy(
            "registry-cleanup",
            RegistryExpirationPolicyArgs(cleanup=registry_cleanup, gitlab_ready=list(gitlab_ready)),
            opts=uses_api,
        )
    return outputs
