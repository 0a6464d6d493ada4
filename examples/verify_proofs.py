#!/usr/bin/env python3
"""Check auditstore's checkpoints and proofs without any auditstore code.

Only the Python 3 standard library: RFC 8785 (JCS) for the leaf data,
RFC 9162 for the Merkle proofs, C2SP signed notes and RFC 8032 Ed25519 for
the signatures are written out below. The contract is
../shared/spec/integrity.md; the walk-through is docs/integrity.md.

    verify_proofs.py --key KEY checkpoint NOTE_FILE
    verify_proofs.py --key KEY inclusion PROOF_JSON
    verify_proofs.py --key KEY consistency PROOF_JSON --old-checkpoint NOTE_FILE [--new-checkpoint NOTE_FILE]

KEY is the store's note verifier key (`auditstore key show --json` prints it
as "verifier_key"): `<name>+<hex key id>+<base64(0x01 || public key)>`.
PROOF_JSON is the output of `auditstore --json prove ID` or
`auditstore --json prove --consistency OLD`; `-` reads standard input.
Exit status 0: verified; 1: not verified (the reason on stderr); 2: usage.
"""

import argparse
import base64
import hashlib
import json
import re
import sys


class Invalid(Exception):
    """The input does not verify."""


def b64decode(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise Invalid(f"{what} is not valid base64: {text!r}")


# --- Ed25519 verification (RFC 8032 section 6, the reference code) ---------
# Not constant time: verification handles only public data.

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def point_add(a, b):
    # Extended homogeneous coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
    A = (a[1] - a[0]) * (b[1] - b[0]) % P
    B = (a[1] + a[0]) * (b[1] + b[0]) % P
    C = 2 * a[3] * b[3] * D % P
    Dd = 2 * a[2] * b[2] % P
    E, F, G, H = B - A, Dd - C, Dd + C, B + A
    return (E * F % P, G * H % P, F * G % P, E * H % P)


def point_mul(s, p):
    q = (0, 1, 1, 0)  # the neutral element
    while s > 0:
        if s & 1:
            q = point_add(q, p)
        p = point_add(p, p)
        s >>= 1
    return q


def point_equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def point_decompress(s):
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


G_Y = 4 * pow(5, P - 2, P) % P
G = (recover_x(G_Y, 0), G_Y, 1, recover_x(G_Y, 0) * G_Y % P)


def ed25519_verify(public, msg, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a = point_decompress(public)
    r = point_decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + msg).digest(), "little") % L
    return point_equal(point_mul(s, G), point_add(r, point_mul(h, a)))


# --- C2SP signed notes and tlog-checkpoint -----------------------------------


def parse_verifier_key(key):
    """`<name>+<hex key id>+<base64(0x01 || public key)>` -> (name, key id, public key)."""
    parts = key.strip().split("+", 2)  # base64 may contain "+", a name may not
    if len(parts) != 3 or not parts[0]:
        raise Invalid(f"verifier key is not <name>+<hex key id>+<base64 key>: {key!r}")
    name, hex_id, b64_key = parts
    raw = b64decode(b64_key, "verifier key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise Invalid("verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if len(hex_id) != 8 or hex_id.lower() != key_id.hex():
        raise Invalid(f"verifier key's id {hex_id} does not match its name and key ({key_id.hex()})")
    return name, key_id, raw[1:]


def verify_note(note, key):
    """Check that `note` carries a good signature by `key`; return its body text."""
    name, key_id, public = parse_verifier_key(key)
    if any(c < " " and c != "\n" for c in note):
        raise Invalid("note has a control character other than newline")
    body, sep, sigs = note.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise Invalid("note has no signature block (a blank line, then signature lines ending in a newline)")
    body += "\n"  # the signed text is everything up to and including the body's last newline
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):  # U+2014 EM DASH, then a space
            raise Invalid(f"note signature line does not start with an em dash: {line!r}")
        sig_name, _, sig_b64 = line[2:].rpartition(" ")
        sig = b64decode(sig_b64, "note signature")
        if sig_name != name or len(sig) < 4 or sig[:4] != key_id:
            continue  # someone else's signature: not the one we check
        if len(sig) != 4 + 64:
            raise Invalid("note signature by this key is not 4 + 64 bytes")
        if not ed25519_verify(public, body.encode(), sig[4:]):
            raise Invalid(f"note signature by {name} ({key_id.hex()}) is not valid: the body or the signature was changed")
        return body
    raise Invalid(f"note has no signature by {name} with key id {key_id.hex()}")


def verify_checkpoint(note, key):
    """A signed checkpoint -> (origin, tree size, root hash)."""
    body = verify_note(note, key)
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise Invalid("checkpoint body is not origin, tree size, root hash")
    origin, size, root = lines[0], lines[1], lines[2]
    if origin != parse_verifier_key(key)[0]:
        raise Invalid(f"checkpoint origin {origin!r} is not the key's name")
    if not re.fullmatch("0|[1-9][0-9]*", size):
        raise Invalid(f"checkpoint tree size is not a decimal number: {size!r}")
    root_hash = b64decode(root, "checkpoint root hash")
    if len(root_hash) != 32:
        raise Invalid("checkpoint root hash is not 32 bytes")
    return origin, int(size), root_hash


# --- RFC 8785: JSON Canonicalization Scheme ----------------------------------


def jcs_number(x):
    """ECMAScript Number.prototype.toString of an IEEE 754 double."""
    x = float(x)  # an integer beyond 2^53 becomes its nearest double, as in JavaScript
    if x != x or x in (float("inf"), float("-inf")):
        raise Invalid("JCS has no form for NaN or infinity")
    if x == 0:
        return "0"  # also -0
    if x < 0:
        return "-" + jcs_number(-x)
    # repr gives the shortest digits that round-trip (the digits ECMAScript uses);
    # write them as 0.DIGITS * 10^n and lay them out by ECMAScript's rules.
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    all_digits = whole + frac
    digits = all_digits.lstrip("0")
    n = len(whole) + int(exp or "0") - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    return digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))


def jcs(value):
    """The RFC 8785 text of a value parsed by json.loads."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return jcs_number(value)
    if isinstance(value, str):
        # json.dumps escapes exactly as JCS does: \" \\ \b \f \n \r \t, other
        # controls as \u00xx (lowercase hex), everything else as itself.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        # Members sorted by the UTF-16 code units of their names.
        names = sorted(value, key=lambda name: name.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(jcs(n) + ":" + jcs(value[n]) for n in names) + "}"
    raise Invalid(f"not a JSON value: {value!r}")


def no_repeated_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Invalid("a JSON object repeats a key; JCS (I-JSON) has no form for it")
    return obj


def load_json(text):
    try:
        return json.loads(text, object_pairs_hook=no_repeated_keys)
    except json.JSONDecodeError as e:
        raise Invalid(f"not JSON: {e}")


# --- RFC 9162 Merkle tree hashes and proofs ----------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 section 2.1.3.2: the root that `path` proves `leaf` at `index` under."""
    if index >= size:
        raise Invalid(f"leaf index {index} is not below the tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Invalid("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Invalid("inclusion proof is shorter than the tree needs")
    return r


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 section 2.1.4.2: the tree of size `second` extends that of size `first`."""
    if first > second:
        raise Invalid(f"old tree size {first} is larger than the new one {second}")
    if first == second or first == 0:
        # Nothing to prove: equal trees must have equal roots, and every tree
        # extends the empty one.
        if path:
            raise Invalid("consistency proof should be empty for these sizes")
        if first == second and first_hash != second_hash:
            raise Invalid("the two checkpoints have the same size but different roots")
        return
    if not path:
        raise Invalid("consistency proof is empty")
    if first & (first - 1) == 0:  # a power of two: the old root is a node of the new tree
        path = [first_hash] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Invalid("consistency proof is shorter than the trees need")
    if fr != first_hash:
        raise Invalid("consistency proof does not lead to the old checkpoint's root")
    if sr != second_hash:
        raise Invalid("consistency proof does not lead to the new checkpoint's root")


# --- the commands -------------------------------------------------------------


def hashes(proof, field):
    values = proof.get(field)
    if not isinstance(values, list):
        raise Invalid(f"proof has no list {field!r}")
    out = [b64decode(v, f"a hash in {field!r}") for v in values]
    if any(len(h) != 32 for h in out):
        raise Invalid(f"a hash in {field!r} is not 32 bytes")
    return out


def integer(proof, field):
    value = proof.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid(f"proof's {field!r} is not a non-negative integer")
    return value


def cmd_checkpoint(key, note_text):
    origin, size, root = verify_checkpoint(note_text, key)
    return f"checkpoint of {origin}: tree size {size}, root {base64.b64encode(root).decode()}"


def cmd_inclusion(key, proof_text):
    proof = load_json(proof_text)
    origin, size, root = verify_checkpoint(proof.get("checkpoint", ""), key)
    org, event = proof.get("org"), proof.get("event")
    if not isinstance(org, str) or not isinstance(event, dict):
        raise Invalid("proof has no string 'org' and object 'event'")
    data = jcs({"org": org, "event": event}).encode("utf-8", "strict")
    computed = leaf_hash(data)
    if base64.b64encode(computed).decode() != proof.get("leaf_hash"):
        raise Invalid("the leaf hash of 'org' and 'event' is not the proof's 'leaf_hash': one of them was changed")
    index = integer(proof, "leaf_index")
    if integer(proof, "tree_size") != size:
        raise Invalid(f"proof's tree_size {proof['tree_size']} is not the checkpoint's {size}")
    if root_from_inclusion(index, size, computed, hashes(proof, "inclusion")) != root:
        raise Invalid("inclusion proof does not lead to the checkpoint's root")
    return f"event {event.get('id')} of {org} is leaf {index} of the tree of size {size} signed by {origin}"


def cmd_consistency(key, proof_text, old_note, new_note=None):
    proof = load_json(proof_text)
    _, old_size, old_root = verify_checkpoint(old_note, key)
    if new_note is None:
        new_note = proof.get("checkpoint", "")
    origin, new_size, new_root = verify_checkpoint(new_note, key)
    if integer(proof, "from_size") != old_size:
        raise Invalid(f"proof's from_size {proof['from_size']} is not the old checkpoint's size {old_size}")
    if integer(proof, "to_size") != new_size:
        raise Invalid(f"proof's to_size {proof['to_size']} is not the new checkpoint's size {new_size}")
    verify_consistency(old_size, new_size, old_root, new_root, hashes(proof, "consistency"))
    return f"the tree of size {new_size} signed by {origin} extends the one of size {old_size}"


def read(path):
    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8")
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--key", required=True, help="the store's note verifier key (key show's verifier_key)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("checkpoint", help="check a signed checkpoint note").add_argument("note")
    sub.add_parser("inclusion", help="check `prove ID --json` output").add_argument("proof")
    c = sub.add_parser("consistency", help="check `prove --consistency OLD --json` output")
    c.add_argument("proof")
    c.add_argument("--old-checkpoint", required=True, help="the older signed checkpoint note, kept earlier")
    c.add_argument("--new-checkpoint", help="the newer note (default: the proof's; for `prove --consistency OLD --to NEW`)")
    args = ap.parse_args(argv)
    try:
        if args.command == "checkpoint":
            message = cmd_checkpoint(args.key, read(args.note))
        elif args.command == "inclusion":
            message = cmd_inclusion(args.key, read(args.proof))
        else:
            new_note = read(args.new_checkpoint) if args.new_checkpoint else None
            message = cmd_consistency(args.key, read(args.proof), read(args.old_checkpoint), new_note)
    except (Invalid, UnicodeError, OSError) as e:
        print(f"NOT VERIFIED: {e}", file=sys.stderr)
        return 1
    print(f"OK: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
