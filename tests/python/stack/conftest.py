"""Fixtures for the tests of stacks/hybrid-alb."""
import sys
from pathlib import Path

import pytest

# Importing the Lambda handler or the EC2 server must not leave __pycache__
# folders inside stacks/ (the lambda/ folder is zipped as an artifact).
sys.dont_write_bytecode = True
# The helpers module sits next to this file; make it importable in any
# pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_alb import load_deployment, load_template  # noqa: E402


@pytest.fixture(scope="session")
def template():
    return load_template()


@pytest.fixture(scope="session")
def resources(template):
    return template["Resources"]


@pytest.fixture(scope="session")
def deployment():
    return load_deployment()
