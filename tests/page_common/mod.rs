//! Reading the web page's answers in tests (tests/web.rs,
//! web_shared_sessions.rs, cluster_sessions.rs).
#![allow(dead_code)]

/// The value of cookie `name` among an answer's `Set-Cookie` headers.
pub fn cookie(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
}

/// The value of the first hidden `csrf` field on a page.
pub fn csrf_field(body: &str) -> String {
    let at = body
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {body}"))
        + 19;
    body[at..].split('"').next().unwrap_or_default().to_owned()
}
