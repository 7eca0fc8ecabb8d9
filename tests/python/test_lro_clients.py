"""An off-the-shelf LRO client drives the service: the Azure SDK for Python's poller
(azure-core), in its Location mode and its Operation-Location mode, from submit to result,
and a failed operation raises in both."""
import uuid

import pytest
import requests
from azure.core import PipelineClient
from azure.core.configuration import Configuration
from azure.core.exceptions import HttpResponseError
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import (
    LocationPolling,
    LROBasePolling,
    OperationResourcePolling,
)
from azure.core.pipeline.policies import RedirectPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from handler_process import start_handler

MODES = {
    "Location": LocationPolling,
    "Operation-Location": OperationResourcePolling,
}


def sdk_client(server: str) -> PipelineClient:
    """A pipeline configured as the Azure SDK's generated clients configure theirs: with
    redirects followed (a 302 to the result is how this service says "done") and retries."""
    config = Configuration()
    config.redirect_policy = RedirectPolicy()
    config.retry_policy = RetryPolicy()
    return PipelineClient(base_url=server, config=config)


def begin_submit(server: str, record: dict, algorithm) -> LROPoller:
    client = sdk_client(server)
    request = HttpRequest("POST", f"{server}/api/AsyncProcessingWorkAcceptor", json=record)
    initial = client._pipeline.run(request)  # the SDK's own generated clients do the same
    assert initial.http_response.status_code == 202

    def result_of(pipeline_response):
        return pipeline_response.http_response.json()

    # Only the algorithm under test, so the mode is the one we name; Retry-After paces it.
    polling = LROBasePolling(timeout=0.1, lro_algorithms=[algorithm()])
    return LROPoller(client, initial, result_of, polling)


@pytest.mark.parametrize("mode", MODES)
def test_poller_drives_submit_to_result(server, mode):
    record = {"id": str(uuid.uuid4()), "customername": "Contoso", "mode": mode}
    poller = begin_submit(server, record, MODES[mode])
    result = poller.result(timeout=60)
    assert poller.status().lower() == "succeeded"
    assert result["id"] == record["id"]
    assert result["customername"] == "Contoso"
    assert result["mode"] == mode
    assert "RequestGUID" in result and "ProcessedAt" in result


@pytest.mark.parametrize("mode", MODES)
def test_poller_raises_on_a_failed_operation(server, mode):
    record = {"id": "doomed", "customername": "Contoso", "simulateFailure": "permanent"}
    poller = begin_submit(server, record, MODES[mode])
    with pytest.raises(HttpResponseError) as raised:
        poller.result(timeout=60)
    assert poller.status().lower() == "failed"
    if mode == "Location":
        # The status URL answers the failure as a 4xx problem carrying the error.
        assert raised.value.response.status_code == 422
        assert raised.value.response.json()["operationStatus"] == "Failed"


def test_poller_raises_on_a_canceled_operation():
    # Work slow enough that the cancel surely lands while the operation is pending.
    process, server = start_handler(PROCESSING_DELAY_MS="10000")
    try:
        record = {"id": "canceled", "customername": "Contoso"}
        poller = begin_submit(server, record, OperationResourcePolling)
        status_url = poller.polling_method()._initial_response.http_response.headers["Location"]
        assert requests.delete(status_url, timeout=10).status_code == 200
        with pytest.raises(HttpResponseError):
            poller.result(timeout=60)
        assert poller.status().lower() == "canceled"
    finally:
        process.terminate()
        process.wait(timeout=30)
