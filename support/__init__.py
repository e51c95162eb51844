"""The chaos suite's library: plain Python, importable and tested without behave."""
from pathlib import Path

#: the suite's repository: where the stack, the features and the library live
REPO_ROOT = Path(__file__).resolve().parents[1]
