"""Tabulates one bench/run.sh result folder as Markdown (ratios first).

    python3 bench/summarize.py bench/results/latest

Reads what the sections left there (micro.json, http.csv, kms.txt, replay.txt,
exchange.txt, verify.txt, machine.txt); a section that did not run is left out.
"""

import csv
import json
import pathlib
import re
import statistics
import sys

folder = pathlib.Path(sys.argv[1])
headline = []  # (group, comparison, ratio text, ours, baseline, target, verdict)
GROUPS = ["HTTP", "KMS", "Replay", "Exchange", "vs ring", "vs jsonwebtoken", "verify, languages", "client"]
details = []


def verdict(ok):
    return "met" if ok else "**missed**"


def ns(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.1f} µs"
    return f"{value:.1f} ns"


def per_s(value):
    return f"{value:,.0f}/s"


# ---------------------------------------------------------------- micro
micro_path = folder / "micro.json"
if micro_path.exists():
    micro = json.loads(micro_path.read_text())
    rows = []
    for op in ("issue", "verify"):
        for alg in ("ES256", "EdDSA", "RS256"):
            group = f"{op}_{alg}"
            ours, ring = micro.get(f"{group}/oidc-core"), micro.get(f"{group}/ring")
            if ours is None or ring is None:
                continue
            ratio = ours / ring
            headline.append(("vs ring", f"{op} {alg}: oidc-core time / bare ring", f"{ratio:.2f}x", ns(ours), ns(ring),
                             "<= 1.3x", verdict(ratio <= 1.3)))
            for lib in ("jsonwebtoken11", "jsonwebtoken9"):
                theirs = micro.get(f"{group}/{lib}")
                if theirs is None:
                    continue
                speedup = theirs / ours
                backend = "aws-lc-rs" if lib.endswith("11") else "ring"
                name = f"jsonwebtoken {lib[len('jsonwebtoken'):]} ({backend})"
                headline.append(("vs jsonwebtoken", f"{op} {alg}: {name} time / oidc-core", f"{speedup:.2f}x", ns(ours), ns(theirs),
                                 "> 1x (faster)", verdict(speedup > 1)))
            for impl in ("oidc-core", "ring", "jsonwebtoken11", "jsonwebtoken9",
                         "jsonwebtoken11-signature", "jsonwebtoken9-signature"):
                value = micro.get(f"{group}/{impl}")
                if value is not None:
                    rows.append(f"| {op} | {alg} | {impl} | {ns(value)} | {value / ring:.2f}x |")
    cached = micro.get("token_read_1_thread/cached_token_source")
    mutex = micro.get("token_read_1_thread/mutex_option_baseline")
    if cached and mutex:
        headline.append(("client", "client cached token() read, 1 thread: mutex time / ours", f"{mutex / cached:.2f}x",
                         ns(cached), ns(mutex), "well under 1 µs", verdict(cached < 1000)))
        rows.append(f"| client read | 1 thread | cached_token_source | {ns(cached)} | |")
        sync = micro.get("token_read_1_thread/cached_token_source_sync")
        if sync:
            rows.append(f"| client read | 1 thread | cached_token_source_sync | {ns(sync)} | |")
        rows.append(f"| client read | 1 thread | mutex_option_baseline | {ns(mutex)} | |")
    cached8 = micro.get("token_read_8_threads/cached_token_source")
    mutex8 = micro.get("token_read_8_threads/mutex_option_baseline")
    if cached8 and mutex8:
        # Per iteration of 8 threads reading once each: divide by 8 for per read.
        headline.append(("client", "client cached read, 8 threads: mutex time / ours", f"{mutex8 / cached8:.2f}x",
                         ns(cached8 / 8) + " per read", ns(mutex8 / 8) + " per read", "", ""))
        rows.append(f"| client read | 8 threads | cached_token_source | {ns(cached8 / 8)} per read | |")
        rows.append(f"| client read | 8 threads | mutex_option_baseline | {ns(mutex8 / 8)} per read | |")
    details.append("### Micro benchmarks (criterion medians)\n\n"
                   "| op | alg / case | implementation | time | / ring |\n|---|---|---|---|---|\n" + "\n".join(rows))

# ---------------------------------------------------------------- http
http_path = folder / "http.csv"
if http_path.exists():
    runs = list(csv.DictReader(http_path.open()))
    levels = sorted({int(r["concurrency"]) for r in runs})
    rows = []
    for level in levels:
        by = {who: [r for r in runs if r["server"] == who and int(r["concurrency"]) == level]
              for who in ("ours", "json", "node", "minimal")}
        if not by["ours"] or not by["node"]:
            continue
        med = {who: {k: statistics.median(float(r[k]) for r in by[who])
                     for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")} for who in by if by[who]}
        if "minimal" in med:
            fraction = med["ours"]["rps"] / med["minimal"]["rps"]
            target = "" if level == 1 else ">= 0.85"
            headline.append(("HTTP", f"HTTP c={level}: oidc-server req/s / minimal handler (Basic, claims, one ES256)",
                             f"{fraction:.2f}", per_s(med["ours"]["rps"]), per_s(med["minimal"]["rps"]), target,
                             verdict(fraction >= 0.85) if target else ""))
        if "minimal" in med and "json" in med:
            fraction = med["json"]["rps"] / med["minimal"]["rps"]
            headline.append(("HTTP", f"HTTP c={level}: oidc-server logging JSON req/s / minimal handler",
                             f"{fraction:.2f}", per_s(med["json"]["rps"]), per_s(med["minimal"]["rps"]), target,
                             verdict(fraction >= 0.85) if target else ""))
        peak = {who: max(int(r["rss_peak_mb"]) for r in by[who]) for who in by if by[who]}
        errors = {who: sum(int(r["errors"]) for r in by[who]) for who in by if by[who]}
        ratio = med["ours"]["rps"] / med["node"]["rps"]
        target = "" if level == 1 else ">= 4x"
        headline.append(("HTTP", f"HTTP c={level}: oidc-server req/s / node-oidc-provider", f"{ratio:.1f}x",
                         per_s(med["ours"]["rps"]), per_s(med["node"]["rps"]), target,
                         verdict(ratio >= 4) if target else ""))
        p99 = med["node"]["p99_ms"] / med["ours"]["p99_ms"]
        headline.append(("HTTP", f"HTTP c={level}: p99 latency node / ours", f"{p99:.1f}x",
                         f"{med['ours']['p99_ms']:.2f} ms", f"{med['node']['p99_ms']:.2f} ms",
                         "lower p99" if target else "", verdict(p99 > 1) if target else ""))
        cpu = med["node"]["cpu_us_per_req"] / med["ours"]["cpu_us_per_req"]
        headline.append(("HTTP", f"HTTP c={level}: server CPU time per request node / ours", f"{cpu:.1f}x",
                         f"{med['ours']['cpu_us_per_req']:.0f} µs", f"{med['node']['cpu_us_per_req']:.0f} µs", "", ""))
        headline.append(("HTTP", f"HTTP c={level}: peak RSS under load", f"{peak['node'] / max(peak['ours'], 1):.1f}x smaller",
                         f"{peak['ours']} MB", f"{peak['node']} MB", "ours < 50 MB", verdict(peak["ours"] < 50)))
        if errors["ours"] or errors["node"]:
            headline.append(("HTTP", f"HTTP c={level}: errors or non-2xx", "", str(errors["ours"]), str(errors["node"]),
                             "0", verdict(False)))
    for r in runs:
        who = {"ours": "oidc-server", "json": "oidc-server (JSON log)", "node": "node-oidc-provider",
               "minimal": "minimal handler"}[r["server"]]
        rows.append(f"| {r['concurrency']} | {r['round']} | {who} | {float(r['rps']):,.0f} | {r['p50_ms']} | "
                    f"{r['p99_ms']} | {r['rss_peak_mb']} | {r['cpu_us_per_req']} | {r['errors']} |")
    details.append("### HTTP runs, in the order they ran\n\n"
                   "| concurrency | round | server | req/s | p50 ms | p99 ms | peak RSS MB | CPU µs/req | errors |\n"
                   "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))

# ---------------------------------------------------------------- kms
kms_path = folder / "kms.txt"
if kms_path.exists():
    text = kms_path.read_text()
    bare = [float(x) for x in re.findall(r"bare SDK Sign loop:\s+([\d.]+)", text)]
    kms = [(float(a), float(b)) for a, b in
           re.findall(r"KmsSigner tokens:\s+([\d.]+) tokens/s .*?, ([\d.]+) KMS Sign calls/token", text)]
    env = re.findall(r"kms-envelope tokens:\s+([\d.]+) tokens/s, (\d+) KMS calls for (\d+) tokens", text)
    if bare and kms:
        ratios = [k / b for (k, _), b in zip(kms, bare)]
        ratio = statistics.median(ratios)
        headline.append(("KMS", "KMS: KmsSigner tokens/s / bare SDK Sign loop (c=8, moto)", f"{100 * ratio:.0f}%",
                         per_s(statistics.median(k for k, _ in kms)), per_s(statistics.median(bare)),
                         ">= 90%", verdict(ratio >= 0.9)))
        calls = max(c for _, c in kms)
        headline.append(("KMS", "KMS: Sign calls per token", f"{calls:.3f}", "", "", "exactly 1",
                         verdict(abs(calls - 1) < 1e-9)))
        rows = [f"| {i + 1} | {b:,.1f} | {k:,.1f} | {100 * k / b:.1f}% | {c:.3f} |"
                for i, ((k, c), b) in enumerate(zip(kms, bare))]
        details.append("### KMS runs (moto_server behind the counting proxy, concurrency 8, 5 s each)\n\n"
                       "| run | bare SDK Sign/s | KmsSigner tokens/s | ratio | Sign calls/token |\n"
                       "|---|---|---|---|---|\n" + "\n".join(rows))
    if env:
        calls = max(int(c) for _, c, _ in env)
        headline.append(("KMS", "KMS envelope: KMS calls per token", f"{calls} calls / {env[0][2]} tokens",
                         per_s(statistics.median(float(r) for r, _, _ in env)), "", "0", verdict(calls == 0)))

# ---------------------------------------------------------------- replay
replay_path = folder / "replay.txt"
if replay_path.exists():
    text = replay_path.read_text()
    memory = [float(x) for x in re.findall(r"memory store:\s+([\d.]+) logins/s", text)]
    dynamo = [(float(a), float(b)) for a, b in
              re.findall(r"dynamodb store \(moto\):\s+([\d.]+) logins/s .*?([\d.]+) PutItem per login", text)]
    if memory and dynamo:
        headline.append(("Replay", "private_key_jwt logins/s: DynamoDB store (moto) / memory store (c=16)",
                         f"{100 * statistics.median(d / m for (d, _), m in zip(dynamo, memory)):.0f}%",
                         per_s(statistics.median(d for d, _ in dynamo)), per_s(statistics.median(memory)),
                         "bounded by the emulator", ""))
        calls = max(c for _, c in dynamo)
        headline.append(("Replay", "DynamoDB calls per assertion login", f"{calls:.3f}", "", "", "exactly 1",
                         verdict(abs(calls - 1) < 1e-9)))
        rows = [f"| {i + 1} | {m:,.1f} | {d:,.1f} | {100 * d / m:.1f}% | {c:.3f} |"
                for i, ((d, c), m) in enumerate(zip(dynamo, memory))]
        details.append("### Replay store runs (private_key_jwt, concurrency 16, 5 s each)\n\n"
                       "| run | memory logins/s | DynamoDB (moto) logins/s | ratio | PutItem/login |\n"
                       "|---|---|---|---|---|\n" + "\n".join(rows))

# ---------------------------------------------------------------- exchange
exchange_path = folder / "exchange.txt"
if exchange_path.exists():
    text = exchange_path.read_text()
    basic = [float(x) for x in re.findall(r"client_secret_basic:\s+([\d.]+) logins/s", text)]
    iam = [float(x) for x in re.findall(r"aws_iam \(moto STS\):\s+([\d.]+) logins/s", text)]
    exchange = [(float(a), int(b)) for a, b in
                re.findall(r"token exchange \(ES384\):\s+([\d.]+) logins/s \((\d+) logins", text)]
    ring = [float(x) for x in re.findall(r"bare ring ES384 verify:\s+([\d.]+) verifications/s", text)]
    fetches = [(int(a), int(b)) for a, b in
               re.findall(r"upstream fetches:\s+(\d+) JWKS and \d+ discovery per (\d+) exchange logins", text)]
    if basic and iam and exchange:
        ex = statistics.median(r for r, _ in exchange)
        headline.append(("Exchange", "token exchange logins/s / client_secret_basic (c=16)",
                         f"{100 * ex / statistics.median(basic):.0f}%", per_s(ex), per_s(statistics.median(basic)),
                         "", ""))
        headline.append(("Exchange", "token exchange logins/s / aws_iam through moto (c=16)",
                         f"{ex / statistics.median(iam):.1f}x", per_s(ex), per_s(statistics.median(iam)),
                         "bounded by the emulator", ""))
        if ring:
            headline.append(("Exchange", "token exchange logins/s / bare ring ES384 verifications/s (one thread)",
                             f"{100 * ex / statistics.median(ring):.0f}%", per_s(ex),
                             per_s(statistics.median(ring)), "", ""))
        rows = [f"| {i + 1} | {b:,.1f} | {a:,.1f} | {e:,.1f} |"
                for i, (b, a, (e, _)) in enumerate(zip(basic, iam, exchange))]
        details.append("### Token exchange runs (one server, concurrency 16)\n\n"
                       "| run | client_secret_basic logins/s | aws_iam (moto) logins/s | token exchange logins/s |\n"
                       "|---|---|---|---|\n" + "\n".join(rows))
    if fetches:
        most = max(f * 10_000 / n for f, n in fetches)
        headline.append(("Exchange", "upstream JWKS fetches per 10,000 exchange logins", f"{most:g}", "", "",
                         "1 per key-set lifetime", verdict(most <= 1)))

# ---------------------------------------------------------------- verify
verify_path = folder / "verify.txt"
if verify_path.exists():
    rates = {m[0]: float(m[1]) for m in re.findall(r"RESULT impl=(\S+) per_s=([\d.]+)", verify_path.read_text())}
    ours = rates.get("oidc-core")
    names = {"jsonwebtoken11": "jsonwebtoken 11 (aws-lc-rs)", "jsonwebtoken9": "jsonwebtoken 9 (ring)",
             "pyjwt": "PyJWT (cryptography)", "jose": "npm jose (node WebCrypto)", "ring": "bare ring signature"}
    if ours:
        rows = [f"| oidc-core | {per_s(ours)} | 1.00x |"]
        for impl, name in names.items():
            if impl in rates:
                ratio = ours / rates[impl]
                rows.append(f"| {name} | {per_s(rates[impl])} | {rates[impl] / ours:.2f}x |")
                if impl != "ring":
                    headline.append(("verify, languages", f"verify ES256, same tokens: oidc-core / {name}", f"{ratio:.2f}x",
                                     per_s(ours), per_s(rates[impl]), "", ""))
                else:
                    headline.append(("verify, languages", "verify ES256, same tokens: bare ring / oidc-core (overhead)",
                                     f"{rates[impl] / ours:.2f}x", per_s(ours), per_s(rates[impl]), "<= 1.3x",
                                     verdict(rates[impl] / ours <= 1.3)))
        details.append("### Verification throughput, same 200 oidc-server tokens, one thread\n\n"
                       "| implementation | verifications/s | relative to oidc-core |\n|---|---|---|\n" + "\n".join(rows))

# ---------------------------------------------------------------- print
machine = folder / "machine.txt"
if machine.exists():
    print("### Machine\n")
    for line in machine.read_text().splitlines():
        key, _, value = line.partition("=")
        print(f"- {key}: {value}")
    print()
print("### Headline (ratios first)\n")
print("| comparison | ratio | ours | baseline | target | |")
print("|---|---|---|---|---|---|")
for group in GROUPS:
    for row in headline:
        if row[0] == group:
            print("| " + " | ".join(row[1:]) + " |")
for block in details:
    print()
    print(block)
