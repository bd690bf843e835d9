//! A WebDriver client (W3C WebDriver, the protocol chromedriver speaks) of the few commands the
//! browser test needs, over the tests' own HTTP client: no driver library, no download.
//!
//! The browser is Debian's `chromium` driven by Debian's `chromium-driver` (the same version by
//! construction); `.ci/setup-browser` installs both. [`Browser::find`] says why when they are
//! missing, so that the test can be skipped outside CI.

// Shared by several test crates, each of which uses only part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http;

/// The W3C name of the key that holds an element's id in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser and its driver are.
pub struct Browser {
    /// The `chromium` binary.
    chromium: PathBuf,
    /// The `chromedriver` binary.
    driver: PathBuf,
}

impl Browser {
    /// The browser named by `SKIFF_CHROMIUM` and `SKIFF_CHROMEDRIVER`, or Debian's, or why
    /// there is none.
    pub fn find() -> Result<Browser, String> {
        let find = |variable: &str, candidates: &[&str]| -> Result<PathBuf, String> {
            if let Some(path) = std::env::var_os(variable) {
                return Ok(PathBuf::from(path));
            }
            candidates
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists())
                .ok_or_else(|| format!("none of {candidates:?} exists (or set {variable})"))
        };
        let chromium = find("SKIFF_CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser"])?;
        let driver = find("SKIFF_CHROMEDRIVER", &["/usr/bin/chromedriver"])?;
        Ok(Browser { chromium, driver })
    }

    /// Starts the driver on a free port and opens a headless browser session.
    pub fn start(&self, log: &Path) -> Session {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log_file = std::fs::File::create(log).expect("a driver log file");
        let driver = Command::new(&self.driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("a log handle"))
            .stderr(log_file)
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut session = Session { driver, addr, id: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http::get(addr, "/status").is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.chromium,
                    // Headless, and fit for a container run as root with a small /dev/shm.
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"],
                },
            }},
        });
        let created = session.command("POST", "/session", Some(capabilities));
        session.id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        session
    }
}

/// A browser session; ends the browser and the driver when dropped.
pub struct Session {
    /// The chromedriver process.
    driver: Child,
    /// Its address.
    addr: SocketAddr,
    /// The session id.
    id: String,
}

impl Session {
    /// Sends a WebDriver command; returns its `value`, or panics with the driver's error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let answer = http::request(
            self.addr,
            method,
            path,
            Some("application/json; charset=utf-8"),
            body.as_bytes(),
        )
        .unwrap_or_else(|error| panic!("chromedriver {method} {path}: {error}"));
        let parsed = answer.json();
        assert_eq!(answer.status, 200, "chromedriver {method} {path} {body}: {parsed:#}");
        parsed["value"].clone()
    }

    /// A command on this session.
    fn on_session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.id), body)
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.on_session("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn run(&self, script: &str) -> Value {
        self.on_session("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// The id of the element matching the CSS `selector`.
    fn element(&self, selector: &str) -> String {
        let found = self.on_session(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {found}")).into()
    }

    /// Clicks the element matching `selector`, as a person would.
    pub fn click(&self, selector: &str) {
        let element = self.element(selector);
        self.on_session("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    /// Empties the input matching `selector` and types `text` into it.
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.element(selector);
        self.on_session("POST", &format!("/element/{element}/clear"), Some(json!({})));
        self.on_session(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the element matching `selector`.
    pub fn text(&self, selector: &str) -> String {
        let element = self.element(selector);
        let text = self.on_session("GET", &format!("/element/{element}/text"), None);
        text.as_str().unwrap_or_default().to_string()
    }

    /// Evaluates `check` every 200 ms until it gives `Some`, for at most `patience`; panics
    /// with `what` and the page's text otherwise.
    pub fn wait_for<T>(
        &self,
        what: &str,
        patience: Duration,
        mut check: impl FnMut(&Session) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if Instant::now() >= deadline {
                let page = self.run("return document.body.innerText;");
                panic!(
                    "{what}: not within {patience:?}; the page reads:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            // Closes the browser; a failure here must not hide the test's own failure.
            let _ = http::request(self.addr, "DELETE", &format!("/session/{}", self.id), None, b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
