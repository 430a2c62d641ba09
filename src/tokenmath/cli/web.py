"""`tokenmath serve`: the interactive blackboard."""

import os
import re
import sys
import ipaddress
from typing import Annotated

import typer

from . import Num, TokenmathError, command, err


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$", re.ASCII)


def _check_host(host: str) -> bool:
    """A bind address: an IP address or a host name; True when it is loopback (this machine only)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
        raise TokenmathError(f"--host = {host!r} is not an IP address or host name; e.g. 127.0.0.1 (this machine only)"
                             " or 0.0.0.0 (every interface)")
    return host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost")


@command("serve")
def serve_cmd(
    port: Annotated[int, Num("--port", help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: this machine only).")] = "127.0.0.1",
) -> None:
    """Start the interactive blackboard (Streamlit; optional extra `web`) on http://HOST:PORT."""
    from rich.markup import escape

    loopback = _check_host(host)
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise TokenmathError("the blackboard needs Streamlit: pip install 'tokenmath[web]'") from None
    if not 1 <= port <= 65535:
        raise TokenmathError(f"--port = {port} must be between 1 and 65535")
    from ..web import APP

    args = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.maxUploadSize", "1",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none"]
    if not loopback:
        err.print(f"[bold yellow]warning:[/] --host {escape(host)} is not this machine only: anyone who can reach it"
                  " can use the blackboard (it has no login); leave --host out to bind 127.0.0.1", highlight=False)
    err.print(f"tokenmath blackboard on http://{host}:{port} (Ctrl-C to stop)")
    os.execv(sys.executable, args)
