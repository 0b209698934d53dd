#!/usr/bin/env python3
"""jwt_vectors.py OUTDIR -- JWT test vectors made by PyJWT, for test_jwt.

Generates fresh keys (an HMAC secret, RSA 2048, EC P-256, EC P-384, Ed25519)
and writes their public halves as PEM: hmac.key (raw bytes), rsa.pem,
p256.pem, p384.pem, ed25519.pem. Then, for every algorithm, four tokens:

    valid      aud "aeolus", iss "pyjwt", iat now, nbf now, exp in an hour
    tampered   the valid token with another payload under the old signature
    expired    exp an hour ago
    wrong_aud  aud "someone-else"

one line each in OUTDIR/vectors.txt: ALG CASE KEYFILE TOKEN. The caller
decides what each case must give; this script only signs.
"""
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGS = {
    "HS256": "hmac", "HS384": "hmac", "HS512": "hmac",
    "RS256": "rsa", "RS384": "rsa", "RS512": "rsa",
    "PS256": "rsa", "PS384": "rsa", "PS512": "rsa",
    "ES256": "p256", "ES384": "p384",
    "EdDSA": "ed25519",
}


def b64url(data):
    return jwt.utils.base64url_encode(data).decode()


def make_keys():
    """Signing keys (for HMAC, the secret) by name."""
    return {
        "hmac": os.urandom(64),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def write_key(outdir, name, key):
    if name == "hmac":
        path, data = "hmac.key", key
    else:
        path = name + ".pem"
        data = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with open(os.path.join(outdir, path), "wb") as f:
        f.write(data)
    return path


def tamper(token):
    """The token with its payload replaced and its signature kept."""
    header, payload, sig = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "mallory"
    return ".".join([header, b64url(json.dumps(claims).encode()), sig])


def cases(now):
    good = {"sub": "alice", "aud": "aeolus", "iss": "pyjwt",
            "iat": now, "nbf": now, "exp": now + 3600}
    return {
        "valid": good,
        "expired": dict(good, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "wrong_aud": dict(good, aud="someone-else"),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: jwt_vectors.py OUTDIR")
    outdir = sys.argv[1]
    keys = make_keys()
    files = {name: write_key(outdir, name, key) for name, key in keys.items()}
    now = int(time.time())
    lines = []
    for alg, keyname in ALGS.items():
        for case, claims in cases(now).items():
            token = jwt.encode(claims, keys[keyname], algorithm=alg)
            lines.append((alg, case, files[keyname], token))
            if case == "valid":
                lines.append((alg, "tampered", files[keyname], tamper(token)))
    with open(os.path.join(outdir, "vectors.txt"), "w") as f:
        for line in lines:
            f.write(" ".join(line) + "\n")


if __name__ == "__main__":
    main()
