//! The Audit Log page in a real browser: Debian's Chromium driven by
//! chromedriver (thirtyfour) against real `auditstore serve` processes,
//! whose clocks (`--as-of`) carry a request from *Processing* through a
//! live :30 processing run to **Download logs**, and ten days later to
//! *Expired*.
//!
//! Run it with `cargo build && cargo test -p auditstore-browser` (it
//! drives the binary `cargo build` made). Needs `chromium` and
//! `chromium-driver` (apt); without them the test fails with instructions
//! unless `AUDITSTORE_SKIP_BROWSER=1`. With
//! `AUDITSTORE_SCREENSHOT=docs/audit-log.png` it also writes the README's
//! screenshot (the path is relative to the repository).

mod fixture;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use thirtyfour::prelude::*;

use fixture::{acme_id, PASSWORD};
use support::{browser_tools, start_chromedriver, Server};

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

async fn browser(driver_url: &str, chromium: &Path, downloads: &Path, profile: &Path) -> R<WebDriver> {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(&chromium.to_string_lossy())?;
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1100",
        "--lang=en-US",
    ] {
        caps.add_arg(arg)?;
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.display()))?;
    caps.add_experimental_option(
        "prefs",
        json!({
            "download.default_directory": downloads.to_string_lossy(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
        }),
    )?;
    Ok(WebDriver::new(driver_url, caps).await?)
}

/// The element `by`, waiting for it while a navigation completes.
async fn wait(driver: &WebDriver, by: By) -> R<WebElement> {
    let query = driver
        .query(by)
        .wait(Duration::from_secs(10), Duration::from_millis(50));
    Ok(query.first().await?)
}

/// Sign in through the form, submitting it with the keyboard, and wait
/// for the next page: the Audit Log page, or the refusal.
async fn sign_in(driver: &WebDriver, base: &str, user: &str, password: &str) -> R {
    driver.goto(format!("{base}/")).await?;
    driver.find(By::Id("user")).await?.send_keys(user).await?;
    let pass = driver.find(By::Id("password")).await?;
    pass.send_keys(password).await?;
    pass.send_keys(Key::Enter).await?;
    wait(driver, By::Css("#request-button, #signin-error")).await?;
    Ok(())
}

async fn sign_out(driver: &WebDriver) -> R {
    driver.find(By::Css("nav.account button")).await?.click().await?;
    wait(driver, By::Id("user")).await?;
    Ok(())
}

async fn text_of(driver: &WebDriver, by: By) -> R<String> {
    Ok(driver.find(by).await?.text().await?)
}

/// The requests table's rows, each as its cells' texts.
async fn rows(driver: &WebDriver) -> R<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for tr in driver.find_all(By::Css("table.requests tbody tr")).await? {
        let mut cells = Vec::new();
        for cell in tr.find_all(By::Css("th, td")).await? {
            cells.push(cell.text().await?);
        }
        out.push(cells);
    }
    Ok(out)
}

async fn set_date(driver: &WebDriver, id: &str, value: &str) -> R {
    let input = driver.find(By::Id(id)).await?;
    driver
        .execute(
            "arguments[0].value = arguments[1];",
            vec![input.to_json()?, json!(value)],
        )
        .await?;
    Ok(())
}

/// The request button: (disabled, its title).
async fn button(driver: &WebDriver) -> R<(bool, String)> {
    let b = driver.find(By::Id("request-button")).await?;
    Ok((!b.is_enabled().await?, b.attr("title").await?.unwrap_or_default()))
}

fn wait_for_file(path: &Path, limit: Duration) -> R<String> {
    let deadline = Instant::now() + limit;
    loop {
        if path.exists() {
            let mut partial = path.as_os_str().to_owned();
            partial.push(".crdownload");
            let partial = std::path::PathBuf::from(partial);
            if !partial.exists() {
                return Ok(std::fs::read_to_string(path)?);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no download at {}", path.display()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_page_in_chromium() -> R {
    let Some((chromedriver, chromium)) = browser_tools() else {
        return Ok(());
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let (data, downloads, profile) = (
        tmp.path().join("data"),
        tmp.path().join("dl"),
        tmp.path().join("profile"),
    );
    std::fs::create_dir_all(&downloads)?;
    fixture::prepare(&data);
    let chromedriver = start_chromedriver(&chromedriver);
    let driver = browser(&chromedriver.url, &chromium, &downloads, &profile).await?;
    let outcome = flow(&driver, &data, &downloads).await;
    if outcome.is_err() {
        // What the browser showed when the flow stopped.
        let url = driver
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        eprintln!(
            "page at failure ({url}):\n{}",
            driver.source().await.unwrap_or_default()
        );
    }
    driver.quit().await?;
    outcome?;
    eprintln!("browser test took {:.1?}", started.elapsed());
    Ok(())
}

async fn flow(driver: &WebDriver, data: &Path, downloads: &Path) -> R {
    // 09:20: ann asks for a range; the next :30 run is ten minutes away.
    let server = Server::start(data, "2026-12-07T09:20:00Z");
    let base = server.url.clone();
    sign_in(driver, &base, "ann", "not the password").await?;
    let refused = text_of(driver, By::Id("signin-error")).await?;
    assert_eq!(refused, "The user name or password is incorrect.");
    sign_in(driver, &base, "ann", PASSWORD).await?;
    assert!(driver.current_url().await?.path().ends_with("/audit-log"));
    assert_eq!(text_of(driver, By::Tag("h1")).await?, "Audit Log");
    let intro = text_of(driver, By::Css("section.intro")).await?;
    assert!(
        intro.contains("allows 1 audit log request per 30 days"),
        "{intro}"
    );
    assert!(
        intro.contains("Downloads expire 10 days after processing"),
        "{intro}"
    );
    assert!(intro.contains("All dates and times are in UTC."), "{intro}");
    let from = driver.find(By::Id("from")).await?;
    assert_eq!(from.attr("min").await?.as_deref(), Some("2025-12-07"));
    assert_eq!(from.attr("max").await?.as_deref(), Some("2026-12-07"));
    // The label is tied to its input (a click on it focuses the input).
    assert_eq!(
        driver.find(By::Css("label[for=from]")).await?.text().await?,
        "Start date"
    );
    assert_eq!(button(driver).await?, (false, String::new()));
    set_date(driver, "from", "2026-12-02").await?;
    set_date(driver, "to", "2026-12-04").await?;
    driver.find(By::Id("request-button")).await?.click().await?;
    let notice = wait(driver, By::Id("notice")).await?.text().await?;
    assert!(
        notice.ends_with("processed at the Dec 7, 2026, 09:30 UTC run."),
        "{notice}"
    );
    let table = rows(driver).await?;
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0][0], "2026-12-02 – 2026-12-04");
    assert_eq!(table[0][1], "ann");
    assert!(table[0][2].starts_with("Dec 7, 2026, 09:2"), "{table:?}");
    assert_eq!((table[0][3].as_str(), table[0][4].as_str()), ("—", "Processing"));
    // The performance plan's one request is used: disabled until it is 30 days old.
    let (disabled, title) = button(driver).await?;
    assert!(
        disabled && title.contains("New requests can be made on Jan 6, 2027, 09:2"),
        "{title}"
    );
    sign_out(driver).await?;

    // A member sees why they cannot request; a free plan is told to contact support.
    sign_in(driver, &base, "mo", PASSWORD).await?;
    let (disabled, title) = button(driver).await?;
    assert!(
        disabled && title == "Only organization admins may request audit logs.",
        "{title}"
    );
    assert_eq!(text_of(driver, By::Id("request-reason")).await?, title);
    assert!(driver.find_all(By::Css("table.requests")).await?.is_empty());
    sign_out(driver).await?;
    sign_in(driver, &base, "fay", PASSWORD).await?;
    let (disabled, title) = button(driver).await?;
    assert!(disabled && title.contains("Contact support"), "{title}");
    assert!(text_of(driver, By::Id("plan-limit"))
        .await?
        .contains("Contact support"));
    sign_out(driver).await?;

    // The server plan: every state in the table, and the full export link.
    sign_in(driver, &base, "gil", PASSWORD).await?;
    set_date(driver, "from", "2026-11-01").await?;
    set_date(driver, "to", "2026-12-06").await?;
    driver.find(By::Id("request-button")).await?.click().await?;
    wait(driver, By::Id("notice")).await?;
    let statuses: Vec<String> = rows(driver).await?.into_iter().map(|r| r[4].clone()).collect();
    assert_eq!(
        statuses,
        [
            "Processing",
            "Download logs Signed manifest",
            "0 results",
            "Expired"
        ]
    );
    let full = driver.find(By::Id("full-export")).await?;
    assert_eq!(
        full.attr("href").await?.as_deref(),
        Some("/api/v1/orgs/globex/export/full")
    );
    if let Some(path) = std::env::var_os("AUDITSTORE_SCREENSHOT").filter(|p| !p.is_empty()) {
        let png = driver.screenshot_as_png().await?;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::write(&path, png)?;
        eprintln!("screenshot written to {}", path.display());
    }
    server.stop();

    // 09:29:57: ann's request is due at the 09:30 mark, three seconds
    // ahead: the server's own schedule builds the file while it runs.
    let server = Server::start(data, "2026-12-07T09:29:57Z");
    let base = server.url.clone();
    sign_in(driver, &base, "ann", PASSWORD).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while driver.find_all(By::Css("a.download")).await?.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no Download logs link after the 09:30 run"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        driver.refresh().await?;
    }
    let table = rows(driver).await?;
    assert_eq!(table[0][4], "Download logs Signed manifest");
    // Processed at 09:30 by the live schedule (the run at start, 09:29:57,
    // found nothing due): expiry is ten days after that.
    assert_eq!(table[0][3], "Dec 17, 2026, 09:30 UTC");
    driver.find(By::Css("a.download")).await?.click().await?;
    let csv = wait_for_file(
        &downloads.join("audit-log-acme-2026-12-02-2026-12-04.csv"),
        Duration::from_secs(15),
    )?;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers()?.get(0), Some("id"));
    let ids: BTreeSet<String> = reader
        .records()
        .map(|r| r.map(|r| r[0].to_owned()))
        .collect::<Result<_, _>>()?;
    let expected: BTreeSet<String> = fixture::ACME_EVENTS
        .iter()
        .filter(|(_, _, inside)| *inside)
        .map(|(n, _, _)| acme_id(*n))
        .collect();
    assert_eq!(ids, expected);
    // The signed manifest, downloaded in the browser too: the admin tool
    // checks the downloaded file against it with the store's key.
    driver.find(By::Css("a.manifest")).await?.click().await?;
    let manifest_path = downloads.join("audit-log-acme-2026-12-02-2026-12-04.manifest.json");
    let manifest = wait_for_file(&manifest_path, Duration::from_secs(15))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)?;
    assert_eq!(manifest["format"], "auditstore-export-manifest/1");
    assert_eq!(manifest["org"], "acme");
    assert_eq!(manifest["file"]["rows"], expected.len());
    let (disabled, title) = button(driver).await?;
    assert!(disabled && title.contains("Jan 6, 2027, 09:2"), "{title}");
    server.stop();
    let checked = std::process::Command::new(support::bin())
        .arg("--data-dir")
        .arg(data)
        .args(["--json", "export", "verify"])
        .arg(downloads.join("audit-log-acme-2026-12-02-2026-12-04.csv"))
        .arg(&manifest_path)
        .output()?;
    assert!(checked.status.success(), "{checked:?}");
    let checked: serde_json::Value = serde_json::from_slice(&checked.stdout)?;
    assert_eq!(checked["rows"], expected.len());

    // Ten days after processing the download has expired.
    let server = Server::start(data, "2026-12-17T09:31:00Z");
    sign_in(driver, &server.url, "ann", PASSWORD).await?;
    let table = rows(driver).await?;
    assert_eq!(table[0][4], "Expired");
    assert!(driver.find_all(By::Css("a.download")).await?.is_empty());
    server.stop();
    Ok(())
}
