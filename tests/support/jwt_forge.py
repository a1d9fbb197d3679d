"""Hand-made JWTs for hostile tests: tokens no well-behaved library would sign
(alg none, HMAC keyed with a public key PEM, odd claims), and key pairs for
RS256/ES256 gateways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user_id: int | str, *, ttl: float = 3600, **extra: Any) -> dict[str, Any]:
    """`sub` and `exp` (ttl from now) plus `extra`; an extra set to None is left out."""
    payload: dict[str, Any] = {"sub": str(user_id), "exp": int(time.time() + ttl)}
    payload.update(extra)
    return {k: v for k, v in payload.items() if v is not None}


def forge(header: dict[str, Any], payload: dict[str, Any] | str, *,
          key: bytes | None = None) -> str:
    """header.payload.signature assembled by hand. With `key`, an HMAC over it with
    the header's HS* algorithm (any bytes: a PEM too); without, an empty signature.
    A `payload` given as text is used verbatim (duplicate keys, huge numbers...)."""
    body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(body.encode())}"
    if key is None:
        return signing_input + "."
    digest = hmac.new(key, signing_input.encode(), _HASHES[header["alg"]]).digest()
    return f"{signing_input}.{b64url(digest)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    return forge({"alg": alg, "typ": "JWT"}, payload)


def signature_of(token: str) -> str:
    return token.rsplit(".", 1)[-1]


def rsa_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pems(key)


def ec_keypair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh P-256 key (ES256)."""
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo
                                           ).decode()
    return private, public
