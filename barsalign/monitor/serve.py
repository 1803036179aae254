"""`barsalign serve`: the operator's screen in a browser (Starlette + uvicorn, no CDN).

`scorer.Scorer` scores the source on its own thread and `scorer.FrameHub` holds the newest
annotated JPEG; this module serves them: the page (`static/`, package data) polls `/status`
(state, score, frames/s, the decision strip, the event log), shows `/stream.mjpg` and POSTs
`/flag` when the operator presses `f` on a false alarm. It listens on this machine only unless
`--allow-remote`, and `--token` guards every route (`TokenGate`).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import os
import socket
import sys
from importlib import resources
from typing import Any

from barsalign.errors import BarsalignError
from barsalign.inference import load_predictor
from barsalign.monitor.scorer import NO_SIGNAL, FrameHub, Scorer, ServeConfig
from barsalign.monitor.source import open_capture, parse_source

TOKEN_COOKIE = "barsalign_token"
SEND_BUFFER = 128 * 1024
STATIC = resources.files("barsalign.monitor") / "static"

__all__ = ["NO_SIGNAL", "FrameHub", "Scorer", "ServeConfig", "build_app", "serve"]


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine only (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise BarsalignError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def build_app(scorer: Scorer, hub: FrameHub, token: str | None = None) -> Any:
    """The Starlette app: the page, its assets, /stream.mjpg, /frame.jpg, /status, /flag."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def index(request: Request) -> Response:
        page = HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))
        page.headers["Cache-Control"] = "no-store"
        if token is not None:  # the link with ?token= once; the cookie from then on
            page.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return page

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        types = {".js": "text/javascript", ".css": "text/css"}
        kind = types.get(os.path.splitext(name)[1])
        file = STATIC / name
        if kind is None or "/" in name or not file.is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(file.read_bytes(), media_type=kind)

    async def status(request: Request) -> Response:
        try:
            since = float(request.query_params.get("since", 0.0))
        except ValueError:
            return JSONResponse({"error": "since must be a number (seconds)"}, status_code=400)
        return JSONResponse(scorer.status(since), headers={"Cache-Control": "no-store"})

    async def flag(request: Request) -> Response:
        note = ""
        if request.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                body = await request.json()
                note = str(body.get("note", "")) if isinstance(body, dict) else ""
        return JSONResponse(scorer.flag(note))

    async def frame(request: Request) -> Response:
        seq, jpeg = hub.latest()
        if not jpeg:
            return Response("no frame yet", status_code=503, media_type="text/plain")
        return Response(jpeg, media_type="image/jpeg", headers={"X-Frame-Seq": str(seq)})

    async def stream(request: Request) -> Response:
        async def parts() -> Any:
            async for seq, jpeg in hub.frames():
                head = (
                    f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Frame-Seq: {seq}\r\n\r\n"
                ).encode()
                yield head + jpeg + b"\r\n"

        return StreamingResponse(
            parts(),
            media_type="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", asset),
            Route("/status", status),
            Route("/flag", flag, methods=["POST"]),
            Route("/frame.jpg", frame),
            Route("/stream.mjpg", stream),
        ]
    )
    return app if token is None else TokenGate(app, token)


class TokenGate:
    """ASGI middleware: every route needs the token (?token=, a Bearer / X-Barsalign-Token
    header or the page's cookie), else 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    def _given(self, scope: dict[str, Any]) -> list[str]:
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        auth = conn.headers.get("authorization", "")
        return [
            conn.query_params.get("token", ""),
            conn.headers.get("x-barsalign-token", ""),
            auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else "",
            conn.cookies.get(TOKEN_COOKIE, ""),
        ]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if any(hmac.compare_digest(g.encode(), self.token) for g in self._given(scope) if g):
            return await self.app(scope, receive, send)
        from starlette.responses import PlainTextResponse

        refuse = PlainTextResponse(
            "401: this screen needs its token: open it as /?token=...", status_code=401
        )
        await refuse(scope, receive, send)


# --- running it -----------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port taken, host not here)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a small send buffer per viewer (inherited by each connection): a slow viewer's kernel
        # holds a few frames, not seconds of them, so it gets the newest frame, not an old one
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as err:
        raise BarsalignError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def serve(cfg: ServeConfig) -> None:
    """Check the host, the model and the source, then serve until Ctrl+C."""
    import uvicorn

    # 1. where it listens: this machine only, unless the operator says otherwise
    if not is_loopback(cfg.host):
        if not cfg.allow_remote:
            raise BarsalignError(
                f"--host {cfg.host} serves the screen beyond this machine: pass --allow-remote "
                "(and --token) to mean it, or leave --host at 127.0.0.1"
            )
        print(
            f"barsalign serve: warning: listening on {cfg.host}, reachable from the network"
            + ("" if cfg.token else " by anyone: no --token is set"),
            file=sys.stderr,
            flush=True,
        )
    # 2. the model and the source, each checked once before anything is served
    model = load_predictor(cfg.model, threads=cfg.threads)
    kind, value = parse_source(cfg.source)
    open_capture(kind, value, cfg.timeout_ms).release()
    sock = listen(cfg.host, cfg.port)
    # 3. the scorer, then the server
    hub = FrameHub()
    scorer = Scorer(cfg, model, hub)
    app = build_app(scorer, hub, cfg.token)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"barsalign serve: the operator's screen is on http://{shown}:{port}/", flush=True)
    scorer.start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        scorer.stop()
        sock.close()


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="the operator's screen in a browser: live border, score, strip and event log",
        description="Score a video file, camera or stream with a model and serve the operator's "
        "screen: the live picture with its green / red / amber border, the score, a strip of "
        "the last minutes' decisions and the event log (press f on a false alarm). Serves "
        "127.0.0.1 only unless --allow-remote.",
    )
    p.add_argument("--model", required=True, help="model.onnx (with its card) or a .ckpt")
    p.add_argument("--source", required=True, help="VIDEO_FILE, CAMERA_INDEX or RTSP/HTTP URL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--token", help="require ?token=TOKEN (then a cookie) on every request")
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a --host reachable from the network"
    )
    p.add_argument("--loop", action="store_true", help="play a file source again at its end")
    p.add_argument("--threshold", type=float, help="override the card's operating threshold")
    p.add_argument(
        "--k", type=int, help="frames of the last n needed to change colour (default: the card's)"
    )
    p.add_argument("--n", type=int, help="window of the k-of-n smoothing (default: the card's)")
    p.add_argument("--margin", type=float, help="uncertain band, logits (default: the card's)")
    p.add_argument("--history-min", type=float, default=5.0, help="minutes the strip shows")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    if args.history_min <= 0:
        raise BarsalignError(f"--history-min must be > 0, not {args.history_min}")
    cfg = ServeConfig(
        model=args.model,
        source=args.source,
        host=args.host,
        port=args.port,
        token=args.token,
        allow_remote=args.allow_remote,
        loop=args.loop,
        threshold=args.threshold,
        k=args.k,
        n=args.n,
        margin=args.margin,
        threads=args.threads,
        history_s=60.0 * args.history_min,
    )
    serve(cfg)
    return 0
