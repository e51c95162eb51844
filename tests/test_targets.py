"""The one loopback guard for faults and load: hosts are judged by the addresses they resolve to.

No test here sends any traffic, not even a DNS query: names go to a replaced resolver, literals to none.
"""

import socket

import pytest

from support.backends.attached import check_target_allowed
from support.core.config import Settings, SettingsError
from support.core.targets import TargetNotAllowed, check_target
from support.load.spec import LoadSpec, LoadSpecError


def _resolving_to(monkeypatch, table: dict[str, list[str]]) -> None:
    """Replace the resolver: each name in ``table`` resolves to its addresses, any other name does not."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in table[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"])
def test_loopback_addresses_are_allowed(host):
    check_target(host, allow_remote=False)


@pytest.mark.parametrize(
    "host, reason",
    [
        ("10.1.2.3", "it is not on 127.0.0.1"),
        ("::ffff:10.0.0.1", "it is not on 127.0.0.1"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("::", ":: is the unspecified address"),
        ("", "no host is given"),
    ],
)
def test_addresses_off_loopback_are_refused_with_the_reason(host, reason):
    with pytest.raises(TargetNotAllowed, match=reason) as error:
        check_target(host, allow_remote=False)
    assert "\n" not in str(error.value)


def test_a_name_that_looks_like_loopback_is_judged_by_what_it_resolves_to(monkeypatch):
    _resolving_to(monkeypatch, {"127.attacker.example": ["93.184.216.34"]})
    with pytest.raises(TargetNotAllowed, match=r"it resolves to 93\.184\.216\.34, which is not on 127\.0\.0\.1"):
        check_target("127.attacker.example", allow_remote=False)


def test_a_name_that_does_not_resolve_is_refused_in_one_line(monkeypatch):
    _resolving_to(monkeypatch, {})
    with pytest.raises(TargetNotAllowed, match=r"the name '127\.attacker\.example' does not resolve") as error:
        check_target("127.attacker.example", allow_remote=False)
    assert "\n" not in str(error.value)


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    _resolving_to(monkeypatch, {"db.internal": ["10.0.0.5"]})
    with pytest.raises(TargetNotAllowed, match=r"resolves to 10\.0\.0\.5"):
        check_target("db.internal", allow_remote=False)


def test_every_address_of_a_name_must_be_loopback(monkeypatch):
    _resolving_to(monkeypatch, {"mixed.example": ["127.0.0.1", "192.168.1.9"]})
    with pytest.raises(TargetNotAllowed, match=r"resolves to 192\.168\.1\.9"):
        check_target("mixed.example", allow_remote=False)


def test_the_fully_qualified_localhost_is_judged_by_its_addresses(monkeypatch):
    _resolving_to(monkeypatch, {"localhost.": ["127.0.0.1", "::1"]})
    check_target("localhost.", allow_remote=False)


def test_the_fully_qualified_localhost_is_refused_in_one_line_where_it_does_not_resolve(monkeypatch):
    _resolving_to(monkeypatch, {})
    with pytest.raises(TargetNotAllowed, match=r"the name 'localhost\.' does not resolve") as error:
        check_target("localhost.", allow_remote=False)
    assert "\n" not in str(error.value)


def test_a_resolver_that_hangs_is_given_up_at_the_deadline(monkeypatch):
    import threading
    import time

    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(10) and [])
    started = time.monotonic()
    with pytest.raises(TargetNotAllowed, match=r"no answer within 0\.2 s"):
        check_target("slow.example", allow_remote=False, timeout=0.2)
    assert time.monotonic() - started < 1.0
    release.set()


def test_allow_remote_lets_anything_through_without_resolving(monkeypatch):
    _resolving_to(monkeypatch, {})
    check_target("db.example.com", allow_remote=True)


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "localhost"])
def test_faults_and_load_agree_on_loopback(host):
    url_host = f"[{host}]" if ":" in host else host
    check_target_allowed("the API", host, Settings())
    LoadSpec(base_url=f"http://{url_host}:8000")


@pytest.mark.parametrize("host", ["10.1.2.3", "0.0.0.0", "::ffff:10.0.0.1"])
def test_faults_and_load_agree_off_loopback(host):
    url_host = f"[{host}]" if ":" in host else host
    refused = rf"refusing to inject faults into the API at {host}: .*allow_remote_targets=true"
    with pytest.raises(SettingsError, match=refused):
        check_target_allowed("the API", host, Settings())
    with pytest.raises(LoadSpecError, match="is not on loopback"):
        LoadSpec(base_url=f"http://{url_host}:8000")


def test_a_name_resolving_off_loopback_is_refused_for_faults_and_load(monkeypatch):
    _resolving_to(monkeypatch, {"127.attacker.example": ["10.9.9.9"]})
    with pytest.raises(SettingsError, match=r"resolves to 10\.9\.9\.9"):
        check_target_allowed("PostgreSQL", "127.attacker.example", Settings())
    with pytest.raises(LoadSpecError, match=r"resolves to 10\.9\.9\.9"):
        LoadSpec(base_url="http://127.attacker.example:8000")
