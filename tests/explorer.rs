//! The API explorer a browser gets at `/` (src/openapi/docs.html), used as a person uses
//! it: headless Chromium, driven over the DevTools protocol, opens the page, picks a
//! table, builds a filtered request with the form's controls (mouse clicks and typed text
//! as input events; `<select>`s are set by script, their pop-ups being native widgets),
//! sends it and reads the rows the page shows. Screenshots at 1280 and 360 px wide are
//! kept in target/tmp/explorer/.
//!
//! Why the DevTools protocol from Rust (a websocket, the `tungstenite` dev-dependency)
//! rather than puppeteer: it needs nothing but Chromium and crates that Cargo.lock pins,
//! where puppeteer would need Node.js and npm on the machine and an npm install at test
//! time whose protocol client must keep up with Debian's Chromium.

mod common;

use std::io::BufRead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One headless Chromium and a DevTools session on its first page.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Protocol events received so far (`Network.requestWillBeSent`, ...).
    events: Vec<Value>,
}

impl Browser {
    fn launch(name: &str) -> Browser {
        let profile = out_dir().join(format!("profile-{name}"));
        let _ = std::fs::remove_dir_all(&profile);
        let mut child = Command::new(common::chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        common::reap_with_tests(&child);
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let endpoint = loop {
            let line = stderr
                .next()
                .unwrap_or_else(|| panic!("chromium exited:\n{seen}"))
                .unwrap();
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                break url.trim().to_string();
            }
            seen.push_str(&line);
            seen.push('\n');
        };
        std::thread::spawn(move || stderr.for_each(drop));
        let host = endpoint
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let targets = ureq::get(&format!("http://{host}/json/list"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let targets: Value = serde_json::from_str(&targets).unwrap();
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_string();
        let stream = TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(page.as_str(), stream).expect("DevTools websocket");
        let mut browser = Browser {
            child,
            ws,
            next_id: 0,
            events: Vec::new(),
        };
        browser.call("Page.enable", json!({}));
        browser.call("Network.enable", json!({}));
        // Layout shifts not caused by input, summed as Cumulative Layout Shift counts them.
        browser.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__shift = 0; window.__moved = []; \
                new PerformanceObserver(list => { for (const e of list.getEntries()) { \
                  if (e.hadRecentInput) continue; window.__shift += e.value; \
                  for (const s of e.sources) window.__moved.push(s.node ? s.node.nodeName + '#' + \
                    (s.node.id || s.node.className || '') : '?'); } \
                }).observe({type: 'layout-shift', buffered: true});"}),
        );
        browser
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(message.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().expect("DevTools message") else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
            if reply["method"].is_string() {
                self.events.push(reply);
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy and returns its value.
    fn wait_for(&mut self, expression: &str) -> Value {
        // Generous: CI shares two cores between Chromium, pgrest and PostgreSQL.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.eval(expression);
            if !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0)
            {
                return value;
            }
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "(document.querySelector({}) || {{}}).textContent",
            json!(selector)
        );
        self.eval(&js).as_str().unwrap_or_default().to_string()
    }

    /// Loads `url` as a new document (by way of about:blank, so that a URL differing only
    /// in its fragment is a new visit too, not a scroll within the page).
    fn open(&mut self, url: &str) {
        for url in ["about:blank", url] {
            self.call("Page.navigate", json!({"url": url}));
            self.wait_for(&format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ));
        }
    }

    fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
    }

    /// A mouse click in the middle of the element, as a person's: pressed and released.
    fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.wait_for(&js);
        assert!(
            at[0].as_f64() > Some(0.0),
            "{selector} is not shown (hidden by a search?)"
        );
        let (x, y) = (at[0].clone(), at[1].clone());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Clicks into a text field, selects what it holds and types `text` over it (an empty
    /// `text`: Backspace).
    fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.eval(&format!(
            "document.querySelector({}).select()",
            json!(selector)
        ));
        if text.is_empty() {
            for kind in ["rawKeyDown", "keyUp"] {
                self.call(
                    "Input.dispatchKeyEvent",
                    json!({"type": kind, "key": "Backspace", "code": "Backspace",
                           "windowsVirtualKeyCode": 8}),
                );
            }
        } else {
            self.call("Input.insertText", json!({"text": text}));
        }
    }

    /// Picks an option of a `<select>` and tells the page, as choosing it does.
    fn choose(&mut self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const s = document.querySelector({}); s.focus(); s.value = {}; \
             s.dispatchEvent(new Event('change', {{bubbles: true}})); return s.value; }})()",
            json!(selector),
            json!(value)
        );
        assert_eq!(self.eval(&js), json!(value), "{selector} has no {value}");
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        // The whole page, not only the part scrolled to.
        let size = self.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].clone();
        let clip =
            json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
        let path = out_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Cells of the result table the page shows, row by row.
    fn result_rows(&mut self) -> Value {
        self.wait_for("document.querySelector('#result-table tbody') !== null");
        self.eval(
            "[...document.querySelectorAll('#result-table tbody tr')]\
             .map(tr => [...tr.cells].map(td => td.textContent))",
        )
    }

    fn result_status(&mut self) -> String {
        let status = self.wait_for("(document.querySelector('#result-status') || {}).textContent");
        status.as_str().unwrap().to_string()
    }

    /// URLs of every request the page made, in order.
    fn requested(&self) -> Vec<(String, Value)> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .map(|e| {
                let r = &e["params"]["request"];
                (r["url"].as_str().unwrap_or("").to_string(), r.clone())
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.send(Message::text(
            json!({"id": 0, "method": "Browser.close"}).to_string(),
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pgrest serving the demo schema (in a database of the tests' cluster), with tokens on.
fn demo_server() -> common::Server {
    let mut cmd = common::demo_command("explorer_demo");
    cmd.env("PGRST_JWT_SECRET", common::JWT_SECRET);
    common::spawn_server(cmd).0
}

/// Nothing on the page moved by itself (only after a click or typing) since it opened.
fn assert_no_layout_shift(b: &mut Browser) {
    let shift = b.eval("window.__shift").as_f64().unwrap();
    let moved = b.eval("window.__moved");
    assert!(
        shift < 0.02,
        "the page moved by itself: layout shift {shift} of {moved}"
    );
}

const NAV: &str = "nav a[data-path]";

/// The nav entries not hidden by the search.
fn visible_paths(b: &mut Browser) -> Value {
    b.eval(&format!(
        "[...document.querySelectorAll('{NAV}')].filter(a => !a.parentElement.hidden)\
         .map(a => a.dataset.path)"
    ))
}

#[test]
fn a_person_builds_runs_and_reads_a_filtered_request() {
    let s = demo_server_once();
    let base = s.base.clone();
    let page = s.get_with("/", &[("Accept", "text/html")]);
    assert_eq!(page.status, 200);
    // Before any script runs the page already has its layout and says what it is for, and
    // it loads nothing from elsewhere.
    for part in [
        "id=\"search\"",
        "Pick a table, view or function",
        "class=\"skeleton\"",
    ] {
        assert!(
            page.body.contains(part),
            "{part} missing from the served page"
        );
    }
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "the page names another origin"
    );

    let mut b = Browser::launch("wide");
    b.viewport(1280, 900);
    b.open(&format!("{base}/"));
    b.wait_for(&format!(
        "document.querySelector('{NAV}[data-path=\"/books\"]')"
    ));
    assert_eq!(
        visible_paths(&mut b),
        json!([
            "/authors",
            "/book_summaries",
            "/books",
            "/reviews",
            "/rpc/add_review",
            "/rpc/add_them",
            "/rpc/books_since"
        ])
    );
    assert_eq!(
        b.text("#title"),
        "A small library: authors, their books and readers' reviews."
    );
    assert_eq!(b.text("#status"), "4 tables and views, 3 functions");
    let shift = b.eval("window.__shift").as_f64().unwrap();
    assert!(
        shift < 0.02,
        "the page moved while loading: layout shift {shift}"
    );

    // Search narrows the list.
    b.type_into("#search", "since");
    assert_eq!(visible_paths(&mut b), json!(["/rpc/books_since"]));
    b.type_into("#search", "book");
    assert_eq!(
        visible_paths(&mut b),
        json!(["/authors", "/book_summaries", "/books", "/rpc/books_since"]),
        "by name and by description (authors: 'People who wrote books')"
    );
    b.type_into("#search", "");
    assert_eq!(visible_paths(&mut b).as_array().map(Vec::len), Some(7));

    // Pick /books, two columns, published >= 1900, newest first, counted.
    b.click(&format!("{NAV}[data-path=\"/books\"]"));
    b.wait_for("document.querySelector('#builder') !== null");
    assert_eq!(b.text("#url"), format!("{base}/books"));
    b.click("#columns input[value=\"title\"]");
    b.click("#columns input[value=\"published\"]");
    b.click("#add-filter");
    b.choose("#filters .filter .f-col", "published");
    b.choose("#filters .filter .f-op", "gte");
    b.type_into("#filters .filter .f-val", "1900");
    b.click("#add-order");
    b.choose("#orders .order .o-col", "published");
    b.choose("#orders .order .o-dir", "desc");
    b.choose("#count", "exact");
    let url =
        format!("{base}/books?select=title,published&published=gte.1900&order=published.desc");
    assert_eq!(b.text("#url"), url);
    assert_eq!(
        b.text("#curl"),
        format!("curl '{url}' -H 'Prefer: count=exact'")
    );
    b.click("#send");
    let status = b.result_status();
    assert!(
        status.starts_with("200 OK") && status.contains("Content-Range 0-2/3"),
        "{status}"
    );
    let rows = b.result_rows();
    assert_eq!(
        rows,
        json!([
            ["SPQR", "2015"],
            ["Pale Blue Dot", "1994"],
            ["Cosmos", "1980"]
        ])
    );
    // The same rows the API gives curl.
    let direct = s.get(url.strip_prefix(&base).unwrap()).json();
    let titles: Vec<&str> = direct
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["SPQR", "Pale Blue Dot", "Cosmos"]);
    b.screenshot("explorer-wide.png");

    // An operator with a list: genre in (poetry, history); `not.` negates it.
    b.choose("#filters .filter .f-col", "genre");
    b.choose("#filters .filter .f-op", "in");
    b.type_into("#filters .filter .f-val", "poetry,history");
    b.click("#send");
    b.wait_for("document.querySelectorAll('#result-table tbody tr').length === 2");
    assert_eq!(
        b.result_rows(),
        json!([["SPQR", "2015"], ["Poems", "1890"]])
    );
    b.click("#filters .filter .f-not");
    assert!(b.text("#url").contains("&genre=not.in.(poetry,history)&"));
    b.click("#send");
    b.wait_for("document.querySelectorAll('#result-table tbody tr').length === 6");
    // Embedding along the foreign key the document describes: each book's author.
    b.click("#embeds input[value=\"authors\"]");
    assert!(b
        .text("#url")
        .contains("?select=title,published,authors(*)&"));
    b.click("#send");
    b.wait_for("document.querySelectorAll('#result-table tbody tr').length === 6");
    let first = b.result_rows()[0].clone();
    let author: Value = serde_json::from_str(first[2].as_str().unwrap()).unwrap();
    assert_eq!(
        (&first[0], &author["name"]),
        (&json!("Pale Blue Dot"), &json!("Carl Sagan"))
    );

    // A function with its parameters.
    b.click(&format!("{NAV}[data-path=\"/rpc/add_them\"]"));
    b.type_into("input.arg[name=\"a\"]", "2");
    b.type_into("input.arg[name=\"b\"]", "40");
    assert_eq!(b.text("#url"), format!("{base}/rpc/add_them?a=2&b=40"));
    b.click("#send");
    assert!(b.result_status().starts_with("200 OK"));
    assert_eq!(b.text("#result-body"), "42");
    b.choose("#method", "POST");
    b.click("#send");
    assert_eq!(
        b.text("#curl"),
        format!("curl '{base}/rpc/add_them' -H 'Content-Type: application/json' -d '{{\"a\":2,\"b\":40}}'")
    );
    b.wait_for("(document.querySelector('#result-body') || {}).textContent === '42'");
    b.screenshot("explorer-function.png");
    // Enter in a field sends the request as the button does.
    b.type_into("input.arg[name=\"b\"]", "5");
    b.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
    );
    b.wait_for("(document.querySelector('#result-body') || {}).textContent === '7'");

    // Every request the page made went to the page's own origin.
    let requested = b.requested();
    assert!(requested.len() >= 6, "{requested:?}");
    for (url, _) in &requested {
        assert!(url.starts_with(&format!("{base}/")), "{url}");
    }
}

#[test]
fn a_token_is_kept_and_sent_and_the_page_fits_a_phone() {
    let s = demo_server_once();
    let base = s.base.clone();
    let token = common::hs256(json!({"role": "web_user"}));
    let mut b = Browser::launch("token");
    b.viewport(1280, 900);
    b.open(&format!("{base}/#/authors"));
    b.wait_for("document.querySelector('#builder') !== null");
    // Anonymous: web_anon may not add authors.
    let add_author = |b: &mut Browser| {
        b.choose("#method", "POST");
        b.type_into("#body", "{\"name\": \"Ursula K. Le Guin\"}");
        b.choose("#return", "representation");
        b.eval("document.getElementById('result').replaceChildren()");
        b.click("#send");
        b.result_status()
    };
    let status = add_author(&mut b);
    assert!(status.starts_with("401"), "{status}");
    b.type_into("#token", &token);
    b.click("#auth button[type=submit]");
    b.wait_for("document.querySelector('#status').textContent.includes(\"token's role\")");
    // Kept in the browser: a new visit has it.
    b.open(&format!("{base}/#/authors"));
    b.wait_for("document.querySelector('#builder') !== null");
    assert_eq!(
        b.eval("document.getElementById('token').value"),
        json!(token)
    );
    let status = add_author(&mut b);
    assert!(status.starts_with("201"), "{status}");
    let rows = b.result_rows();
    assert!(
        rows.as_array().is_some_and(|r| r.len() == 1
            && r[0]
                .as_array()
                .unwrap()
                .contains(&json!("Ursula K. Le Guin"))),
        "the row the API returned: {rows}"
    );
    assert!(b
        .text("#curl")
        .contains(&format!("-H 'Authorization: Bearer {token}'")));
    let (_, sent) = b
        .requested()
        .into_iter()
        .rfind(|(_, r)| r["method"] == "POST")
        .unwrap();
    assert_eq!(sent["headers"]["Authorization"], format!("Bearer {token}"));
    b.click("#forget");
    b.wait_for(
        "document.querySelector('#status').textContent === '4 tables and views, 3 functions'",
    );
    assert_eq!(b.eval("localStorage.length"), json!(0));

    // 360 px: one column, nothing wider than the screen, no shift while loading.
    b.viewport(360, 780);
    b.open(&format!("{base}/#/books"));
    b.wait_for("document.querySelector('#builder') !== null");
    b.click("#add-filter");
    b.choose("#filters .filter .f-col", "title");
    b.choose("#filters .filter .f-op", "ilike");
    b.type_into("#filters .filter .f-val", "*and*");
    b.click("#send");
    assert_eq!(b.result_rows().as_array().map(Vec::len), Some(2));
    let width = b.eval("document.documentElement.scrollWidth");
    assert_eq!(width, json!(360), "the page is wider than the phone");
    assert_no_layout_shift(&mut b);
    b.screenshot("explorer-360.png");
}

/// Both tests share one demo database and server.
fn demo_server_once() -> common::Server {
    static SERVER: std::sync::OnceLock<common::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(demo_server).clone()
}

#[test]
fn a_function_with_one_unnamed_parameter_takes_the_body() {
    // The document names a proxy as its server; the page still talks to where it came from.
    let s = common::server_with(&[(
        "PGRST_OPENAPI_SERVER_PROXY_URI",
        "https://api.example.com:8443/v1",
    )]);
    let mut b = Browser::launch("fixture");
    b.viewport(1024, 800);
    b.open(&format!("{}/#/rpc/shout", s.base));
    b.wait_for("document.querySelector('#builder') !== null");
    assert_eq!(b.text("#url"), format!("{}/rpc/shout", s.base));
    assert!(!b.text("header").contains("example.com"));
    let panel = b.text("#panel");
    assert!(!panel.contains("No parameters."), "{panel}");
    assert_eq!(
        b.eval("document.getElementById('method').value"),
        json!("POST"),
        "a function without named parameters is called with a body"
    );
    b.type_into("#body", "hello");
    b.choose("#content-type", "text/plain");
    b.click("#send");
    let status = b.result_status();
    assert!(
        status.starts_with("200 OK"),
        "{status}: {}",
        b.text("#result-body")
    );
    assert_eq!(b.text("#result-body"), "\"HELLO\"");
    // What the anonymous role may not use is not listed.
    let paths = visible_paths(&mut b);
    assert!(paths.as_array().unwrap().contains(&json!("/films")));
    assert!(!paths.as_array().unwrap().contains(&json!("/private_notes")));
}
