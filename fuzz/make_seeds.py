#!/usr/bin/env python3
"""Writes the committed seed corpora, fuzz/seeds/TARGET/, from the
repository's own test material: the Wycheproof vectors in
oidc-core/tests/vectors/wycheproof/, the catalog's kinds of tokens (signed
here with oidc-core's test keys), and the recorded Lambda events in
oidc-server/tests/fixtures/lambda/. Deterministic except for ECDSA
signatures; run it again after changing a target's input format:

    .venv/bin/python fuzz/make_seeds.py     (needs `cryptography`: scripts/test.sh installs it)
"""
import base64, hashlib, json, os, shutil, sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z: every target's fixed clock
ISS = "https://tokens.test"
AUD = "https://control-plane.test"


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


written = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    written[target] = written.get(target, 0) + 1


def load(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def wycheproof(name):
    return json.loads(load(f"oidc-core/tests/vectors/wycheproof/{name}"))


# Keys: oidc-core's test keys, and their RFC 7638 thumbprints (the kids).
p256 = serialization.load_pem_private_key(load("oidc-core/tests/keys/p256.pem"), None)
ed = serialization.load_pem_private_key(load("oidc-core/tests/keys/ed25519.pem"), None)
rsa = serialization.load_pem_private_key(load("oidc-core/tests/keys/rsa2048.pem"), None)
nums = p256.public_key().public_numbers()
p256_jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")), "y": b64u(nums.y.to_bytes(32, "big"))}
ed_raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
ed_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(ed_raw)}
rn = rsa.public_key().public_numbers()
rsa_jwk = {"kty": "RSA", "n": b64u(rn.n.to_bytes(256, "big")), "e": b64u(rn.e.to_bytes(3, "big"))}


def thumbprint(jwk):
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    return b64u(hashlib.sha256(compact({m: jwk[m] for m in members})).digest())


P256_KID, ED_KID, RSA_KID = thumbprint(p256_jwk), thumbprint(ed_jwk), thumbprint(rsa_jwk)


def sign(alg, signing_input):
    if alg == "ES256":
        r, s = utils.decode_dss_signature(p256.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return ed.sign(signing_input)


def token(header, claims, alg="ES256"):
    h = header if isinstance(header, bytes) else compact(header)
    c = claims if isinstance(claims, bytes) else compact(claims)
    signing_input = f"{b64u(h)}.{b64u(c)}".encode()
    return f"{signing_input.decode()}.{b64u(sign(alg, signing_input))}"


def claims(**extra):
    base = {"iss": ISS, "sub": "connector-1", "aud": AUD, "client_id": "connector-1", "iat": T0, "nbf": T0,
            "exp": T0 + 300, "jti": "bWFkZS1ieS1tYWtlLXNlZWRz", "scope": "actions:read", "org_id": "org-1"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


if os.path.isdir(SEEDS):
    shutil.rmtree(SEEDS)

# --- jws_decode and jws_verify: the catalog's kinds of headers and claims.
headers = [
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID},
    {"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID},
    {"alg": "ES256", "typ": "application/at+jwt", "kid": P256_KID},
    {"alg": "none", "typ": "at+jwt", "kid": P256_KID},
    {"alg": "HS256", "typ": "at+jwt", "kid": P256_KID},
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID, "crit": ["exp"]},
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID, "jku": "https://evil.test/jwks"},
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID, "jwk": p256_jwk},
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID, "b64": False},
    {"alg": "ES256", "typ": "at+jwt", "kid": P256_KID, "cty": "JWT", "x5t": "abc"},
    {"alg": "ES256", "typ": "JWT", "kid": P256_KID},
    {"alg": "ES256", "typ": "at+jwt", "kid": 7},
    {"alg": "ES256", "typ": "at+jwt"},
    {"alg": "RS256", "typ": "at+jwt", "kid": RSA_KID},
]
raw_headers = [b'{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"' + P256_KID.encode() + b'"}',
               b'{"alg":"ES256","typ":"at+jwt","kid":"\\u0061"}', b"[1]", b'{"alg":"ES\xc3\xa9"}']
claim_sets = [
    claims(), claims(aud=[AUD, "https://other.test"]), claims(nbf=None, scope=None), claims(exp=T0 + 29),
    claims(iat=T0 + 31), claims(exp=T0 + 901), claims(aud="https://control-plane.TEST"), claims(aud=[]),
    claims(iss=ISS + "/"), claims(sub=""), claims(exp=None), claims(exp=1.7e9), claims(exp="1700000300"),
    claims(jti=None), claims(client_id=None), claims(scope=5),
]
raw_claims = [b'{"iss":"https://tokens.test","iss":"x"}', b"{}", b"[]", b'{"a":' * 20 + b"1" + b"}" * 20]
for i, h in enumerate(headers + raw_headers):
    alg = h.get("alg") if isinstance(h, dict) else "ES256"
    body = claim_sets[i % len(claim_sets)]
    hb = h if isinstance(h, bytes) else compact(h)
    mode = b"\x02" if alg == "EdDSA" else b"\x01"
    seed("jws_verify", mode + hb + b"\n" + compact(body))
    seed("jws_decode", b"\x01" + hb + b"\n" + compact(body) + b"\n" + bytes(64))
for c in claim_sets + raw_claims:
    hb = compact(headers[0])
    seed("jws_verify", b"\x01" + hb + b"\n" + (c if isinstance(c, bytes) else compact(c)))
    seed("jws_verify", b"\x02" + compact(headers[1]) + b"\n" + (c if isinstance(c, bytes) else compact(c)))
for alg, h in (("ES256", headers[0]), ("EdDSA", headers[1])):
    t = token(h, claims(), alg)
    for target in ("jws_decode", "jws_verify"):
        seed(target, t)
        seed(target, t + "=")
        seed(target, t.replace(".", ".A", 1))
        seed(target, ".".join(t.split(".")[:2]))
        seed(target, t + ".x.y")
        seed(target, '{"payload":"x","signatures":[]}')
    der = p256.sign(b"x", ec.ECDSA(hashes.SHA256()))
    seed("jws_verify", t.rsplit(".", 1)[0] + "." + b64u(der))

# --- json: headers, claims, JWKS and discovery documents, and edge cases.
for doc in headers + claim_sets:
    seed("json", compact(doc))
for doc in raw_headers + raw_claims + [b'{"a":1,"\\u0061":2}', b"1e400", b'"\\ud800"', b"[" * 17 + b"]" * 17,
                                      b" null ", b'{"a":[1,2.5,-0,1e3,"x\\n",true,null,{}]}', b"{} x", b'"\xff"']:
    seed("json", doc)

# --- jwks: Wycheproof's key sets, and ours.
for group in wycheproof("json_web_key_test.json")["testGroups"]:
    for name in ("private", "public"):
        if name in group:
            seed("jwks", compact(group[name]))
            for key in group[name].get("keys", [])[:2]:
                seed("jwks", compact(key))
ours = [dict(p256_jwk, kid=P256_KID, alg="ES256", use="sig"), dict(ed_jwk, kid=ED_KID, alg="EdDSA"),
        dict(rsa_jwk, kid=RSA_KID, alg="RS256", key_ops=["verify"])]
seed("jwks", compact({"keys": ours}))
seed("jwks", compact({"keys": ours + [dict(p256_jwk, kid=ED_KID)]}))
seed("jwks", compact({"keys": [dict(p256_jwk, kid="enc", use="enc"), {"kty": "oct", "k": "AAAA", "kid": "h"}]}))
for key in ours:
    seed("jwks", compact(key))
for group in wycheproof("ed25519_test.json")["testGroups"][:3]:
    seed("jwks", compact(dict(group["publicKeyJwk"], kid="w")))

# --- der_signature: Wycheproof's DER signatures over the target's fixed key and message.
ecdsa = wycheproof("ecdsa_secp256r1_sha256_test.json")
group = max(ecdsa["testGroups"], key=lambda g: sum(t["msg"] == "313233343030" for t in g["tests"]))
picked = [t for t in group["tests"] if t["msg"] == "313233343030"]
for t in picked[::4]:
    seed("der_signature", bytes.fromhex(t["sig"]))
for t in picked:
    if t["result"] == "valid":
        seed("der_signature", bytes.fromhex(t["sig"]))

# --- spki: SubjectPublicKeyInfo of Wycheproof's keys and of ours.
for g in ecdsa["testGroups"][:12]:
    seed("spki", bytes.fromhex(g["publicKeyDer"]))
for g in wycheproof("ed25519_test.json")["testGroups"][:6]:
    seed("spki", bytes.fromhex(g["publicKeyDer"]))
for key in (p256, ed, rsa):
    seed("spki", key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

# --- aws_iam and sigv4: a signed GetCallerIdentity as connector-client sends it, and variants.
sig = hashlib.sha256(b"seed").hexdigest()
signed = "host;x-amz-date;x-connector-token-issuer;x-connector-token-nonce"
auth = (f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/sts/aws4_request, "
        f"SignedHeaders={signed}, Signature={sig}")
request_headers = {
    "Authorization": auth, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Host": "sts.us-east-1.amazonaws.com", "X-Amz-Date": "20231114T221320Z",
    "X-Connector-Token-Issuer": ISS, "X-Connector-Token-Nonce": "bm9uY2Utbm9uY2Utbm9uY2U",
    "X-Amz-Security-Token": "FwoGZXIvYXdzEXAMPLE",
}
body = "Action=GetCallerIdentity&Version=2011-06-15"
good = {"method": "POST", "headers": request_headers, "body": body}
variants = [good, dict(good, method="GET"), dict(good, body="Action=AssumeRole"),
            dict(good, headers=dict(request_headers, **{"X-Amz-Date": "20231114T222320Z"})),
            dict(good, headers=dict(request_headers, **{"X-Amz-Date": "20230231T221320Z"})),
            dict(good, headers=dict(request_headers, **{"X-Amz-Date": "00000101T000000Z"})),
            dict(good, headers=dict(request_headers, Host="sts.eu-west-1.amazonaws.com")),
            dict(good, headers=dict(request_headers, Authorization=auth.replace("/sts/", "/s3/"))),
            dict(good, headers=dict(request_headers, **{"X-Evil": "1"})), dict(good, extra=1)]
for v in variants:
    seed("aws_iam", b"\x01" + compact(v))
seed("aws_iam", b64u(compact(good)))
for value in [auth, auth.replace(", ", ","), auth + ", Signature=" + sig, auth.replace(signed, "HOST;X-Amz-Date"),
              auth.replace(sig, sig.upper()), auth.replace("aws4_request", "aws4_request/x"), "Basic abc",
              "AWS4-HMAC-SHA256 Credential=a/b/c/sts/aws4_request, SignedHeaders=, Signature=" + sig]:
    seed("sigv4", value)

# --- form, basic, credential, token_endpoint: token requests.
forms = ["grant_type=client_credentials", "grant_type=client_credentials&scope=actions%3Aread+actions%3Awrite",
         "grant_type=client_credentials&client_id=connector-secret&client_secret=s%26cret&audience=https%3A%2F%2Fother.test",
         "grant_type=client_credentials&grant_type=client_credentials", "a=&b=1&&c==&%zz=%E2%82%AC&+=+",
         "grant_type=client_credentials&resource=https://control-plane.test&audience=https://control-plane.test"]
for f in forms:
    seed("form", f)
SECRET = "test-secret-0123456789abcdefghijklmnopqrstuv"


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


basics = [basic("connector-secret", SECRET), basic("a%3Ab", "x%2By+z"), basic("demo", "s3cret&x"),
          basic(":", "x"), "basic  " + base64.b64encode(b"a:b").decode() + " ", "Basic !!!", "Bearer abc",
          basic("caf%C3%A9", "%FF")]
for b in basics:
    seed("basic", b)
assertion = token({"alg": "ES256", "typ": "JWT", "kid": P256_KID},
                  {"iss": "connector-jwt", "sub": "connector-jwt", "aud": "https://tokens.test/token",
                   "jti": "c2VlZC1hc3NlcnRpb24", "iat": T0, "exp": T0 + 60})
jwt_form = ("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type"
            "%3Ajwt-bearer&client_assertion=" + assertion)
aws_form = ("grant_type=client_credentials&client_id=connector-secret&client_assertion_type=urn%3Aconnector-identity"
            "%3Aclient-assertion-type%3Aaws-sts-get-caller-identity&client_assertion=" + b64u(compact(good)))
secret_post = f"grant_type=client_credentials&client_id=connector-secret&client_secret={SECRET}"
requests = [
    ([f"Authorization: {basics[0]}", "Content-Type: application/x-www-form-urlencoded"], forms[1]),
    (["Content-Type: application/x-www-form-urlencoded"], secret_post),
    (["Content-Type: application/x-www-form-urlencoded"], jwt_form),
    (["Content-Type: application/x-www-form-urlencoded"], aws_form),
    ([f"Authorization: {basics[0]}", f"Authorization: {basics[1]}"], forms[0]),
    ([f"Authorization: {basics[0]}"], secret_post),
    ([f"Authorization: {basics[0]}", "Content-Type: application/json"], '{"grant_type":"client_credentials"}'),
]
for head, body in requests:
    seed("credential", "\n".join(head) + "\n\n" + body)
    seed("token_endpoint", "POST /token\n" + "\n".join(head) + "\n\n" + body)
for line in ["GET /.well-known/openid-configuration", "GET /.well-known/jwks.json", "GET /healthz", "GET /readyz",
             "GET /token", "POST /token?client_secret=x", "DELETE /", "GET /.well-known/oauth-authorization-server"]:
    seed("token_endpoint", line + "\n\n")
seed("token_endpoint", "POST /token\nContent-Type: application/x-www-form-urlencoded\nContent-Length: 3\n\n" + forms[0])
seed("token_endpoint", "POST /token\nContent-Type: application/x-www-form-urlencoded\n\n" + "a=" + "x" * 9000)
# The recorded Lambda events: as requests, and as JSON.
lambda_dir = os.path.join(ROOT, "oidc-server", "tests", "fixtures", "lambda")
for name in sorted(os.listdir(lambda_dir)):
    if not name.endswith(".json"):
        continue
    event = json.loads(load(f"oidc-server/tests/fixtures/lambda/{name}"))
    seed("json", compact(event))
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    path = event.get("rawPath", "/")
    if event.get("rawQueryString"):
        path += "?" + event["rawQueryString"]
    body = event.get("body") or ""
    if event.get("isBase64Encoded") and body:
        body = base64.b64decode(body).decode("utf-8", "replace")
    head = [f"{k}: {v}" for k, v in event.get("headers", {}).items()]
    seed("token_endpoint", f"{method} {path}\n" + "\n".join(head) + "\n\n" + body)
    seed("credential", "\n".join(head) + "\n\n" + body)

# --- token_response, discovery, retry_after, cached_source: what servers answer.
responses = [
    {"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 300, "scope": "actions:read"},
    {"access_token": "t", "token_type": "bearer", "expires_in": "60"},
    {"access_token": "t", "token_type": "DPoP", "expires_in": 60}, {"access_token": "a b", "token_type": "Bearer"},
    {"access_token": "t", "token_type": "Bearer", "expires_in": 99999999999},
    {"access_token": "t", "token_type": "Bearer", "expires_in": 1.5},
    {"error": "invalid_client", "error_description": "bad\r\ncredentials"}, {"error": 5},
]
for r in responses:
    for flag in (0, 1, 6):
        seed("token_response", bytes([flag]) + compact(r))
seed("token_response", b"\x08<html>bad gateway</html>")
discovery = {"issuer": ISS, "token_endpoint": ISS + "/token", "jwks_uri": ISS + "/.well-known/jwks.json",
             "grant_types_supported": ["client_credentials"]}
for d in [discovery, dict(discovery, issuer=ISS + "/"), dict(discovery, token_endpoint="http://tokens.test/token"),
          dict(discovery, token_endpoint="http://127.0.0.1:8080/token"), dict(discovery, token_endpoint="/token"),
          dict(discovery, token_endpoint="https://user:pw@tokens.test/token"), dict(discovery, token_endpoint=5)]:
    seed("discovery", b"\x00" + compact(d))
    seed("discovery", b"\x01" + compact(d))
seed("discovery", b'\x00{"issuer":"https://tokens.test","issuer":"https://evil.test","token_endpoint":"https://evil.test/t"}')
for v in ["120", " 0 ", "99999999999999999999999", "Tue, 14 Nov 2023 22:15:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT",
          "Tue, 31 Feb 2023 22:15:00 GMT", "Tue, 14 Nov 2023 22:15:60 GMT", "Tuesday, 14-Nov-23 22:15:00 GMT",
          "Tue Nov 14 22:15:00 2023", "-5", "1.5"]:
    seed("retry_after", v)
ok = compact(responses[0])
short = compact({"access_token": "short", "token_type": "Bearer", "expires_in": 2})
for ops, answers in [(b"\x01\x01\x00\x00\xf0\x01", [b"\x00" + ok, b"\x00" + ok]),
                     (b"\x01\x00\x01\x00\x01\x03\x01", [b"\x00" + short, b"\x03{}", b"\xc0" + ok]),
                     (b"\x01\x02\x01\x00\x10\x00\x01", [b"\x11" + compact(responses[6]), b"\x40" + short]),
                     (b"\x01" * 8, [])]:
    seed("cached_source", ops + b"\n--\n" + b"\x00".join(answers))

total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(SEEDS) for f in fs)
print(", ".join(f"{k} {v}" for k, v in sorted(written.items())), f"({total} bytes)", file=sys.stderr)
