"""The subcommands of ``freeadv``: each module defines ``register(sub)``, which adds its
subparsers and sets ``func`` to a ``cmd_<command>`` handler (freeadv.cli lists the modules).

Handlers import only what their command runs, so the library modules a command depends on are
the import closure of its module; the workflow's rules derive their code inputs from that.
"""
