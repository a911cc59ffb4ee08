"""Twilio: SMS, WhatsApp and voice calls through the official client.

The one module that imports ``twilio`` (STYLE.md §6); everything else sees
:class:`~alerting.notifiers.base.Notifier` and the failure taxonomy. What the client raises
becomes one of three exceptions (research/domain.md §D.3):

- :class:`NotifyRejected`: Twilio will not take this message for this recipient (invalid or
  landline number, STOP): the escalation moves on to the next contact or channel;
- :class:`NotifyTemporary`: throttled, Twilio's 5xx, network errors, timeouts: retry with
  backoff (``retry_after`` carries Twilio's ``Retry-After`` when it sent one);
- :class:`NotifyConfigError`: our side is wrong (credentials, sender, geo-permissions):
  operators must act; retrying cannot help.

:data:`ERROR_CODES` is the table, shared with the status-callback handler
(:func:`classify` works on a callback's ``ErrorCode`` too).

Secrets: the auth token never appears in an exception text or a log line. Exceptions are
built from the error code, a fixed reason and Twilio's message with the token redacted.
The client's exception is not chained: a ``requests`` exception carries the prepared
request, whose ``Authorization`` header is the token in base64, and error reporters that
walk exception chains would otherwise serialise it.

The API's webhooks (inbound SMS, status callbacks, keypad digits) use
:func:`validate_signature` and :func:`gather_response` from here, so they need no import of
their own.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, assert_never

# requests is the transport of twilio's TwilioHttpClient; its exceptions reach us unwrapped.
import requests
from twilio.base.exceptions import (  # noqa: TID251
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient  # noqa: TID251
from twilio.request_validator import RequestValidator  # noqa: TID251
from twilio.rest import Client  # noqa: TID251
from twilio.twiml.voice_response import VoiceResponse  # noqa: TID251

from alerting.notifiers.base import (
    Delivery,
    NotifyConfigError,
    NotifyError,
    NotifyRejected,
    NotifyTemporary,
    Outbound,
)

log = logging.getLogger(__name__)

# Connect and read timeout of one API call. Too low: a slow but successful answer counts as
# a failure and the retry can send the SMS twice. Too high: an escalation step waits that
# long on an unreachable API before it can fall back to another contact or channel.
DEFAULT_TIMEOUT_S: Final = 10.0

# ValidityPeriod bounds accepted by the Messages API (research/domain.md §D.1). The alert's
# own value comes from Outbound.validity_s and is clamped into this range. Below ~5 s a
# message can expire while it merely waits its turn behind other segments of a 1 MPS long
# code; the API caps it at 36000 s (10 h), already far too stale for a temperature alarm.
MIN_VALIDITY_S: Final = 5
MAX_VALIDITY_S: Final = 36000

# The ack code typed on the keypad has this many digits (DESIGN.md: "Responda OK 4821").
GATHER_DIGITS: Final = 4
# Seconds <Gather> waits for the first digit after the message is read. Too low: the callee
# is still taking the phone from their ear when the prompt repeats or the call ends. Too high:
# a long silence, and people hang up thinking the call is over.
GATHER_TIMEOUT_S: Final = 6
# How many times the call reads the message. Once is too few: the callee often picks up
# mid-sentence and misses the code. Three or more makes voicemail recordings long and costs
# call minutes for nothing.
VOICE_REPEATS: Final = 2

# Keeps TWILIO_EDGE / TWILIO_REGION out: ClientBase reads them from ``environment or
# os.environ``, and an *empty* mapping is falsy, so ``environment={}`` still reads
# os.environ. Those settings rewrite the API host (api.<edge>.<region>.twilio.com), which
# also mangles a local base_url such as http://127.0.0.1:8099. Explicit arguments here
# (SID, token) are the only configuration the client should see.
_NO_ENVIRONMENT: Final[dict[str, str]] = {"COLDCHAIN_TWILIO": "configured explicitly"}


@dataclass(frozen=True, slots=True)
class Voice:
    """A text-to-speech voice: the TwiML ``voice`` and ``language`` attributes."""

    voice: str
    language: str


# One Amazon Polly voice per alert language (Twilio's "alice" is retired; Polly voices speak
# the regional variants our stores use).
VOICES: Final[Mapping[str, Voice]] = {
    "es": Voice("Polly.Mia", "es-MX"),
    "pt": Voice("Polly.Camila", "pt-BR"),
    "en": Voice("Polly.Joanna", "en-US"),
}
# Spanish: the chain's default language (Outbound.language), so an unknown tag gets it too.
DEFAULT_LANGUAGE: Final = "es"


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How one Twilio error code is handled."""

    kind: type[NotifyError]
    reason: str


# Twilio error code -> taxonomy (research/domain.md §D.3; [K] = known practice, not re-checked
# against Twilio's pages). Codes not listed fall back on the HTTP status (see classify).
ERROR_CODES: Final[Mapping[int, ErrorRule]] = {
    # -- NotifyRejected: this recipient cannot get this message; the next contact can.
    21211: ErrorRule(NotifyRejected, "invalid 'To' number"),  # fix the contact's number
    21217: ErrorRule(NotifyRejected, "invalid 'To' number (call)"),  # [K] Calls' 21211
    21610: ErrorRule(NotifyRejected, "recipient replied STOP"),  # needs START from them
    # Not reachable from this sender. A sender problem, but per recipient: others still get
    # our messages, so the escalation goes on (and the audit shows the code).
    21612: ErrorRule(NotifyRejected, "'To' not reachable from this 'From'"),
    21614: ErrorRule(NotifyRejected, "'To' cannot receive SMS (landline?)"),  # use voice
    21635: ErrorRule(NotifyRejected, "'To' is a landline"),  # use voice
    30005: ErrorRule(NotifyRejected, "unknown or inactive number"),  # fix the contact
    30006: ErrorRule(NotifyRejected, "landline or unreachable carrier"),  # use voice
    # -- NotifyTemporary: the same message to the same person may work later.
    20429: ErrorRule(NotifyTemporary, "API rate limit"),  # back off
    20500: ErrorRule(NotifyTemporary, "Twilio internal error"),  # [K]
    20503: ErrorRule(NotifyTemporary, "Twilio unavailable"),  # [K]
    30001: ErrorRule(NotifyTemporary, "sender queue overflow"),  # throttle
    30003: ErrorRule(NotifyTemporary, "handset unreachable"),  # off or no signal: retry
    30008: ErrorRule(NotifyTemporary, "unknown delivery error"),  # retry once, escalate
    # More than 10 h of messages already queued on this sender. Temporary rather than a
    # config error: the queue drains by itself, and during a chain-wide outage it is the
    # expected overload; operators see it in the audit and add senders.
    21611: ErrorRule(NotifyTemporary, "sender queue full"),
    # -- NotifyConfigError: our side is wrong; fall back to another channel and alert us.
    20003: ErrorRule(NotifyConfigError, "authentication failed (account SID or token)"),
    20404: ErrorRule(NotifyConfigError, "account or API endpoint not found"),
    21212: ErrorRule(NotifyConfigError, "invalid 'From' number"),
    21210: ErrorRule(NotifyConfigError, "'From' not verified for calls"),  # [K]
    21606: ErrorRule(NotifyConfigError, "'From' not owned by this account"),
    21608: ErrorRule(NotifyConfigError, "trial account: 'To' not verified"),  # [K]
    # Geo-permissions (SMS, calls): not enabled for this country. Every recipient there fails
    # the same way, so it is ours to fix (LatAm countries are off by default).
    21408: ErrorRule(NotifyConfigError, "geo-permission not enabled for this region"),
    21215: ErrorRule(NotifyConfigError, "geo-permission not enabled for calls"),  # [K]
    21617: ErrorRule(NotifyConfigError, "body longer than 1600 characters"),  # [K] our text
    30002: ErrorRule(NotifyConfigError, "account suspended"),  # [K]
    # Carrier filtering: the content or the sender registration (10DLC, templates) is at
    # fault; the next contact would be filtered too.
    30007: ErrorRule(NotifyConfigError, "filtered by the carrier"),
}

# Reasons for answers whose code is not in the table.
_THROTTLED = ErrorRule(NotifyTemporary, "throttled")
_SERVER_ERROR = ErrorRule(NotifyTemporary, "Twilio server error")
_AUTH = ErrorRule(NotifyConfigError, "not authorised")
_NOT_FOUND = ErrorRule(NotifyConfigError, "account or API endpoint not found")
_REJECTED = ErrorRule(NotifyRejected, "rejected by Twilio")

# requests errors that mean the base URL is malformed: no retry fixes a typo.
_BAD_URL: Final = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)

# Twilio error messages are short; longer ones are cut so exception texts stay one line.
_MAX_DETAIL = 200


def classify(code: int | None, http_status: int | None = None) -> ErrorRule:
    """How to handle a Twilio error code, from the API or a status callback's ``ErrorCode``.

    Args:
        code: Twilio's error code, if any.
        http_status: The HTTP status of the API answer; None for a status callback.

    Returns:
        The table's rule for ``code``; else 429 and 5xx are temporary, 401 and 403 are a
        configuration error, 404 means a wrong account or endpoint, and anything else is a
        rejection of this message (not retried: a retry would fail the same way).
    """
    if code is not None and code in ERROR_CODES:
        return ERROR_CODES[code]
    if http_status == 429:
        return _THROTTLED
    if http_status is not None and http_status >= 500:
        return _SERVER_ERROR
    if http_status in (401, 403):
        return _AUTH
    if http_status == 404:
        return _NOT_FOUND
    return _REJECTED


def voice_for(language: str) -> Voice:
    """The voice for a language tag (``es``, ``pt-BR``, ``en_US``); Spanish when unknown."""
    base = language.replace("_", "-").split("-")[0].lower()
    return VOICES.get(base, VOICES[DEFAULT_LANGUAGE])


def call_twiml(text: str, language: str, gather_url: str | None) -> str:
    """The TwiML of an alert call: read ``text``, collect the ack code if there is a URL.

    Args:
        text: What to say.
        language: The alert's language tag.
        gather_url: Where Twilio posts the digits typed on the keypad; without it the call
            only reads the message.

    Returns:
        A ``<Response>`` document; ``text`` is XML-escaped by the TwiML builder.
    """
    voice = voice_for(language)
    response = VoiceResponse()
    for _ in range(VOICE_REPEATS):
        if gather_url:
            gather = response.gather(
                num_digits=GATHER_DIGITS,
                action=gather_url,
                method="POST",
                timeout=GATHER_TIMEOUT_S,
            )
            gather.say(text, voice=voice.voice, language=voice.language)
        else:
            response.say(text, voice=voice.voice, language=voice.language)
    return str(response)


def gather_response(text: str, language: str) -> str:
    """The TwiML reply to a keypad webhook: say ``text`` and hang up.

    Args:
        text: What to say (``Alerta 4821 reconocida``).
        language: The alert's language tag.

    Returns:
        ``<Response><Say ...>text</Say></Response>`` with an XML declaration.
    """
    voice = voice_for(language)
    response = VoiceResponse()
    response.say(text, voice=voice.voice, language=voice.language)
    return str(response)


def validate_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """Whether a webhook's ``X-Twilio-Signature`` is Twilio's, for the API's webhooks.

    Args:
        auth_token: The account's auth token.
        url: The exact public URL Twilio called (scheme, host, port, path, query).
        params: The POST form fields, all of them (Twilio adds fields without notice).
        signature: The ``X-Twilio-Signature`` header.

    Returns:
        True when the signature matches.
    """
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def _whatsapp(number: str) -> str:
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


class TwilioNotifier:
    """Sends SMS, WhatsApp messages and voice calls through Twilio's REST API.

    Thread-safe: one instance may serve several escalation threads (the HTTP session pools
    connections; Retry-After is kept per thread).

    Attributes:
        name: ``"twilio"``.
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Build the client; no network I/O.

        Args:
            account_sid: ``AC`` followed by 32 hex digits.
            auth_token: The account's auth token (or a test credential's).
            from_number: The sender, E.164 (``+15005550006``); WhatsApp messages use it
                with the ``whatsapp:`` prefix.
            base_url: A Twilio-compatible endpoint instead of ``https://api.twilio.com``
                (``COLDCHAIN_TWILIO_BASE_URL``; the tests' fake server).
            timeout_s: Connect and read timeout of each API call (see DEFAULT_TIMEOUT_S).

        Raises:
            NotifyConfigError: A malformed setting. The text names the setting, never its
                value: a token pasted into the SID field must not end up in a log.
        """
        sid = account_sid.strip()
        if not (len(sid) == 34 and sid.startswith("AC") and _is_hex(sid[2:])):
            raise NotifyConfigError("TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex digits")
        if not auth_token.strip():
            raise NotifyConfigError("TWILIO_AUTH_TOKEN is empty")
        if not from_number.strip():
            raise NotifyConfigError("TWILIO_FROM is empty")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise NotifyConfigError("COLDCHAIN_TWILIO_BASE_URL must start with http:// or https://")
        if timeout_s <= 0:
            raise NotifyConfigError("the Twilio timeout must be positive")
        self._token = auth_token
        self._from = from_number.strip()
        self._timeout_s = timeout_s
        self._local = threading.local()  # Retry-After of the calling thread's last answer
        self._http = TwilioHttpClient(
            timeout=timeout_s,
            request_hooks={"response": [self._remember_retry_after]},
        )
        self._client = Client(sid, auth_token, http_client=self._http, environment=_NO_ENVIRONMENT)
        if base_url is not None:
            # Domains are created lazily and cached, so the override sticks (§D.6).
            self._client.api.base_url = base_url.rstrip("/")

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        if self._http.session is not None:
            self._http.session.close()

    def send(self, message: Outbound) -> Delivery:
        """Hand ``message`` to Twilio.

        Args:
            message: What to send; ``status_callback`` and ``validity_s`` are passed on,
                ``gather_url`` makes a call collect the ack code.

        Returns:
            The Message or Call SID, Twilio's status (``queued``) and the segments billed.

        Raises:
            NotifyRejected: Not for this recipient (see ERROR_CODES).
            NotifyTemporary: Throttled, Twilio or network trouble, timeout.
            NotifyConfigError: Credentials, sender, geo-permissions, base URL.
        """
        self._local.retry_after = None
        try:
            delivery = self._send(message)
        except (TwilioException, requests.exceptions.RequestException, ValueError) as exc:
            error = self._translate(exc)
        else:
            log.debug(
                "twilio accepted %s to %s: %s (%s)",
                message.channel,
                message.to,
                delivery.provider_id,
                delivery.status,
            )
            return delivery
        # Raised outside the except block, so the client's exception is neither __cause__
        # nor __context__ (see the module docstring: it may carry the credentials).
        raise error

    def _translate(self, exc: Exception) -> NotifyError:
        if isinstance(exc, (TwilioRestException, TwilioServiceException)):
            return self._api_error(exc)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return NotifyTemporary(
                f"twilio: could not connect within {self._timeout_s:g} s; not sent"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            # The request went out: Twilio may have queued it, and a retry may duplicate the
            # message. For an alarm a duplicate is better than silence.
            return NotifyTemporary(
                f"twilio: no answer within {self._timeout_s:g} s; may have been sent"
            )
        if isinstance(exc, _BAD_URL):
            return NotifyConfigError(f"twilio: invalid API base URL ({type(exc).__name__})")
        if isinstance(exc, requests.exceptions.RequestException):
            return NotifyTemporary(f"twilio: network error ({type(exc).__name__})")
        if isinstance(exc, TwilioException):
            return NotifyTemporary(f"twilio: client error: {self._redact(str(exc))}")
        # ValueError: a 2xx answer that is not JSON (a proxy, a captive portal).
        return NotifyTemporary(f"twilio: unreadable answer ({type(exc).__name__})")

    def _send(self, message: Outbound) -> Delivery:
        match message.channel:
            case "sms":
                return self._message(message, message.to, self._from)
            case "whatsapp":
                return self._message(message, _whatsapp(message.to), _whatsapp(self._from))
            case "voice":
                return self._call(message)
            case _:
                assert_never(message.channel)

    def _message(self, message: Outbound, to: str, from_: str) -> Delivery:
        validity = min(max(message.validity_s, MIN_VALIDITY_S), MAX_VALIDITY_S)
        instance: Any = self._client.messages.create(
            to=to,
            from_=from_,
            body=message.body,
            status_callback=message.status_callback,  # None is dropped by the client
            validity_period=validity,
        )
        return Delivery(
            provider_id=_sid(instance.sid),
            status=str(instance.status or "queued"),
            segments=_segments(instance.num_segments),
        )

    def _call(self, message: Outbound) -> Delivery:
        instance: Any = self._client.calls.create(
            to=message.to,
            from_=self._from,
            twiml=call_twiml(message.body, message.language, message.gather_url),
            # Call progress (completed, busy, no-answer, failed) for the escalation;
            # the webhook tells it from a message callback by CallSid.
            status_callback=message.status_callback,
        )
        return Delivery(provider_id=_sid(instance.sid), status=str(instance.status or "queued"))

    def _api_error(self, exc: TwilioRestException | TwilioServiceException) -> NotifyError:
        status = int(exc.status) if exc.status is not None else None
        raw_code = exc.code
        # Without a JSON error body the client sets code = HTTP status; only Twilio's own
        # (five-digit) codes are codes.
        code = int(raw_code) if isinstance(raw_code, int) and raw_code >= 10000 else None
        rule = classify(code, status)
        if isinstance(exc, TwilioServiceException):
            detail = " - ".join(str(p) for p in (exc.title, exc.detail) if p)
        else:
            detail = str(exc.msg or "")
        detail = self._redact(detail).replace("\n", " ")[:_MAX_DETAIL]
        text = f"twilio {code if code is not None else '-'} (HTTP {status}): {rule.reason}"
        if detail:
            text += f": {detail}"
        if rule.kind is NotifyTemporary:
            return NotifyTemporary(text, code, retry_after=self._local.retry_after)
        return rule.kind(text, code)

    def _redact(self, text: str) -> str:
        # Twilio does not echo the token, but a proxy or a future API might: cheap insurance.
        return text.replace(self._token, "***")

    def _remember_retry_after(self, response: Any, *_args: object, **_kwargs: object) -> None:
        # A requests response hook: the TwilioRestException does not keep the headers.
        self._local.retry_after = _retry_after(response.headers.get("Retry-After"))


def _sid(value: object) -> str:
    if not isinstance(value, str) or not value:
        # A 2xx without a SID is not an acceptance we can track.
        raise NotifyTemporary("twilio: answer without a SID")
    return value


def _segments(value: object) -> int:
    # Informational only: the message is accepted by now, so an odd value must not turn the
    # acceptance into a failure (and a retry into a duplicate SMS).
    try:
        return max(1, int(str(value)))
    except ValueError:
        return 1


def _retry_after(value: str | None) -> float | None:
    # Twilio sends delay-seconds; the HTTP-date form would need a clock and is ignored.
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
