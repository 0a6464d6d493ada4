//! The data directory the browser test serves, made with the admin tool:
//! organizations on three plans, their users, events, and export requests
//! in every state for the screenshot's organization.

use std::path::Path;

use super::support::tool;

pub const PASSWORD: &str = "browser-test-pass";
/// When the setup's own records are made.
const SETUP: &str = "2026-12-07T09:00:00Z";

/// An event of `org` as a JSON line.
fn event(n: u32, occurred_at: &str) -> String {
    format!(
        r#"{{"id":"00000000-0000-4000-8000-{n:012}","action":"document.update","actor":{{"id":"u{n}","type":"user"}},"target":{{"id":"doc-{n}","type":"document"}},"occurred_at":"{occurred_at}","success":true}}"#
    )
}

/// acme's events: (id number, instant, inside the padded window of the
/// request for 2026-12-02 – 2026-12-04, i.e. [Dec 1, Dec 6)).
pub const ACME_EVENTS: [(u32, &str, bool); 5] = [
    (1, "2026-11-30T23:59:59Z", false),
    (2, "2026-12-01T00:00:00Z", true),
    (3, "2026-12-03T08:15:00Z", true),
    (4, "2026-12-05T23:59:59Z", true),
    (5, "2026-12-06T00:00:00Z", false),
];

/// The id of acme's event number `n`.
pub fn acme_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

pub fn prepare(dir: &Path) {
    let t = |args: &[&str], stdin: &str| tool(dir, SETUP, args, stdin);
    t(&["org", "set", "acme", "--plan", "performance"], "");
    t(&["org", "set", "globex", "--plan", "server"], "");
    t(&["org", "set", "freeco", "--plan", "free"], "");
    for (org, role, name) in [
        ("acme", "admin", "ann"),
        ("acme", "member", "mo"),
        ("globex", "admin", "gil"),
        ("freeco", "admin", "fay"),
    ] {
        let args = [
            "user",
            "add",
            "--org",
            org,
            "--role",
            role,
            name,
            "--password-stdin",
        ];
        t(&args, &format!("{PASSWORD}\n"));
    }
    let acme: Vec<String> = ACME_EVENTS.iter().map(|(n, at, _)| event(*n, at)).collect();
    t(&["ingest", "--org", "acme"], &acme.join("\n"));
    // Another organization's event inside the window never shows in acme's file.
    let globex = [
        event(100, "2026-11-10T10:00:00Z"),
        event(101, "2026-12-03T09:00:00Z"),
    ];
    t(&["ingest", "--org", "globex"], &globex.join("\n"));
    // globex's past requests: expired by now, without data, ready.
    for (made, processed, from, to) in [
        (
            "2026-11-20T08:00:00Z",
            "2026-11-20T08:30:00Z",
            "2026-11-01",
            "2026-11-15",
        ),
        (
            "2026-12-06T10:00:00Z",
            "2026-12-06T10:30:00Z",
            "2026-06-01",
            "2026-06-30",
        ),
        (
            "2026-12-07T08:00:00Z",
            "2026-12-07T08:30:00Z",
            "2026-12-01",
            "2026-12-05",
        ),
    ] {
        let request = [
            "export", "request", "--org", "globex", "--user", "gil", "--from", from, "--to", to,
        ];
        tool(dir, made, &request, "");
        tool(dir, processed, &["export", "process"], "");
    }
}
