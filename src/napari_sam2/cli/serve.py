"""``napari-sam2 serve``: encode planes on this (GPU) machine for napari-sam2 clients.

::

    napari-sam2 serve --checkpoint sam2.1_hiera_large.pt --model large --device cuda \\
        --host 0.0.0.0 --port 8765 --token-file ~/.config/napari-sam2/server-token

Clients connect with ``Segmenter(server="http://HOST:8765", token=...)`` or the widget's
Server field.  See docs/server.md (TLS, tokens, limits, replicas).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import UsageError, add_model_args, segmenter_from_args

DEFAULT_TOKEN_FILE = "~/.config/napari-sam2/server-token"


def add_parser(sub) -> None:
    """Register the subcommand on the main parser's ``sub`` (cli.build_parser)."""
    p = sub.add_parser(
        "serve",
        help="serve SAM 2 encodes to napari-sam2 clients over HTTP (extra napari-sam2[server])",
        description="Encode planes for remote clients, which decode locally. A token is "
        "required unless --no-auth (then only loopback addresses). docs/server.md",
    )
    add_model_args(p)
    p.add_argument("--random-weights", action="store_true",
                   help="build SAM 2 without a checkpoint (plumbing checks only)")  # fmt: skip
    n = p.add_argument_group("network")
    n.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    n.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    n.add_argument("--token-file", default=DEFAULT_TOKEN_FILE, metavar="FILE",
                   help="bearer tokens, one per line; created with a new random token when "
                   f"missing (default {DEFAULT_TOKEN_FILE})")  # fmt: skip
    n.add_argument("--no-auth", action="store_true",
                   help="no token (refused unless --host is a loopback address)")  # fmt: skip
    n.add_argument("--ssl-certfile", metavar="PEM", help="TLS certificate (https)")
    n.add_argument("--ssl-keyfile", metavar="PEM", help="TLS private key")
    n.add_argument("--name", help="server name shown to clients (default: host name)")
    c = p.add_argument_group("cache and limits")
    c.add_argument("--cache-dir", metavar="DIR",
                   help="persistent embedding cache folder (may be shared by replicas)")  # fmt: skip
    c.add_argument("--cache-gb", type=float, default=20.0, help="disk cache cap (default 20)")
    c.add_argument("--memory-gb", type=float, default=4.0, help="memory cache (default 4)")
    c.add_argument("--max-queue", type=int, default=64, help="planes waiting at most (503 over)")
    c.add_argument("--rate", type=float, default=0.0,
                   help="encode requests per second per token (429 over; default 0 = no limit)")  # fmt: skip
    c.add_argument("--burst", type=int, default=32, help="requests above --rate at once")
    c.add_argument(
        "--batch-size", type=int, help="planes per encoder call (default 4 on CUDA, else 1)"
    )
    c.add_argument("--max-request-mb", type=float, default=64.0, help="request size cap")
    c.add_argument("--max-pixels", type=int, default=4096 * 4096, help="plane size cap")


def cmd_serve(args) -> int:
    try:
        from ..server import Limits, ServerSettings, build, check_bind, load_tokens, serve
    except ImportError as e:
        raise UsageError(
            f"the server needs its extra ({e.name} is missing): pip install 'napari-sam2[server]'"
        ) from None
    from ..engine.runtime.speed import default_batch_size

    auth = not args.no_auth
    check_bind(args.host, auth)  # before loading a model
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("give both --ssl-certfile and --ssl-keyfile (or neither).")
    tokens = None
    if auth:
        tokens, created = load_tokens(Path(args.token_file).expanduser())
        if created:
            print(f"A new token was written to {args.token_file} (owner-only). Give it to "
                  "clients as NAPARI_SAM2_TOKEN.", file=sys.stderr)  # fmt: skip
    seg = segmenter_from_args(
        args, random_weights=args.random_weights, disk_cache=False, server=False
    )
    if seg.notice:
        print(seg.notice, file=sys.stderr)
    backend = seg.backend
    limits = Limits(
        max_queue=args.max_queue, rate=args.rate, burst=args.burst,
        batch_size=args.batch_size or default_batch_size(backend),
    )  # fmt: skip
    settings = ServerSettings(max_request_bytes=int(args.max_request_mb * 1024**2),
                              max_pixels=args.max_pixels)  # fmt: skip
    if args.name:
        settings.name = args.name
    built = build(
        backend, tokens=tokens, limits=limits, settings=settings, cache_dir=args.cache_dir,
        cache_max_bytes=int(args.cache_gb * 1024**3), memory_bytes=int(args.memory_gb * 1024**3),
    )  # fmt: skip
    scheme = "https" if args.ssl_certfile else "http"
    d = backend.describe()
    print(f"serving {d.get('model')} on {settings.device_name} at {scheme}://{args.host}:"
          f"{args.port} ({'token required' if auth else 'NO AUTH, loopback only'})",
          file=sys.stderr)  # fmt: skip
    serve(built, host=args.host, port=args.port, auth=auth, ssl_certfile=args.ssl_certfile,
          ssl_keyfile=args.ssl_keyfile)  # fmt: skip
    return 0
