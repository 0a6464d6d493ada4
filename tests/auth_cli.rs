//! The admin tool's `token` and `user` commands (http.md, "Who may do
//! what"): their JSON shapes, refusals and exit statuses.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_auditstore");

struct Run {
    code: i32,
    json: Value,
    stderr: String,
}

fn run(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn tokens_are_made_listed_and_revoked_in_the_contracts_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let made = run(
        dir.path(),
        &[
            "token", "create", "--org", "acme", "--role", "ingest", "--name", "svc",
        ],
        b"",
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(
        keys(&made.json),
        ["created_at", "id", "name", "org", "role", "token"]
    );
    assert_eq!(made.json["org"], "acme");
    assert_eq!(made.json["role"], "ingest");
    assert_eq!(made.json["name"], "svc");
    let token = made.json["token"].as_str().unwrap();
    assert!(token.starts_with("aus_") && token.len() == 40, "{token}");

    let op = run(dir.path(), &["token", "create", "--operator"], b"");
    assert_eq!(op.code, 0, "{}", op.stderr);
    assert_eq!(op.json["org"], Value::Null);
    assert_eq!(op.json["role"], "operator");
    assert_eq!(op.json["name"], Value::Null);

    // The secret is shown once: the metadata holds only its hash.
    let meta = std::fs::read(dir.path().join("meta.redb")).unwrap();
    assert!(!meta.windows(token.len()).any(|w| w == token.as_bytes()));

    let list = run(dir.path(), &["token", "list"], b"");
    let all = list.json.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|t| t.get("token").is_none()));
    assert_eq!(keys(&all[0]), ["created_at", "id", "name", "org", "role"]);
    let acme = run(dir.path(), &["token", "list", "--org", "acme"], b"");
    assert_eq!(acme.json.as_array().unwrap().len(), 1);

    let id = made.json["id"].as_str().unwrap();
    let revoked = run(dir.path(), &["token", "revoke", id], b"");
    assert_eq!(
        (revoked.code, revoked.json.clone()),
        (0, serde_json::json!({ "revoked": id }))
    );
    let again = run(dir.path(), &["token", "revoke", id], b"");
    assert_eq!(again.code, 1);
    assert_eq!(again.json["error"]["code"], "not_found");
    let list = run(dir.path(), &["token", "list"], b"");
    assert_eq!(
        list.json.as_array().unwrap().len(),
        1,
        "a revoked token is not listed"
    );

    // An organization's token with the operator role is a usage error.
    let bad = Command::new(BIN)
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["token", "create", "--org", "acme", "--role", "operator"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn users_are_added_with_their_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let add = |name: &str, password: &[u8]| {
        run(
            dir.path(),
            &[
                "user",
                "add",
                "--org",
                "acme",
                "--role",
                "admin",
                name,
                "--password-stdin",
            ],
            password,
        )
    };
    let ann = add("ann", b"a long passphrase\n");
    assert_eq!(ann.code, 0, "{}", ann.stderr);
    assert_eq!(
        ann.json,
        serde_json::json!({"user": "ann", "org": "acme", "role": "admin"})
    );
    assert!(ann.stderr.is_empty(), "{}", ann.stderr);

    // The contract sets no minimum: a short one is accepted, with a warning.
    let short = add("bo", b"abc");
    assert_eq!(short.code, 0, "{}", short.stderr);
    assert!(short.stderr.contains("warning"), "{}", short.stderr);

    let empty = add("cy", b"");
    assert_eq!(empty.code, 1);
    assert_eq!(empty.json["error"]["code"], "invalid_request");

    let twice = add("ann", b"another passphrase");
    assert_eq!(twice.code, 1);
    assert_eq!(twice.json["error"]["code"], "conflict");

    // The password is kept only as an argon2id hash.
    let meta = std::fs::read(dir.path().join("meta.redb")).unwrap();
    assert!(!meta.windows(17).any(|w| w == b"a long passphrase"));
    assert!(meta.windows(10).any(|w| w == b"$argon2id$"));
}
