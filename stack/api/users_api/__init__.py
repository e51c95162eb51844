"""The reference system under test: a small FastAPI users service on PostgreSQL.

Start it with ``python -m uvicorn users_api.main:app`` and ``PYTHONPATH=stack/api``;
configuration comes from environment variables (see :mod:`users_api.config`).
"""
