"""deploy.json: it parses, it deploys with no parameters, and it sets what issue 5 promises."""
import json
import re

from template_support import ROOT, one_resource, resources_of


def test_template_is_an_arm_deployment_template(template):
    assert "deploymentTemplate.json" in template["$schema"]
    assert template["contentVersion"]


def test_every_parameter_has_a_default(template):
    missing = [n for n, p in template["parameters"].items() if "defaultValue" not in p]
    assert missing == [], f"parameters without defaults: {missing}"


def test_expressions_are_single_line_and_balanced(template):
    # ARM rejects control characters inside strings; unbalanced brackets fail at deploy time.
    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
        elif isinstance(node, str):
            yield node

    for text in walk(template):
        if text.startswith("[") and not text.startswith("[["):
            assert "\n" not in text
            body = re.sub(r"'(?:[^']|'')*'", "''", text[1:-1])
            assert body.count("(") == body.count(")"), text
            assert body.count("[") == body.count("]"), text


def test_outputs_name_the_function_app(template):
    outputs = template["outputs"]
    assert outputs["functionAppName"]["type"] == "string"
    assert outputs["functionAppName"]["value"] == "[parameters('appName')]"
    assert "defaultHostName" in outputs["functionAppUrl"]["value"]


def test_storage_account_is_secured(template):
    account = one_resource(template, "Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False


def test_containers_are_private_and_queues_exist(template):
    variables = template["variables"]
    containers = resources_of(template, "Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {c["name"] for c in containers}
    assert any("resultContainer" in n for n in names) and variables["resultContainer"] == "data"
    assert any("recordsContainer" in n for n in names)
    assert all(c["properties"]["publicAccess"] == "None" for c in containers)
    queues = resources_of(template, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert {variables["queueName"], variables["poisonQueueName"]} == {"outqueue", "outqueue-poison"}
    assert len(queues) == 2
    # The queue the trigger listens on is the one the template creates.
    binding = json.loads((ROOT / "AsyncProcessingBackgroundWorker" / "function.json").read_text())
    assert binding["bindings"][0]["queueName"] == variables["queueName"]
    # And the poison function listens on the poison queue the template creates.
    poison = json.loads((ROOT / "AsyncProcessingPoisonWorker" / "function.json").read_text())
    assert poison["bindings"][0]["queueName"] == variables["poisonQueueName"]


def test_lifecycle_rule_deletes_after_the_announced_retention(template):
    policy = one_resource(template, "Microsoft.Storage/storageAccounts/managementPolicies")
    rules = policy["properties"]["policy"]["rules"]
    assert len(rules) == 1
    rule = rules[0]["definition"]
    prefixes = rule["filters"]["prefixMatch"]
    assert any("resultContainer" in p for p in prefixes)
    assert any("recordsContainer" in p for p in prefixes)
    delete = rule["actions"]["baseBlob"]["delete"]
    assert delete["daysAfterModificationGreaterThan"] == "[parameters('retentionDays')]"
    # The app announces the same period: RETENTION_SECONDS is retentionDays in seconds.
    settings = app_settings_expression(template)
    assert "createObject('name', 'RETENTION_SECONDS', 'value', string(mul(parameters('retentionDays'), 86400)))" in settings


def test_plan_is_linux_and_consumption_by_default(template):
    plan = one_resource(template, "Microsoft.Web/serverfarms")
    assert plan["kind"] == "linux"
    assert plan["properties"]["reserved"] is True
    sku = template["parameters"]["planSku"]
    assert sku["defaultValue"] == "Y1"
    assert template["variables"]["tiers"]["Y1"] == "Dynamic"
    assert {"EP1", "B1", "P1v3"} <= set(sku["allowedValues"])
    assert set(sku["allowedValues"]) == set(template["variables"]["tiers"])


def app_settings_expression(template) -> str:
    site = one_resource(template, "Microsoft.Web/sites")
    return site["properties"]["siteConfig"]["appSettings"]


def test_function_app_runs_the_custom_handler_securely(template):
    site = one_resource(template, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "SystemAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["reserved"] is True
    config = props["siteConfig"]
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    assert config["http20Enabled"] is True
    assert config["linuxFxVersion"] == ""


def test_function_app_settings(template):
    settings = app_settings_expression(template)
    names = set(re.findall(r"createObject\('name', '([A-Za-z_]+)'", settings))
    assert {
        "AzureWebJobsStorage",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "WORK_QUEUE_NAME",
        "RESULT_CONTAINER",
        "RECORDS_CONTAINER",
        "RETENTION_SECONDS",
        "SAS_EXPIRY_SECONDS",
        "LOG_FORMAT",
    } <= names
    assert "createObject('name', 'FUNCTIONS_WORKER_RUNTIME', 'value', 'custom')" in settings
    assert "createObject('name', 'FUNCTIONS_EXTENSION_VERSION', 'value', '~4')" in settings
    assert "DefaultEndpointsProtocol=https" in settings
    # Every setting the template gives the app is one the handler reads.
    config_rs = (ROOT / "src" / "config.rs").read_text()
    own = names - {
        "AzureWebJobsStorage",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
    }
    unknown = [n for n in own if f'"{n}"' not in config_rs]
    assert unknown == [], f"settings the handler does not read: {unknown}"


def test_application_insights_is_workspace_based(template):
    insights = one_resource(template, "Microsoft.Insights/components")
    assert "WorkspaceResourceId" in insights["properties"]
    one_resource(template, "Microsoft.OperationalInsights/workspaces")
