"""An OpenAPI 3.1 description of the session sidecar, served at ``GET /openapi.json``.

The request body schema is the shipped response schema itself, so the
description cannot drift from what the webhook validates.
"""

from __future__ import annotations

from typing import Any

from mcp_cascade.validation import SCHEMA

_ERROR = {
    "type": "object",
    "required": ["status", "error"],
    "properties": {
        "status": {"type": "string"},
        "error": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_RECEIPT = {
    "type": "object",
    "required": ["status", "id", "correlation_id", "tier", "latency_ms"],
    "properties": {
        "status": {"enum": ["delivered", "queued", "duplicate"]},
        "id": {"type": "string"},
        "correlation_id": {"type": "string"},
        "tier": {"type": "integer"},
        "latency_ms": {"type": "number"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec(webhook_path: str) -> dict[str, Any]:
    """The OpenAPI document."""
    body_schema = {k: v for k, v in SCHEMA.items() if k not in ("$schema", "$id")}
    signature_headers = [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "equals the body's id",
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "unix seconds",
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>",
        },
        {
            "name": "x-correlation-id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "format": "uuid"},
        },
    ]
    health = {"200": _json({"type": "object"}, "ok or degraded"), "503": _json({"type": "object"}, "down")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mcp-cascade session sidecar", "version": "1"},
        "paths": {
            webhook_path: {
                "post": {
                    "operationId": "deliverResponse",
                    "summary": "Deliver a person's response into this session (tier 1)",
                    "parameters": signature_headers,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body_schema}},
                    },
                    "responses": {
                        "200": _json(_RECEIPT, "delivered, or a duplicate"),
                        "202": _json(_RECEIPT, "durable; pushed when a client attaches"),
                        "400": _json(_ERROR, "malformed JSON, id mismatch"),
                        "401": _json(_ERROR, "signature missing, invalid or stale"),
                        "413": _json(_ERROR, "body over 64 KiB"),
                        "415": _json(_ERROR, "not application/json"),
                        "422": _json(_ERROR, "schema violation"),
                        "503": _json(_ERROR, "cannot persist now; use another tier"),
                    },
                }
            },
            "/health": {"get": {"operationId": "health", "responses": health}},
            "/health/{tier}": {
                "get": {
                    "operationId": "tierHealth",
                    "parameters": [
                        {
                            "name": "tier",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["webhook", "file"]},
                        }
                    ],
                    "responses": {**health, "404": _json({"type": "object"}, "no such tier")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "404": {"description": "metrics disabled"},
                    },
                }
            },
        },
    }
