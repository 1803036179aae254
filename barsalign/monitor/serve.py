"""`barsalign serve`: the operator's screen in a browser (Starlette + uvicorn, no CDN).

One scoring thread (`Scorer`) reads the source through the monitor's live reader (only the
newest frame is kept, so it never falls behind), scores each frame with the model
(`inference.load_predictor`), smooths it (`Smoother`), draws the border (`Overlay`) and keeps
the newest annotated JPEG and the state. When the source dies (a file deleted, a camera
unplugged, a stream ended) the state says "no_signal" at once and the scorer reopens it with a
growing pause, so the server never needs a restart. Viewers get the JPEGs as MJPEG
(`FrameHub`): each takes the newest frame when it is ready for one, so a slow viewer only
misses frames; it never delays the scorer or another viewer. The page (`static/`) polls
`/status` (state, score, frames/s, the decision strip, the event log) and POSTs `/flag` when
the operator presses `f` on a false alarm.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hmac
import ipaddress
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from barsalign.errors import BarsalignError
from barsalign.inference import Predictor, load_predictor, sigmoid
from barsalign.metrics import check_threshold
from barsalign.monitor.overlay import Overlay
from barsalign.monitor.smoother import ALIGNED, NOT_ALIGNED, Smoother
from barsalign.monitor.source import _Reader, open_capture, parse_source
from barsalign.monitor.stats import MonitorStats

NO_SIGNAL = "no_signal"
ENDED = "the file ended"
TOKEN_COOKIE = "barsalign_token"
SEND_BUFFER = 128 * 1024
STATIC = resources.files("barsalign.monitor") / "static"


@dataclass(frozen=True)
class ServeConfig:
    """One `barsalign serve`. `port` 0 picks a free port (the URL is printed)."""

    model: str
    source: str
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allow_remote: bool = False
    loop: bool = False  # a file source starts again at its end
    threshold: float | None = None  # None: the card's operating threshold
    k: int = 3
    n: int = 4
    margin: float = 0.5
    threads: int | None = None
    history_s: float = 300.0  # the decision strip's length
    no_signal_s: float = 1.0  # no new frame this long: "no signal"
    retry_s: float = 0.25  # first pause before reopening a dead source, doubled up to retry_max_s
    retry_max_s: float = 2.0
    timeout_ms: int = 3000
    jpeg_quality: int = 80

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_threshold(self.threshold, "--threshold")
        checks = [
            (0 <= self.port <= 65535, f"--port {self.port} is not a TCP port"),
            (self.token is None or self.token.strip() != "", "--token must not be empty"),
            (self.history_s > 0, "history_s must be > 0"),
            (self.no_signal_s > 0, "no_signal_s must be > 0"),
            (0 < self.retry_s <= self.retry_max_s, "need 0 < retry_s <= retry_max_s"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must lie in 1..100"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BarsalignError(msg)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine only (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise BarsalignError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


class FrameHub:
    """The newest JPEG and its number; viewers (asyncio) wait for a newer one, never queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seq, self.jpeg = 0, b""
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self, jpeg: bytes) -> None:
        """Called by the scorer; never blocks on a viewer."""
        with self._lock:
            self.seq += 1
            self.jpeg = jpeg
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that viewer's loop has closed
                loop.call_soon_threadsafe(event.set)

    def latest(self) -> tuple[int, bytes]:
        with self._lock:
            return self.seq, self.jpeg

    async def frames(self, keepalive_s: float = 5.0) -> Any:
        """(seq, jpeg) each time a newer frame is there when this viewer asks; the newest only.
        The same frame again after `keepalive_s` without one, so a gone viewer is noticed."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(entry)
        try:
            last = -1
            while True:
                event.clear()
                seq, jpeg = self.latest()
                if seq == last or not jpeg:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), keepalive_s)
                    seq, jpeg = self.latest()
                    if not jpeg:
                        continue
                last = seq
                yield seq, jpeg
        finally:
            with self._lock:
                self._waiters.discard(entry)


class Scorer:
    """The one scoring thread: source → score → smoothed state → annotated JPEG, reopening the
    source with backoff whenever it dies; `status()` is what the page shows."""

    def __init__(self, cfg: ServeConfig, model: Predictor, hub: FrameHub) -> None:
        self.cfg, self.model, self.hub = cfg, model, hub
        self.kind, self.value = parse_source(cfg.source)
        self.threshold = cfg.threshold if cfg.threshold is not None else model.decision_threshold
        self.smoother = Smoother(self.threshold, cfg.k, cfg.n, cfg.margin)
        self.stats = MonitorStats(source=str(cfg.source), live=True)
        self.overlay = Overlay()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state, self.score, self.frame_index = NO_SIGNAL, None, -1
        self.last_frame_t: float | None = None  # time.time() of the newest scored frame
        self._last_frame_mono = -math.inf
        self.connected, self.reason = False, "waiting for the source"
        self.source_fps = 0.0
        self._times: collections.deque[float] = collections.deque(maxlen=120)
        self.strip: collections.deque[tuple[float, str]] = collections.deque()
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self._event_id = 0
        self._red_since: float | None = None  # when the current not-yet-green stretch went red
        self._shown: str = NO_SIGNAL  # the state last logged

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="barsalign-scorer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        pause = self.cfg.retry_s
        while not self._stop.is_set():
            try:
                reader = _Reader(
                    str(self.cfg.source), self.stats, True, 0, 0.0, self.cfg.timeout_ms, None
                )
            except BarsalignError as err:
                self._lost(str(err))
                self._stop.wait(pause)
                pause = min(2 * pause, self.cfg.retry_max_s)
                continue
            pause = self.cfg.retry_s
            try:
                reason = self._play(reader)
            except Exception as err:  # noqa: BLE001 - the screen must say so and try again
                reason = f"scoring stopped: {type(err).__name__}: {err}".splitlines()[0]
            if reason == ENDED and self.cfg.loop:  # straight on from the first frame
                continue
            self._lost(reason)
            if reason == ENDED:  # played once: wait until it is replaced
                stamp = _file_stamp(self.value)
                while not self._stop.wait(0.25) and _file_stamp(self.value) == stamp:
                    pass
                continue
            self._stop.wait(pause)

    def _play(self, reader: _Reader) -> str:
        """Score the reader's frames until the source dies; returns why it stopped."""
        stamp = _file_stamp(self.value) if self.kind == "file" else None
        self.smoother.reset()  # the scene may have changed while it was away
        with self._lock:
            self.source_fps = reader.fps
        frames = reader.frames()
        try:
            for index, frame, _, _ in frames:
                if self._stop.is_set():
                    return "the server is stopping"
                if stamp is not None and _file_stamp(self.value) != stamp:
                    return f"file {self.value} was removed or replaced"
                self._score(index, frame, reader)
        except BarsalignError as err:  # a live source that dropped (no reconnects here)
            return (
                f"{self.kind} {self.value} stopped giving frames"
                if self.kind != "file"
                else str(err)
            )
        finally:
            frames.close()
        return ENDED if self.kind == "file" else f"{self.kind} {self.value} ended"

    def _score(self, index: int, frame: np.ndarray, reader: _Reader) -> None:
        import cv2

        t0 = time.perf_counter()
        try:
            prepared = self.model.prepare(frame, name=None)
        except BarsalignError as err:
            reader._unreadable(f"frame {index} of {self.cfg.source}: {err}")
            return
        score = float(sigmoid(self.model.logits(np.asarray(prepared, np.float32)[None]))[0])
        latency = (time.perf_counter() - t0) * 1000.0
        state = self.smoother.update(score)
        self.overlay.draw(frame, state, score, latency)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        now, mono = time.time(), time.monotonic()
        with self._lock:
            self.stats.frames_scored += 1
            self.stats.latency_ms.append(latency)
            del self.stats.latency_ms[:-1000]
            self.stats.frame_size = (frame.shape[1], frame.shape[0])
            if not self.connected:
                self.connected = True
                self._event("signal", now, note=f"{self.kind} {self.value}")
            self.state, self.score, self.frame_index = state, score, index
            self.last_frame_t, self._last_frame_mono = now, mono
            self._times.append(mono)
            self.strip.append((now, state))
            while self.strip and self.strip[0][0] < now - self.cfg.history_s:
                self.strip.popleft()
            self._log_state(state, score, now)
        if ok:
            self.hub.publish(jpeg.tobytes())

    def _lost(self, reason: str) -> None:
        """The source is gone: say so on the page and in the event log, once."""
        now = time.time()
        with self._lock:
            self.reason = reason
            if self.connected or not self.events:
                self._event(NO_SIGNAL, now, note=reason)
                print(f"barsalign serve: no signal: {reason}", file=sys.stderr, flush=True)
            self.connected = False
            self._shown, self._red_since = NO_SIGNAL, None
        self.hub.publish(self._no_signal_jpeg(reason))

    def _no_signal_jpeg(self, reason: str) -> bytes:
        import cv2

        w, h = self.stats.frame_size if self.stats.frame_size[0] else (640, 480)
        img = np.full((h, w, 3), 32, np.uint8)
        scale = max(0.8, h / 300.0)
        cv2.putText(
            img, "NO SIGNAL", (w // 10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (200, 200, 200), 2
        )
        cv2.putText(
            img, reason[:90], (w // 10, h // 2 + int(40 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
            scale * 0.35, (160, 160, 160), 1,
        )  # fmt: skip
        return cv2.imencode(".jpg", img)[1].tobytes()

    # --- events (called with the lock held) ---------------------------------------------------

    def _event(self, kind: str, t: float, **fields: Any) -> dict[str, Any]:
        self._event_id += 1
        event = {"id": self._event_id, "kind": kind, "t": round(t, 3), **fields}
        self.events.append(event)
        return event

    def _log_state(self, state: str, score: float, now: float) -> None:
        """A "red" event when the border turns red, a "green" one (with how long the bars took
        to align, from the start of the red) when it turns green."""
        if state == self._shown or state not in (ALIGNED, NOT_ALIGNED):
            return
        if state == NOT_ALIGNED:
            if self._red_since is None:
                self._red_since = now
            self._event("red", now, score=round(score, 4))
        else:
            took = None if self._red_since is None else round(now - self._red_since, 3)
            self._event("green", now, score=round(score, 4), align_s=took)
            self._red_since = None
        self._shown = state

    def flag(self, note: str = "") -> dict[str, Any]:
        """The operator marks what is on the screen now as a false-alarm candidate."""
        with self._lock:
            return self._event(
                "flag",
                time.time(),
                state=self.current_state(),
                score=None if self.score is None else round(self.score, 4),
                frame=self.frame_index,
                note=note[:200],
            )

    # --- what the page shows ------------------------------------------------------------------

    def signal(self) -> bool:
        """A source is open and a frame came recently (a stalled stream is no signal too)."""
        fps = self.source_fps or 25.0
        stale_s = max(self.cfg.no_signal_s, 2.5 / fps)
        return self.connected and time.monotonic() - self._last_frame_mono <= stale_s

    def current_state(self) -> str:
        return self.state if self.signal() else NO_SIGNAL

    def status(self, since: float = 0.0) -> dict[str, Any]:
        """The page's JSON: state, score, frames/s, the strip after `since`, the events."""
        with self._lock:
            mono = time.monotonic()
            recent = [t for t in self._times if t >= mono - 2.0]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
            signal = self.signal()
            return {
                "state": self.state if signal else NO_SIGNAL,
                "signal": signal,
                "reason": "" if signal else self.reason,
                "score": self.score,
                "threshold": self.threshold,
                "smoothing": {"k": self.cfg.k, "n": self.cfg.n, "margin": self.cfg.margin},
                "fps": round(fps, 2),
                "source_fps": round(self.source_fps, 2),
                "last_frame_time": self.last_frame_t,
                "frame": self.frame_index,
                "frames_scored": self.stats.frames_scored,
                "frames_dropped": self.stats.frames_dropped,
                "unreadable": len(self.stats.unreadable),
                "source": str(self.cfg.source),
                "model": self.model.name,
                "server_time": time.time(),
                "history_s": self.cfg.history_s,
                "strip": [[round(t, 3), s] for t, s in self.strip if t > since][-5000:],
                "events": list(self.events)[-200:],
            }


def _file_stamp(path: Any) -> tuple[int, int, int] | None:
    """A file's inode, size and mtime (None when it is gone): changes when it is replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# --- the web app ----------------------------------------------------------------------------


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
    p.add_argument("--k", type=int, default=3, help="frames of the last n needed to change colour")
    p.add_argument("--n", type=int, default=4, help="window of the k-of-n smoothing")
    p.add_argument("--margin", type=float, default=0.5, help="uncertain band, logits")
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
