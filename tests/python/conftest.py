"""The session's handler for the Python suites, started once and stopped at the end."""
import pytest

from handler_process import start_handler


@pytest.fixture(scope="session")
def server():
    """A handler whose work takes a little while, so pollers really poll."""
    process, base = start_handler(PROCESSING_DELAY_MS="300", VISIBILITY_TIMEOUT_SECONDS="1")
    yield base
    process.terminate()
    assert process.wait(timeout=30) == 0, "the handler did not shut down cleanly"
