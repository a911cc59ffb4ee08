"""Alert texts: short, GSM-7, in the store's language (es, pt, en) and timezone.

A store manager reads these on a basic phone at 3 a.m.: the store, the unit, the
temperature against its limit, since when, and how to acknowledge. Chain-wide alerts (a
pipeline stall) are headed "central" instead of a store name and go to on-call. Every text passes
through :func:`alerting.notifiers.gsm.to_gsm7`, so one accent never turns a 160-character
SMS into three UCS-2 segments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from alerting.notifiers.gsm import to_gsm7

# A calibration reminder names at most this many sensors (then "+N"): an SMS is read on
# a small screen, and the technician looks the rest up in the API.
CALIBRATION_LISTED = 4

_T: dict[str, dict[str, str]] = {
    "es": {
        "reply": "Responda OK {code}",
        "escalated": "Sin respuesta (nivel {level})",
        "unresolved": "Reconocida y sin resolver (nivel {level})",
        "alerts": "{n} alertas",
        "temp_high": "{asset} {value}C (limite {limit}C) desde {since}",
        "temp_low": "{asset} {value}C (minimo {limit}C) desde {since}",
        "rising": "{asset} subiendo: {value}C, {rate} C/h",
        "critical": "CRITICO",
        "defrost_overrun": "{asset}: el deshielo no termino ({value}C)",
        "door_open": "{asset}: puerta abierta hace {minutes} min",
        "sensor_silent": "{asset}: sensor {sensor} sin datos desde {since}",
        "device_offline": "equipo {device} desconectado desde {since}",
        "store_outage": (
            "{down} de {total} equipos sin conexion desde {since} (corte de luz o red?)"
        ),
        "low_battery": "{asset}: bateria baja {value}% en {sensor}",
        "sensor_fault": "{asset}: falla del sensor {sensor} ({code_name})",
        "calibration_due": "calibracion vencida de {n} sensor(es): {sensors}",
        "ok_calibration_due": "sensores calibrados",
        "chain": "central",
        "pipeline_stalled": (
            "ingesta detenida: {down} de {total} tiendas sin datos desde {since}, ultima "
            "lectura {last} (broker, ingestor o red?)"
        ),
        "pipeline_mqtt": "ingestor sin conexion al broker MQTT desde {since}",
        "ok_pipeline_stalled": "datos de las tiendas llegan de nuevo",
        "resolved": "RESUELTO {what} a las {at}",
        "ack_ok": "Alerta {code} reconocida por {name}. Gracias.",
        "ack_refused": "Codigo {code} no valido para este numero.",
        "ok_door_open": "{asset}: puerta cerrada",
        "ok_store_outage": "equipos conectados de nuevo",
        "ok_sensor_silent": "{asset}: sensor {sensor} reporta de nuevo",
        "ok_device_offline": "equipo {device} conectado de nuevo",
        "ok_low_battery": "{asset}: bateria de {sensor} cambiada",
        "ok_sensor_fault": "{asset}: sensor {sensor} lee bien de nuevo",
        "ack_help": "Para reconocer una alerta responda OK y el codigo, p.ej. OK 4821.",
    },
    "pt": {
        "reply": "Responda OK {code}",
        "escalated": "Sem resposta (nivel {level})",
        "unresolved": "Reconhecido e sem solucao (nivel {level})",
        "alerts": "{n} alertas",
        "temp_high": "{asset} {value}C (limite {limit}C) desde {since}",
        "temp_low": "{asset} {value}C (minimo {limit}C) desde {since}",
        "rising": "{asset} subindo: {value}C, {rate} C/h",
        "critical": "CRITICO",
        "defrost_overrun": "{asset}: o degelo nao terminou ({value}C)",
        "door_open": "{asset}: porta aberta ha {minutes} min",
        "sensor_silent": "{asset}: sensor {sensor} sem dados desde {since}",
        "device_offline": "equipamento {device} desconectado desde {since}",
        "store_outage": (
            "{down} de {total} equipamentos sem conexao desde {since} (falta de energia ou rede?)"
        ),
        "low_battery": "{asset}: bateria fraca {value}% em {sensor}",
        "sensor_fault": "{asset}: falha do sensor {sensor} ({code_name})",
        "calibration_due": "calibracao vencida de {n} sensor(es): {sensors}",
        "ok_calibration_due": "sensores calibrados",
        "chain": "central",
        "pipeline_stalled": (
            "ingestao parada: {down} de {total} lojas sem dados desde {since}, ultima "
            "leitura {last} (broker, ingestor ou rede?)"
        ),
        "pipeline_mqtt": "ingestor sem conexao ao broker MQTT desde {since}",
        "ok_pipeline_stalled": "dados das lojas chegam de novo",
        "resolved": "RESOLVIDO {what} as {at}",
        "ack_ok": "Alerta {code} reconhecido por {name}. Obrigado.",
        "ack_refused": "Codigo {code} invalido para este numero.",
        "ok_door_open": "{asset}: porta fechada",
        "ok_store_outage": "equipamentos conectados de novo",
        "ok_sensor_silent": "{asset}: sensor {sensor} reporta de novo",
        "ok_device_offline": "equipamento {device} conectado de novo",
        "ok_low_battery": "{asset}: bateria de {sensor} trocada",
        "ok_sensor_fault": "{asset}: sensor {sensor} le bem de novo",
        "ack_help": "Para reconhecer um alerta responda OK e o codigo, ex. OK 4821.",
    },
    "en": {
        "reply": "Reply OK {code}",
        "escalated": "No answer (level {level})",
        "unresolved": "Acknowledged, not resolved (level {level})",
        "alerts": "{n} alerts",
        "temp_high": "{asset} {value}C (limit {limit}C) since {since}",
        "temp_low": "{asset} {value}C (minimum {limit}C) since {since}",
        "rising": "{asset} rising: {value}C, {rate} C/h",
        "critical": "CRITICAL",
        "defrost_overrun": "{asset}: defrost did not end ({value}C)",
        "door_open": "{asset}: door open for {minutes} min",
        "sensor_silent": "{asset}: sensor {sensor} silent since {since}",
        "device_offline": "device {device} offline since {since}",
        "store_outage": "{down} of {total} devices offline since {since} (power or network cut?)",
        "low_battery": "{asset}: low battery {value}% on {sensor}",
        "sensor_fault": "{asset}: sensor {sensor} fault ({code_name})",
        "calibration_due": "calibration overdue on {n} sensor(s): {sensors}",
        "ok_calibration_due": "sensors calibrated",
        "chain": "central",
        "pipeline_stalled": (
            "ingestion stalled: {down} of {total} stores silent since {since}, last reading "
            "{last} (broker, ingester or network?)"
        ),
        "pipeline_mqtt": "ingester cut off from the MQTT broker since {since}",
        "ok_pipeline_stalled": "store data arriving again",
        "resolved": "RESOLVED {what} at {at}",
        "ack_ok": "Alert {code} acknowledged by {name}. Thank you.",
        "ack_refused": "Code {code} is not valid for this number.",
        "ok_door_open": "{asset}: door closed",
        "ok_store_outage": "devices back online",
        "ok_sensor_silent": "{asset}: sensor {sensor} reporting again",
        "ok_device_offline": "device {device} back online",
        "ok_low_battery": "{asset}: battery of {sensor} replaced",
        "ok_sensor_fault": "{asset}: sensor {sensor} reading well again",
        "ack_help": "To acknowledge an alert reply OK and the code, e.g. OK 4821.",
    },
}

_FAULT_NAMES = {
    "es": {"power_on_reset": "85C de arranque", "disconnected": "desconectado",
           "nan": "lectura invalida", "null": "sin lectura", "absent_probe": "sonda ausente",
           "stuck": "valor congelado"},
    "pt": {"power_on_reset": "85C de partida", "disconnected": "desconectado",
           "nan": "leitura invalida", "null": "sem leitura", "absent_probe": "sonda ausente",
           "stuck": "valor travado"},
    "en": {"power_on_reset": "85C power-on value", "disconnected": "disconnected",
           "nan": "invalid reading", "null": "no reading", "absent_probe": "probe absent",
           "stuck": "stuck value"},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlertText:
    """What a message needs to say about one alert."""

    code: str
    kind: str
    stage: str
    severity: str
    asset_name: str
    sensor: str | None
    device: str | None
    value: float | None
    limit: float | None
    since: float  # epoch seconds
    explanation: dict[str, object]


def language(lang: str | None) -> str:
    """A supported language, defaulting to Spanish."""
    return lang if lang in _T else "es"


def chain_name(lang: str) -> str:
    """What chain-wide alerts are headed with instead of a store name."""
    return _T[language(lang)]["chain"]


def _num(value: object) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return "?"


def _clock(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%H:%M")


def describe(alert: AlertText, lang: str, zone: str) -> str:
    """One alert in a few words (no store name, no code)."""
    t = _T[language(lang)]
    since = _clock(alert.since, zone)
    fields = {
        "asset": alert.asset_name,
        "value": _num(alert.value),
        "limit": _num(alert.limit),
        "since": since,
        "sensor": alert.sensor or "",
        "device": alert.device or "",
    }
    kind = alert.kind
    if kind == "temperature":
        if alert.stage == "rising":
            rate = str(alert.explanation.get("budget", "")).split(" ")[1:2]
            return t["rising"].format(**fields, rate=rate[0] if rate else "?")
        side = alert.explanation.get("side", "high")
        text = t["temp_low" if side == "low" else "temp_high"].format(**fields)
        return f"{t['critical']} {text}" if alert.severity == "critical" else text
    if kind == "defrost_overrun":
        text = t["defrost_overrun"].format(**fields)
        return f"{t['critical']} {text}" if alert.severity == "critical" else text
    if kind == "door_open":
        minutes = int(float(str(alert.explanation.get("open_s", 0))) // 60)
        return t["door_open"].format(**fields, minutes=minutes)
    if kind == "store_outage":
        return t["store_outage"].format(
            down=_num(alert.value).split(".")[0], total=_num(alert.limit).split(".")[0], since=since
        )
    if kind == "pipeline_stalled":
        if alert.explanation.get("cause") == "mqtt_disconnected":
            return t["pipeline_mqtt"].format(since=since)
        last = alert.explanation.get("last_reading_ms")
        return t["pipeline_stalled"].format(
            down=_num(alert.value).split(".")[0],
            total=_num(alert.limit).split(".")[0],
            since=since,
            last=_clock(last / 1000, zone) if isinstance(last, int | float) else "?",
        )
    if kind == "calibration_due":
        named = alert.explanation.get("sensors")
        sensors = [str(s) for s in named] if isinstance(named, list) else []
        listed = ", ".join(sensors[:CALIBRATION_LISTED])
        more = len(sensors) - CALIBRATION_LISTED
        return t[kind].format(n=len(sensors), sensors=listed + (f" +{more}" if more > 0 else ""))
    if kind == "sensor_fault":
        code = str(alert.explanation.get("code", ""))
        name = _FAULT_NAMES[language(lang)].get(code, code)
        return t["sensor_fault"].format(**fields, code_name=name)
    return t[kind].format(**fields)


def page(
    store_name: str,
    alerts: Sequence[AlertText],
    lang: str,
    zone: str,
    level: int = 0,
    *,
    acked: bool = False,
) -> str:
    """The escalation message for one or more alerts of one store.

    ``acked``: someone acknowledged, but the acknowledgement expired with the problem still
    there (the next level must not read "no answer": somebody did answer).
    """
    t = _T[language(lang)]
    head = f"COLDCHAIN {store_name}"
    if level > 0:
        head += f" - {t['unresolved' if acked else 'escalated'].format(level=level + 1)}"
    if len(alerts) == 1:
        alert = alerts[0]
        body = f"{head}: {describe(alert, lang, zone)}. {t['reply'].format(code=alert.code)}"
    else:
        items = "; ".join(
            f"{describe(a, lang, zone)} ({t['reply'].format(code=a.code)})" for a in alerts
        )
        body = f"{head}: {t['alerts'].format(n=len(alerts))}: {items}"
    return to_gsm7(body)


def resolved(
    store_name: str, alert: AlertText, lang: str, zone: str, at: float, now: float | None = None
) -> str:
    """Tells whoever was paged that the problem is over (with the temperature now)."""
    t = _T[language(lang)]
    if alert.kind in ("temperature", "defrost_overrun") and now is not None:
        what = f"{alert.asset_name} {_num(now)}C"
    elif f"ok_{alert.kind}" in t:
        what = t[f"ok_{alert.kind}"].format(
            asset=alert.asset_name, sensor=alert.sensor or "", device=alert.device or ""
        )
    else:
        what = describe(alert, lang, zone)
    text = t["resolved"].format(what=what, at=_clock(at, zone))
    return to_gsm7(f"COLDCHAIN {store_name}: {text} ({alert.code})")


def reply(key: str, lang: str, **fields: str) -> str:
    """A reply to an inbound SMS (ack_ok, ack_refused, ack_help)."""
    return to_gsm7(_T[language(lang)][key].format(**fields))
