"""A small evaluator for the ARM template expressions deploy.json uses, so the checks can ask what
the template deploys for a given plan and identity instead of grepping expression text.

It covers the functions the template calls. Anything the deployment itself would produce
(reference(), listKeys(), uniqueString(), guid()) becomes a symbolic value that records the call,
so a test can see which runtime lookups a plan's deployment would make. `if` evaluates only the
branch it takes, as ARM does. An unknown function, variable or parameter raises, so a typo in
the template fails the checks.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg"
STORAGE_SUFFIX = "core.windows.net"


class Symbol:
    """A value only the deployment knows: printed as <what>, its members are symbols too."""

    def __init__(self, what: str):
        self.what = what

    def __getitem__(self, key):
        return Symbol(f"{self.what}[{key!r}]" if not isinstance(key, str) else f"{self.what}.{key}")

    def __str__(self):
        return f"<{self.what}>"

    __repr__ = __str__

    def __eq__(self, other):
        return isinstance(other, Symbol) and other.what == self.what

    def __hash__(self):
        return hash(self.what)


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[(),.\[\]]))")


def tokenize(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise SyntaxError(f"cannot read expression at {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(("str", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            tokens.append(("num", int(m.group("num"))))
        elif m.group("name") is not None:
            tokens.append(("name", m.group("name")))
        else:
            tokens.append(("op", m.group("op")))
    return tokens


# AST: ("lit", value) | ("call", name, [args]) | ("member", node, name) | ("index", node, node)
def parse(text: str):
    tokens = tokenize(text)
    pos = 0

    def peek(kind=None, value=None):
        if pos >= len(tokens):
            return False
        k, v = tokens[pos]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(kind=None, value=None):
        nonlocal pos
        if not peek(kind, value):
            got = tokens[pos] if pos < len(tokens) else "end"
            raise SyntaxError(f"expected {kind} {value or ''} in {text!r}, got {got}")
        pos += 1
        return tokens[pos - 1][1]

    def expression():
        if peek("str"):
            node = ("lit", take())
        elif peek("num"):
            node = ("lit", take())
        else:
            name = take("name")
            take("op", "(")
            args = []
            if not peek("op", ")"):
                args.append(expression())
                while peek("op", ","):
                    take()
                    args.append(expression())
            take("op", ")")
            node = ("call", name, args)
        while peek("op", ".") or peek("op", "["):
            if take() == ".":
                node = ("member", node, take("name"))
            else:
                index = expression()
                take("op", "]")
                node = ("index", node, index)
        return node

    node = expression()
    if pos != len(tokens):
        raise SyntaxError(f"trailing tokens in {text!r}")
    return node


def is_expression(value) -> bool:
    return isinstance(value, str) and value.startswith("[") and not value.startswith("[[")


@dataclass
class Evaluation:
    template: dict
    parameters: dict
    calls: list = field(default_factory=list)
    _variables: dict = field(default_factory=dict)

    # -- values ---------------------------------------------------------------------------
    def resolve(self, value):
        """The value with every expression in it evaluated (objects and arrays walked)."""
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if is_expression(value):
            return self.evaluate(value[1:-1])
        return value

    def evaluate(self, text: str):
        return self._eval(parse(text))

    def variable(self, name: str):
        if name not in self._variables:
            variables = self.template.get("variables", {})
            if name not in variables:
                raise KeyError(f"unknown variable {name!r}")
            self._variables[name] = self.resolve(variables[name])
        return self._variables[name]

    def parameter(self, name: str):
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template["parameters"]
        if name not in declared:
            raise KeyError(f"unknown parameter {name!r}")
        value = self.resolve(declared[name]["defaultValue"])
        self.parameters[name] = value
        return value

    # -- the expression language --------------------------------------------------------
    def _eval(self, node):
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "member":
            base = self._eval(node[1])
            if isinstance(base, Symbol):
                return base[node[2]]
            if node[2] not in base:
                raise KeyError(f"no member {node[2]!r} in {base!r}")
            return base[node[2]]
        if kind == "index":
            base, index = self._eval(node[1]), self._eval(node[2])
            return base[index]
        name, args = node[1].lower(), node[2]
        if name == "if":
            return self._eval(args[1]) if self._eval(args[0]) else self._eval(args[2])
        values = [self._eval(a) for a in args]
        self.calls.append((name, values))
        return getattr(self, "fn_" + name.replace(".", "_"))(*values)

    @staticmethod
    def _text(value) -> str:
        if isinstance(value, bool):
            return "True" if value else "False"
        return str(value)

    def fn_parameters(self, name):
        return self.parameter(name)

    def fn_variables(self, name):
        return self.variable(name)

    def fn_concat(self, *values):
        if values and all(isinstance(v, list) for v in values):
            return [item for v in values for item in v]
        return "".join(self._text(v) for v in values)

    def fn_format(self, pattern, *values):
        return re.sub(r"\{(\d+)\}", lambda m: self._text(values[int(m.group(1))]), pattern)

    def fn_createarray(self, *values):
        return list(values)

    def fn_createobject(self, *pairs):
        return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)}

    def fn_equals(self, a, b):
        return a == b

    def fn_not(self, a):
        return not a

    def fn_and(self, *values):
        return all(values)

    def fn_or(self, *values):
        return any(values)

    def fn_true(self):
        return True

    def fn_false(self):
        return False

    def fn_json(self, text):
        if text == "null":
            return None
        raise NotImplementedError(f"json({text!r})")

    def fn_string(self, value):
        return self._text(value)

    def fn_mul(self, a, b):
        return a * b

    def fn_tolower(self, text):
        return self._text(text).lower()

    def fn_environment(self):
        return {"suffixes": {"storage": STORAGE_SUFFIX}}

    def fn_resourcegroup(self):
        return {"id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}", "location": "westeurope"}

    def fn_uniquestring(self, *values):
        return hashlib.sha256("|".join(map(self._text, values)).encode()).hexdigest()[:13]

    def fn_guid(self, *values):
        digest = hashlib.sha256("|".join(map(self._text, values)).encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    def fn_resourceid(self, type_, *names):
        provider_path = type_.split("/")
        segments = [provider_path[0] + "/" + provider_path[1], names[0]]
        for child, name in zip(provider_path[2:], names[1:]):
            segments += [child, name]
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/" + "/".join(segments)

    def fn_subscriptionresourceid(self, type_, name):
        return f"/subscriptions/{SUBSCRIPTION}/providers/{type_}/{name}"

    def fn_reference(self, resource, api_version=None, full=None):
        return Symbol(f"reference({resource}{', Full' if full else ''})")

    def fn_listkeys(self, resource, api_version):
        return Symbol(f"listKeys({resource})")


def deployed(template: dict, **parameters) -> tuple[list[dict], dict, Evaluation]:
    """What deploying the template with these parameters creates: the resources whose condition
    holds, every expression in them evaluated, and the evaluated outputs."""
    ev = Evaluation(template, dict(parameters))
    resources = []
    for resource in template["resources"]:
        if "condition" in resource and not ev.resolve(resource["condition"]):
            continue
        resources.append(ev.resolve({k: v for k, v in resource.items() if k != "condition"}))
    outputs = {name: ev.resolve(out["value"]) for name, out in template.get("outputs", {}).items()}
    return resources, outputs, ev


def walk_strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from walk_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_strings(value)
    elif isinstance(node, (str, Symbol)):
        yield str(node)
