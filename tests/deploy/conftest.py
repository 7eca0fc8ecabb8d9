"""Fixtures for the deployment checks: the parsed template."""
import json

import pytest

from template_support import ROOT


@pytest.fixture(scope="session")
def template() -> dict:
    return json.loads((ROOT / "deploy.json").read_text())
