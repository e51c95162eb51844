"""The chaos suite's library: plain Python, importable and tested without behave."""
