"""The ``tunecli`` command line: the app and one module per command group.

- ``app``: the Typer app, shared options, the error guard (errors -> one line and an exit code)
- ``searching``: ``search``, ``resume`` (and local workers)
- ``reporting``: ``report``, ``train``
- ``inspecting``: ``validate``, ``list``, ``schema``
- ``managing``: ``delete``, ``copy``
- ``using``: ``predict``, ``dashboard``
- ``cluster``: ``serve``, ``worker``, ``launch``

Commands are registered here, in the order ``tunecli --help`` lists them.
"""

from tunecli.cli import cluster, inspecting, managing, reporting, searching, using
from tunecli.cli.app import app, main

app.command()(searching.search)
app.command()(searching.resume)
app.command()(cluster.worker)
app.command()(cluster.serve)
app.command()(cluster.launch)
app.command()(reporting.report)
app.command()(reporting.train)
app.command()(using.predict)
app.command()(using.dashboard)
app.command()(inspecting.validate)
app.command("list")(inspecting.list_studies)
app.command()(inspecting.schema)
app.command()(managing.delete)
app.command()(managing.copy)

__all__ = ["app", "main"]
