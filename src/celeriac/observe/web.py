"""``celeriac monitor --web``: the live dashboard, its JSON and ``/metrics``, over plain HTTP.

Endpoints:

* ``/``: the dashboard page (``static/index.html``);
* ``/static/<name>``: the page's scripts, styles and the vendored uPlot;
* ``/api/state``: the monitor's last sample (queues, live workers, alerts) as JSON;
* ``/api/history?range=SECONDS``: per queue and per worker node, arrays over time;
* ``/metrics``: the Prometheus exposition of the last sample;
* ``/healthz``: ``ok``, always open.

Served by the standard library's threading HTTP server on a background thread.
Beyond loopback a token is required: ``Authorization: Bearer <token>`` or
``?token=<token>``; the page, opened once with ``?token=``, gets an HttpOnly cookie
so its own requests pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import ipaddress
import logging
import math
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from celeriac.errors import ConfigurationError
from celeriac.observe import promexport
from celeriac.observe.history import NodePoint, QueuePoint

if TYPE_CHECKING:
    from celeriac.observe.monitor import Monitor

logger = logging.getLogger("celeriac.monitor.web")

STATIC_DIR = Path(__file__).parent / "static"
#: /api/history serves at most this range, and this one when none is asked for
MAX_RANGE_S = 30 * 86400.0
DEFAULT_RANGE_S = 3600.0
#: alerts fired or cleared this long ago still show under "recent alerts"
RECENT_ALERTS_S = 86400.0
COOKIE = "celeriac_monitor"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
_QUEUE_SERIES = ("length", "ready", "reserved", "running", "oldest_age", "p50", "p95", "p99")
_NODE_SERIES = ("children", "master_rss_kib", "children_rss_kib")
_CHILD_FIELDS = (
    "index",
    "pid",
    "rss_kib",
    "uss_kib",
    "peak_rss_kib",
    "prefetch",
    "tasks",
    "failed",
    "running",
)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as host and port."""
    host, _, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(
            f"monitor_web_bind {bind!r} is not HOST:PORT, such as '127.0.0.1:5555' (port 0: any free port)"
        )
    return host, int(port)


class HTTPError(Exception):
    """A client error answered with ``status`` and a one-line message."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    """What a handler answers: status, body and headers."""

    def __init__(
        self,
        body: bytes,
        content_type: str = _TEXT,
        status: HTTPStatus = HTTPStatus.OK,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.status = status
        self.headers = {"Cache-Control": "no-store", **(headers or {})}


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), _JSON)


# -- the JSON documents ---------------------------------------------------------------------


def state_document(monitor: Monitor, now: float) -> dict[str, Any]:
    """``/api/state``: the last sample, live workers only, and the alerts of the last day."""
    state = monitor.current()
    nodes = []
    for node in state.nodes:
        if node.state != "running":
            continue
        nodes.append(
            {
                "node": node.node,
                "state": node.state,
                "concurrency": node.concurrency,
                "queues": node.queues,
                "master_rss_kib": node.master_rss_kib,
                "children": [{name: getattr(c, name) for name in _CHILD_FIELDS} for c in node.children],
                "broker_pool": node.broker_pool,
            }
        )
    return {
        "at": state.at,
        "now": now,
        "broker": state.broker,
        "interval": state.interval,
        "sample_s": state.sample_s,
        "error": state.error,
        "queues": [asdict(view) for view in state.queues],
        "nodes": nodes,
        "alerts": state.alerts,
        "recent_alerts": monitor.history.alerts(now - RECENT_ALERTS_S),
    }


def _rate(now: int | None, before: int | None, dt: float) -> float | None:
    if now is None or before is None or dt <= 0 or now < before:
        return None  # unknown, or the counter went back (a reset)
    return (now - before) / dt


def queue_series(points: list[QueuePoint], rates_from: float = 0.0) -> dict[str, list[Any]]:
    """Arrays over time for one queue's points (oldest first).

    Rates are the ones the monitor stored (aligned to the workers' counting time); a point
    from before ``rates_from``, stored by an older version without them, gets the change of
    the cumulative counters since the point before.
    """
    out: dict[str, list[Any]] = {name: [] for name in ("t", *_QUEUE_SERIES, "arrival_rate", "service_rate")}
    previous: QueuePoint | None = None
    for point in points:
        out["t"].append(point.t)
        for name in _QUEUE_SERIES:
            out[name].append(getattr(point, name))
        arrival, service = point.arrival_rate, point.service_rate
        if previous is not None and point.t < rates_from:
            dt = point.t - previous.t
            arrival = _rate(point.arrived, previous.arrived, dt)
            service = _rate(point.finished, previous.finished, dt)
        out["arrival_rate"].append(arrival)
        out["service_rate"].append(service)
        previous = point
    return out


def node_series(points: list[NodePoint]) -> dict[str, list[Any]]:
    """Arrays over time for one worker node's points."""
    out: dict[str, list[Any]] = {name: [] for name in ("t", *_NODE_SERIES)}
    for point in points:
        out["t"].append(point.t)
        for name in _NODE_SERIES:
            out[name].append(getattr(point, name))
    return out


def parse_range(query: dict[str, list[str]]) -> float:
    """The ``range`` parameter in seconds: > 0, at most 30 days (longer is clamped)."""
    values = query.get("range")
    if not values:
        return DEFAULT_RANGE_S
    if len(values) > 1:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "give range once: range=SECONDS, e.g. range=3600")
    try:
        seconds = float(values[0])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise HTTPError(
            HTTPStatus.BAD_REQUEST,
            f"range must be a number of seconds > 0, e.g. range=3600 (got {values[0][:40]!r})",
        )
    return min(seconds, MAX_RANGE_S)


def history_document(monitor: Monitor, now: float, span: float) -> dict[str, Any]:
    """``/api/history``: per queue and per node, arrays over the last ``span`` seconds."""
    since = now - span
    by_queue: dict[str, list[QueuePoint]] = {}
    for point in monitor.history.points(since, now):
        by_queue.setdefault(point.queue, []).append(point)
    rates_from = monitor.history.rates_from
    by_node: dict[str, list[NodePoint]] = {}
    for point in monitor.history.node_points(since, now):
        by_node.setdefault(point.node, []).append(point)
    return {
        "since": since,
        "until": now,
        "range": span,
        "queues": {name: queue_series(points, rates_from) for name, points in sorted(by_queue.items())},
        "nodes": {name: node_series(points) for name, points in sorted(by_node.items())},
    }


# -- the server -----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "celeriac-monitor"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    #: a client that sends nothing for this long loses its connection (and thread)
    timeout = 60
    web: WebServer  # set on the subclass each server makes

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _serve(self, head: bool) -> None:
        try:
            response = self.web.respond(self.path, self.headers)
        except HTTPError as exc:
            response = Response(exc.message.encode() + b"\n", status=exc.status)
        except Exception as exc:
            logger.exception("the dashboard failed to answer GET %s", self.path[:200])
            response = Response(
                f"internal error: {type(exc).__name__} (see the monitor's log)\n".encode(),
                status=HTTPStatus.INTERNAL_SERVER_ERROR,
            )
        self._send(response, head)

    def _send(self, response: Response, head: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in {**_SECURITY_HEADERS, **response.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head and response.status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(response.body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End the kept-alive connections too: a stopped server answers nobody."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away mid-answer; not worth a traceback on stderr
        logger.debug("dashboard connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebServer:
    """Serves the dashboard of ``monitor`` on ``bind`` (``HOST:PORT``; port 0 picks a free one).

    Anything but loopback needs ``token``: the monitor shows queue names, task names and
    worker hosts, which are not for whoever can reach the port.
    """

    def __init__(self, monitor: Monitor, bind: str, token: str | None) -> None:
        host, port = parse_bind(bind)
        if not token and not is_loopback(host):
            raise ConfigurationError(
                f"refusing to serve the monitor dashboard on {bind} without a token: anyone who can "
                "reach that address could read your queues, task names and workers. Set "
                "monitor_web_token (or pass --token) to require one, or bind to 127.0.0.1"
            )
        self.monitor = monitor
        self.token = token or None
        self._cookie_value = (
            hmac.new(self.token.encode(), b"celeriac-monitor-dashboard", hashlib.sha256).hexdigest()
            if self.token
            else None
        )
        self.registry = promexport.registry_for(monitor.current)
        self._static = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and not p.name.startswith(".")}
        self._etags: dict[str, str] = {}
        handler = type("Handler", (_Handler,), {"web": self})
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve the monitor dashboard on {bind}: {exc.strerror or exc} "
                "(choose a free one with monitor_web_bind, --bind HOST:PORT or --port)"
            ) from exc
        self.host = host
        self._thread: threading.Thread | None = None
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/": self._index,
            "/index.html": self._index,
            "/api/state": self._state,
            "/api/history": self._history,
            "/metrics": self._metrics,
        }

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when bound to port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Serve on a background (daemon) thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="monitor-web", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()
        self._server.close_connections()

    # -- requests ---------------------------------------------------------------------------

    def respond(self, target: str, headers: Any) -> Response:
        """The answer to ``GET target``, authentication included."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        if path == "/healthz":
            return Response(b"ok\n")
        set_cookie = self._authorise(path, query, headers)
        if path.startswith("/static/"):
            return self._static_file(path.removeprefix("/static/"), headers)
        route = self._routes.get(path)
        if route is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {path[:100]}")
        response = route(query)
        if set_cookie and response.status == HTTPStatus.OK:
            response.headers["Set-Cookie"] = (
                f"{COOKIE}={self._cookie_value}; HttpOnly; SameSite=Strict; Path=/"
            )
        return response

    def _authorise(self, path: str, query: dict[str, list[str]], headers: Any) -> bool:
        """Raise 401 unless the request carries the token; True when the page should get the cookie."""
        if self.token is None:
            return False
        expected = self.token.encode()
        auth = headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return False
        for given in query.get("token", []):
            if hmac.compare_digest(given.encode(), expected):
                return path in ("/", "/index.html")
        cookies = headers.get("Cookie", "")
        for item in cookies.split(";"):
            name, _, value = item.strip().partition("=")
            cookie = self._cookie_value
            if name == COOKIE and cookie is not None and hmac.compare_digest(value.encode(), cookie.encode()):
                return False
        raise HTTPError(
            HTTPStatus.UNAUTHORIZED,
            "unauthorised: send Authorization: Bearer <token> or open the page with ?token=<token>",
        )

    def _index(self, query: dict[str, list[str]]) -> Response:
        body = (STATIC_DIR / "index.html").read_bytes()
        return Response(body, _CONTENT_TYPES[".html"], headers={"Cache-Control": "no-cache"})

    def _static_file(self, name: str, headers: Any) -> Response:
        # only the files of the static directory, by their exact name: no paths, no traversal
        path = self._static.get(name)
        if path is None or "/" in name or "\\" in name:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such file: {name[:100]}")
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache = {"Cache-Control": "private, max-age=300", "ETag": etag}
        if headers.get("If-None-Match") == etag:
            return Response(b"", status=HTTPStatus.NOT_MODIFIED, headers=cache)
        content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return Response(body, content_type, headers=cache)

    def _state(self, query: dict[str, list[str]]) -> Response:
        return _json(state_document(self.monitor, self._now()))

    def _history(self, query: dict[str, list[str]]) -> Response:
        span = parse_range(query)
        return _json(history_document(self.monitor, self._now(), span))

    def _metrics(self, query: dict[str, list[str]]) -> Response:
        return Response(promexport.render(self.registry), promexport.CONTENT_TYPE)

    def _now(self) -> float:
        # the monitor's clock, never before its last sample
        return max(self.monitor.clock(), self.monitor.current().at)
