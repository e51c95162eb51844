"""The worked four-service example (examples/orders_service/: an API, its PostgreSQL, the payments service the
API calls over HTTP, and a worker) passes
its own features on the process backend, and each feature fails against a variant of the example that lacks
the property it guards, with a message naming that property.

The features are run as a user would: ``behave -D stack_file=examples/orders_service/stack.toml
--tags=@chaos examples/orders_service/features`` from the repository (behave finds the suite's steps/
and environment.py by walking up from the features' folder). On the Docker backend (skipped without a
Docker daemon) the same runs go through ``docker.toml`` and ``variants/docker_*.toml``: that backend runs
no ``before_start`` yet, so the API's container command runs the migrations first. Through the real Docker
Compose they go through ``compose.yaml``, and a variant is that file with the worker's command changed.
The payments feature (``@payments``: HTTP faults on the api -> payments link, which every backend frames as
HTTP because payments says ``protocol = "http"``, in compose.yaml ``protocol: http``) runs on all three
backends, and fails against API variants (``variants/<name>.toml``; on Compose that file with the API's
command given ``--variant``) that lack the caller's protections: all of them on the process backend, one on
Docker and on Compose (the same API code; what those runs add is the link, which the first variant shows).
One of them (``waits_for_close``) also changes payments, to answers that end with the connection's close.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from docker_engine import require_docker
from suite_runner import REPO, leftovers, run_behave

from support.backends.compose.project import load_compose_project
from support.checks import processing
from support.checks.verdict import CheckFailed
from support.load.history import FAIL, OK, Request
from support.stack.stack_file import StackFileError, load_stack_file

EXAMPLE = REPO / "examples" / "orders_service"
FEATURES = str(EXAMPLE / "features")
KILLED = "No acknowledged order is lost when the worker is killed mid-job"
CUT = "The API keeps taking orders while the worker is cut off from PostgreSQL"


@dataclass(frozen=True)
class Variant:
    """A worker that lacks a property, the scenario that must catch it, and what its failure must say."""

    name: str  # examples/orders_service/variants/<name>.toml
    scenario: str
    message: str  # a regular expression the output must match

    def __str__(self) -> str:
        return self.name


NOT_PROCESSED = r"\d+ acknowledged writes? not processed within {} s of the fault's end: order-"
VARIANTS = [
    Variant("lose_taken", KILLED, NOT_PROCESSED.format(10)),
    Variant("done_before_work", KILLED, NOT_PROCESSED.format(10)),
    Variant("no_reconnect", CUT, NOT_PROCESSED.format(5)),
]


def test_the_stack_file_has_four_services_a_migration_and_a_form_login():
    stack = load_stack_file(EXAMPLE / "stack.toml")
    services = stack.services
    assert set(services) == {"postgres", "payments", "api", "worker"}
    assert services["worker"].uses == ("postgres",) and services["api"].uses == ("postgres", "payments")
    # the api -> payments link frames HTTP requests (the HTTP faults act on it); the others are plain TCP
    assert services["payments"].protocol == "http" and services["postgres"].protocol == "tcp"
    assert services["api"].before_start and "migrate.py" in services["api"].before_start[0]
    assert stack.workload.auth.login_form == {"username": "chaos", "password": "chaos-orders"}
    assert stack.workload.base_path == "/v1"
    assert [op.name for op in stack.workload.operations] == ["create", "read"]
    assert "%(keys)s" in stack.workload.processed_sql


def _write(key: str, outcome: str, end: float) -> Request:
    return Request("write", key, end - 0.1, end - 0.1, end, 201 if outcome == OK else 503, "", outcome)


class _Clock:
    """A clock that moves only when the wait sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_processing_waits_for_every_acknowledged_write_and_names_the_missing(monkeypatch):
    workload = load_stack_file(EXAMPLE / "stack.toml").workload
    history = [_write("order-1", OK, 99.0), _write("order-2", OK, 99.5), _write("order-3", FAIL, 99.6)]
    clock = _Clock()
    seen: list[list[str]] = []

    def processed(dsn, workload, wanted):
        seen.append(list(wanted))
        clock.now += 1.0  # each read takes a second of the bound
        return {"order-1"} if clock.now < 103 else {"order-1", "order-2"}

    monkeypatch.setattr(processing, "processed_keys", processed)
    # processed in time: the refused write is not waited for
    assert processing.check_processed_within("dsn", workload, history, since=100.0, seconds=5, clock=clock) == 2
    assert seen[0] == ["order-1", "order-2"]
    clock.now = 100.0
    with pytest.raises(
        CheckFailed,
        match=r"^1 acknowledged write not processed within 2 s of the fault's end: "
        r"order-2 \(of 2 acknowledged; processed: 1\)",
    ):
        processing.check_processed_within("dsn", workload, history, since=100.0, seconds=2, clock=clock)


@pytest.fixture(params=["process", "docker", "compose"])
def backend(request):
    """The backend a test runs the example on; docker only when a Docker daemon answers."""
    if request.param != "process":
        require_docker()
    return request.param


@contextmanager
def stack_options(backend: str, variant: str = "", service: str = "worker") -> Iterator[list[str]]:
    """The behave options that run the example (or a variant of ``service``, the worker or the api) on
    ``backend``; a compose variant's file is written next to compose.yaml (its bind mount is relative to
    the file) and removed afterwards."""
    if backend == "process":
        yield ["-D", f"stack_file={EXAMPLE / 'variants' / f'{variant}.toml' if variant else EXAMPLE / 'stack.toml'}"]
    elif backend == "docker":
        path = EXAMPLE / "variants" / f"docker_{variant}.toml" if variant else EXAMPLE / "docker.toml"
        yield ["-D", "backend=docker", "-D", f"stack_file={path}"]
    elif not variant:
        yield ["-D", f"stack_file={EXAMPLE / 'compose.yaml'}"]
    else:
        path = EXAMPLE / f".compose-test-{variant}-{os.getpid()}.yaml"
        command = {
            "worker": (
                'command: ["python", "worker.py"]',
                f'command: ["python", "worker.py", "--variant", "{variant}"]',
            ),
            "api": ("exec python api.py --host", f"exec python api.py --variant {variant} --host"),
        }[service]
        text = (EXAMPLE / "compose.yaml").read_text()
        assert text.count(command[0]) == 1
        path.write_text(text.replace(*command))
        try:
            yield ["-D", f"stack_file={path}"]
        finally:
            path.unlink()


def test_the_example_passes_its_features(tmp_path, backend):
    with stack_options(backend) as options:
        run = run_behave(tmp_path / "work", *options, "--tags=@chaos", FEATURES)
    assert run.returncode == 0, run.output[-6000:]
    assert "\n3 scenarios passed, 0 failed" in run.output, run.output[-3000:]
    if backend == "process":
        # the API makes no table (before_start's migrate.py does), yet it stored the orders; the workload logged in
        assert "CREATE" not in (EXAMPLE / "api.py").read_text().upper()
        api_log = (run.run_dirs[0] / "api.log").read_text()
        assert "POST /v1/token 200" in api_log, api_log[-2000:]
    assert leftovers(run) == []


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_guarding_feature_fails_against_the_variant(tmp_path, backend, variant):
    with stack_options(backend, variant.name) as options:
        run = run_behave(
            tmp_path / "work", *options, "--tags=@chaos", "-n", f"^{re.escape(variant.scenario)}$", FEATURES
        )
    assert run.returncode != 0, run.output[-4000:]
    assert "\n0 scenarios passed, 1 failed" in run.output, run.output[-3000:]
    assert re.search(variant.message, run.output), run.output[-4000:]
    assert leftovers(run) == []


PAYMENTS_FEATURE = str(EXAMPLE / "features" / "payments_faults.feature")
ANSWERS_500 = "Answers of 500 from payments are retried, and what still fails is a 503"
HANGS = "A payments service that hangs costs an order a bounded wait, not a hang"
ABORTED = "Calls to payments cut off on the way are retried, and no order is kept unpaid"
CLOSES_LATE = "A payments service whose connections close late costs an order a bounded wait"
PAYMENT_VARIANTS = [
    # payments' 500 handed to the client: the 503 property names the 500s
    Variant(
        "passes_errors_through",
        ANSWERS_500,
        r"failed requests? not answered with 503: \d+ with another status \([^)]*500 x",
    ),
    # no timeout on the call: orders wait as long as payments holds them
    Variant("no_timeout", HANGS, r"requests started while the fault lasted .* took longer than 2.5 s"),
    # an order kept when payments failed has no charge: it reads back as lost
    Variant("stores_unpaid", ABORTED, r"\d+ acknowledged writes? (were )?lost"),
    # the no_timeout API against payments answering close-delimited: each order waits for the late close
    # (the slow_close toxic acts on an HTTP link's answers as on a TCP link's); process backend only
    Variant("waits_for_close", CLOSES_LATE, r"requests started while the fault lasted .* took longer than 2.5 s"),
]


def test_a_link_to_a_service_with_protocol_http_frames_requests_and_others_stay_tcp(tmp_path):
    table = tmp_path / "stack.toml"
    table.write_text((EXAMPLE / "stack.toml").read_text().replace('protocol = "http"', 'protocol = "grpc"'))
    with pytest.raises(
        StackFileError, match=r"\[services.payments\] protocol='grpc': \"tcp\" \(the default\) or \"http\""
    ):
        load_stack_file(table)


def test_the_compose_file_frames_the_payments_link_as_http_and_the_others_stay_tcp():
    project = load_compose_project(EXAMPLE / "compose.yaml", {})
    assert {name: s.protocol for name, s in project.services.items()} == {
        "postgres": "tcp",
        "payments": "http",
        "api": "tcp",
        "worker": "tcp",
    }
    assert ("api", "payments") in project.links


def test_the_example_passes_its_payments_feature(tmp_path, backend):
    with stack_options(backend) as options:
        run = run_behave(tmp_path / "work", *options, "--tags=@payments", PAYMENTS_FEATURE)
    assert run.returncode == 0, run.output[-6000:]
    assert "\n4 scenarios passed, 0 failed" in run.output, run.output[-3000:]
    # the summary's fault column (cut to its width): each fault was on the payments link
    assert run.output.count("payments link HTTP") >= 3, run.output[-3000:]
    assert "payments link slow_close" in run.output, run.output[-3000:]
    assert leftovers(run) == []


@pytest.mark.parametrize(
    "variant, payments_backend",
    [(v, "process") for v in PAYMENT_VARIANTS] + [(PAYMENT_VARIANTS[0], "docker"), (PAYMENT_VARIANTS[0], "compose")],
    ids=lambda v: str(v),
)
def test_the_payments_feature_fails_against_an_api_lacking_the_protection(tmp_path, variant, payments_backend):
    if payments_backend != "process":
        require_docker()
    with stack_options(payments_backend, variant.name, service="api") as options:
        run = run_behave(
            tmp_path / "work", *options, "--tags=@payments", "-n", f"^{re.escape(variant.scenario)}$", PAYMENTS_FEATURE
        )
    assert run.returncode != 0, run.output[-4000:]
    assert "\n0 scenarios passed, 1 failed" in run.output, run.output[-3000:]
    assert re.search(variant.message, run.output), run.output[-4000:]
    assert leftovers(run) == []
