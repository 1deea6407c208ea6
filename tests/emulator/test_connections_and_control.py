"""Connection counting, the /_emulator/ control routes, the Python API and the CLI."""

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import pytest

from emulator import Emulator, Knobs

REPO = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello?"}]
STAT_KEYS = {
    "requests",
    "ok",
    "rate_limited",
    "overloaded",
    "errors",
    "hung",
    "bad_requests",
    "client_disconnects",
    "batch_creates",
    "batches",
    "batch_requests",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "in_flight",
    "peak_concurrency",
    "connections_opened",
    "connections_open",
    "by_model",
}


@pytest.fixture
def emu():
    with Emulator(Knobs(ttft_ms=1, ms_per_token=0)) as emu:
        yield emu


def ask(client):
    return client.messages.create(model="m", max_tokens=20, messages=HELLO)


def http(emu, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(emu.base_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_one_client_reuses_one_connection(emu):
    with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
        for _ in range(3):
            ask(client)

    assert emu.stats()["connections_opened"] == 1


def test_a_fresh_client_per_call_opens_a_connection_each_time(emu):
    for _ in range(3):
        with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
            ask(client)

    assert emu.stats()["connections_opened"] == 3


def test_stats_are_served_over_http_with_every_key(emu):
    with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
        ask(client)
    status, stats = http(emu, "GET", "/_emulator/stats")

    assert status == 200
    assert set(stats) == STAT_KEYS
    assert stats["requests"] == stats["ok"] == 1
    assert stats["by_model"]["m"]["ok"] == 1


def test_reset_zeroes_the_stats_and_refills_the_buckets(emu):
    emu.configure(rpm=60)
    with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
        ask(client)
        status, _ = http(emu, "POST", "/_emulator/reset")
        ask(client)  # would be a 429 without the refill

    assert status == 200
    stats = emu.stats()
    assert (stats["requests"], stats["ok"], stats["rate_limited"]) == (1, 1, 0)


def test_another_process_can_configure_knobs_over_http(emu):
    status, knobs = http(emu, "POST", "/_emulator/configure", {"rpm": 5, "failing_models": ["x"]})

    assert status == 200
    assert knobs["rpm"] == 5 and knobs["failing_models"] == ["x"]
    assert emu.knobs.rpm == 5 and emu.knobs.failing_models == frozenset({"x"})
    assert http(emu, "GET", "/_emulator/knobs") == (200, knobs)


def test_configure_refuses_unknown_or_invalid_knobs(emu):
    status, body = http(emu, "POST", "/_emulator/configure", {"rpmm": 5})
    assert status == 400 and "rpmm" in body["error"]["message"]
    assert http(emu, "POST", "/_emulator/configure", {"error_rate": 2})[0] == 400
    with pytest.raises(ValueError):
        emu.configure(jitter=-1)
    assert emu.knobs == Knobs(ttft_ms=1, ms_per_token=0)


def test_an_unknown_path_is_a_404_not_found_error(emu):
    status, body = http(emu, "GET", "/v1/nothing")

    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_start_stop_and_restart():
    emu = Emulator(Knobs(ttft_ms=0, ms_per_token=0))
    with pytest.raises(RuntimeError):
        emu.base_url  # noqa: B018
    emu.start()
    first_url = emu.base_url
    assert first_url.startswith("http://127.0.0.1:")
    emu.configure(rpm=99)
    emu.stop()
    emu.stop()  # stopping twice is harmless

    assert emu.stats()["requests"] == 0  # the last stats stay readable
    with emu:  # a restart keeps the configured knobs
        assert emu.knobs.rpm == 99
        with anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as client:
            ask(client)


def test_start_fails_loudly_when_the_port_is_taken(emu):
    port = int(emu.base_url.rsplit(":", 1)[1])

    with pytest.raises(OSError):
        Emulator(port=port).start()


def test_the_cli_prints_its_url_serves_and_stops_on_ctrl_c():
    with subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--ttft-ms", "1", "--rpm", "600"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            base_url = process.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            with anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0) as client:
                raw = client.messages.with_raw_response.create(
                    model="m", max_tokens=5, messages=HELLO
                )
            assert raw.headers["anthropic-ratelimit-requests-limit"] == "600"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0


def test_the_cli_refuses_a_bad_knob():
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--error-rate", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "error_rate" in result.stderr
