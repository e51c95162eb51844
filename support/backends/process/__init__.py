"""The embedded default backend: a private PostgreSQL cluster and the services as supervised child processes."""
