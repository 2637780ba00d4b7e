"""How tests, benchmarks and the demo start the exporter as a process of its own."""

from __future__ import annotations

import os
import sys


def exporter_argv(config: str | os.PathLike[str], port: int, *extra: str) -> list[str]:
    """The command line of an exporter on ``config`` listening on 127.0.0.1:``port``.

    ``python -m exporter`` with this interpreter, not the ``sparki-exporter`` script, so
    it runs the checkout under test whatever is installed.
    """
    return [
        sys.executable,
        "-m",
        "exporter",
        "--config",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        *extra,
    ]
