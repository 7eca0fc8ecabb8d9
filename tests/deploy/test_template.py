"""deploy.json: it parses, it deploys with no parameters, and what it deploys for each plan and
identity: Flex Consumption by default, storage reached by managed identity with shared-key access
off (Elastic Premium, the documented exception, aside), role assignments at the narrowest scopes.

The checks evaluate the template's expressions (tests/deploy/arm_eval.py) for a given set of
parameters, the way Resource Manager would, instead of matching expression text."""
import json
import re

import pytest

from arm_eval import Symbol, deployed, is_expression, parse, walk_strings
from template_support import ROOT, one_resource, resources_of

PLANS = ["FC1", "EP1", "EP2", "EP3", "B1", "B2", "S1", "P1v3", "P2v3"]
KEYLESS_PLANS = [p for p in PLANS if not p.startswith("EP")]
IDENTITIES = ["SystemAssigned", "UserAssigned"]

# Built-in role definitions (Azure RBAC, "Azure built-in roles for Storage").
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"  # includes generateUserDelegationKey
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"

# App settings Flex Consumption refuses or ignores (Functions app settings reference, "Flex
# Consumption plan deprecations"): the runtime and the deployment live in functionAppConfig.
FLEX_REFUSED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION", "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTOVERVNET", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION", "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
}
# Site properties Flex Consumption doesn't take.
FLEX_REFUSED_SITE_CONFIG = {"alwaysOn", "ftpsState", "linuxFxVersion", "use32BitWorkerProcess",
                            "functionAppScaleLimit", "preWarmedInstanceCount"}


def deploy(template, **parameters):
    resources, outputs, evaluation = deployed(template, **parameters)
    return resources, outputs, evaluation


def the(resources, type_):
    found = [r for r in resources if r["type"].lower() == type_.lower()]
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def settings_of(resources) -> dict:
    site = the(resources, "Microsoft.Web/sites")
    pairs = site["properties"]["siteConfig"]["appSettings"]
    names = [p["name"] for p in pairs]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {p["name"]: p["value"] for p in pairs}


def storage_account_name(template) -> str:
    _, outputs, _ = deploy(template)
    return outputs["storageAccountName"]


# -- the template as a document ---------------------------------------------------------------

def test_template_is_an_arm_deployment_template(template):
    assert "deploymentTemplate.json" in template["$schema"]
    assert template["contentVersion"]


def test_every_parameter_has_a_default(template):
    missing = [n for n, p in template["parameters"].items() if "defaultValue" not in p]
    assert missing == [], f"parameters without defaults: {missing}"


def all_strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_strings(v)
    elif isinstance(node, str):
        yield node


def test_expressions_are_single_line_and_balanced(template):
    # ARM rejects control characters inside strings; unbalanced brackets fail at deploy time.
    for text in all_strings(template):
        if is_expression(text):
            assert "\n" not in text
            body = re.sub(r"'(?:[^']|'')*'", "''", text[1:-1])
            assert body.count("(") == body.count(")"), text
            assert body.count("[") == body.count("]"), text


def test_every_expression_parses_and_names_what_exists(template):
    def names(node, fn):
        if node[0] == "call":
            if node[1].lower() == fn and node[2] and node[2][0][0] == "lit":
                yield node[2][0][1]
            for arg in node[2]:
                yield from names(arg, fn)
        elif node[0] in ("member", "index"):
            yield from names(node[1], fn)
            if node[0] == "index":
                yield from names(node[2], fn)

    for text in all_strings(template):
        if is_expression(text):
            tree = parse(text[1:-1])
            for v in names(tree, "variables"):
                assert v in template["variables"], f"unknown variable {v} in {text}"
            for p in names(tree, "parameters"):
                assert p in template["parameters"], f"unknown parameter {p} in {text}"


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_combination_evaluates(template, plan, identity):
    resources, outputs, _ = deploy(template, planSku=plan, identityType=identity)
    assert {"functionAppName", "functionAppUrl", "storageAccountName"} <= set(outputs)
    names = [(r["type"].lower(), r["name"]) for r in resources]
    assert len(names) == len(set(names)), "a resource is declared twice"


def test_outputs_name_the_function_app(template):
    outputs = template["outputs"]
    assert outputs["functionAppName"]["type"] == "string"
    assert outputs["functionAppName"]["value"] == "[parameters('appName')]"
    assert "defaultHostName" in outputs["functionAppUrl"]["value"]


# -- parameters ---------------------------------------------------------------------------------

def test_plan_parameter_defaults_to_flex_and_offers_no_linux_consumption(template):
    sku = template["parameters"]["planSku"]
    assert sku["defaultValue"] == "FC1"
    assert set(sku["allowedValues"]) == set(PLANS)
    assert "Y1" not in sku["allowedValues"], "Linux Consumption is dropped (docs/deploy.md says why)"
    assert set(sku["allowedValues"]) == set(template["variables"]["tiers"])


def test_flex_scale_parameters_have_the_ranges_flex_accepts(template):
    memory = template["parameters"]["instanceMemoryMB"]
    assert memory["type"] == "int"
    assert memory["defaultValue"] == 2048
    assert memory["allowedValues"] == [512, 2048, 4096]
    count = template["parameters"]["maximumInstanceCount"]
    assert count["type"] == "int"
    assert (count["minValue"], count["maxValue"], count["defaultValue"]) == (40, 1000, 100)


def test_identity_parameter(template):
    identity = template["parameters"]["identityType"]
    assert identity["defaultValue"] == "SystemAssigned"
    assert identity["allowedValues"] == IDENTITIES


def test_retention_and_link_lifetime_parameters_are_bounded(template):
    retention = template["parameters"]["retentionDays"]
    assert (retention["minValue"], retention["maxValue"], retention["defaultValue"]) == (1, 365, 1)
    sas = template["parameters"]["sasExpirySeconds"]
    assert (sas["minValue"], sas["maxValue"], sas["defaultValue"]) == (60, 86400, 600)


# -- storage ------------------------------------------------------------------------------------

def test_storage_account_is_secured(template):
    account = one_resource(template, "Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True


@pytest.mark.parametrize("plan", KEYLESS_PLANS)
def test_keyless_plans_turn_shared_key_access_off(template, plan):
    resources, _, _ = deploy(template, planSku=plan)
    account = the(resources, "Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowSharedKeyAccess"] is False


@pytest.mark.parametrize("plan", KEYLESS_PLANS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_account_key_anywhere_in_a_keyless_deployment(template, plan, identity):
    resources, outputs, evaluation = deploy(template, planSku=plan, identityType=identity)
    called = {name for name, _ in evaluation.calls}
    assert not any(name.startswith("list") for name in called), f"{plan}: {sorted(called)}"
    texts = list(walk_strings([resources, outputs]))
    assert not any("AccountKey" in t or "listKeys" in t for t in texts)
    assert "AzureWebJobsStorage" not in settings_of(resources), "no connection string setting"


@pytest.mark.parametrize("plan", ["EP1", "EP2", "EP3"])
def test_elastic_premium_is_the_documented_shared_key_exception(template, plan):
    resources, _, evaluation = deploy(template, planSku=plan)
    account = the(resources, "Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowSharedKeyAccess"] is True
    settings = settings_of(resources)
    # Only the Azure Files content share uses the key; the host and the handler still use the
    # identity (and the handler's result links stay user-delegation SAS).
    assert "listKeys(" in settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    assert settings["WEBSITE_CONTENTSHARE"]
    assert "AzureWebJobsStorage" not in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    keyed = [k for k, v in settings.items() if "AccountKey" in str(v)]
    assert keyed == ["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    assert [n for n, _ in evaluation.calls].count("listkeys") == 1
    deploy_md = (ROOT / "docs" / "deploy.md").read_text()
    assert "shared-key" in deploy_md and "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING" in deploy_md


def test_containers_are_private_and_queues_exist(template):
    variables = template["variables"]
    containers = resources_of(template, "Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {c["name"] for c in containers}
    assert any("resultContainer" in n for n in names) and variables["resultContainer"] == "data"
    assert any("recordsContainer" in n for n in names)
    assert any("deploymentContainer" in n for n in names)
    assert all(c["properties"]["publicAccess"] == "None" for c in containers)
    queues = resources_of(template, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert {variables["queueName"], variables["poisonQueueName"]} == {"outqueue", "outqueue-poison"}
    assert (variables["callbackQueueName"], variables["callbackPoisonQueueName"]) == (
        "outqueue-callbacks", "outqueue-callbacks-poison")
    assert len(queues) == 4
    for name in ("queueName", "poisonQueueName", "callbackQueueName", "callbackPoisonQueueName"):
        assert any(f"variables('{name}')" in q["name"] for q in queues), name
    # The queue the trigger listens on is the one the template creates.
    binding = json.loads((ROOT / "AsyncProcessingBackgroundWorker" / "function.json").read_text())
    assert binding["bindings"][0]["queueName"] == variables["queueName"]
    # And the poison function listens on the poison queue the template creates.
    poison = json.loads((ROOT / "AsyncProcessingPoisonWorker" / "function.json").read_text())
    assert poison["bindings"][0]["queueName"] == variables["poisonQueueName"]
    # And the callback function listens on the callbacks queue the template creates.
    callbacks = json.loads((ROOT / "AsyncProcessingCallbackWorker" / "function.json").read_text())
    assert callbacks["bindings"][0]["queueName"] == variables["callbackQueueName"]
    # The triggers use the host's connection, the identity-based AzureWebJobsStorage__* settings.
    assert (binding["bindings"][0]["connection"] == poison["bindings"][0]["connection"]
            == callbacks["bindings"][0]["connection"] == "AzureWebJobsStorage")


def test_lifecycle_rule_deletes_after_the_announced_retention(template):
    policy = one_resource(template, "Microsoft.Storage/storageAccounts/managementPolicies")
    rules = policy["properties"]["policy"]["rules"]
    assert len(rules) == 1
    rule = rules[0]["definition"]
    prefixes = rule["filters"]["prefixMatch"]
    assert any("resultContainer" in p for p in prefixes)
    assert any("recordsContainer" in p for p in prefixes)
    assert not any("deploymentContainer" in p for p in prefixes), "never expire the app's package"
    delete = rule["actions"]["baseBlob"]["delete"]
    assert delete["daysAfterModificationGreaterThan"] == "[parameters('retentionDays')]"
    # The app announces the same period: RETENTION_SECONDS is retentionDays in seconds.
    resources, _, _ = deploy(template, retentionDays=7)
    assert settings_of(resources)["RETENTION_SECONDS"] == str(7 * 86400)


# -- plan and app -------------------------------------------------------------------------------

def test_default_plan_is_flex_consumption(template):
    resources, _, _ = deploy(template)
    plan = the(resources, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    assert plan["kind"] == "functionapp"
    assert plan["properties"]["maximumElasticWorkerCount"] is None
    assert plan["apiVersion"] >= "2023-12-01"


@pytest.mark.parametrize("plan", ["EP1", "B1", "P1v3"])
def test_other_plans_are_linux(template, plan):
    resources, _, _ = deploy(template, planSku=plan)
    farm = the(resources, "Microsoft.Web/serverfarms")
    assert farm["kind"] == "linux" and farm["properties"]["reserved"] is True
    assert farm["sku"]["name"] == plan


def test_flex_app_runs_the_custom_runtime_from_its_deployment_container(template):
    resources, _, _ = deploy(template, instanceMemoryMB=4096, maximumInstanceCount=40)
    site = the(resources, "Microsoft.Web/sites")
    assert site["apiVersion"] >= "2023-12-01", "functionAppConfig needs Microsoft.Web 2023-12-01"
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "custom", "version": "1.0"}
    assert config["scaleAndConcurrency"] == {"instanceMemoryMB": 4096, "maximumInstanceCount": 40}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    account = storage_account_name(template)
    container = template["variables"]["deploymentContainer"]
    assert storage["value"] == f"https://{account}.blob.core.windows.net/{container}"
    assert storage["authentication"] == {"type": "SystemAssignedIdentity"}
    # The container exists and is private.
    containers = [r for r in resources
                  if r["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"]
    assert f"{account}/default/{container}" in {c["name"] for c in containers}


def test_flex_deployment_container_uses_the_user_assigned_identity_when_chosen(template):
    resources, _, _ = deploy(template, identityType="UserAssigned")
    identity = the(resources, "Microsoft.ManagedIdentity/userAssignedIdentities")
    site = the(resources, "Microsoft.Web/sites")
    auth = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert auth["type"] == "UserAssignedIdentity"
    assert auth["userAssignedIdentityResourceId"].endswith(
        f"/Microsoft.ManagedIdentity/userAssignedIdentities/{identity['name']}")


@pytest.mark.parametrize("plan", [p for p in PLANS if p != "FC1"])
def test_only_flex_gets_a_function_app_config(template, plan):
    resources, _, _ = deploy(template, planSku=plan)
    site = the(resources, "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"] is None
    names = {r["name"] for r in resources}
    assert not any(n.endswith("/" + template["variables"]["deploymentContainer"]) for n in names)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_flex_app_has_none_of_the_settings_flex_refuses(template, identity):
    resources, _, _ = deploy(template, planSku="FC1", identityType=identity)
    site = the(resources, "Microsoft.Web/sites")
    refused = FLEX_REFUSED_SETTINGS & set(settings_of(resources))
    assert refused == set(), f"Flex refuses {sorted(refused)}"
    config = site["properties"]["siteConfig"]
    present = {k for k in FLEX_REFUSED_SITE_CONFIG if config.get(k) is not None}
    assert present == set(), f"Flex doesn't take siteConfig {sorted(present)}"
    assert site["properties"].get("reserved") is None, "Flex doesn't take properties.reserved"


@pytest.mark.parametrize("plan", [p for p in PLANS if p != "FC1"])
def test_classic_plans_name_the_runtime_in_app_settings(template, plan):
    resources, _, _ = deploy(template, planSku=plan)
    settings = settings_of(resources)
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "custom"
    assert settings["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    site = the(resources, "Microsoft.Web/sites")
    assert site["properties"]["reserved"] is True
    config = site["properties"]["siteConfig"]
    assert config["linuxFxVersion"] == ""
    assert config["ftpsState"] == "Disabled"
    assert config["use32BitWorkerProcess"] is False
    # Dedicated plans need Always On for the queue triggers; Elastic Premium scales instead, with
    # scale decisions from the host (which holds the identity's queue roles).
    premium = plan.startswith("EP")
    assert config["alwaysOn"] is (not premium)
    assert config["functionsRuntimeScaleMonitoringEnabled"] is (True if premium else None)
    assert "WEBSITE_RUN_FROM_PACKAGE" not in settings, "func azure functionapp publish sets it"


def test_function_app_is_secured_on_every_plan(template):
    for plan in PLANS:
        resources, _, _ = deploy(template, planSku=plan)
        site = the(resources, "Microsoft.Web/sites")
        assert site["kind"] == "functionapp,linux"
        props = site["properties"]
        assert props["httpsOnly"] is True
        assert props["clientCertEnabled"] is False
        config = props["siteConfig"]
        assert config["minTlsVersion"] == "1.2"
        assert config["scmMinTlsVersion"] == "1.2"
        assert config["http20Enabled"] is True


# -- identity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("plan", PLANS)
def test_system_assigned_identity_settings(template, plan):
    resources, _, _ = deploy(template, planSku=plan)
    site = the(resources, "Microsoft.Web/sites")
    assert site["identity"] == {"type": "SystemAssigned"}
    assert not [r for r in resources if r["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"]
    settings = settings_of(resources)
    assert settings["AzureWebJobsStorage__accountName"] == storage_account_name(template)
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage__clientId" not in settings
    assert "AzureWebJobsStorage" not in settings


@pytest.mark.parametrize("plan", PLANS)
def test_user_assigned_identity_settings(template, plan):
    resources, _, _ = deploy(template, planSku=plan, identityType="UserAssigned")
    identity = the(resources, "Microsoft.ManagedIdentity/userAssignedIdentities")
    site = the(resources, "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    (identity_id,) = site["identity"]["userAssignedIdentities"]
    assert identity_id.endswith(f"/userAssignedIdentities/{identity['name']}")
    settings = settings_of(resources)
    assert settings["AzureWebJobsStorage__accountName"] == storage_account_name(template)
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Symbol(f"reference({identity_id})")["clientId"]
    assert "AzureWebJobsStorage" not in settings


def role_assignments(resources):
    return [r for r in resources if r["type"] == "Microsoft.Authorization/roleAssignments"]


def role_of(assignment) -> str:
    return assignment["properties"]["roleDefinitionId"].rsplit("/", 1)[1]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("identity", IDENTITIES)
def test_role_assignments_and_their_scopes(template, plan, identity):
    resources, _, _ = deploy(template, planSku=plan, identityType=identity)
    account = storage_account_name(template)
    variables = template["variables"]
    got = {(role_of(a), a["scope"]) for a in role_assignments(resources)}
    assert got == {
        # The host's storage (blobs: keys, leases; on Flex, the package), the handler's
        # containers, and the user delegation key: one account-scope role covers them all.
        (STORAGE_BLOB_DATA_OWNER, f"Microsoft.Storage/storageAccounts/{account}"),
        # The queue triggers and the handler's enqueue: each queue, nothing wider.
        (STORAGE_QUEUE_DATA_CONTRIBUTOR,
         f"Microsoft.Storage/storageAccounts/{account}/queueServices/default/queues/{variables['queueName']}"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR,
         f"Microsoft.Storage/storageAccounts/{account}/queueServices/default/queues/{variables['poisonQueueName']}"),
        # The completion callbacks' attempts, and the messages the host gives up on.
        (STORAGE_QUEUE_DATA_CONTRIBUTOR,
         f"Microsoft.Storage/storageAccounts/{account}/queueServices/default/queues/{variables['callbackQueueName']}"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR,
         f"Microsoft.Storage/storageAccounts/{account}/queueServices/default/queues/{variables['callbackPoisonQueueName']}"),
    }
    assert len(role_assignments(resources)) == 5
    assert STORAGE_TABLE_DATA_CONTRIBUTOR not in {r for r, _ in got}, "nothing here uses tables"
    names = [a["name"] for a in role_assignments(resources)]
    assert len(set(names)) == 5, "role assignment names must differ"
    for a in role_assignments(resources):
        assert a["properties"]["roleDefinitionId"].startswith("/subscriptions/")
        assert a["properties"]["principalType"] == "ServicePrincipal"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_roles_go_to_the_identity_the_app_uses(template, identity):
    resources, _, _ = deploy(template, identityType=identity)
    site = the(resources, "Microsoft.Web/sites")
    principals = {str(a["properties"]["principalId"]) for a in role_assignments(resources)}
    if identity == "UserAssigned":
        (identity_id,) = site["identity"]["userAssignedIdentities"]
        assert principals == {f"<reference({identity_id}).principalId>"}
    else:
        site_id = next(r for r in resources if r["type"] == "Microsoft.Web/sites")
        assert len(principals) == 1
        (principal,) = principals
        assert principal.startswith("<reference(") and principal.endswith(", Full).identity.principalId>")
        assert f"/Microsoft.Web/sites/{site_id['name']}" in principal
    # The names are stable per identity, so a redeployment updates rather than duplicates them,
    # and switching identity creates new ones instead of clashing with the old.
    other = "SystemAssigned" if identity == "UserAssigned" else "UserAssigned"
    other_resources, _, _ = deploy(template, identityType=other)
    assert not {a["name"] for a in role_assignments(resources)} & {a["name"] for a in role_assignments(other_resources)}


def test_user_delegation_key_role_is_at_account_scope(template):
    # generateUserDelegationKey is an action on blobServices, so only an assignment at the
    # account (or wider) grants it; Storage Blob Data Owner includes it.
    resources, _, _ = deploy(template)
    account_scoped = {role_of(a) for a in role_assignments(resources)
                      if a["scope"].count("/") == 2}
    assert STORAGE_BLOB_DATA_OWNER in account_scoped


def test_function_app_settings_are_read_by_someone(template):
    # Every setting the template gives the app is one the host or the handler reads.
    config_rs = (ROOT / "src" / "config.rs").read_text()
    host = {
        "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId", "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME",
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
    }
    for plan in PLANS:
        for identity in IDENTITIES:
            resources, _, _ = deploy(template, planSku=plan, identityType=identity)
            settings = settings_of(resources)
            assert {"WORK_QUEUE_NAME", "RESULT_CONTAINER", "RECORDS_CONTAINER", "RETENTION_SECONDS",
                    "SAS_EXPIRY_SECONDS", "LOG_FORMAT", "APPLICATIONINSIGHTS_CONNECTION_STRING"} <= set(settings)
            unknown = [n for n in set(settings) - host if f'"{n}"' not in config_rs]
            assert unknown == [], f"settings the handler does not read: {unknown}"
    resources, _, _ = deploy(template, sasExpirySeconds=120)
    settings = settings_of(resources)
    assert settings["SAS_EXPIRY_SECONDS"] == "120"
    assert settings["WORK_QUEUE_NAME"] == "outqueue"
    assert settings["LOG_FORMAT"] == "json"


def test_application_insights_is_workspace_based(template):
    insights = one_resource(template, "Microsoft.Insights/components")
    assert "WorkspaceResourceId" in insights["properties"]
    one_resource(template, "Microsoft.OperationalInsights/workspaces")


def test_docs_describe_the_deployment_the_template_makes(template):
    readme = (ROOT / "README.md").read_text()
    deploy_md = (ROOT / "docs" / "deploy.md").read_text()
    for doc in (readme, deploy_md):
        # Flex runs custom handlers; the old claim that it cannot must not come back.
        assert "Flex Consumption does not" not in doc
        assert "func azure functionapp publish" in doc
        for setting in ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
                        "AzureWebJobsStorage__clientId"):
            assert setting in doc, setting
    # The roles the docs name are the ones the template assigns.
    for guid in (STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR):
        assert guid in deploy_md and guid in template["variables"]["roles"].values()
    assert "Linux Consumption" in deploy_md and "Dropped" in deploy_md
