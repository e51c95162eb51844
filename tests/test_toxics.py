"""The toxics that had no step (bandwidth, timeout as a stall, jitter, limit_data, slow_close): each reachable
from Gherkin, its scenario passing against the reference API and failing against a variant lacking the
protection it guards. The toxics' own effect on real sockets is measured in tests/test_proxy.py."""

from __future__ import annotations

import re
import socket
import time

import pytest
from suite_runner import BROKEN, leftovers, run_behave

from support.faults.network import LinkStall
from support.proxy.link import start_link
from support.stack.services import Address

FEATURE = "features/network/toxics.feature"
STALL = "A stalled link gives 503s in time, never a hang, and the API recovers"
NARROW = "A narrow link slows the API down but breaks nothing"
TRICKLE = "A link narrowed to a trickle gives 503s in time, never a hang"
JITTER = "Latency with jitter slows the API down but breaks nothing"
CUT_AFTER_DATA = "Connections cut after a little data are replaced and no acknowledged write is lost"


def test_every_toxic_scenario_passes_against_the_reference_api(tmp_path):
    run = run_behave(tmp_path / "work", FEATURE)
    assert run.returncode == 0, run.output[-6000:]
    assert "\n6 scenarios passed, 0 failed" in run.output, run.output[-3000:]
    for toxic in ("bandwidth", "stall", "latency", "limit_data", "slow_close"):  # the summary's fault column
        assert f"postgres link {toxic}" in run.output, toxic
    assert leftovers(run) == []


@pytest.mark.parametrize(
    ("variant", "scenario", "message"),
    [
        ("unbounded_pool_wait", STALL, r"\d+ requests? took longer than 4 s \(\d+ timed out\)"),
        ("tiny_pool", JITTER, r"the error rate was [\d.]+%, not below 1%"),
        ("keeps_dead_connections", CUT_AFTER_DATA, r"the API never recovered"),
        # a pool of one has no headroom when each reply takes longer: errors, or answers over the bound
        (
            "tiny_pool",
            NARROW,
            r"the error rate was [\d.]+%, not below 1%|requests started while the fault lasted .* took longer than 1 s",
        ),
        # an hour's pool wait: requests queue behind the trickle for as long as it lasts
        ("unbounded_pool_wait", TRICKLE, r"\d+ requests? took longer than 4 s \(\d+ timed out\)"),
        # no statement timeout and a minute's deadline: requests wait on the stalled link
        ("no_timeouts", STALL, r"\d+ requests? took longer than 4 s \(\d+ timed out\)"),
    ],
    ids=[
        "stall-unbounded_pool_wait",
        "jitter-tiny_pool",
        "limit_data-keeps_dead_connections",
        "bandwidth-tiny_pool",
        "trickle-unbounded_pool_wait",
        "stall-no_timeouts",
    ],
)
def test_the_toxic_scenario_fails_against_a_variant_lacking_the_protection(tmp_path, variant, scenario, message):
    run = run_behave(
        tmp_path / "work", FEATURE, "-D", f"stack_file={BROKEN / f'{variant}.toml'}", "-n", f"^{re.escape(scenario)}$"
    )
    assert run.returncode == 1, run.output[-4000:]
    assert re.search(message, run.output), run.output[-4000:]
    assert leftovers(run) == []


def test_a_stall_holds_both_ways_and_its_heal_lets_the_held_bytes_through(tmp_path):
    echo = socket.create_server(("127.0.0.1", 0))
    link = start_link(tmp_path, "echo", Address("127.0.0.1", echo.getsockname()[1]))
    try:
        client = socket.create_connection(("127.0.0.1", link.address.port), timeout=5)
        server, _ = echo.accept()
        stall = LinkStall(link)
        stall.inject()
        client.sendall(b"held upstream")
        server.sendall(b"held downstream")
        server.settimeout(0.5)
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            server.recv(100)
        with pytest.raises(TimeoutError):
            client.recv(100)
        healed = time.monotonic()
        stall.heal()
        stall.heal()  # idempotent
        server.settimeout(5)
        client.settimeout(5)
        assert server.recv(100) == b"held upstream"
        assert client.recv(100) == b"held downstream"
        assert time.monotonic() - healed < 2.0
        assert link.client.toxics("echo") == []
    finally:
        link.close()
        echo.close()
