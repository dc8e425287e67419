"""Sub-commands of the ``remixup`` CLI; each module has ``add_parser(parser)`` and ``run(args) -> int``."""
