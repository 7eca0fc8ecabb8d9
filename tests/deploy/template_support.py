"""Helpers for the deployment checks: the repository root and lookups in the template."""
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def resources_of(template: dict, type_: str) -> list[dict]:
    return [r for r in template["resources"] if r["type"].lower() == type_.lower()]


def one_resource(template: dict, type_: str) -> dict:
    found = resources_of(template, type_)
    assert len(found) == 1, f"expected exactly one {type_}, found {len(found)}"
    return found[0]
