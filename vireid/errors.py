"""The one exception type that carries a user-facing message about a file."""

from __future__ import annotations

from pathlib import Path


class VireidError(Exception):
    """A problem with the user's input or files: the CLI prints it as one line and exits 1.

    ``where`` names the file (optionally ``file:line``), ``problem`` says what is wrong.
    """

    def __init__(self, where: str | Path, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")
