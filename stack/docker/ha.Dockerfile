# The replicated stack's members (stack/ha): Patroni managing PostgreSQL 15, etcd, HAProxy, all from Debian's
# packages, on top of the reference API's image (its BASE_IMAGE), so the stack's command services (the API
# replicas under Python, the API balancer under HAProxy) run in this image too.
# Build context: stack/  (docker build -f stack/docker/ha.Dockerfile --build-arg BASE_IMAGE=<api image> stack)
ARG BASE_IMAGE=chaos-suite/api
FROM ${BASE_IMAGE}

USER root
# postgresql-common would make a cluster at install time; Patroni makes (or clones) each node's own
RUN set -eux; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 patroni python3-etcd etcd-server haproxy; \
    rm -rf /var/lib/apt/lists/*

COPY docker/ha-entrypoint.sh /usr/local/bin/ha-entrypoint.sh
# the API's user by default; Patroni's containers run as postgres (the suite says so when it creates them)
USER app
# tini as PID 1: a fault kills every process of a member at once (kill -1) and the container ends with them
ENTRYPOINT ["tini", "--", "ha-entrypoint.sh"]
