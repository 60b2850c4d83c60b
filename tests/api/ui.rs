//! The dashboard at `/ui/`: its HTTP contract (types, ETag/304, CSP, size, redirect, 404), and
//! a session in a real headless Chromium driven over WebDriver (fantoccini + chromedriver):
//! root signs in, adds a user and a key through the forms, reads the spend tables and the CSV
//! (the same strings `/1/usages/detail` answers), a member sees only their own usage, a wrong
//! token is refused in plain words, and a 375 px phone never scrolls sideways.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the browser test says
//! `skipped: Chromium not installed` on stderr and returns; with `CATGATE_REQUIRE_BROWSER=1`
//! (CI) it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use catgate::store::usage::{UsageRecord, UsageSource};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// HTTP, no browser

async fn fetch(app: &TestApp, path: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(path));
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn assets_have_their_types_security_headers_and_etags() {
    let app = spawn_app().await;
    let mut total = 0;
    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let resp = fetch(&app, path, None).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), content_type, "{path}");
        assert_eq!(header(&resp, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(&resp, "referrer-policy"), "no-referrer");
        let csp = header(&resp, "content-security-policy");
        for rule in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: CSP {csp:?} lacks {rule}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let etag = header(&resp, "etag");
        assert!(
            etag.starts_with('"') && etag.len() > 2,
            "{path}: etag {etag:?}"
        );
        if path != "/ui/" {
            total += resp.bytes().await.unwrap().len();
        }

        let again = fetch(&app, path, Some(&etag)).await;
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(again.bytes().await.unwrap().is_empty());
        let changed = fetch(&app, path, Some("\"something-else\"")).await;
        assert_eq!(changed.status(), 200, "{path}");
    }
    assert!(total <= 200 * 1024, "the dashboard weighs {total} bytes");
    assert_eq!(total, catgate::ui::total_bytes());
}

#[tokio::test]
async fn ui_redirects_to_the_page_and_unknown_assets_are_404() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(header(&resp, "location"), "/ui/");

    for path in [
        "/ui/nope.js",
        "/ui/app.js/x",
        "/ui/../Cargo.toml",
        "/ui/.env",
    ] {
        let (status, body) = app.call("GET", path, None, None).await;
        assert_eq!(status, 404, "{path}");
        assert_error(&body);
    }
    let (status, body) = app.call("POST", "/ui/", None, None).await;
    assert_eq!(status, 405);
    assert_error(&body);
}

// ---------------------------------------------------------------------------------------------
// A real browser

/// Straight to stderr: the test harness captures `eprintln!` of a passing test, and a skip
/// must never pass silently.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Debian's paths; `CATGATE_CHROMIUM` / `CATGATE_CHROMEDRIVER` point elsewhere.
fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}
const WAIT: Duration = Duration::from_secs(15);

/// chromedriver (and the Chromium it starts, in the same process group) for one test; the
/// group is killed on drop, so a failing test leaves no browser behind.
struct Browser {
    client: Client,
    driver: Child,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.driver.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// None (after saying so loudly) when Chromium is not installed, unless CI requires it.
    async fn start() -> Option<Browser> {
        let chromium = program("CATGATE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CATGATE_CHROMEDRIVER", "/usr/bin/chromedriver");
        if !Path::new(&chromium).exists() || !Path::new(&chromedriver).exists() {
            if std::env::var("CATGATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("CATGATE_REQUIRE_BROWSER=1 but {chromium} or {chromedriver} is missing");
            }
            say(&format!(
                "\n*** skipped: Chromium not installed ({chromium}, {chromedriver}); \
                 apt-get install chromium chromium-driver ***\n"
            ));
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("cannot start chromedriver")
        };
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            let builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await;
            match builder {
                Ok(client) => {
                    return Some(Browser {
                        client,
                        driver,
                        downloads,
                        _profile: profile,
                    })
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last_error}");
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Polls `expr` (a JS expression) until it is truthy; returns its value.
    async fn until(&self, expr: &str, what: &str) -> Value {
        let script = format!("return ({expr}) || null;");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.js(&script).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self.js("return document.body.innerText").await;
                panic!("waited {WAIT:?} for {what} ({expr}); the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let input = self.client.find(Locator::Css(css)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Signs in through the form and waits for the first view to finish loading.
    async fn sign_in(&self, app: &TestApp, token: &str) {
        self.goto(&app.url("/ui/")).await;
        let signed_in = self
            .until(
                "(!document.getElementById('signin').hidden && 'out') || \
                 (document.querySelector('.view:not([aria-busy])') && 'in')",
                "the sign-in form or a restored session",
            )
            .await;
        if signed_in == "in" {
            self.click("#sign-out").await;
            self.until(
                "!document.getElementById('signin').hidden",
                "the sign-in form",
            )
            .await;
        }
        self.fill("#token", token).await;
        self.click("#signin-form button[type=submit]").await;
    }

    /// Waits until view `name` (`spend`, `users`, `keys`, `me`) has loaded or shown its error.
    async fn loaded(&self, name: &str) {
        let css = format!("#view .view[data-view={name}]:not([aria-busy])");
        self.until(&format!("document.querySelector('{css}')"), name)
            .await;
    }

    async fn view_text(&self) -> String {
        self.js("return document.body.innerText")
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The cells' text of each body row of `table` (the row header first).
    async fn table(&self, css: &str) -> Vec<Vec<String>> {
        let script = format!(
            "return [...document.querySelectorAll('{css} tbody tr')]\
             .map(tr => [...tr.cells].map(c => c.textContent))"
        );
        serde_json::from_value(self.js(&script).await).unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// The page never scrolls sideways.
    async fn assert_no_horizontal_overflow(&self, what: &str) {
        let sizes = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        assert!(
            scroll <= inner,
            "{what}: {scroll} px wide in a {inner} px window"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The data: some history inserted directly, some real requests through the mock upstream

fn days_ago(n: i64) -> String {
    let day = time::OffsetDateTime::now_utc().date() - time::Duration::days(n);
    format!("{day}T12:00:00.000000Z")
}

/// A usage row `ago` days before today; `cost` empty = unpriced.
fn usage(user: i64, ago: u64, model: &str, tokens: [u64; 4], cost: &str) -> UsageRecord {
    let [prompt, cached, completion, reasoning] = tokens;
    UsageRecord {
        request_id: uuid::Uuid::new_v4().to_string(),
        user_id: user,
        key_id: None,
        model: model.into(),
        route: "/v1/chat/completions".into(),
        prompt_tokens: prompt,
        cached_tokens: cached,
        cache_write_tokens: 0,
        audio_input_tokens: 0,
        completion_tokens: completion,
        reasoning_tokens: reasoning,
        audio_output_tokens: 0,
        total_tokens: prompt + completion,
        service_tier: None,
        usage_source: UsageSource::Upstream,
        cost: (!cost.is_empty()).then(|| cost.parse().unwrap()),
        stream: false,
        status: 200,
        latency_ms: 900,
        attempts: 1,
        created_at: days_ago(ago as i64),
    }
}

/// Twenty days of alice (gpt-5, gpt-4.1-mini) and root (gpt-4.1), and one unpriced request.
async fn seed_history(app: &TestApp, alice: i64) {
    let mut records = Vec::new();
    for ago in 1..=20_u64 {
        // Busier mid-week, quieter at weekends: something a chart can show.
        let load = [3, 5, 6, 7, 6, 2, 1][(ago % 7) as usize];
        let gpt5 = format!("0.{:06}", 60_000 * load + 7_500 * (ago % 4));
        let tokens = [20_000 * load, 12_000, 3_000, 1_024];
        records.push(usage(alice, ago, "gpt-5", tokens, &gpt5));
        let mini = format!("0.{:06}", 21_000 * load);
        let tokens = [8_000, 0, 900 * ago, 0];
        records.push(usage(alice, ago, "gpt-4.1-mini", tokens, &mini));
        if ago % 3 == 0 {
            let tokens = [50_000, 0, 5_000, 0];
            records.push(usage(1, ago, "gpt-4.1", tokens, "0.140000"));
        }
    }
    records.push(usage(alice, 2, "mystery-model", [1_000, 0, 100, 0], ""));
    app.app.store.insert_usage(&records).await.unwrap();
}

/// 1234567 → "1,234,567", as the page groups digits.
fn grouped(n: &Value) -> String {
    let digits = n.as_i64().unwrap().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the page's report table must show for the API's rows: every figure as the API gave
/// it (digits grouped, money with a `$`).
fn expected_table(rows: &Value, first: &str) -> Vec<Vec<String>> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut notes = Vec::new();
            for (field, word) in [
                ("unpricedRequests", "unpriced"),
                ("estimatedRequests", "estimated"),
                ("failedRequests", "failed"),
            ] {
                if r[field].as_i64().unwrap() > 0 {
                    notes.push(format!("{} {word}", grouped(&r[field])));
                }
            }
            let mut row = vec![r[first].as_str().unwrap().to_string()];
            for field in [
                "requests",
                "promptTokens",
                "cachedTokens",
                "completionTokens",
                "reasoningTokens",
                "totalTokens",
            ] {
                row.push(grouped(&r[field]));
            }
            row.push(format!("${}", r["cost"].as_str().unwrap()));
            row.push(notes.join(", "));
            row
        })
        .collect()
}

/// The report window the page shows, as a query string.
async fn page_window(browser: &Browser) -> String {
    let w = browser
        .js("return [document.getElementById('win-from').value, document.getElementById('win-to').value]")
        .await;
    format!(
        "from={}&to={}",
        w[0].as_str().unwrap(),
        w[1].as_str().unwrap()
    )
}

/// A file in the download folder, once Chromium has finished writing it.
async fn downloaded(dir: &Path) -> (PathBuf, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "csv"));
        if let Some(path) = done {
            let text = std::fs::read_to_string(&path).unwrap();
            return (path, text);
        }
        assert!(tokio::time::Instant::now() < deadline, "no CSV downloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = spawn_app().await;
    let root = app.init_root().await;
    let (alice, _) = app.add_user(&root, "alice").await;
    seed_history(&app, alice).await;

    // Root signs in and lands on the spend view.
    browser.sign_in(&app, &root).await;
    browser.loaded("spend").await;
    assert!(browser.view_text().await.contains("Signed in as root"));

    // Users: add bob through the form.
    browser.goto(&app.url("/ui/#users")).await;
    browser.loaded("users").await;
    browser.fill("#new-user", "bob").await;
    browser.click("#add-user button[type=submit]").await;
    browser
        .until(
            "document.querySelector('#users tr[data-user=\"bob\"]')",
            "bob in the table",
        )
        .await;
    let (_, users) = app.get("/1/users", &root).await;
    let bob = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .expect("bob was not added")
        .clone();
    let bob_token = bob["token"].as_str().unwrap().to_string();
    browser
        .click("#users tr[data-user=\"bob\"] .token-cell button")
        .await;
    let shown = browser
        .until(
            "document.querySelector('#users tr[data-user=\"bob\"] .token').textContent.includes('-') && \
             document.querySelector('#users tr[data-user=\"bob\"] .token').textContent",
            "bob's token",
        )
        .await;
    assert_eq!(shown, json!(bob_token));
    browser.assert_no_horizontal_overflow("users").await;
    browser.screenshot("users.png").await;
    limits_checks(&browser, &app, &root).await;

    // Keys: add the team's key (pointing at the mock upstream) through the form.
    browser.goto(&app.url("/ui/#keys")).await;
    browser.loaded("keys").await;
    browser.fill("#key-name", "team-key").await;
    browser.fill("#key-secret", "sk-test-secret-1234").await;
    browser.fill("#key-endpoint", &app.mock.url()).await;
    browser.click("#add-key button[type=submit]").await;
    browser
        .until(
            "document.querySelector('#keys tr[data-key=\"team-key\"]')",
            "the key in the table",
        )
        .await;
    let (_, keys) = app.get("/1/keys", &root).await;
    assert_eq!(keys[0]["name"], "team-key");
    assert_eq!(keys[0]["key"], "sk-test-secret-1234");
    assert_eq!(keys[0]["endpoint"], app.mock.url());
    let page = browser.view_text().await;
    assert!(
        !page.contains("sk-test-secret-1234"),
        "the key is shown in full"
    );
    key_status_checks(&browser, &app, &root).await;
    browser.screenshot("keys.png").await;

    // Bob's real requests go through that key.
    for _ in 0..3 {
        let (status, body) = app
            .post(
                "/v1/chat/completions",
                &bob_token,
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.usage_rows(3 + 20 * 2 + 6 + 1).await;

    // Spend: the tables show exactly what /1/usages/detail answers.
    browser.goto(&app.url("/ui/#spend")).await;
    browser.loaded("spend").await;
    let window = page_window(&browser).await;
    for (table, group, first) in [
        ("#by-user", "user", "userName"),
        ("#by-model", "model", "model"),
    ] {
        let (status, rows) = app
            .get(
                &format!("/1/usages/detail?{window}&group_by={group}"),
                &root,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            browser.table(table).await,
            expected_table(&rows, first),
            "{table}"
        );
    }
    let (_, by_user) = app
        .get(&format!("/1/usages/detail?{window}&group_by=user"), &root)
        .await;
    assert_eq!(by_user.as_array().unwrap().len(), 3, "{by_user}");
    // The chart: one bar segment per (day, model) with usage, one legend entry per model.
    let (_, cells) = app
        .get(
            &format!("/1/usages/detail?{window}&group_by=day,model"),
            &root,
        )
        .await;
    let rects = browser
        .js("return document.querySelectorAll('.chart .bar rect').length")
        .await;
    assert_eq!(rects, json!(cells.as_array().unwrap().len()));
    let legend = browser
        .js("return [...document.querySelectorAll('.legend li')].map(li => li.textContent).sort()")
        .await;
    assert_eq!(
        legend,
        json!([
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4o-mini",
            "gpt-5",
            "mystery-model"
        ])
    );
    browser.client.set_window_size(1280, 1400).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // the chart redraws 150 ms after a resize
    browser.screenshot("root.png").await;
    browser.client.set_window_size(1280, 1000).await.unwrap();

    // CSV: the download is the API's CSV, byte for byte.
    browser.click("#csv").await;
    let (path, csv) = downloaded(browser.downloads.path()).await;
    let expected = app
        .http
        .get(app.url(&format!(
            "/1/usages/detail?{window}&group_by=user,model&format=csv"
        )))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, expected);
    assert!(csv.starts_with("userId,userName,model,requests,"), "{csv}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("catgate-usage-"), "{name}");

    // A wrong token is refused in plain words.
    browser.click("#sign-out").await;
    browser.sign_in(&app, "not-a-token").await;
    let error = browser
        .until(
            "!document.getElementById('signin-error').hidden && document.getElementById('signin-error').textContent",
            "the sign-in error",
        )
        .await;
    assert_eq!(error, json!("That token was not accepted"));

    // A member sees their own usage only.
    browser.sign_in(&app, &bob_token).await;
    browser.loaded("me").await;
    let window = page_window(&browser).await;
    let (_, own) = app
        .get(
            &format!("/1/me/usages/detail?{window}&group_by=model"),
            &bob_token,
        )
        .await;
    assert_eq!(
        browser.table("#by-model").await,
        expected_table(&own, "model")
    );
    assert_eq!(own[0]["requests"], 3);
    let page = browser.view_text().await;
    assert!(page.contains("Your usage, bob"), "{page}");
    for other in ["alice", "gpt-5", "Users", "Keys", "By user"] {
        assert!(!page.contains(other), "a member sees {other:?}:\n{page}");
    }
    member_budget_checks(&browser, &app, &bob_token).await;
    browser.screenshot("member.png").await;

    // ...and a root view, opened by hand, says why not.
    browser.goto(&app.url("/ui/#users")).await;
    let error = browser
        .until(
            "document.getElementById('view-error')?.textContent",
            "the view's error",
        )
        .await;
    assert_eq!(error, json!("Only root may do this"));
    let page = browser.view_text().await;
    assert!(!page.contains("alice"), "{page}");

    // A phone: 375 px wide, nothing scrolls sideways.
    browser.client.set_window_size(375, 812).await.unwrap();
    browser.sign_in(&app, &root).await;
    browser.loaded("spend").await;
    let width = browser.js("return window.innerWidth").await;
    assert!(width.as_u64().unwrap() <= 375, "window is {width} px wide");
    browser
        .until("document.querySelector('.chart')", "the chart")
        .await;
    browser
        .assert_no_horizontal_overflow("spend at 375 px")
        .await;
    browser.screenshot("mobile.png").await;
    for view in ["#users", "#keys"] {
        browser.goto(&app.url(&format!("/ui/{view}"))).await;
        browser.loaded(&view[1..]).await;
        browser
            .assert_no_horizontal_overflow(&format!("{view} at 375 px"))
            .await;
    }

    let Browser { client, .. } = &browser;
    client.clone().close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Checks for the team controls of issue #11 (limits, spend, key status), driven through the
// dashboard and read back from the API.

async fn limits_checks(browser: &Browser, app: &TestApp, root: &str) {
    let (_, users) = app.get("/1/users", root).await;
    assert!(
        users[0].get("limits").is_some(),
        "users have limits: {users}"
    );
    browser
        .click("#users tr[data-user=\"bob\"] .actions button:first-child")
        .await;
    browser.fill("#lim-monthlyBudget", "50.00").await;
    browser.fill("#lim-rpm", "60").await;
    browser.click(".limits-form button[type=submit]").await;
    browser
        .until(
            "document.getElementById('notice').textContent.includes('Saved the limits')",
            "saved limits",
        )
        .await;
    let (_, users) = app.get("/1/users", root).await;
    let bob = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap();
    assert_eq!(bob["limits"]["monthlyBudget"], "50.00", "{bob}");
    assert_eq!(bob["limits"]["rpm"], 60, "{bob}");
    assert_eq!(bob["limits"]["dailyBudget"], Value::Null, "{bob}");
}

async fn key_status_checks(browser: &Browser, app: &TestApp, root: &str) {
    let (_, keys) = app.get("/1/keys", root).await;
    assert!(
        keys[0].get("status").is_some(),
        "keys have a status: {keys}"
    );
    let row = "#keys tr[data-key=\"team-key\"]";
    for (button, status) in [("Disable", "disabled"), ("Enable", "active")] {
        let script = format!(
            "[...document.querySelectorAll('{row} .actions button')].find(b => b.textContent === '{button}')"
        );
        browser.until(&script, button).await;
        browser.js(&format!("({script}).click()")).await;
        browser
            .until(
                &format!("document.querySelector('{row} .badge')?.textContent === '{status}'"),
                status,
            )
            .await;
        let (_, keys) = app.get("/1/keys", root).await;
        assert_eq!(keys[0]["status"], status, "{keys}");
    }
}

async fn member_budget_checks(browser: &Browser, app: &TestApp, token: &str) {
    let (_, me) = app.get("/1/me", token).await;
    let Some(month) = me.pointer("/spend/month").and_then(Value::as_str) else {
        panic!("/1/me shows spend.month: {me}");
    };
    let cards = browser
        .js("return document.getElementById('budget').innerText")
        .await;
    assert!(
        cards.as_str().unwrap().contains(&format!("${month}")),
        "{cards}"
    );
}
