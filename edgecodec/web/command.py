"""``edgecodec serve``: the local comparison page (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys

from ..argtypes import positive_number

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
MIN_UPLOAD_MB = 0.001
# 2048 x 2048. A comparison encodes six codecs to a size and measures each: measured here on one
# core, 2000 x 2000 took 218 s and 3.1 GB, 4000 x 4000 16 minutes and 7.7 GB (per worker).
DEFAULT_MAX_PIXELS = 4_194_304
# What each classical codec needs besides Pillow's own build (serve's note on the missing ones).
NEEDS = {"JPEG XL": "JPEG XL: pip install pillow-jxl-plugin", "HEIC": "HEIC: pip install pillow-heif",
         "AVIF": "AVIF: a Pillow built with libavif and aom", "WebP": "WebP: a Pillow built with libwebp",
         "JPEG": "JPEG: a Pillow built with libjpeg"}


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the CLI's subparsers (it sets ``func``). Imports nothing
    heavy: FastAPI, uvicorn and torch load when the command runs."""
    p = subparsers.add_parser(
        "serve", help="local web page comparing edgecodec with JPEG, WebP, AVIF, JPEG XL and HEIC at the same size",
        description="Serve the comparison page. It binds to 127.0.0.1 (this machine only) unless --host "
                    "says otherwise; everything runs locally and uploads are kept in memory.")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}; "
                   "0.0.0.0 exposes the page to the network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--max-upload-mb", type=positive_number, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest upload in MB (default {DEFAULT_MAX_UPLOAD_MB:g})")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest image in pixels (default {DEFAULT_MAX_PIXELS:,} = 2048x2048: a comparison of "
                        "that size takes minutes and about 3 GB of memory per worker)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name the page is reached by besides localhost and loopback addresses (the host a "
                        "reverse proxy passes on; repeatable): requests to other names are refused while the "
                        "server listens on a loopback address, against DNS rebinding")
    p.add_argument("--workers", type=int, default=None,
                   help="comparisons computed at once (default: CPU cores, at least 2)")
    p.set_defaults(func=cmd_serve)
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    if args.max_pixels <= 0:
        raise UsageError("--max-pixels must be positive")
    if args.max_upload_mb < MIN_UPLOAD_MB:  # below, every upload would be refused
        raise UsageError(f"--max-upload-mb must be at least {MIN_UPLOAD_MB:g} (1 KB), got {args.max_upload_mb:g}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not args.host.strip():  # `--host "$HOST"` with HOST unset was "cannot listen on :0: Name or service not known"
        raise UsageError("--host is empty: give an address to listen on, such as 127.0.0.1 (this machine only) "
                         "or 0.0.0.0 (every network interface)")
    try:
        import uvicorn
    except ImportError:
        raise UsageError("edgecodec serve needs fastapi and uvicorn (pip install fastapi uvicorn)") from None
    from .app import create_app  # (it sets torch to one thread a request: see create_app)

    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    app = create_app(max_upload_bytes=int(args.max_upload_mb * 1e6), max_pixels=args.max_pixels,
                     workers=args.workers, loopback_only=ipaddress.ip_address(host).is_loopback,
                     allowed_hosts=args.allow_host)
    print(f"edgecodec serve: {open_line(sock)}", flush=True)
    missing = missing_codecs()
    if missing:  # the page compares with the others; say so before someone looks for the rows
        print(f"edgecodec serve: {_and(missing)} left out of the comparison: not installed here "
              f"({'; '.join(NEEDS.get(label, label) for label in missing)})", file=sys.stderr, flush=True)
    with sock:
        _server_class()(uvicorn.Config(app, log_level="warning"), app).run(sockets=[sock])
    return 0


def open_line(sock: socket.socket) -> str:
    """The first line's "open URL (Ctrl+C stops)" for a server listening on ``sock``. 0.0.0.0 and ::
    are no address a browser can open (some refuse them outright): a wildcard is shown as the
    loopback address of its family (listening there for sure, whatever localhost resolves to
    first), with a note that other machines reach the page too, at this machine's address."""
    host, port = sock.getsockname()[:2]
    address = ipaddress.ip_address(host)
    if not address.is_unspecified:
        shown = f"[{host}]" if ":" in host else host
        return f"open http://{shown}:{port}/ (Ctrl+C stops)"
    if address.version == 4:
        loopback, every = "127.0.0.1", "IPv4 interface"
    else:  # "::" takes IPv4 too unless the system sets IPV6_V6ONLY (net.ipv6.bindv6only)
        v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        loopback, every = "[::1]", "IPv6 interface" if v6only else "interface, IPv4 and IPv6"
    return (f"open http://{loopback}:{port}/ (Ctrl+C stops); it listens on every {every} ({host}): "
            f"other machines open http://ADDRESS:{port}/ with this machine's address or name")


def missing_codecs() -> list[str]:
    """The labels of the classical codecs that this Pillow lacks (JPEG XL and HEIC need optional packages)."""
    from ..eval import classical
    from .app import CLASSICAL

    return [classical.get_codec(name).label for name in CLASSICAL if not classical.get_codec(name).available()]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _server_class() -> type:
    """The server class, made when serve runs: uvicorn is imported only then."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, saying what a Ctrl+C waits for. A first Ctrl+C (or SIGTERM) lets the
        comparisons in progress finish; a second Ctrl+C stops at once, without the tracebacks of
        cancelled tasks and the wait for the worker threads (which cannot be cancelled) that
        uvicorn's forced exit gives. Nothing is lost: the server writes no files."""

        def __init__(self, config, app) -> None:
            super().__init__(config)
            self.app_state = app.state

        def handle_exit(self, sig: int, frame) -> None:
            import os
            import signal
            import sys

            busy = self.app_state.busy
            if self.should_exit and sig == signal.SIGINT:
                print("edgecodec serve: stopped", file=sys.stderr, flush=True)
                os._exit(130)
            if busy:
                print(f"edgecodec serve: stopping after the {busy} comparison(s) in progress "
                      "(Ctrl+C again stops at once)", file=sys.stderr, flush=True)
            super().handle_exit(sig, frame)

    return Server


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything is printed, so a port in use is one clear error
    (not uvicorn's log line after our "open http://..." line) and --port 0 shows the port it got."""
    from ..errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart at once
        sock.bind(address)
    except OSError as exc:
        sock.close()
        # Only a port in use or reserved is helped by another --port; an address that is not this
        # machine's (EADDRNOTAVAIL) needs another --host.
        hint = "choose another --host: an address of this machine" if exc.errno == errno.EADDRNOTAVAIL \
            else "choose another --port"
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None
    return sock
