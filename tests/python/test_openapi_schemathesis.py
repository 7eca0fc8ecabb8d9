"""schemathesis generates requests from openapi/openapi.yaml (examples, coverage, fuzzing and
stateful phases) against the running server: no 5xx, every status, content type, header and
body as the document says, bad input refused, undeclared methods refused."""
import subprocess
import sys
from pathlib import Path

from handler_process import ROOT

# positive_data_acceptance is left out on purpose: the contract answers some schema-valid
# requests with a 4xx by design (a reused Idempotency-Key with another body is 422; a status
# request after the stateful phase cancels the operation is 410), which that check counts as
# "valid data rejected". Every other check schemathesis has is run.
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "use_after_free",
    "ensure_resource_availability",
])


# One worker: with two, schemathesis's threads sometimes stop on "SystemError: AST constructor
# recursion depth mismatch", a CPython 3.11 fault in ast.parse (which hypothesis calls to
# describe filters), not a finding; one worker takes no longer on these 2-core machines.
def test_schemathesis_finds_nothing(server, tmp_path):
    cli = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [str(cli), "run", str(ROOT / "openapi" / "openapi.yaml"), "--url", server,
         "--checks", CHECKS, "--max-examples", "40", "--workers", "1",
         "--seed", "20261125", "--no-color", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    summary = run.stdout[run.stdout.find("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(summary)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Tested: 6" in run.stdout, "schemathesis did not test every operation"
