"""The Docker backend: PostgreSQL and the API as containers on a real Docker engine (Docker SDK).

One container per service, built from ``stack/docker/*.Dockerfile`` and
labelled with the run (see :mod:`support.backends.docker.labels`); PostgreSQL's data in
a named volume of the run. With ``docker_network=host`` (the default, and what
this repository's tests and CI use) the containers share the host's network
and listen on 127.0.0.1 on free ports chosen at start; with ``bridge`` they sit
on a network of the run and their ports are published on 127.0.0.1 only.
Either way the ports stay the same across container restarts.

Both containers run with Docker's ``unless-stopped`` restart policy and tini
as PID 1. A kill is a crash as far as Docker can tell: the signal is sent from
inside the container to every process but tini (``kill -1``), tini exits with
the service, and the engine restarts the container. (``docker kill`` would
not do: the engine treats it as a manual stop and cancels the policy.)

A stack with a replicated database (``kind = "patroni"``, host network only) runs
every member of the database and every command service as a container of the
HA image (:mod:`~support.backends.docker.replicated`), with the same links as
on the process backend.

Here, :func:`start_docker_stack` puts a run's stack together; the containers'
specs are in :mod:`~support.backends.docker.specs`, their controllers in
:mod:`~support.backends.docker.containers`, the command services beside the
target in :mod:`~support.backends.docker.commands`, the engine client in
:mod:`~support.backends.docker.engine`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from support.backends.docker.commands import CommandContainer, command_image, docker_values, free_ports
from support.backends.docker.containers import ApiContainer, PostgresContainer
from support.backends.docker.disk import mount_data_disk
from support.backends.docker.engine import docker_client
from support.backends.docker.images import IMAGE_SPECS, BuiltImage, ensure_ha_image, ensure_image, service_image_spec
from support.backends.docker.labels import KEEP_LABEL, RemovedResources, remove_leftovers, run_labels
from support.backends.docker.replicated import BalancerContainer, make_replicated_containers
from support.backends.docker.specs import BRIDGE_PORTS, SUITE_MOUNT, api_spec, in_mount, postgres_spec
from support.backends.faketime import preload_container
from support.backends.process.backend import _create_databases, connection_values, service_values
from support.backends.reaper import describe_removed
from support.core.config import Settings
from support.core.mounts import unmount
from support.core.ports import LOOPBACK
from support.proxy.link import Link, start_link
from support.stack.database import connect
from support.stack.service_tables import StackFileError
from support.stack.services import Address
from support.stack.stack import Cleanup, Stack
from support.stack.stack_file import StackDefinition, stack_definition

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["start_docker_stack", "check_docker_shape"]


def start_docker_stack(settings: Settings, run_dir: Path) -> Stack:
    """Start every service of the stack file as containers of run ``run_dir.name``, in dependency order, with a
    proxied link per ``uses`` edge (host network); return the ready stack.

    First removes what dead runs left on the engine, then builds the images
    when their inputs changed. Each thing's removal is pushed as it is made: on
    any failure what this call made is removed, newest first (the data volume
    kept with ``keep_work_dir``), before the error propagates.
    """
    definition = stack_definition(settings)
    check_docker_shape(definition, settings.docker_network)
    if definition.database_service.kind == "patroni":
        return _start_replicated_stack(settings, run_dir, definition)
    extras = [
        name for name in definition.start_order if name not in (definition.target, definition.database_service.name)
    ]
    db, role = definition.database_name, definition.database_user
    pg_name, api_name = definition.database_service.name, definition.target
    client = docker_client()
    timings: dict[str, float] = {}
    started = time.monotonic()
    images: dict[str, BuiltImage] = {}
    keep = settings.keep_work_dir
    with Cleanup() as made:
        made.callback(client.close)  # pushed first, so it goes last
        swept = remove_leftovers(client)
        _report_leftovers(swept)
        timings["leftovers_s"] = time.monotonic() - started
        base = settings.docker_base_image
        images["postgres"] = ensure_image(client, IMAGE_SPECS["postgres"], base, run_dir / "docker-build-postgres.log")
        own = definition.api.docker_build
        if own is not None:  # the service's own Dockerfile
            images["api"] = ensure_image(
                client,
                service_image_spec(own, definition.api.docker_dockerfile),
                base,
                run_dir / "docker-build-api.log",
                root=own,
                base_required=False,
            )
        elif not definition.api.docker_image:  # else the user's image: nothing to build
            images["api"] = ensure_image(client, IMAGE_SPECS["api"], base, run_dir / "docker-build-api.log")
        timings.update({f"image_{name}_s": image.seconds for name, image in images.items()})
        run_id = run_dir.name
        labels = run_labels(run_id)
        admin_password = secrets.token_urlsafe(18)
        app_password = secrets.token_urlsafe(18)
        pg_port, api_port, *extra_ports = free_ports(2 + len(extras))
        network = None
        if settings.docker_network == "bridge":
            created = client.networks.create(f"chaos-suite-{run_id}", driver="bridge", labels=labels)
            made.callback(_remove, created)
            network = created.name
        disk = None
        if settings.pg_disk_mb:  # the data on a bounded disk, which the disk-full fault fills (docker/disk.py)
            disk = mount_data_disk(client, images["postgres"].id, labels, run_dir, settings.pg_disk_mb)
            made.callback(unmount, disk)  # after the container's removal (callbacks run newest first)
            data = str(disk)
        else:
            volume = client.volumes.create(
                f"chaos-suite-{run_id}-pgdata", labels={**labels, KEEP_LABEL: str(keep).lower()}
            )
            if not keep:
                made.callback(_remove, volume, force=True)
            data = volume.name
        postgres = PostgresContainer(
            client,
            postgres_spec(
                run_id,
                images["postgres"].id,
                labels,
                data,
                pg_port,
                network,
                admin_password,
                app_password,
                db,
                role,
            ),
            pg_port,
            admin_password,
            disk_path=disk,
        )
        made.callback(postgres.close)
        links = {}
        if network is None:
            # as in the process backend, the API reaches PostgreSQL through the suite's fault proxy (a process on
            # 127.0.0.1, which host-networked containers share); the suite's own SQL goes direct
            ports = {pg_name: pg_port, api_name: api_port, **dict(zip(extras, extra_ports, strict=True))}
            for client_name, server in definition.links:
                links[(client_name, server)] = link = start_link(
                    run_dir, server, Address(LOOPBACK, ports[server]), protocol=definition.services[server].protocol
                )
                made.callback(link.close)
            db_host, db_port = LOOPBACK, links[(api_name, pg_name)].address.port
        else:
            # on a bridge network the API cannot reach the host's loopback: no link faults there
            db_host, db_port = postgres.spec.name, BRIDGE_PORTS["postgres"]
        values = {
            **connection_values(db_host, db_port, db, role, app_password, pg_name),
            "python": "python",
            "repo": SUITE_MOUNT,
        }
        if definition.api.docker_build is None:  # a service built into its own image may live anywhere
            values["stack_dir"] = in_mount(definition.path.parent)
        api_image = definition.api.docker_image or images["api"].id
        link_ports = {edge: link.address.port for edge, link in links.items()}
        if network is None:  # every placeholder of the services the target uses, through their links
            values.update(
                docker_values(
                    definition, definition.api, service_values(definition, api_name, link_ports, {role: app_password})
                )
            )
        api = ApiContainer(
            client,
            api_spec(run_id, api_image, labels, api_port, network, definition.api, values),
            api_port,
            definition.api.health_path,
        )
        made.callback(api.close)
        preload_container(api, run_dir, settings.clock_faults)  # libfaketime at real time: clock faults move it live
        services: dict[str, Any] = {pg_name: postgres, api_name: api}
        for name, port in zip(extras, extra_ports, strict=True):
            service = definition.services[name]
            host_values = service_values(definition, name, link_ports, {role: app_password})
            ready_dsn = postgres.dsn(db, role, app_password) if pg_name in service.uses else ""
            image = command_image(client, service, settings.docker_base_image, run_dir, images)
            services[name] = _command_container(
                made, client, settings, run_dir, labels, definition, name, image, port, host_values, ready_dsn
            )
        for name in definition.start_order:
            step = time.monotonic()
            services[name].start(settings.start_timeout)
            timings[f"{name}_start_s"] = time.monotonic() - step
        versions = _versions(client, postgres, images, settings)
        timings["total_s"] = time.monotonic() - started
        _write_docker_json(run_dir, settings.docker_network, images, services, data, swept, timings)
        stack = Stack(
            backend="docker",
            services=services,
            api_url=api.url,
            links=links,
            workload=definition.workload,
            health_path=definition.api.health_path,
            start_order=definition.start_order,
            target=api_name,
            admin_dsn=postgres.dsn(db),
            app_dsn=postgres.dsn(db, role, app_password),
            versions=versions,
            secrets=(admin_password, app_password),
            cleanup=made.pop_all(),
        )
    return stack


def _command_container(
    made: Cleanup,
    client: DockerClient,
    settings: Settings,
    run_dir: Path,
    labels: dict[str, str],
    definition: StackDefinition,
    name: str,
    image: str,
    port: int,
    host_values: dict[str, str],
    ready_dsn: str = "",
) -> CommandContainer:
    """Command service ``name``'s container in ``image`` on ``port`` (created at its start; ``host_values``: its
    placeholders on the host, ``ready_dsn`` for a ``ready = { sql }`` check): its removal pushed on ``made``,
    libfaketime preloaded when clock faults are on."""
    service = definition.services[name]
    inside = docker_values(definition, service, host_values)
    container = CommandContainer(client, run_dir.name, labels, image, port, service, inside, host_values, ready_dsn)
    made.callback(container.close)
    preload_container(container, run_dir, settings.clock_faults)
    return container


def _write_docker_json(
    run_dir: Path,
    network: str,
    images: dict[str, BuiltImage],
    services: dict[str, Any],
    volume: str,
    swept: RemovedResources,
    timings: dict[str, float],
) -> None:
    """What the run made on the engine and how long each part took (s), in the run's ``docker.json``."""
    (run_dir / "docker.json").write_text(
        json.dumps(
            {
                "network": network,
                "images": {k: v.tag for k, v in images.items()},
                "built": [k for k, v in images.items() if v.built],
                "containers": {name: service.container_name for name, service in services.items()},
                "volume": volume,
                "leftovers_removed": swept.containers + swept.volumes + swept.networks,
                "timings": {k: round(v, 3) for k, v in timings.items()},
            },
            indent=2,
        )
    )


def _start_replicated_stack(settings: Settings, run_dir: Path, definition: StackDefinition) -> Stack:
    """A stack with a replicated database (``kind = "patroni"``) as containers of the HA image, host network only:
    the database's members (:mod:`~support.backends.docker.replicated`), then every command service (in its own
    image, else the HA image, which has the reference API's Python and HAProxy), each ``uses`` edge through a
    fault proxy as on the process backend; the databases made through the database's HAProxy."""
    client = docker_client()
    timings: dict[str, float] = {}
    started = time.monotonic()
    with Cleanup() as made:
        made.callback(client.close)  # pushed first, so it goes last
        swept = remove_leftovers(client)
        _report_leftovers(swept)
        images = ensure_ha_image(client, settings.docker_base_image, run_dir)
        timings.update({f"image_{name}_s": image.seconds for name, image in images.items()})
        run_id = run_dir.name
        labels = run_labels(run_id)
        admin_password = secrets.token_urlsafe(18)
        passwords = {db.user: secrets.token_urlsafe(18) for s in definition.services.values() for db in s.databases}
        services: dict[str, Any] = {}
        members: dict[str, tuple[str, ...]] = {}  # a replicated database's members, in start order
        balancers: dict[str, BalancerContainer] = {}
        replicated = {}
        cluster_links: dict[tuple[str, str], Link] = {}
        ports: dict[str, int] = {}
        commands = [name for name, service in definition.services.items() if service.kind == "command"]
        command_ports = dict(zip(commands, free_ports(len(commands)), strict=True))
        for name, service in definition.services.items():
            if service.kind != "patroni":
                continue
            cluster = make_replicated_containers(
                client, images["ha"].id, run_id, labels, service, run_dir, admin_password
            )
            made.callback(cluster.plan.proxy.stop)  # pushed first, so closed last: the nodes still reach etcd
            for member in cluster.members.values():
                made.callback(member.close)
            services.update(cluster.members)
            members[name] = tuple(cluster.members)
            balancers[name] = cluster.balancer
            replicated[name] = cluster.database
            cluster_links.update(cluster.plan.links)
            ports[name] = cluster.balancer.write_port
        links: dict[tuple[str, str], Link] = {}
        for client_name, server in definition.links:
            port = ports.get(server) or command_ports[server]
            links[(client_name, server)] = link = start_link(
                run_dir, server, Address(LOOPBACK, port), protocol=definition.services[server].protocol
            )
            made.callback(link.close)
        link_ports = {edge: link.address.port for edge, link in links.items()}
        links.update(cluster_links)
        for name in commands:
            service = definition.services[name]
            own = service.docker_build is not None or service.docker_image
            image = command_image(client, service, settings.docker_base_image, run_dir, images) if own else ""
            host_values = service_values(definition, name, link_ports, passwords)
            databases = [used for used in service.uses if used in balancers]
            ready_dsn = ""
            if databases:  # for a ``ready = { sql = ... }`` check: the first used database, through its HAProxy
                first = definition.services[databases[0]].databases[0]
                ready_dsn = balancers[databases[0]].dsn(first.name, first.user, passwords[first.user])
            image = image or images["ha"].id
            services[name] = _command_container(
                made,
                client,
                settings,
                run_dir,
                labels,
                definition,
                name,
                image,
                command_ports[name],
                host_values,
                ready_dsn,
            )
        start_order = tuple(m for name in definition.start_order for m in members.get(name, (name,)))
        for name in start_order:
            step = time.monotonic()
            services[name].start(settings.start_timeout)
            timings[f"{name}_start_s"] = time.monotonic() - step
            if name in balancers:  # it needs only the balancer's dsn()
                _create_databases(
                    cast(Any, balancers[name]), definition.services[name].databases, passwords, settings.start_timeout
                )
        database = balancers[definition.database_service.name]
        db, role = definition.database_name, definition.database_user
        with connect(database.dsn(), 5.0) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            server_version = cur.fetchone()[0]
        timings["total_s"] = time.monotonic() - started
        _write_docker_json(run_dir, settings.docker_network, images, services, "", swept, timings)
        stack = Stack(
            backend="docker",
            services=services,
            api_url=services[definition.target].url,
            links=links,
            workload=definition.workload,
            health_path=definition.api.health_path,
            start_order=start_order,
            target=definition.target,
            replicated=replicated,
            admin_dsn=database.dsn(db),
            app_dsn=database.dsn(db, role, passwords[role]),
            versions={
                "postgres": server_version,
                "docker_engine": client.version().get("Version", "unknown"),
                "ha_image": images["ha"].tag,
                "docker_network": settings.docker_network,
            },
            secrets=(admin_password, *passwords.values()),
            cleanup=made.pop_all(),
        )
    return stack


def check_docker_shape(definition: StackDefinition, network: str = "host") -> None:
    """Refuse, in one line, a stack the Docker backend cannot run yet: one postgres with one database (or one
    replicated database, ``kind = "patroni"``, alone and on the host network only), command services beside the
    target only on the host network (where the fault proxy can stand on each link), and no ``before_start``
    (those run on the process backend)."""
    wanted = {definition.target, definition.database_service.name}
    extra = [name for name in definition.services if name not in wanted]
    postgres = [s for s in definition.services.values() if s.kind == "postgres"]
    fix = "run this stack with -D backend=process"
    replicated = [s.name for s in definition.services.values() if s.kind == "patroni"]
    if replicated and network != "host":
        raise StackFileError(
            f'{definition.path}: [services.{replicated[0]}] a replicated database (kind = "patroni") runs on '
            f"Docker with docker_network=host only (its links go through the fault proxy on 127.0.0.1); use "
            f"docker_network=host, or {fix}"
        )
    if replicated and (len(replicated) > 1 or postgres):
        raise StackFileError(
            f"{definition.path}: [services.{(postgres[0].name if postgres else replicated[1])}] the Docker backend "
            f'runs one replicated database (kind = "patroni") and no other postgres beside it; {fix}'
        )
    if not replicated and (len(postgres) > 1 or len(postgres[0].databases) > 1):
        raise StackFileError(
            f"{definition.path}: [services.{postgres[-1].name}] the Docker backend runs one "
            f"postgres with one database; {fix}"
        )
    if extra and network != "host":
        raise StackFileError(
            f"{definition.path}: [services.{extra[0]}] the Docker backend runs the workload's "
            f"target and one postgres only ({', '.join(sorted(wanted))}) on docker_network="
            f"{network}; use docker_network=host, or {fix}"
        )
    for service in definition.services.values():
        if service.before_start:
            raise StackFileError(
                f"{definition.path}: [services.{service.name}] before_start is not run by the "
                f"Docker backend yet; bake it into the image's command, or {fix}"
            )


def _report_leftovers(swept) -> None:
    """One line naming what dead runs left on the engine and was removed, and what could not be."""
    if swept.containers or swept.volumes or swept.networks:
        removed = describe_removed({"container": swept.containers, "volume": swept.volumes, "network": swept.networks})
        print(f"chaos-suite: removed what runs that were killed left on the Docker engine: {removed}", file=sys.stderr)
    for name, reason in swept.failed.items():
        print(f"chaos-suite: could not remove {name}, left by a run that was killed: {reason}", file=sys.stderr)


def _remove(thing, **kwargs: Any) -> None:
    """Remove one of the run's networks or volumes; one already gone is fine."""
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        thing.remove(**kwargs)


def _versions(
    client: DockerClient, postgres: PostgresContainer, images: dict[str, BuiltImage], settings: Settings
) -> dict[str, str]:
    with connect(postgres.dsn(), 5.0) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        server = cur.fetchone()[0]
    return {
        "postgres": server,
        "docker_engine": client.version().get("Version", "unknown"),
        "postgres_image": images["postgres"].tag,
        "api_image": images["api"].tag if "api" in images else stack_definition(settings).api.docker_image,
        "docker_network": settings.docker_network,
    }
