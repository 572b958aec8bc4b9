"""Operations: metrics, health, the audit trail, `mcp-cascade inspect`, charts."""
