"""Binance's HMAC-SHA256 request signature."""
import hashlib
import hmac


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def strip_signature(raw: str) -> tuple[str, str | None]:
    """Removes `signature=` from a raw query string or body, keeping every
    other byte as sent: the signature covers the string exactly as it went
    over the wire."""
    if not raw:
        return "", None
    kept, signature = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


def verify(secret: str, query: str, body: str) -> bool:
    """Signed payload is the query string followed directly by the body."""
    query, sig_in_query = strip_signature(query)
    body, sig_in_body = strip_signature(body)
    signature = sig_in_query or sig_in_body
    if not signature:
        return False
    return hmac.compare_digest(sign(secret, query + body), signature.lower())


def ws_api_payload(params: dict) -> str:
    """WebSocket API: every parameter but the signature, sorted by name."""
    return "&".join(f"{k}={_ws_value(v)}" for k, v in sorted(params.items()) if k != "signature")


def _ws_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
