#!/usr/bin/env bash
# An independent check of the tamper evidence (shared/spec/integrity.md):
# examples/verify_proofs.py, which uses no auditstore code (Python 3's
# standard library only), checks checkpoints, inclusion proofs and a
# consistency proof made by the admin tool, and must reject every tampered
# copy of them. Builds nothing: it runs target/debug/auditstore, or the
# binary AUDITSTORE_BIN names. Exit status 0 only if every check came out
# as expected. The walk-through is docs/integrity.md.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${AUDITSTORE_BIN:-target/debug/auditstore}
[ -x "$bin" ] || { echo "no binary $bin (run cargo build, or set AUDITSTORE_BIN)" >&2; exit 1; }
verifier=examples/verify_proofs.py

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
store() { "$bin" --data-dir "$work/data" "$@"; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_ok DESCRIPTION VERIFIER-ARGS...: the verifier must accept.
expect_ok() {
    local what=$1
    shift
    if out=$(python3 "$verifier" "$@" 2>&1); then
        echo "ok      $what: $out"
    else
        fail "$what: the verifier rejected a genuine input: $out"
    fi
}

# expect_reject DESCRIPTION VERIFIER-ARGS...: the verifier must refuse with
# exit status 1 and its "NOT VERIFIED" message (not a crash, not a usage error).
expect_reject() {
    local what=$1 status=0
    shift
    out=$(python3 "$verifier" "$@" 2>&1) || status=$?
    if [ "$status" = 1 ] && [[ "$out" == "NOT VERIFIED: "* ]]; then
        echo "rejects $what: ${out#NOT VERIFIED: }"
    else
        fail "$what: expected a rejection, got exit status $status: $out"
    fi
}

# Helpers in Python (standard library only): events, edits of JSON files and
# notes, and an Ed25519 signer for forgeries.
cat >"$work/helper.py" <<'EOF'
import base64, datetime, hashlib, json, sys
sys.path.insert(0, "examples")
import verify_proofs as v

def sign(seed, msg):
    """RFC 8032 section 6 Ed25519 signing (for forged notes)."""
    def compress(p):
        zi = pow(p[2], v.P - 2, v.P)
        x, y = p[0] * zi % v.P, p[1] * zi % v.P
        return (y | (x & 1) << 255).to_bytes(32, "little")
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    public = compress(v.point_mul(a, v.G))
    r = int.from_bytes(hashlib.sha512(h[32:] + msg).digest(), "little") % v.L
    big_r = compress(v.point_mul(r, v.G))
    k = int.from_bytes(hashlib.sha512(big_r + public + msg).digest(), "little") % v.L
    return public, big_r + ((r + k * a) % v.L).to_bytes(32, "little")

def note(body, name, key_id, sig):
    return body + "\n\u2014 " + name + " " + base64.b64encode(key_id + sig).decode() + "\n"

def load(path):
    with open(path, encoding="utf-8") as f:
        return f.read()

def save(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)

def flip(b64):
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "events":  # events FIRST COUNT: plain events, a day old
    first, count = int(args[0]), int(args[1])
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    for i in range(first, first + count):
        print(json.dumps({
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "action": ["user.logged_in", "workflow.job.start", "context.create"][i % 3],
            "actor": {"id": f"user-{i % 7}", "type": "user"},
            "target": {"id": f"project-{i % 5}", "type": "project"},
            "occurred_at": (when + datetime.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scope": {"id": f"org-{i % 2}", "type": "organization"},
            "success": i % 4 != 0,
        }))
elif cmd == "when":
    print((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ"))
elif cmd == "field":  # field JSON_FILE NAME
    print(json.loads(load(args[0]))[args[1]])
elif cmd == "flip":  # flip B64: the same bytes with one bit changed
    print(flip(args[0]))
elif cmd == "edit":  # edit IN OUT PYTHON-STATEMENT (on the parsed object `p`)
    p = json.loads(load(args[0]))
    exec(args[2], {"p": p, "flip": flip, "load": load, "json": json})
    save(args[1], json.dumps(p, ensure_ascii=False))
elif cmd == "note-edit":  # note-edit IN OUT OLD NEW: replace text in a note's body
    text = load(args[0])
    body, _, sigs = text.rpartition("\n\n")
    assert args[2] in body
    save(args[1], body.replace(args[2], args[3], 1) + "\n\n" + sigs)
elif cmd == "resign":  # resign NOTE KEY_FILE OUT [NEW_ROOT]: sign NOTE's body with a signing.key
    body = load(args[0]).rpartition("\n\n")[0] + "\n"
    if len(args) > 3:
        lines = body.split("\n")
        lines[2] = args[3]
        body = "\n".join(lines)
    _, _, name, hex_id, key = load(args[1]).strip().split("+", 4)
    _, sig = sign(base64.b64decode(key)[1:], body.encode())
    save(args[2], note(body, name, bytes.fromhex(hex_id), sig))
elif cmd == "forge":  # forge NOTE VERIFIER_KEY OUT: sign NOTE's body with another key, under the store's name and key id
    body = load(args[0]).rpartition("\n\n")[0] + "\n"
    name, key_id, _ = v.parse_verifier_key(args[1])
    _, sig = sign(hashlib.sha256(b"not the store's key").digest(), body.encode())
    save(args[2], note(body, name, key_id, sig))
elif cmd == "other-key":  # other-key VERIFIER_KEY: the same name and key id, another public key
    name, key_id, _ = v.parse_verifier_key(args[0])
    public, _ = sign(hashlib.sha256(b"not the store's key").digest(), b"")
    print(f"{name}+{key_id.hex()}+" + base64.b64encode(b"\x01" + public).decode())
elif cmd == "selftest":
    # RFC 8785 Appendix B numbers, and RFC 8032 section 7.1 test 1.
    import struct
    for bits, want in [
        (0x0000000000000000, "0"), (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"), (0x8000000000000001, "-5e-324"),
        (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44B52D02C7E14AF5, "9.999999999999997e+22"), (0x44B52D02C7E14AF6, "1e+23"),
        (0x444B1AE4D6E2EF4F, "999999999999999900000"), (0x444B1AE4D6E2EF50, "1e+21"),
        (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"), (0x3EB0C6F7A0B5ED8D, "0.000001"),
        (0x41B3DE4355555554, "333333333.33333325"),
        (0xBECBF647612F3696, "-0.0000033333333333333333"),
        (0x43143FF3C1CB0959, "1424953923781206.2"),
    ]:
        got = v.jcs_number(struct.unpack(">d", bits.to_bytes(8, "big"))[0])
        assert got == want, f"JCS number {bits:016x}: {got} != {want}"
    assert v.jcs({"\u20ac": 1, "\r": 2, "\U0001F600": 3, "\ufb33": 4, "1": 5, "\u00f6": 6}) == \
        '{"\\r":2,"1":5,"\u00f6":6,"\u20ac":1,"\U0001F600":3,"\ufb33":4}', "JCS member order"
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public, sig = sign(seed, b"")
    assert public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert sig.hex() == ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
                         "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert v.ed25519_verify(public, b"", sig) and not v.ed25519_verify(public, b"x", sig)
    print("RFC 8785 numbers and member order, RFC 8032 test 1: ok")
else:
    sys.exit(f"helper: unknown command {cmd}")
EOF
helper() { python3 "$work/helper.py" "$@"; }

echo "== the verifier's own pieces against the RFCs' test vectors"
helper selftest

echo "== a store: events, an older checkpoint, more events, a newer one"
helper events 1 20 | store --json ingest >/dev/null
store checkpoint >"$work/old.note"
helper events 21 17 | store --json ingest >/dev/null
store checkpoint >"$work/mid.note"
# Events whose leaf data exercises RFC 8785: escapes, characters beyond the
# BMP, member names that sort differently in UTF-16 and UTF-8, and numbers
# JSON allows several ways (2^64, 1e21, 1E+2, -0.0, 1.5, -0.0001, 2^53 - 1,
# a 30-digit integer, the smallest subnormal, ...), kept as sent by the store
# but hashed as their nearest double, written as ECMAScript does.
when=$(helper when)
cat >"$work/special.jsonl" <<EOF
{"id":"10000000-0000-4000-8000-000000000001","action":"user.renamed","actor":{"id":"u-1","type":"user","name":"Zoë \"quoted\" \\\\ back\\u0001\\u001f tab\\t €𝄞 \\u2028 \\u007f"},"target":{"id":"t-1","type":"project","name":"\\ud83d\\ude00 ｡"},"payload":{"a":1.5,"b":1e21,"c":-0.0001,"d":9007199254740991,"e":123456789012345678901234567890,"f":1e-7,"g":0.1,"h":-0.0,"i":100,"j":1E+2,"k":5e-324,"l":1.7976931348623157e308,"m":0.000001,"n":123e-2,"o":333333333.33333325,"p":-1e-7,"q":4.35,"big":18446744073709551616,"€":1,"é":2,"😀":3,"｡":4,"\\r":5,"z":[true,false,null,{"y":2,"x":1},[],{}]},"metadata":{"nested":{"deep":[1,2.50,"x"]},"ip":"10.0.0.1"},"occurred_at":"$when","scope":{"id":"org-0","type":"organization"},"success":false}
{"id":"10000000-0000-4000-8000-000000000002","action":"workflow.job.start","actor":{"id":"u-2","type":"user"},"target":{"id":"t-2","type":"workflow"},"payload":{"count":-42,"ratio":2.5e-10,"huge":1e300,"neg_zero":-0},"occurred_at":"$when","scope":{"id":"org-0","type":"organization"},"success":true}
EOF
store --json ingest "$work/special.jsonl" >/dev/null
# The same events under an organization whose name is not ASCII.
sed 's/10000000-0000-4000-8000-00000000000/10000000-0000-4000-8000-00000000001/' "$work/special.jsonl" |
    store --json ingest --org "Zoë & Co" >/dev/null
helper events 38 5 | store --json ingest >/dev/null
store checkpoint >"$work/new.note"
store --json checkpoint >"$work/new.json"
key=$(store --json key show | python3 -c 'import json, sys; print(json.load(sys.stdin)["verifier_key"])')
echo "verifier key: $key"
[ "$(helper field "$work/new.json" note)" = "$(cat "$work/new.note")" ] ||
    fail "checkpoint --json's note is not the note checkpoint prints"

echo "== genuine checkpoints and proofs are accepted"
expect_ok "older checkpoint" --key "$key" checkpoint "$work/old.note"
expect_ok "newer checkpoint" --key "$key" checkpoint "$work/new.note"
helper resign "$work/new.note" "$work/data/signing.key" "$work/resigned.note"
cmp -s "$work/new.note" "$work/resigned.note" ||
    fail "signing the checkpoint body with signing.key (RFC 8032) does not give the store's note byte for byte"
n=0
for id in 00000000-0000-4000-8000-000000000001 00000000-0000-4000-8000-000000000020 \
    00000000-0000-4000-8000-000000000021 00000000-0000-4000-8000-000000000042 \
    10000000-0000-4000-8000-000000000001 10000000-0000-4000-8000-000000000002 \
    10000000-0000-4000-8000-000000000011 10000000-0000-4000-8000-000000000012; do
    n=$((n + 1))
    store --json prove "$id" >"$work/proof$n.json"
    expect_ok "inclusion of $id" --key "$key" inclusion "$work/proof$n.json"
    # integrity.md: the leaf is computed from the event as `get` prints it.
    store get "$id" >"$work/get$n.json"
    helper edit "$work/proof$n.json" "$work/proof$n-get.json" "p['event'] = json.loads(load('$work/get$n.json'))"
    expect_ok "inclusion of $id with the event as get prints it" --key "$key" inclusion "$work/proof$n-get.json"
done
old_size=$(sed -n 2p "$work/old.note")
new_size=$(sed -n 2p "$work/new.note")
store --json prove --consistency "$old_size" >"$work/consistency.json"
expect_ok "consistency $old_size -> $new_size" --key "$key" consistency "$work/consistency.json" --old-checkpoint "$work/old.note"
mid_size=$(sed -n 2p "$work/mid.note")
store --json prove --consistency "$old_size" --to "$mid_size" >"$work/consistency-to.json"
expect_ok "consistency $old_size -> $mid_size (--to), against the checkpoint kept at $mid_size" --key "$key" \
    consistency "$work/consistency-to.json" --old-checkpoint "$work/old.note" --new-checkpoint "$work/mid.note"
expect_reject "consistency $old_size -> $mid_size against the newest checkpoint" --key "$key" \
    consistency "$work/consistency-to.json" --old-checkpoint "$work/old.note" --new-checkpoint "$work/new.note"
store --json prove --consistency "$new_size" >"$work/consistency-same.json"
expect_ok "consistency $new_size -> $new_size" --key "$key" consistency "$work/consistency-same.json" --old-checkpoint "$work/new.note"

echo "== tampered inputs are rejected"
p=$work/proof5.json # the event with escapes and numbers
t=$work/tampered
helper edit "$p" "$t.json" "p['event']['action'] = 'user.deleted'"
expect_reject "a changed event field" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['event']['payload']['a'] = 1.5000000000000002"
expect_reject "a number changed in its last bit" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['event']['actor']['name'] += ' '"
expect_reject "a string with a space added" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['event']['payload']['extra'] = None"
expect_reject "a member added" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['org'] = 'org-1'"
expect_reject "another organization" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['leaf_hash'] = flip(p['leaf_hash'])"
expect_reject "a changed leaf hash" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['inclusion'][0] = flip(p['inclusion'][0])"
expect_reject "a changed first inclusion hash" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['inclusion'][-1] = flip(p['inclusion'][-1])"
expect_reject "a changed last inclusion hash" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['inclusion'].pop()"
expect_reject "an inclusion hash left out" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['inclusion'].append(p['inclusion'][0])"
expect_reject "an inclusion hash added" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['leaf_index'] += 1"
expect_reject "the next leaf index" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['leaf_index'] -= 1"
expect_reject "the previous leaf index" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['leaf_index'] = p['tree_size']"
expect_reject "a leaf index beyond the tree" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['tree_size'] -= 1"
expect_reject "a tree size that is not the checkpoint's" --key "$key" inclusion "$t.json"
helper edit "$p" "$t.json" "p['checkpoint'] = load('$work/old.note')"
expect_reject "the older checkpoint in the proof" --key "$key" inclusion "$t.json"

root=$(sed -n 3p "$work/new.note")
helper note-edit "$work/new.note" "$t.note" "$root" "$(helper flip "$root")"
expect_reject "a checkpoint with another root hash" --key "$key" checkpoint "$t.note"
helper note-edit "$work/new.note" "$t.note" $'\n'"$new_size"$'\n' $'\n'"$((new_size + 1))"$'\n'
expect_reject "a checkpoint with another tree size" --key "$key" checkpoint "$t.note"
helper note-edit "$work/new.note" "$t.note" "auditstore/" "auditstorf/"
expect_reject "a checkpoint with another origin" --key "$key" checkpoint "$t.note"
helper edit "$p" "$t.json" "p['checkpoint'] = load('$t.note')"
expect_reject "a proof whose checkpoint body was changed" --key "$key" inclusion "$t.json"
python3 -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read(); open(sys.argv[2], "w", encoding="utf-8").write(t.replace("\u2014", "-"))' "$work/new.note" "$t.note"
expect_reject "a signature line with a hyphen for the em dash" --key "$key" checkpoint "$t.note"

helper forge "$work/new.note" "$key" "$t.note"
expect_reject "a checkpoint signed by another key under the store's name and key id" --key "$key" checkpoint "$t.note"
helper edit "$p" "$t.json" "p['checkpoint'] = load('$t.note')"
expect_reject "a proof whose checkpoint another key signed" --key "$key" inclusion "$t.json"
other=$(helper other-key "$key")
expect_reject "the store's checkpoint against another public key" --key "$other" checkpoint "$work/new.note"
helper events 1 1 | "$bin" --data-dir "$work/other" --json ingest >/dev/null
"$bin" --data-dir "$work/other" checkpoint >"$work/other.note"
expect_reject "another store's checkpoint" --key "$key" checkpoint "$work/other.note"
helper edit "$p" "$t.json" "p['checkpoint'] = load('$work/other.note')"
expect_reject "a proof with another store's checkpoint" --key "$key" inclusion "$t.json"
# Signed with the store's own key but not the log's tree (a fork, or a
# rewrite by someone who took the key): the signature is good, the proofs fail.
helper resign "$work/new.note" "$work/data/signing.key" "$t.note" "$(sed -n 3p "$work/old.note")"
expect_ok "a fork's checkpoint signed with the store's key (only the signature is checked)" --key "$key" checkpoint "$t.note"
helper edit "$p" "$t.json" "p['checkpoint'] = load('$t.note')"
expect_reject "an inclusion proof against a fork's checkpoint" --key "$key" inclusion "$t.json"
helper edit "$work/consistency.json" "$t.json" "p['checkpoint'] = load('$t.note')"
expect_reject "a consistency proof to a fork's checkpoint" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"
helper resign "$work/old.note" "$work/data/signing.key" "$t-old.note" "$(sed -n 3p "$work/new.note")"
expect_reject "a consistency proof from a fork's older checkpoint" --key "$key" consistency "$work/consistency.json" --old-checkpoint "$t-old.note"

c=$work/consistency.json
helper edit "$c" "$t.json" "p['consistency'][0] = flip(p['consistency'][0])"
expect_reject "a changed first consistency hash" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"
helper edit "$c" "$t.json" "p['consistency'][-1] = flip(p['consistency'][-1])"
expect_reject "a changed last consistency hash" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"
helper edit "$c" "$t.json" "p['consistency'].pop()"
expect_reject "a consistency hash left out" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"
helper edit "$c" "$t.json" "p['consistency'].append(p['consistency'][0])"
expect_reject "a consistency hash added" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"
expect_reject "a consistency proof from another older checkpoint" --key "$key" consistency "$c" --old-checkpoint "$work/new.note"
helper edit "$c" "$t.json" "p['from_size'] -= 1"
expect_reject "a consistency proof with another from_size" --key "$key" consistency "$t.json" --old-checkpoint "$work/old.note"

if [ "$failures" != 0 ]; then
    echo "== $failures unexpected outcomes" >&2
    exit 1
fi
echo "== every check came out as expected"
