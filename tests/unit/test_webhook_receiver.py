"""The tests' webhook receiver counts only deliveries that arrived whole: a sender killed in the
middle of a request (tests/system/test_scale_out.py SIGKILLs a worker mid-delivery) made no
delivery, and recording its truncated body as one broke that test now and then."""

from __future__ import annotations

import socket
import time

import httpx

from tests.webhook_receiver import receiving


def test_a_request_cut_off_mid_body_is_not_a_delivery() -> None:
    with receiving() as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port)) as cut_off:
            cut_off.sendall(
                b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"triggerEvent": '
            )
        whole = httpx.post(f"{receiver.url}/hook", json={"triggerEvent": "BOOKING_CREATED"})
        assert whole.status_code == 200
        time.sleep(0.2)  # the cut-off request's thread has seen its end by now
        received = receiver.all()
    assert [r.json() for r in received] == [{"triggerEvent": "BOOKING_CREATED"}]
