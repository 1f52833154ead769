"""gitlabUrl: the GitLab API and the runners are reached over HTTPS only (the API token and the
runners' tokens travel with every request), unless a lab says otherwise explicitly."""

from __future__ import annotations

import logging

import pulumi
import pytest

from gitlab_stacks import run_production, run_staging

from conftest import production_outputs


def test_an_http_url_is_refused_naming_the_key():
    with pytest.raises(pulumi.RunError) as e:
        run_production(gitlabUrl="http://gitlab.company.ru")
    assert "delivery:gitlabUrl: http:// would send the API token and the runners' tokens in clear" in str(e.value)
    assert "gitlabAllowInsecureUrl" in str(e.value)


def test_the_lab_switch_accepts_http_and_warns(caplog):
    caplog.set_level(logging.WARNING)
    run = run_production(gitlabUrl="http://192.168.88.2", gitlabAllowInsecureUrl="true")
    assert run.named("gitlab-api").plain["baseUrl"] == "http://192.168.88.2/api/v4/"
    assert "delivery:gitlabAllowInsecureUrl" in caplog.text and "in clear" in caplog.text


def test_https_needs_no_switch():
    run = run_production(gitlabUrl="https://git.example.org")
    assert run.named("gitlab-api").plain["baseUrl"] == "https://git.example.org/api/v4/"


def test_the_switch_is_a_boolean():
    with pytest.raises(pulumi.RunError, match="delivery:gitlabAllowInsecureUrl: expected true or false"):
        run_production(gitlabUrl="http://192.168.88.2", gitlabAllowInsecureUrl="yes")


def test_staging_refuses_an_http_url_read_from_the_production_stack():
    outputs = {**production_outputs(), "gitlabUrl": "http://gitlab.company.ru"}
    with pytest.raises(Exception) as e:
        run_staging(outputs, gitlabToken="glpat-MOCKtoken-0123456789", gitlabIntegration="enabled")
    assert "gitlabUrl" in str(e.value) and "http://" in str(e.value) and "gitlabAllowInsecureUrl" in str(e.value)
