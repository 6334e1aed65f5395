"""The SDK's spill directory: what does not fit in memory, outlives the outage or is
unsent at close goes to disk and is sent later, oldest first and exactly once, by
this client or the next one; torn files, a full directory and shared directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from collector.sdk import DROP_REASONS, Client, RetryPolicy
from collector.sdk._spill import Spool
from tests.collector.test_sdk_outage import WarpClock

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.01)


class Switch:
    """A server that is down (connection refused) until ``up`` is set; then it
    answers 200 and records every item it acknowledged, in order."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.reply: Callable[[dict[str, Any]], httpx.Response | None] = lambda _: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.up.is_set():
            raise httpx.ConnectError("connection refused")
        body = orjson.loads(request.content)
        special = self.reply(body)
        if special is not None:
            return special
        with self.lock:
            self.bodies.append(body)
        n = len(body["events"])
        return httpx.Response(200, json={"received": n, "accepted": n, "duplicates": 0})

    def ids(self) -> list[str]:
        with self.lock:
            return [e["request_id"] for b in self.bodies for e in b["events"]]


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def make_client(switch: Switch, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("flush_interval", 60.0)
        options.setdefault("retry", FAST)
        options.setdefault("spill_dir", tmp_path / "spill")
        client = Client("http://mw.test", transport=httpx.MockTransport(switch), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=2)


def predict(client: Client, i: int) -> bool:
    return client.log_prediction("churn", "v1", f"req-{i}", {"age": i}, 0, timestamp=1.0)


def spilled_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def no_drops(client: Client) -> bool:
    return client.dropped == dict.fromkeys(DROP_REASONS, 0)


def test_while_down_memory_spills_at_half_its_limit_and_all_arrives_in_order_once(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    client = make_client(max_buffer_events=100, batch_size=20)
    for i in range(1000):
        assert predict(client, i)
        if client.stats.buffered >= 60:  # let the thread spill before memory fills
            wait_for(lambda: client.stats.buffered < 50)
    assert client.stats.buffered < 100 and no_drops(client)
    assert client.stats.spilled >= 900
    assert len(spilled_files(tmp_path / "spill")) >= 45
    assert client.flush(timeout=0.2) is False  # spilled is not delivered
    switch.up.set()
    assert client.flush(timeout=10)
    assert switch.ids() == [f"req-{i}" for i in range(1000)]  # oldest first, once each
    assert spilled_files(tmp_path / "spill") == []
    stats = client.stats
    assert stats.sent == 1000 and stats.restored == stats.spilled and no_drops(client)


def test_close_spills_what_is_unsent_and_a_new_client_sends_it_exactly_once(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    first = make_client()
    for i in range(250):
        predict(first, i)
    assert first.close(timeout=0.2) is False
    assert first.stats.spilled == 250 and no_drops(first)
    files = spilled_files(tmp_path / "spill")
    assert len(files) == 1
    lines = files[0].read_bytes().splitlines()
    assert orjson.loads(lines[0]) == {
        "modelwatch_spill": 1,
        "path": "/v1/predictions",
        "model": "churn",
        "version": "v1",
    }
    assert orjson.loads(lines[1])["request_id"] == "req-0" and len(lines) == 251

    switch.up.set()
    second = make_client()  # resends at once, before logging anything
    wait_for(lambda: second.stats.sent == 250)
    assert second.flush(timeout=5)
    assert switch.ids() == [f"req-{i}" for i in range(250)]
    assert second.stats.restored == 250 and spilled_files(tmp_path / "spill") == []
    third = make_client()
    assert third.flush(timeout=5) and third.stats.restored == 0
    assert len(switch.ids()) == 250  # nothing acknowledged is sent again


def test_an_outage_longer_than_max_outage_spills_instead_of_dropping(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    clock = WarpClock()
    retry = RetryPolicy(initial_backoff=1, max_backoff=4)
    client = make_client(max_outage_s=10, clock=clock, retry=retry)
    for i in range(10):
        predict(client, i)
    wait_for(lambda: client.stats.spilled == 10)
    assert no_drops(client) and client.stats.buffered == 0
    switch.up.set()
    assert client.flush(timeout=600)
    assert switch.ids() == [f"req-{i}" for i in range(10)]


KILLED = """
import os, signal, sys, time
import httpx
from collector.sdk import Client

def refused(request):
    raise httpx.ConnectError("connection refused")

client = Client("http://mw.test", transport=httpx.MockTransport(refused),
                spill_dir=sys.argv[1], max_buffer_events=100, batch_size=10)
for i in range(300):
    client.log_prediction("churn", "v1", f"req-{i}", {"age": i}, 0, timestamp=1.0)
    while client.stats.buffered >= 60:
        time.sleep(0.001)
while client.stats.buffered >= 50:
    time.sleep(0.001)
print(client.stats.spilled, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no atexit
"""


def test_what_a_killed_process_spilled_is_sent_by_the_next_exactly_once(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path / "spill")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    spilled = int(done.stdout.strip())
    assert spilled >= 250  # what was still in memory died with the process
    switch.up.set()
    client = make_client()
    assert client.flush(timeout=10)
    assert switch.ids() == [f"req-{i}" for i in range(spilled)]
    assert spilled_files(tmp_path / "spill") == []


def write_spill(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    return path


HEADER = b'{"modelwatch_spill":1,"path":"/v1/predictions","model":"churn","version":"v1"}\n'


def item(i: int) -> bytes:
    return orjson.dumps(
        {"request_id": f"req-{i}", "timestamp": 1.0, "features": {}, "prediction": 0}
    )


def test_torn_lines_and_unreadable_files_are_skipped_and_counted(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    torn = HEADER + item(1) + b"\n" + b"not json\n" + item(2) + b"\n" + item(3)[:20]
    write_spill(spill, "00000000000000000001-1-000000.jsonl", torn)
    write_spill(spill, "00000000000000000002-1-000000.jsonl", b'{"what": 1}\n' + item(4) + b"\n")
    write_spill(spill, ".00000000000000000003-1-000000.jsonl.tmp", HEADER + item(5) + b"\n")
    switch.up.set()
    client = make_client()
    assert client.flush(timeout=10)
    assert switch.ids() == ["req-1", "req-2"]
    assert client.dropped["spill_error"] == 3  # "not json", the torn line, the bad file's item
    assert spilled_files(spill) == []
    assert (spill / "00000000000000000002-1-000000.corrupt").exists()
    assert (spill / ".00000000000000000003-1-000000.jsonl.tmp").exists()  # not ours to send


def test_the_spill_is_bounded(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    client = make_client(max_spill_bytes=3000, batch_size=10)
    for i in range(100):  # about 75 bytes each: 10 batches of 750 bytes
        predict(client, i)
    assert client.close(timeout=0.2) is False
    files = spilled_files(tmp_path / "spill")
    on_disk = sum(len(f.read_bytes().splitlines()) - 1 for f in files)
    assert 0 < client.stats.spilled == on_disk < 100
    assert client.dropped["spill_full"] == 100 - on_disk
    assert sum(f.stat().st_size for f in (tmp_path / "spill").iterdir()) <= 3000


def test_a_file_another_client_is_sending_is_left_alone(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    write_spill(spill, "00000000000000000001-1-000000.jsonl", HEADER + item(1) + b"\n")
    write_spill(spill, "00000000000000000002-1-000000.jsonl", HEADER + item(2) + b"\n")
    other = Spool(spill, 10**6)  # another process, as far as the lock goes
    claimed, _ = other.claim()
    assert claimed is not None and claimed.path.name.startswith("00000000000000000001")
    switch.up.set()
    client = make_client()
    assert client.flush(timeout=5)
    assert switch.ids() == ["req-2"]
    other.release(claimed)
    assert client.flush(timeout=0.1)  # it only looks again at its next sweep
    later = make_client()
    assert later.flush(timeout=5)
    assert switch.ids() == ["req-2", "req-1"]


def test_a_spilled_batch_partly_rejected_is_rewritten_without_what_was_settled(
    switch: Switch, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    path = write_spill(
        spill,
        "00000000000000000001-1-000000.jsonl",
        HEADER + b"".join(item(i) + b"\n" for i in range(4)),
    )
    answers = iter(
        [httpx.Response(422, json={"errors": [{"loc": ["events", 1, "x"], "msg": "bad"}]})]
    )

    def reply(body: dict[str, Any]) -> httpx.Response | None:
        return next(answers, httpx.Response(503, headers={"Retry-After": "0"}))

    switch.reply = reply
    switch.up.set()
    client = make_client()
    assert client.close(timeout=0.3) is False
    assert client.dropped["rejected"] == 1
    lines = path.read_bytes().splitlines()
    assert lines[0] + b"\n" == HEADER
    assert [orjson.loads(line)["request_id"] for line in lines[1:]] == ["req-0", "req-2", "req-3"]
    switch.reply = lambda _: None
    again = make_client()
    assert again.flush(timeout=5)
    assert switch.ids() == ["req-0", "req-2", "req-3"] and spilled_files(spill) == []


def test_spill_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_spill_bytes"):
        Client("http://mw.test", spill_dir=tmp_path, max_spill_bytes=0)
    with pytest.raises(ValueError, match="max_outage_s"):
        Client("http://mw.test", max_outage_s=0)
    assert not os.listdir(tmp_path)
