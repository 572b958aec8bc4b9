#!/usr/bin/env bash
# Deliver one answer to a running Claude Code session over tier 1, with openssl and curl only.
# Usage: examples/post_response.sh SESSION "the answer"        (home: $MCP_CASCADE_HOME or ~/.mcp-cascade)
set -euo pipefail
HOME_DIR=${MCP_CASCADE_HOME:-$HOME/.mcp-cascade}
SESSION=$1
TEXT=$2

# Where the session listens: session.json, written by `mcp-cascade serve`.
URL=$(sed -n 's/.*"webhook_url": *"\([^"]*\)".*/\1/p' "$HOME_DIR/sessions/$SESSION/session.json")

# The body (JSON Schema: `mcp-cascade schema`); the id is the idempotency key.
ID="sh:$(date +%s%N)"
BODY=$(printf '{"id":"%s","type":"message","text":"%s","user":{"id":0},"timestamp":"%s"}' \
  "$ID" "$TEXT" "$(date -u +%Y-%m-%dT%H:%M:%SZ)")

# Standard Webhooks signature: base64(HMAC-SHA256(secret, id.timestamp.body)).
TS=$(date +%s)
KEY=$(sed 's/^whsec_//' "$HOME_DIR/secret" | base64 -d | xxd -p -c 256)
SIG=$(printf '%s' "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$KEY" -binary | base64)

curl -sS --max-time 2 "$URL" \
  -H 'content-type: application/json' \
  -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" \
  --data-binary "$BODY"
echo
