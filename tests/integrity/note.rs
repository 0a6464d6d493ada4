//! Signed notes against the vectors of Go's golang.org/x/mod/sumdb/note
//! tests (note_test.go: the PeterNeumann key and note), checkpoints, and
//! the key file.

use std::os::unix::fs::PermissionsExt;

use auditstore::integrity::checkpoint::{Checkpoint, CheckpointError};
use auditstore::integrity::key::{self, KeyError};
use auditstore::integrity::note::{self, NoteError, Signer, VerifierKey};

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const SIG: &str =
    "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn go_note() -> String {
    format!("{TEXT}\n{SIG}")
}

#[test]
fn the_go_verifier_key_parses_and_prints_back() {
    let key = VerifierKey::parse(VKEY).expect("Go's example key");
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.id(), 0xc74f20a3);
    assert_eq!(key.to_string(), VKEY);
}

#[test]
fn the_go_signer_key_signs_the_go_note_byte_for_byte() {
    // Ed25519 is deterministic: same key, same text, same signature.
    let signer = Signer::parse(SKEY).expect("Go's example signer key");
    assert_eq!(signer.verifier().to_string(), VKEY);
    assert_eq!(signer.sign(TEXT).expect("sign"), go_note());
    assert_eq!(signer.to_private_text(), SKEY);
}

#[test]
fn the_go_note_verifies_and_a_changed_one_does_not() {
    let key = VerifierKey::parse(VKEY).expect("key");
    assert_eq!(key.open(&go_note()).expect("verifies"), TEXT);
    let changed = go_note().replace("cryptography", "cryptographY");
    assert_eq!(
        key.open(&changed),
        Err(NoteError::BadSignature {
            name: "PeterNeumann".into(),
            id: 0xc74f20a3
        })
    );
}

/// As Go's TestNewVerifier: every proper substring and every one-byte
/// change of the key text is refused.
#[test]
fn mangled_verifier_keys_are_refused() {
    let b = VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] = m[i].wrapping_add(1);
        if let Ok(s) = std::str::from_utf8(&m) {
            assert!(VerifierKey::parse(s).is_err(), "accepted {s:?}");
        }
    }
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::KeyIdMismatch { .. })
    ));
    assert!(matches!(
        VerifierKey::parse("PeterNeumann+c74f20a3+AhpdGQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::UnknownAlgorithm(2)) | Err(NoteError::KeyIdMismatch { .. })
    ));
}

#[test]
fn malformed_notes_are_refused_with_precise_errors() {
    let key = VerifierKey::parse(VKEY).expect("key");
    let sig_b64 = SIG.trim_end().rsplit_once(' ').expect("sig").1;
    let cases: Vec<(String, NoteError)> = vec![
        (TEXT.to_owned(), NoteError::NoSignatureBlock),
        (
            format!("{TEXT}\n{}", SIG.trim_end()),
            NoteError::UnterminatedSignatures,
        ),
        (format!("{TEXT}\n"), NoteError::UnterminatedSignatures),
        (
            format!("{TEXT}\n- PeterNeumann {sig_b64}\n"),
            NoteError::SignaturePrefix { line: 1 },
        ),
        (
            format!("{TEXT}\n\u{2014} PeterNeumann\n"),
            NoteError::MalformedSignature {
                line: 1,
                reason: "no space between name and signature",
            },
        ),
        (
            format!("{TEXT}\n\u{2014} Peter+Neumann {sig_b64}\n"),
            NoteError::MalformedSignature {
                line: 1,
                reason: "the key name is empty or has spaces or '+'",
            },
        ),
        (
            format!("{TEXT}\n\u{2014} PeterNeumann not*base64\n"),
            NoteError::MalformedSignature {
                line: 1,
                reason: "the signature is not standard padded base64",
            },
        ),
        (
            format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            NoteError::MalformedSignature {
                line: 1,
                reason: "the signature is shorter than a key id and one byte",
            },
        ),
        (
            format!("If\tyou\n\n{SIG}"),
            NoteError::ControlCharacter { offset: 2, byte: 9 },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(key.open(&text), Err(want), "{text:?}");
    }
    let many = format!("{TEXT}\n{}", SIG.repeat(101));
    assert_eq!(note::parse(&many).err(), Some(NoteError::TooManySignatures));
    assert_eq!(
        note::parse_bytes(b"a\xff\n\n").err(),
        Some(NoteError::NotUtf8 { offset: 1 })
    );
}

#[test]
fn notes_signed_by_other_keys_only_are_not_verified_but_cosigned_ones_are() {
    let ours = Signer::from_seed("auditstore/test", &[7u8; 32]).expect("signer");
    let witness = Signer::from_seed("witness", &[9u8; 32]).expect("signer");
    let key = ours.verifier();
    let by_witness = witness.sign(TEXT).expect("sign");
    assert!(matches!(
        key.open(&by_witness),
        Err(NoteError::NotSignedByKey { .. })
    ));
    let ours_note = ours.sign(TEXT).expect("sign");
    let witness_line = by_witness.rsplit_once("\n\n").expect("split").1;
    let cosigned = format!("{ours_note}{witness_line}");
    assert_eq!(key.open(&cosigned).expect("cosigned note verifies"), TEXT);
    assert_eq!(
        witness.verifier().open(&cosigned).expect("by the witness too"),
        TEXT
    );
}

#[test]
fn signing_refuses_text_go_would_refuse() {
    let s = Signer::from_seed("n", &[1u8; 32]).expect("signer");
    assert_eq!(s.sign("no newline"), Err(NoteError::TextNotTerminated));
    assert_eq!(s.sign(""), Err(NoteError::EmptyText));
    assert_eq!(
        s.sign("a\rb\n"),
        Err(NoteError::ControlCharacter { offset: 1, byte: 13 })
    );
    assert!(matches!(
        Signer::from_seed("a b", &[1u8; 32]),
        Err(NoteError::InvalidName(_))
    ));
    assert!(matches!(
        Signer::from_seed("a+b", &[1u8; 32]),
        Err(NoteError::InvalidName(_))
    ));
}

#[test]
fn checkpoints_are_the_c2sp_body_and_round_trip_through_a_signed_note() {
    let signer = Signer::from_seed("auditstore/0f3c", &[3u8; 32]).expect("signer");
    let cp = Checkpoint::new("auditstore/0f3c", 1234, [0xab; 32]);
    assert_eq!(
        cp.body(),
        "auditstore/0f3c\n1234\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
    );
    let signed = cp.sign(&signer).expect("sign");
    assert!(signed.starts_with(&cp.body()));
    let back = Checkpoint::open(&signed, &signer.verifier(), "auditstore/0f3c").expect("open");
    assert_eq!(back, cp);
    assert!(matches!(
        Checkpoint::open(&signed, &signer.verifier(), "auditstore/other"),
        Err(CheckpointError::WrongOrigin { .. })
    ));
    let forged = signed.replace("\n1234\n", "\n1235\n");
    assert!(matches!(
        Checkpoint::open(&forged, &signer.verifier(), "auditstore/0f3c"),
        Err(CheckpointError::Note(NoteError::BadSignature { .. }))
    ));
}

#[test]
fn malformed_checkpoint_bodies_are_refused() {
    let root = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
    let cases: Vec<(String, CheckpointError)> = vec![
        (String::new(), CheckpointError::MissingLine("origin")),
        (format!("o\n1\n{root}"), CheckpointError::NotTerminated),
        (format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin),
        ("o\n".into(), CheckpointError::MissingLine("tree size")),
        ("o\n1\n".into(), CheckpointError::MissingLine("root hash")),
        (format!("o\n01\n{root}\n"), CheckpointError::BadSize("01".into())),
        (format!("o\n+1\n{root}\n"), CheckpointError::BadSize("+1".into())),
        (
            format!("o\n18446744073709551616\n{root}\n"),
            CheckpointError::BadSize("18446744073709551616".into()),
        ),
        ("o\n1\nq6ur\n".into(), CheckpointError::BadRootHash("q6ur".into())),
        (format!("o\n1\n{root}\n\n"), CheckpointError::EmptyExtension(1)),
    ];
    for (body, want) in cases {
        assert_eq!(Checkpoint::parse(&body), Err(want), "{body:?}");
    }
    let with_ext =
        Checkpoint::parse(&format!("o\n0\n{root}\nextra line\n")).expect("extension lines are allowed");
    assert_eq!(with_ext.extensions, vec!["extra line".to_owned()]);
    assert_eq!(with_ext.size, 0);
}

#[test]
fn the_key_file_is_created_0600_and_loads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(key::KEY_FILE);
    let signer = key::create(&path, "auditstore/abc").expect("create");
    let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.starts_with("PRIVATE+KEY+auditstore/abc+") && text.ends_with('\n'),
        "{text}"
    );
    let loaded = key::load(&path).expect("load");
    assert_eq!(loaded.verifier(), signer.verifier());
    assert!(matches!(
        key::create(&path, "auditstore/abc"),
        Err(KeyError::Exists { .. })
    ));
    assert!(
        !dir.path().join("signing.key.tmp").exists(),
        "no leftover temporary file"
    );
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(key::KEY_FILE);
    key::create(&path, "n").expect("create");
    for mode in [0o640, 0o604, 0o644, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        match key::load(&path) {
            Err(KeyError::Exposed { mode: m, .. }) => assert_eq!(m, mode),
            other => panic!("mode {mode:o}: expected Exposed, got {other:?}"),
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    assert!(key::load(&path).is_ok(), "owner-only read is fine");
}

#[test]
fn malformed_key_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    };
    assert!(matches!(
        key::load(&write("a", "garbage\n")),
        Err(KeyError::Malformed { .. })
    ));
    assert!(matches!(
        key::load(&write("b", SKEY)),
        Err(KeyError::NotOneLine { .. })
    ));
    assert!(matches!(
        key::load(&write("c", &format!("{SKEY}\n\n"))),
        Err(KeyError::NotOneLine { .. })
    ));
    let wrong_id = SKEY.replace("c74f20a3", "c74f20a4");
    assert!(matches!(
        key::load(&write("d", &format!("{wrong_id}\n"))),
        Err(KeyError::Malformed {
            reason: NoteError::KeyIdMismatch { .. },
            ..
        })
    ));
    assert!(key::load(&write("e", &format!("{SKEY}\n"))).is_ok());
    assert!(matches!(
        key::load(dir.path()),
        Err(KeyError::NotAFile { .. }) | Err(KeyError::Exposed { .. })
    ));
}
