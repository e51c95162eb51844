"""Commands run from the repository: the parallel runner, the steps catalog, the report's screenshot."""
