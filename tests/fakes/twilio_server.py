"""A local HTTP server that speaks enough of Twilio's REST API for the real ``twilio`` client.

Point :class:`~alerting.notifiers.twilio.TwilioNotifier` at :attr:`FakeTwilioServer.url`
and the official client really sends HTTP (Basic auth, form-encoded bodies, JSON answers)
to 127.0.0.1, so the tests exercise the same parsing and error paths as production:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` and ``.../Calls.json`` are checked
  (Basic auth, the account in the path, the required fields), recorded and answered with
  Twilio's JSON (201, ``queued``);
- failures are programmable (:meth:`~FakeTwilioServer.fail_next`,
  :meth:`~FakeTwilioServer.fail_for`, :meth:`~FakeTwilioServer.delay_next`) and use
  Twilio's error body, ``{"code", "message", "more_info", "status"}``;
- the other direction, Twilio calling the app, is :meth:`~FakeTwilioServer.send_status_callback`,
  :meth:`~FakeTwilioServer.send_inbound_sms` and :meth:`~FakeTwilioServer.send_gather`: form
  POSTs signed with ``X-Twilio-Signature`` like Twilio signs them.

Usage::

    with FakeTwilioServer(SID, TOKEN) as server:
        notifier = TwilioNotifier(SID, TOKEN, "+15005550006", base_url=server.url)
        notifier.send(Outbound(to="+50255550101", channel="sms", body="..."))
        assert server.messages[0].body == "..."

The server speaks HTTP/1.0, so every request gets its own connection and no handler thread
lingers on a kept-alive socket when the server stops.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qs

import httpx

# The one twilio import outside alerting/notifiers/twilio.py (ruff's banned-api rule): the
# signatures this fake sends must come from Twilio's own algorithm, not from code of ours,
# or a mistake shared by the app's validation and this fake would cancel out.
from twilio.request_validator import RequestValidator  # noqa: TID251

from alerting.notifiers.gsm import segments

API_VERSION: Final = "2010-04-01"
# Twilio waits this long for a webhook answer before it gives up (error 11200); the app under
# test must answer well within it.
WEBHOOK_TIMEOUT_S: Final = 15.0

Resource = Literal["Messages", "Calls"]
_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<sid>[^/]+)/(?P<resource>Messages|Calls)\.json$")

# Messages for the codes tests use most; others get a generic one.
_MESSAGES: Final[dict[int, str]] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    30003: "Unreachable destination handset",
}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TwilioRequest:
    """One request the fake received, accepted or not.

    ``to``, ``from_`` keep Twilio's spelling (``whatsapp:+5025...`` for WhatsApp).
    """

    method: str
    path: str
    resource: Resource | None  # None: not an API this fake knows
    account_sid: str | None
    params: dict[str, str]  # every form field (first value of each)
    to: str | None
    from_: str | None
    body: str | None
    status_callback: str | None
    validity_period: int | None
    twiml: str | None
    url: str | None
    received_at: datetime
    response_status: int
    error_code: int | None = None
    sid: str | None = None  # set when accepted: SM... for messages, CA... for calls

    @property
    def accepted(self) -> bool:
        """Whether the fake answered 201."""
        return self.response_status == 201


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer in Twilio's format."""

    status: int
    code: int | None
    message: str | None = None
    retry_after: float | None = None
    rfc9457: bool = False  # the problem-details body of Twilio's newer APIs


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """The app's answer to a webhook, and what was sent to it."""

    status: int
    body: str
    headers: dict[str, str]
    params: dict[str, str]
    signature: str


@dataclass(slots=True)
class _Answer:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    code: int | None = None
    sid: str | None = None


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close (no thread outlives the server); a delayed handler
    # wakes up early when the server stops.
    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeTwilioServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr. A client that timed out and hung up
        # (BrokenPipe, ConnectionReset) is expected; anything else is kept for the tests.
        exc = sys.exception()
        if not isinstance(exc, ConnectionError) and exc is not None:
            self.fake.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, *args: Any) -> None:
        """Silent: the tests read :attr:`FakeTwilioServer.requests` instead."""


class FakeTwilioServer:
    """Twilio's Messages and Calls API on 127.0.0.1, in a background thread.

    Thread-safe: the app under test may send from several threads while the test programs
    failures and reads what was recorded.
    """

    def __init__(
        self, account_sid: str, auth_token: str, clock: Callable[[], datetime] = _now
    ) -> None:
        """Create the server; :meth:`start` (or ``with``) opens the port.

        Args:
            account_sid: The account SID the client must use (Basic auth user and path).
            auth_token: The token it must use (Basic auth password); also signs webhooks.
            clock: Stamps ``received_at`` and ``date_created``.
        """
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[TwilioRequest] = []
        self._failures: deque[Failure] = deque()
        self._fail_for: dict[str, Failure] = {}
        self._delays: deque[float] = deque()
        self.errors: list[BaseException] = []  # unexpected handler errors (should stay [])
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        """Listen on a free loopback port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake delayed handlers, join every thread, close the socket."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads (block_on_close)
        assert self._thread is not None
        self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the client instead of ``https://api.twilio.com``."""
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- what was received

    @property
    def requests(self) -> list[TwilioRequest]:
        """Every request, in arrival order, including refused ones."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[TwilioRequest]:
        """The Messages requests that were accepted."""
        return [r for r in self.requests if r.resource == "Messages" and r.accepted]

    @property
    def calls(self) -> list[TwilioRequest]:
        """The Calls requests that were accepted."""
        return [r for r in self.requests if r.resource == "Calls" and r.accepted]

    def reset(self) -> None:
        """Forget requests, programmed failures and delays."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._fail_for.clear()
            self._delays.clear()
            self.errors.clear()

    # -- programmable failures

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 400,
        code: int | None = 21211,
        message: str | None = None,
        retry_after: float | None = None,
        rfc9457: bool = False,
    ) -> None:
        """Answer the next ``n`` authenticated API requests with an error.

        Args:
            n: How many requests fail.
            status: The HTTP status.
            code: Twilio's error code; None sends an error body without one (the client then
                reports the HTTP status as the code).
            message: The error message; a default per code otherwise.
            retry_after: Seconds for a ``Retry-After`` header.
            rfc9457: Answer in RFC 9457 problem-details form (``type``, ``title``,
                ``detail``), as Twilio's newer APIs do; the client raises a different
                exception class for it.
        """
        with self._lock:
            self._failures.extend([Failure(status, code, message, retry_after, rfc9457)] * n)

    def fail_for(
        self,
        to_number: str,
        status: int = 400,
        code: int | None = 21211,
        message: str | None = None,
    ) -> None:
        """Always refuse messages and calls to ``to_number`` (with or without ``whatsapp:``).

        Args:
            to_number: The E.164 number.
            status: The HTTP status.
            code: Twilio's error code.
            message: The error message; a default per code otherwise.
        """
        with self._lock:
            self._fail_for[_bare(to_number)] = Failure(status, code, message)

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` requests for ``seconds`` before handling them normally.

        A client whose timeout is shorter gives up, while the fake goes on to accept the
        request, as Twilio would: the case where a timed-out message was sent anyway.

        Args:
            n: How many requests.
            seconds: The delay; cut short when the server stops.
        """
        with self._lock:
            self._delays.extend([seconds] * n)

    # -- webhooks towards the app under test

    def send_status_callback(
        self,
        message_sid: str,
        status: str,
        url: str,
        error_code: int | None = None,
        *,
        to: str | None = None,
        from_: str | None = None,
        http: httpx.Client | None = None,
        auth_token: str | None = None,
    ) -> WebhookReply:
        """POST a message status callback to ``url``, signed like Twilio signs it.

        Args:
            message_sid: The SID of a message this fake accepted (or pass ``to``/``from_``).
            status: ``sending``, ``sent``, ``delivered``, ``undelivered``, ``failed``...
            url: The app's status-callback URL, exactly as the app will see it.
            error_code: Twilio's ``ErrorCode`` (for ``undelivered`` / ``failed``).
            to: Overrides the recipient (default: the recorded message's).
            from_: Overrides the sender (default: the recorded message's).
            http: The client to post with (e.g. one whose transport leads into the app);
                a fresh ``httpx.Client`` otherwise.
            auth_token: Signs with this token instead of the account's (forged requests).

        Returns:
            The app's answer and what was sent.

        Raises:
            ValueError: The SID is unknown and ``to``/``from_`` were not given.
        """
        recorded = next((r for r in self.requests if r.sid == message_sid), None)
        to = to if to is not None else (recorded.to if recorded else None)
        from_ = from_ if from_ is not None else (recorded.from_ if recorded else None)
        if to is None or from_ is None:
            raise ValueError(f"unknown message {message_sid}: pass to= and from_=")
        params = {
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return self._post_signed(url, params, http, auth_token)

    def send_inbound_sms(
        self,
        url: str,
        from_: str,
        to: str,
        body: str,
        *,
        extra: Mapping[str, str] | None = None,
        http: httpx.Client | None = None,
        auth_token: str | None = None,
    ) -> WebhookReply:
        """POST an incoming-SMS webhook (someone replied ``OK 4821``), signed.

        Args:
            url: The app's inbound-SMS URL, exactly as the app will see it.
            from_: The sender (the person replying), E.164.
            to: Our number.
            body: What they wrote.
            extra: More fields (``FromCountry``...); Twilio adds fields without notice, so
                the app must accept unknown ones.
            http: The client to post with; a fresh ``httpx.Client`` otherwise.
            auth_token: Signs with this token instead of the account's.

        Returns:
            The app's answer (TwiML) and what was sent.
        """
        sid = _new_sid("SM")
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(segments(body)),
            "SmsStatus": "received",
            "ApiVersion": API_VERSION,
        }
        params.update(extra or {})
        return self._post_signed(url, params, http, auth_token)

    def send_gather(
        self,
        url: str,
        call_sid: str,
        digits: str,
        *,
        http: httpx.Client | None = None,
        auth_token: str | None = None,
    ) -> WebhookReply:
        """POST the keypad digits of a call's ``<Gather>`` to its ``action`` URL, signed.

        Args:
            url: The Gather's action URL.
            call_sid: The SID of a call this fake accepted.
            digits: What the callee typed (the ack code).
            http: The client to post with; a fresh ``httpx.Client`` otherwise.
            auth_token: Signs with this token instead of the account's.

        Returns:
            The app's answer (TwiML) and what was sent.

        Raises:
            ValueError: The call SID is unknown.
        """
        call = next((r for r in self.calls if r.sid == call_sid), None)
        if call is None or call.to is None or call.from_ is None:
            raise ValueError(f"unknown call {call_sid}")
        params = {
            "CallSid": call_sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "CallStatus": "in-progress",
            "Digits": digits,
            "FinishedOnKey": "",
            "ApiVersion": API_VERSION,
        }
        return self._post_signed(url, params, http, auth_token)

    def _post_signed(
        self,
        url: str,
        params: dict[str, str],
        http: httpx.Client | None,
        auth_token: str | None,
    ) -> WebhookReply:
        validator = RequestValidator(auth_token if auth_token is not None else self.auth_token)
        signature: str = validator.compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        if http is not None:
            response = http.post(url, data=params, headers=headers)
        else:
            with httpx.Client(timeout=WEBHOOK_TIMEOUT_S) as client:
                response = client.post(url, data=params, headers=headers)
        return WebhookReply(
            status=response.status_code,
            body=response.text,
            headers=dict(response.headers),
            params=params,
            signature=signature,
        )

    # -- the API side (handler threads)

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        match = _PATH.match(handler.path.split("?")[0])
        resource: Resource | None = None
        path_sid: str | None = None
        if match is not None and handler.command == "POST":
            resource = "Messages" if match["resource"] == "Messages" else "Calls"
            path_sid = match["sid"]
        with self._lock:
            delay = self._delays.popleft() if self._delays else 0.0
        if delay:
            self._stopping.wait(delay)
        answer = self._answer(handler, resource, path_sid, form)
        validity = form.get("ValidityPeriod")
        record = TwilioRequest(
            method=handler.command,
            path=handler.path,
            resource=resource,
            account_sid=path_sid,
            params=form,
            to=form.get("To"),
            from_=form.get("From"),
            body=form.get("Body"),
            status_callback=form.get("StatusCallback"),
            validity_period=int(validity) if validity and validity.isdigit() else None,
            twiml=form.get("Twiml"),
            url=form.get("Url"),
            received_at=self._clock(),
            response_status=answer.status,
            error_code=answer.code,
            sid=answer.sid,
        )
        with self._lock:
            self._requests.append(record)
        data = json.dumps(answer.payload).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(
        self,
        handler: _Handler,
        resource: Resource | None,
        path_sid: str | None,
        form: dict[str, str],
    ) -> _Answer:
        if resource is None:
            return _error(Failure(404, 20404))
        if not self._authorised(handler.headers.get("Authorization")):
            return _error(Failure(401, 20003))
        if path_sid != self.account_sid:
            return _error(Failure(404, 20404))
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                failure = self._fail_for.get(_bare(form.get("To", "")))
        if failure is not None:
            return _error(failure)
        if not form.get("To"):
            return _error(Failure(400, 21604))
        if not form.get("From"):
            return _error(Failure(400, 21603))
        if resource == "Messages":
            if not form.get("Body"):
                return _error(Failure(400, 21602))
            return self._message_created(form)
        if not (form.get("Twiml") or form.get("Url")):
            # [K] Twilio's code for a call without instructions is not re-checked; 21205.
            return _error(Failure(400, 21205, "Url or Twiml is required"))
        return self._call_created(form)

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(
            password.encode(), self.auth_token.encode()
        )

    def _message_created(self, form: dict[str, str]) -> _Answer:
        sid = _new_sid("SM")
        now = format_datetime(self._clock(), usegmt=True)
        body = form["Body"]
        whatsapp = form["To"].startswith("whatsapp:")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        payload: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"],
            "messaging_service_sid": None,
            "num_media": "0",
            # Twilio's count, as a string; a WhatsApp message is one "segment".
            "num_segments": "1" if whatsapp else str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"],
            "uri": f"{uri}.json",
        }
        return _Answer(201, payload, sid=sid)

    def _call_created(self, form: dict[str, str]) -> _Answer:
        sid = _new_sid("CA")
        now = format_datetime(self._clock(), usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        payload: dict[str, Any] = {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": form["From"],
            "from_formatted": form["From"],
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {},
            "to": form["To"],
            "to_formatted": form["To"],
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }
        return _Answer(201, payload, sid=sid)


class ReverseProxy(httpx.BaseTransport):
    """Sends requests for the public URL to the app's local address, as a proxy would."""

    def __init__(self, local_url: str) -> None:
        self.local = httpx.URL(local_url)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self.local.scheme, host=self.local.host, port=self.local.port
        )
        request.headers["Host"] = f"{self.local.host}:{self.local.port}"
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _error(failure: Failure) -> _Answer:
    message = failure.message or _MESSAGES.get(failure.code or 0, f"HTTP {failure.status}")
    payload: dict[str, Any] = {"message": message, "status": failure.status}
    if failure.rfc9457 and failure.code is not None:
        payload = {
            "type": f"https://www.twilio.com/docs/errors/{failure.code}",
            "title": message,
            "status": failure.status,
            "code": failure.code,
            "detail": message,
        }
    elif failure.code is not None:
        payload["code"] = failure.code
        payload["more_info"] = f"https://www.twilio.com/docs/errors/{failure.code}"
    headers = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = f"{failure.retry_after:g}"
    return _Answer(failure.status, payload, headers, code=failure.code)


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _bare(number: str) -> str:
    return number.removeprefix("whatsapp:")
