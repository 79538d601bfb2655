"""What the CLI tests check of a finished command (typer's ``CliRunner`` results)."""

from __future__ import annotations


def one_line_error(result, exit_code: int = 1) -> str:
    """The single line a refused command printed: its exit code, no traceback, no other
    line."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]
