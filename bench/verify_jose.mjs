// npm jose verification throughput on the tokens of bench/run.sh: one
// verification in flight at a time (jwtVerify is async; Node runs the
// signature check through WebCrypto).
//
//   node bench/verify_jose.mjs TOKENS_DIR
//
// Same checks as the other implementations: ES256 signature with a key
// imported once from the JWKS, issuer, audience, exp (jose also checks nbf and
// iat when present).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { importJWK, jwtVerify } from 'jose';

const dir = process.argv[2];
const tokens = readFileSync(join(dir, 'tokens.txt'), 'utf8').split('\n').filter(Boolean);
const jwk = JSON.parse(readFileSync(join(dir, 'jwks.json'), 'utf8')).keys[0];
const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
const seconds = meta.seconds ?? 3;
const key = await importJWK(jwk, 'ES256');
const options = { issuer: meta.issuer, audience: meta.audience, algorithms: ['ES256'], requiredClaims: ['exp', 'sub'] };

for (const token of tokens) { // every token accepted, and warm
  const { payload } = await jwtVerify(token, key, options);
  if (payload.iss !== meta.issuer) throw new Error('wrong issuer');
}
const warmUntil = performance.now() + 250;
while (performance.now() < warmUntil) for (const token of tokens) await jwtVerify(token, key, options);

let done = 0;
const started = performance.now();
const deadline = started + seconds * 1000;
while (performance.now() < deadline) {
  for (const token of tokens) await jwtVerify(token, key, options);
  done += tokens.length;
}
const elapsed = (performance.now() - started) / 1000;
const version = JSON.parse(readFileSync(new URL('./node_modules/jose/package.json', import.meta.url), 'utf8')).version;
console.log(`verify_jose: jose ${version}, node ${process.version}, ${tokens.length} tokens, ${seconds} s`);
console.log(`RESULT impl=jose per_s=${(done / elapsed).toFixed(0)}`);
