"""The README's callback walk-through, run: the handler with a signing secret, the example
receiver (examples/callback_receiver.py), a submission with Callback-Url, percentComplete seen
rising on the status monitor, and one verified CloudEvent at the receiver."""
import json
import queue
import subprocess
import sys
import threading
import time

import requests

from handler_process import ROOT, free_port, start_handler

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_user_sees_progress_and_receives_the_signed_event():
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "callback_receiver.py"), str(port), SECRET],
        stdout=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in receiver.stdout], daemon=True).start()
    handler, base = start_handler(PROCESSING_DELAY_MS="2000", CALLBACK_SIGNING_SECRET=SECRET,
                                  CALLBACK_ALLOWED_HOSTS="127.0.0.1")
    try:
        assert lines.get(timeout=30).startswith("listening on")
        r = requests.post(f"{base}/api/AsyncProcessingWorkAcceptor",
                          json={"id": "1", "customername": "Contoso"},
                          headers={"Callback-Url": f"http://127.0.0.1:{port}/done"}, timeout=10)
        assert r.status_code == 202, r.text
        monitor = r.headers["Operation-Location"]
        seen, deadline = [], time.monotonic() + 30
        while True:  # bounded poll of the status monitor
            doc = requests.get(monitor, timeout=10).json()
            if doc["status"] == "Running" and "percentComplete" in doc and doc["percentComplete"] not in seen:
                seen.append(doc["percentComplete"])
            if doc["status"] == "Succeeded":
                break
            assert time.monotonic() < deadline, f"still {doc['status']}"
            time.sleep(0.05)
        print("percentComplete seen:", seen)
        assert len(seen) >= 2 and seen == sorted(seen), seen
        line = json.loads(lines.get(timeout=30))  # the delivery, within a bound
        assert line["verified"] is True and line["duplicate"] is False, line
        assert line["event"]["type"] == "AsyncRequestReply.Operation.Succeeded"
        assert line["event"]["subject"] == doc["id"]
        deadline = time.monotonic() + 30
        while requests.get(monitor, timeout=10).json()["callback"]["state"] != "delivered":
            assert time.monotonic() < deadline, "the callback was not recorded delivered"
            time.sleep(0.05)
    finally:
        handler.terminate()
        receiver.terminate()
        handler.wait(timeout=30)
        receiver.wait(timeout=30)
