# PostgreSQL 15 from Debian's own packages, run as the `postgres` user.
# Build context: stack/  (docker build -f stack/docker/postgres.Dockerfile stack)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# postgresql-common would make a cluster at install time; ours is made in the data volume on first start
RUN set -eux; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 tini; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql; \
    chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql; \
    chmod 0700 /var/lib/postgresql/data

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data/pgdata
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
VOLUME /var/lib/postgresql/data
USER postgres
# SIGINT is PostgreSQL's "fast" shutdown: what `docker stop` should ask for
STOPSIGNAL SIGINT
# tini as PID 1 forwards signals and lets a fault kill every server process at once (kill -1)
ENTRYPOINT ["tini", "--", "postgres-entrypoint.sh"]
CMD ["postgres", "-c", "listen_addresses=*", "-p", "5432"]
