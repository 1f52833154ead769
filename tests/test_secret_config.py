"""A config value Pulumi holds as a secret stays secret in every resource it reaches: secret
ciVariables become secret Outputs; a key the program uses in plain text refuses a secret."""

from __future__ import annotations

import pulumi
import pytest

from conftest import unwrap
from gitlab_stacks import SECRETS, run_production

VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
API_KEY = "Mock-api-key-value-7Jq2"
NOTE = "Mock-note-about-the-key-4Wm"


def secret_ci_variables() -> dict:
    return {
        "API_KEY": {"value": API_KEY, "masked": False, "description": NOTE},
        "DEPLOY_ENVIRONMENT": "production-eu-1",
    }


def variables(run) -> dict:
    return {r.plain["key"]: r for r in run.of_type(VARIABLE)}


def test_values_of_a_secret_ci_variables_become_secret_outputs():
    run = run_production(secrets=SECRETS + ("ciVariables",), ciVariables=secret_ci_variables())
    found = variables(run)
    for name in ("API_KEY", "DEPLOY_ENVIRONMENT"):
        assert found[name].secret("value"), f"{found[name].urn}: value from a secret ciVariables is plain"
    assert found["API_KEY"].plain["value"] == API_KEY
    assert found["API_KEY"].secret("description") and unwrap(found["API_KEY"].inputs["description"]) == NOTE


def test_values_of_a_plain_ci_variables_stay_plain_unless_masked():
    run = run_production(ciVariables={"DEPLOY_ENVIRONMENT": "production-eu-1", "API_TOKEN": "Mock-api-token-5Hn8"})
    found = variables(run)
    assert not found["DEPLOY_ENVIRONMENT"].secret("value")
    assert found["API_TOKEN"].secret("value"), "a credential-like name is masked, so kept secret"


@pytest.mark.parametrize(
    "key, value",
    [
        ("domain", "company.ru"),
        ("acmeEmail", "mail@company.ru"),
        ("ciProject", "group/app"),
        ("gitlabUrl", "https://gitlab.company.ru"),
        ("hosts", None),
        ("productionApps", None),
        ("runners", {"production-runner": {"description": "Mock-runner-description"}}),
    ],
)
def test_a_key_used_in_plain_text_refuses_a_secret_value(key, value):
    overrides = {} if value is None else {key: value}
    with pytest.raises(pulumi.RunError) as e:
        run_production(secrets=SECRETS + (key,), **overrides)
    msg = str(e.value)
    assert f"delivery:{key}: is set as a secret, but this key is used in plain text" in msg
    if isinstance(value, str):
        assert f"got {value!r}" not in msg
