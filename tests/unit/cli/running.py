"""Running the ``celeriac`` command in this process, for the CLI unit tests."""

from __future__ import annotations

from typing import Any

from celeriac.cli import main as cli_main


def run(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """``celeriac <argv>``: exit code, stdout, stderr (argparse exits are caught)."""
    try:
        code = cli_main.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
