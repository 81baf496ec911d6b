"""The ``ssmscope`` command: a thin click layer over the Python API of each stage.

Each stage owns its commands in ``<stage>/commands.py``; this file only assembles them, so a new command
goes next to the code it drives.
"""
from __future__ import annotations

import importlib

import click

from . import __version__

# (module, attribute) of every top-level command, in the order `ssmscope --help` lists them.
STAGE_COMMANDS: tuple[tuple[str, str], ...] = (
    ("ssmscope.kernels.commands", "ops"),
    ("ssmscope.kernels.commands", "check"),
    ("ssmscope.microbench.commands", "bench"),
    ("ssmscope.microbench.commands", "validate"),
    ("ssmscope.microbench.commands", "plot"),
    ("ssmscope.ncu_parsers.commands", "ncu"),
    ("ssmscope.roofline.commands", "roofline"),
    ("ssmscope.e2e.commands", "e2e"),
)


class LazyGroup(click.Group):
    """Imports a stage's commands only when they are listed or invoked (torch/matplotlib imports are slow)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [attr for _, attr in STAGE_COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        for module, attr in STAGE_COMMANDS:
            if attr == name:
                return getattr(importlib.import_module(module), attr)
        return None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ssmscope")
def main() -> None:
    """Kernel microbenchmarks, Nsight Compute metrics and rooflines for SSM and hybrid language models."""


if __name__ == "__main__":
    main()
