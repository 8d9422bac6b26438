"""PyJWT verification throughput on the tokens of bench/run.sh, single thread.

    python bench/verify_pyjwt.py TOKENS_DIR

Same checks as the other implementations: ES256 signature with a key
imported once from the JWKS, issuer, audience, exp (PyJWT also checks nbf and
iat when present, and requires what `options.require` lists).
"""

import json
import pathlib
import sys
import time

import jwt

folder = pathlib.Path(sys.argv[1])
tokens = folder.joinpath("tokens.txt").read_text().split()
jwk = json.loads(folder.joinpath("jwks.json").read_text())["keys"][0]
meta = json.loads(folder.joinpath("meta.json").read_text())
issuer, audience, seconds = meta["issuer"], meta["audience"], float(meta.get("seconds", 3))
key = jwt.PyJWK(jwk).key
options = {"require": ["exp", "iss", "aud", "sub"]}


def verify(token):
    return jwt.decode(token, key, algorithms=["ES256"], audience=audience, issuer=issuer, options=options)


for token in tokens:  # every token accepted, and warm
    assert verify(token)["iss"] == issuer

done = 0
started = time.perf_counter()
deadline = started + seconds
while time.perf_counter() < deadline:
    for token in tokens:
        verify(token)
    done += len(tokens)
elapsed = time.perf_counter() - started
print(f"verify_pyjwt: PyJWT {jwt.__version__}, {len(tokens)} tokens, {seconds} s")
print(f"RESULT impl=pyjwt per_s={done / elapsed:.0f}")
