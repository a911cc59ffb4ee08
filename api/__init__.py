"""coldchain api: the REST API (FastAPI), its auth, the Twilio webhooks, and serving it.

Public surface (STYLE.md §10):

- :func:`create_app` and :class:`ApiDeps`: the app factory and what it serves from;
- :class:`ApiServer` and :func:`serve`: uvicorn in a thread (``coldchain run``) or blocking
  until a stop event (``coldchain api``);
- :mod:`api.cli`: ``keys create`` and ``audit verify`` handlers for ``coldchain/cli.py``.

Everything else (``api.routes.*``, ``api.auth``, ``api.schemas``, ``api.errors``) is
implementation. Routes, roles and the 401/403 rules are described in :mod:`api.auth`; the
webhook signature rules in :mod:`api.routes.webhooks`; metrics auth in
:mod:`api.routes.health`.
"""

from api.app import create_app
from api.context import ApiDeps
from api.server import ApiServer, serve

__all__ = ["ApiDeps", "ApiServer", "create_app", "serve"]
