//! The admin tool's `checkpoint`, `key show`, `prove`, `verify --against`.

use super::common::{first_json, shared_data, tool_json};
use super::*;

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn the_tool_prints_checkpoints_keys_and_proofs_in_the_spec_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let sample = shared_data("sample-events.jsonl");
    let out = tool_json(dir.path(), &["ingest", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let cp = first_json(&tool_json(dir.path(), &["checkpoint"]));
    assert_eq!(keys(&cp), ["note", "root_hash", "tree_size"]);
    assert_eq!(cp["tree_size"], 1979);
    let key = first_json(&tool_json(dir.path(), &["key", "show"]));
    assert_eq!(keys(&key), ["origin", "verifier_key"]);
    let verifier = VerifierKey::parse(key["verifier_key"].as_str().unwrap()).unwrap();
    let note = cp["note"].as_str().unwrap();
    let opened = Checkpoint::open(note, &verifier, key["origin"].as_str().unwrap()).unwrap();
    assert_eq!(opened.size, 1979);

    let line = std::fs::read_to_string(&sample).unwrap();
    let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let id = first["id"].as_str().unwrap();
    let a = tool_json(dir.path(), &["prove", id]);
    let b = tool_json(dir.path(), &["prove", id]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "the same proof twice");
    let proof = first_json(&a);
    assert_eq!(
        keys(&proof),
        [
            "checkpoint",
            "event",
            "inclusion",
            "leaf_hash",
            "leaf_index",
            "org",
            "tree_size"
        ]
    );
    assert_eq!(proof["leaf_index"], 0);
    assert_eq!(proof["checkpoint"].as_str(), Some(note));

    let c = first_json(&tool_json(
        dir.path(),
        &["prove", "--consistency", "100", "--to", "1979"],
    ));
    assert_eq!(keys(&c), ["checkpoint", "consistency", "from_size", "to_size"]);
    assert_eq!(
        (c["from_size"].as_u64(), c["to_size"].as_u64()),
        (Some(100), Some(1979))
    );

    let missing = tool_json(dir.path(), &["prove", "00000000-0000-4000-8000-000000000000"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stdout).contains("not_found"));

    // `verify --against` the kept checkpoint: fine now, `corrupt` once the
    // store is rolled back to nothing (every segment removed).
    let kept = dir.path().join("../kept.note");
    std::fs::write(&kept, note).unwrap();
    let ok = tool_json(dir.path(), &["verify", "--against", kept.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let log = dir.path().join("0000000000000001.log");
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let bad = tool_json(dir.path(), &["verify", "--against", kept.to_str().unwrap()]);
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("corrupt") && text.contains("leaf_index"), "{text}");
    let _ = std::fs::remove_file(kept);
}
