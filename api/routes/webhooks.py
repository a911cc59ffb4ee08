"""Twilio webhooks: inbound SMS (``OK 4821``), delivery status callbacks, keypad digits.

No bearer key: Twilio cannot send one. Each request is authenticated by its
``X-Twilio-Signature``, an HMAC-SHA1 with the account's auth token over the *exact URL
Twilio called* and the POSTed form fields. Behind a proxy or a tunnel the URL this process
sees (``http://127.0.0.1:8000/...``) is not that URL, so it is rebuilt as
``COLDCHAIN_PUBLIC_URL`` + the request path (+ ``?`` + the raw query string when there is
one): the same base the engine puts in ``StatusCallback`` and the ``<Gather>`` action, and
the base an operator configures as the number's SMS webhook
(``$COLDCHAIN_PUBLIC_URL/api/v1/webhooks/twilio/sms``). The Host header is never trusted.

Without ``TWILIO_AUTH_TOKEN`` or ``COLDCHAIN_PUBLIC_URL`` nothing can be validated, and the
webhooks answer 503 naming the missing setting rather than accept unsigned requests.

Everything goes through the app's :class:`alerting.commands.AlertCommands`: the engine
when it runs in this process; in split mode (``coldchain api`` without it) the alert book
decides acknowledgements at once with the same rule (:mod:`alerting.acks`) and a status
callback is queued for the alerting process, which falls back from a failed delivery on
its next tick. A bad or missing signature is a 403. Form bodies are parsed here (no
python-multipart needed) and capped at :data:`MAX_FORM_BYTES`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from alerting.acks import AckReply
from alerting.notifiers.twilio import gather_response, validate_signature
from api.context import Context
from api.errors import problem, responses

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks/twilio", tags=["webhooks"])

# Twilio's webhook forms are a few hundred bytes (an SMS body is at most 1,600 chars); a
# larger body is not Twilio. Too low would refuse a long multi-segment reply.
MAX_FORM_BYTES = 64 * 1024
# Twilio adds fields without notice, but never hundreds.
MAX_FORM_FIELDS = 200

# Call statuses -> the delivery states the alert book knows. A call that rang out, was
# busy or failed did not reach anyone: it is a failed delivery, which falls back to the
# next contact exactly like a failed SMS. "completed" means someone (or a voicemail)
# answered; the acknowledgement, not the call, proves a person heard it.
CALL_STATUS = {
    "ringing": "sent",
    "in-progress": "sent",
    "completed": "delivered",
    "busy": "failed",
    "no-answer": "failed",
    "failed": "failed",
    "canceled": "failed",
}
_CODE = re.compile(r"^\s*(\d{4})\s*#?\s*$")

_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
    }
}
_TWIML = {
    200: {"description": "TwiML", "content": {"text/xml": {"schema": {"type": "string"}}}},
    **responses(403, 413, 503),
}


def twiml_message(text: str | None) -> str:
    """``<Response><Message>text</Message></Response>``, text XML-escaped; an empty
    ``<Response/>`` (Twilio sends nothing) for None."""
    if text is None:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Message>{escape(text)}</Message></Response>"
    )


def _guarded(ctx: Context, sender: str, message_id: str, answer: Callable[[], AckReply]) -> (
    AckReply | None
):  # fmt: skip
    """Run ``answer`` unless the message is a replay or the sender is locked out; None
    when nothing is to be said back (api/throttle.py)."""
    now = ctx.deps.clock.time()
    if message_id and not ctx.book.claim_inbound(message_id, sender, now):
        ctx.stats.inbound_refused.inc("replay")
        log.warning("a replayed inbound message %s was ignored", message_id[:40])
        return None
    if ctx.throttle.blocked(sender, now):
        ctx.stats.inbound_refused.inc("throttled")
        return None
    reply = answer()
    if reply.acknowledged is None:
        ctx.throttle.failed(sender, now)
    if not ctx.throttle.may_reply(now):
        ctx.stats.inbound_refused.inc("reply_budget")
        return None
    return reply


async def _verified_form(request: Request) -> dict[str, str]:
    """The POSTed form, once its signature checks out (403/413/503 otherwise)."""
    ctx: Context = request.app.state.context
    settings = ctx.deps.settings
    if settings.twilio_auth_token is None:
        raise problem(503, "TWILIO_AUTH_TOKEN is not set: webhook signatures cannot be checked")
    if settings.public_url is None:
        raise problem(
            503, "COLDCHAIN_PUBLIC_URL is not set: the signed URL cannot be reconstructed"
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise problem(413, f"a Twilio webhook body is at most {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qsl(
            body.decode("utf-8", errors="replace"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:
        raise problem(403, "invalid Twilio signature") from None
    form = dict(fields)
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = settings.public_url + request.url.path + (f"?{query}" if query else "")
    signature = request.headers.get("x-twilio-signature", "")
    token = settings.twilio_auth_token.get_secret_value()
    if not signature or not validate_signature(token, url, form, signature):
        ctx.stats.auth_failures.inc("twilio_signature")
        log.warning("refused a webhook to %s: bad or missing X-Twilio-Signature", request.url.path)
        raise problem(403, "invalid Twilio signature")
    return form


@router.post("/sms", response_class=Response, responses=_TWIML, openapi_extra=_FORM)
async def inbound_sms(request: Request) -> Response:
    """An SMS to our number: ``OK 4821 [note]`` from a paged number acknowledges."""
    form = await _verified_form(request)
    ctx: Context = request.app.state.context
    sender = form.get("From", "")
    reply = await run_in_threadpool(
        _guarded, ctx, sender, form.get("MessageSid", ""),
        lambda: ctx.commands.handle_sms(sender, form.get("Body", "")),
    )  # fmt: skip
    if reply is not None and reply.acknowledged:
        log.info("alert %s acknowledged by SMS", reply.acknowledged)
    return Response(twiml_message(reply.text if reply else None), media_type="text/xml")


@router.post(
    "/status", status_code=204, response_class=Response, responses=responses(403, 413, 503),
    openapi_extra=_FORM,
)  # fmt: skip
async def status_callback(request: Request) -> Response:
    """A message or call status callback: delivery state, failures fall back."""
    form = await _verified_form(request)
    ctx: Context = request.app.state.context
    provider_id, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    error: str | None = form.get("ErrorCode") or None
    if not status and form.get("SmsStatus"):
        status = form["SmsStatus"]
    if form.get("CallSid") and form.get("CallStatus"):
        provider_id = form["CallSid"]
        raw = form["CallStatus"]
        status = CALL_STATUS.get(raw, "")
        if status == "failed":
            error = error or raw
    if provider_id and status:
        await run_in_threadpool(ctx.commands.handle_status, provider_id, status, error)
    return Response(status_code=204)


def _voice_ack(ctx: Context, callee: str, call_id: str, digits: str) -> AckReply | None:
    """Acknowledge by keypad (guarded like an SMS reply; one answer per call and digits)."""
    match = _CODE.match(digits)

    def answer() -> AckReply:
        if match is None:
            return ctx.commands.help_reply(callee)
        return ctx.commands.acknowledge_by_code(callee, match.group(1), via="voice")

    return _guarded(ctx, callee, f"{call_id}:{digits}" if call_id else "", answer)


@router.post("/voice", response_class=Response, responses=_TWIML, openapi_extra=_FORM)
async def voice_gather(request: Request) -> Response:
    """The ``<Gather>`` action of an alert call: the callee typed the ack code.

    The callee is ``To`` (we placed the call); the same rule as an SMS reply applies: the
    number must have been paged for that alert, or be a contact responsible for its store.
    """
    form = await _verified_form(request)
    ctx: Context = request.app.state.context
    callee = form.get("To") or form.get("Called") or ""
    reply = await run_in_threadpool(
        _voice_ack, ctx, callee, form.get("CallSid", ""), form.get("Digits", "")
    )
    if reply is None:
        return Response(twiml_message(None), media_type="text/xml")  # hang up, say nothing
    return Response(gather_response(reply.text, reply.language), media_type="text/xml")
