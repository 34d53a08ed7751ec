"""``optimlab playground``: the notes' ideas in the browser (:mod:`optimlab.lab.playground`)."""

from __future__ import annotations

import errno
import os
import sys
import webbrowser

import click

from .options import debug_option

__all__ = ["playground"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _has_display() -> bool:
    # Without a screen, webbrowser falls back to text browsers (lynx, w3m) that would take over
    # this terminal; there the address is printed for the user to open.
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("playground")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="The port to serve on (0: any free one).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The interface to serve on; anything but loopback lets other machines in.",
)
@click.option("--no-browser", is_flag=True, help="Print the address without opening a browser.")
@debug_option
def playground(port: int, host: str, no_browser: bool) -> None:
    """Explore the notes in the browser, computed by optimlab's own optimizers.

    Paths of every optimizer and variant over the lab's 2-D functions (click to choose the
    start, slide to change the settings), exponentially weighted averages of a series or your
    CSV, learning-rate schedules, and batch against mini-batch against stochastic descent.
    Serves on 127.0.0.1 until Ctrl-C; works offline. The page's state is in its address: copy
    it to hand someone the exact picture.
    """
    try:
        from ..lab.playground.server import listening_socket, missing_assets, serve
    except ImportError as error:
        raise click.ClickException(
            f"the playground needs its extra ({error}): pip install 'optimlab[playground]'"
        ) from None
    missing = missing_assets()
    if missing:
        raise click.ClickException(
            f"the page's scripts are not built ({', '.join(missing)} missing): run `make build`, "
            "which fetches them from the npm registry once"
        )
    try:
        sock = listening_socket(host, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise click.BadParameter(
                f"{port} is in use on {host}; choose another, or 0 for any free one",
                param_hint="'--port'",
            ) from None
        raise click.BadParameter(
            f"cannot serve on {host!r} ({error.strerror})", param_hint="'--host'"
        ) from None
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/"
    if host not in LOOPBACK:
        click.echo(
            f"Warning: serving on {host}, so other machines can reach the playground (it reads "
            "and writes no files, but computes on request); --host 127.0.0.1 keeps it to this one",
            err=True,
        )
    opened = (
        not no_browser and _has_display() and webbrowser.open(url.replace("0.0.0.0", "127.0.0.1"))
    )
    where = "opened in your browser" if opened else "open it in your browser"
    click.echo(f"optimlab playground: {url} ({where}; Ctrl-C stops it)", err=True)
    serve(sock)
