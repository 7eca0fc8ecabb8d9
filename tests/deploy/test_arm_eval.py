"""The expression evaluator the template checks rely on: it must evaluate like Resource Manager
where the checks depend on it, or they would pass for the wrong reason."""
import pytest

from arm_eval import Evaluation, Symbol, deployed, parse

TEMPLATE = {
    "parameters": {"plan": {"type": "string", "defaultValue": "A"}},
    "variables": {
        "isA": "[equals(parameters('plan'), 'A')]",
        "nested": {"x": "[concat('a', 'b')]"},
        "table": {"A": 1, "B": 2},
    },
    "resources": [
        {"type": "T/one", "name": "n1", "condition": "[variables('isA')]", "properties": {}},
        {"type": "T/two", "name": "n2",
         "properties": {"v": "[if(variables('isA'), 'yes', listKeys('id', '1').keys[0].value)]"}},
    ],
}


def test_if_evaluates_only_the_branch_it_takes():
    resources, _, ev = deployed(TEMPLATE)
    assert resources[1]["properties"]["v"] == "yes"
    assert "listkeys" not in [name for name, _ in ev.calls]
    resources, _, ev = deployed(TEMPLATE, plan="B")
    assert resources[0]["properties"]["v"] == Symbol("listKeys(id)")["keys"][0]["value"]
    assert "listkeys" in [name for name, _ in ev.calls]


def test_conditions_drop_resources():
    assert [r["name"] for r in deployed(TEMPLATE)[0]] == ["n1", "n2"]
    assert [r["name"] for r in deployed(TEMPLATE, plan="B")[0]] == ["n2"]


def test_variables_indexing_and_functions():
    ev = Evaluation(TEMPLATE, {})
    assert ev.evaluate("variables('table')[parameters('plan')]") == 1
    assert ev.evaluate("variables('nested').x") == "ab"
    assert ev.evaluate("concat(createArray(1), createArray(2, 3))") == [1, 2, 3]
    assert ev.evaluate("createObject('a', json('null'))") == {"a": None}
    assert ev.evaluate("string(mul(2, 86400))") == "172800"
    assert ev.evaluate("not(equals(toLower('AB'), 'ab'))") is False
    assert ev.evaluate("resourceId('Microsoft.Storage/storageAccounts/queueServices/queues', 'acct', 'default', 'q')").endswith(
        "/providers/Microsoft.Storage/storageAccounts/acct/queueServices/default/queues/q")


def test_unknown_names_and_bad_syntax_raise():
    ev = Evaluation(TEMPLATE, {})
    with pytest.raises(KeyError):
        ev.evaluate("variables('nope')")
    with pytest.raises(KeyError):
        ev.evaluate("parameters('nope')")
    with pytest.raises(AttributeError):
        ev.evaluate("noSuchFunction()")
    with pytest.raises(SyntaxError):
        parse("concat('a'")
