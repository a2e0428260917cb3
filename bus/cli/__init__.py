"""The ``bus`` command line, on Typer (parsing) and Rich (tables, progress bars, errors).

One module per command group, read in this order:

- ``app.py``: the root command, ``--version``, :func:`main` (errors become one
  ``bus: error:`` line and exit code 2);
- ``options.py``: the transport, log and Kafka flags many commands share;
- ``output.py``: tables, progress bars and error lines through Rich (plain when piped);
- ``common.py``: importing the user's modules and apps, reading NDJSON;
- ``plugins.py``: commands of packages above bus (``bus sagas``), loaded on demand;
- ``run.py``, ``publish.py``, ``schema.py``, ``topics.py``, ``trace.py``, ``dlq.py``,
  ``dev.py``: the commands.

Importing this package imports no aiokafka, aiohttp, pydantic or Rich: each command
imports what it needs when it runs, so ``bus --help`` starts quickly.

Example::

    from bus.cli import main
    main(["schema", "export", "-m", "handlers.demo"])
"""

from bus.cli.app import main

__all__ = ["main"]
