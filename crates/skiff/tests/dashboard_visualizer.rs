//! The visualizer (`skiff sim --seed N --web`), end to end: a real process on 127.0.0.1.
//!
//! - A failing seed (a deliberate defect) is stepped through: it reports its failing step, the
//!   invariant holds one step before it and is broken at it, and stepping backwards gives the
//!   same view as stepping forwards.
//! - The hand-driven cluster elects a leader when a timeout is fired and the messages are
//!   delivered one by one, and commits an entry proposed at the leader.
//! - In a real browser (skipped without one, except under CI): "Jump to the failing step"
//!   shows the broken invariant, Back the step before it, and clicks made while the page
//!   waits for the server are kept; the hand-driven part elects a leader from the page.
//!
//! Every wait is bounded ([`PATIENCE`]) and waits for the page to say it is done (the step it
//! shows, no request under way), never for a time to pass: the page is slow to answer in a
//! debug build on a loaded machine, and a test that guesses how slow breaks there.

#[path = "dashboard/http.rs"]
mod http;
#[path = "dashboard/webdriver.rs"]
mod webdriver;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any wait may take (the first, counting the run, included).
const PATIENCE: Duration = Duration::from_secs(120);

/// `skiff sim --web`, killed when dropped.
struct Visualizer {
    /// The process.
    child: Child,
    /// Where it serves.
    addr: SocketAddr,
}

/// The deliberate defect whose failing seed the visualizer shows.
const DEFECT: &str = "vote-without-log-check";

/// The first seed the simulator catches [`DEFECT`] in. Searched rather than pinned: which seeds
/// catch a defect moves whenever the simulator's schedule of faults grows.
fn failing_seed() -> u64 {
    (0..200)
        .find(|seed| {
            let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["sim", "--seed", &seed.to_string(), "--sabotage", DEFECT])
                .output()
                .expect("skiff sim runs");
            String::from_utf8_lossy(&output.stdout).contains(&format!("(defect {DEFECT} caught)"))
        })
        .expect("the simulator catches the defect in one of the first 200 seeds")
}

impl Visualizer {
    /// Starts the visualizer of a seed that a deliberate defect fails.
    fn start() -> Visualizer {
        let seed = failing_seed().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["sim", "--seed", &seed, "--sabotage", DEFECT, "--web"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("skiff sim --web starts");
        let stdout = child.stdout.take();
        // Owned from here on, so that a failure below still kills and reaps the process.
        let mut visualizer = Visualizer { child, addr: ([127, 0, 0, 1], 0).into() };
        let stdout = stdout.expect("a piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).expect("skiff sim --web prints its URL");
            if let Some(url) = line.strip_prefix("visualizer  ") {
                visualizer.addr = url
                    .split_whitespace()
                    .next()
                    .and_then(|url| url.strip_prefix("http://"))
                    .and_then(|rest| rest.trim_end_matches('/').parse().ok())
                    .unwrap_or_else(|| panic!("a URL in {line:?}"));
                return visualizer;
            }
        }
    }

    /// `GET path` as JSON.
    fn get(&self, path: &str) -> Value {
        let answer = http::get(self.addr, path).expect("the visualizer answers");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answer.json()
    }

    /// `POST /v1/hand/{action}` as JSON.
    fn hand(&self, action: &str) -> Value {
        let answer = http::request(self.addr, "POST", &format!("/v1/hand/{action}"), None, b"")
            .expect("the visualizer answers");
        assert_eq!(answer.status, 200, "{action}: {}", answer.body);
        answer.json()
    }
}

impl Drop for Visualizer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Delivers the first message in flight until none is left; returns the last view.
fn deliver_everything(visualizer: &Visualizer, mut view: Value) -> Value {
    for _ in 0..200 {
        if view["in_flight"].as_array().is_none_or(Vec::is_empty) {
            return view;
        }
        view = visualizer.hand("deliver?message=0");
    }
    panic!("messages never stopped: {view:#}");
}

#[test]
fn a_failing_seed_steps_to_its_broken_invariant_and_a_hand_driven_cluster_elects() {
    let visualizer = Visualizer::start();
    let run = visualizer.get("/v1/run");
    assert_eq!(run["passed"], false, "{run:#}");
    let failing = run["failing_step"].as_u64().expect("a failing step");
    assert!(failing > 0);
    assert!(run["verdict"].as_str().is_some_and(|verdict| verdict.contains("failed")));

    let start = visualizer.get("/v1/run/step/0");
    assert_eq!(start["nodes"].as_array().map(Vec::len), run["nodes"].as_u64().map(|n| n as usize));
    assert!(start["violation"].is_null());
    let broken = visualizer.get(&format!("/v1/run/step/{failing}"));
    let violation = broken["violation"].as_str().expect("broken at the failing step");
    assert!(violation.contains("leader completeness"), "{violation}");
    let before = visualizer.get(&format!("/v1/run/step/{}", failing - 1));
    assert!(before["violation"].is_null(), "the step before still held: {before:#}");
    // Backwards is the same as forwards: step 100 reached after the failing step equals step
    // 100 reached from the start.
    let backwards = visualizer.get("/v1/run/step/100");
    let _ = visualizer.get("/v1/run/step/0");
    let forwards = visualizer.get("/v1/run/step/100");
    assert_eq!(backwards, forwards);
    assert_eq!(forwards["step"], 100);

    // By hand: n1's timeout, then every message delivered, elects n1; a proposal commits.
    let view = visualizer.hand("timeout?node=1");
    assert_eq!(view["nodes"][0]["core"]["role"], "pre-candidate", "{view:#}");
    let view = deliver_everything(&visualizer, view);
    assert_eq!(view["leader"], 1, "{view:#}");
    let proposed = visualizer.hand("propose");
    let index = proposed["nodes"][0]["last_index"].as_u64().expect("the leader's last index");
    let view = deliver_everything(&visualizer, proposed);
    let commit = view["nodes"][0]["core"]["commit"].as_u64().expect("the leader's commit");
    assert!(commit >= index, "the proposal at {index} committed: {view:#}");
    // A tick of the leader sends heartbeats; one dropped is gone from the flight.
    let view = visualizer.hand("tick?node=1");
    let in_flight = view["in_flight"].as_array().map_or(0, Vec::len);
    assert!(in_flight > 0, "a leader's tick sends heartbeats: {view:#}");
    let view = visualizer.hand("drop?message=0");
    assert_eq!(view["in_flight"].as_array().map(Vec::len), Some(in_flight - 1));
}

/// The step the page shows and whether a request for another is under way.
fn shown_step(page: &webdriver::Session) -> (Option<u64>, bool) {
    let state = page.run(
        "const position = document.getElementById('position');
         return [position.dataset.step ?? null, position.getAttribute('aria-busy') === 'true'];",
    );
    let step = state[0].as_str().and_then(|step| step.parse().ok());
    (step, state[1].as_bool().unwrap_or(true))
}

/// Waits until the page shows step `step` with no request under way.
fn wait_for_step(page: &webdriver::Session, what: &str, step: u64) {
    page.wait_for(what, PATIENCE, |page| (shown_step(page) == (Some(step), false)).then_some(()));
}

/// How many actions the hand-driven cluster's server has done, as the page last showed it, or
/// `None` while a request is under way (the part's buttons are disabled then).
fn hand_actions(page: &webdriver::Session) -> Option<u64> {
    let state = page.run(
        "const part = document.getElementById('hand');
         return [part.dataset.actions ?? null, part.getAttribute('aria-busy') === 'true'];",
    );
    let actions = state[0].as_str().and_then(|actions| actions.parse().ok());
    if state[1].as_bool().unwrap_or(true) { None } else { actions }
}

/// Clicks the button matching `selector` in the hand-driven part and waits until the page
/// shows the cluster after the action (the server counted one more).
fn hand_click(page: &webdriver::Session, selector: &str, what: &str) {
    let before = page.wait_for("the hand-driven part to be idle", PATIENCE, hand_actions);
    page.click(selector);
    page.wait_for(what, PATIENCE, |page| hand_actions(page).filter(|now| *now > before));
}

#[test]
fn the_visualizer_in_a_real_browser() {
    let browser = match webdriver::Browser::find() {
        Ok(browser) => browser,
        Err(why) if std::env::var_os("SKIFF_REQUIRE_BROWSER").is_some() => {
            panic!("CI must run the browser test, but there is no browser: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED the_visualizer_in_a_real_browser: no browser ({why})");
            return;
        }
    };
    let visualizer = Visualizer::start();
    let failing = visualizer.get("/v1/run")["failing_step"].as_u64().expect("a failing step");
    let log = std::env::temp_dir().join(format!("skiff-visualizer-{}.log", std::process::id()));
    let browser = browser.start(&log);
    browser.open(&format!("http://{}/", visualizer.addr));
    wait_for_step(&browser, "the run to load at step 0", 0);

    // Each click is waited for by the step it asks for. Stepping back replays the seed from
    // its start, which takes a while in a debug build on a loaded machine; the page keeps a
    // click made meanwhile instead of dropping it, so the test clicks once and waits.
    browser.click("#failing");
    wait_for_step(&browser, "the failing step", failing);
    let invariants = browser.text("#invariants");
    assert!(invariants.contains("leader completeness"), "{invariants}");
    browser.click("#back");
    wait_for_step(&browser, "the step before the failing one", failing - 1);
    let invariants = browser.text("#invariants");
    assert!(invariants.contains("Every invariant"), "{invariants}");
    // Two quick clicks go two steps, whatever the server's speed.
    browser.click("#back");
    browser.click("#back");
    wait_for_step(&browser, "two more steps back", failing - 3);

    // The hand-driven cluster: each action is waited for by the server's count of actions
    // the page shows, so no click lands on a table about to be replaced.
    browser.click("#show-hand");
    browser.wait_for("the hand-driven cluster", PATIENCE, |page| {
        let idle = hand_actions(page).is_some();
        (idle && page.text("#hand-nodes").contains("follower")).then_some(())
    });
    hand_click(&browser, "#hand-node-2 button[aria-label^='fire']", "n2's election timeout");
    let mut delivered = 0;
    while browser.run("return document.querySelectorAll('#hand-messages button').length;").as_u64()
        != Some(0)
    {
        assert!(delivered < 100, "messages still in flight after {delivered} deliveries");
        hand_click(&browser, "#hand-messages button[aria-label^='deliver']", "a delivery");
        delivered += 1;
    }
    let node = browser.text("#hand-node-2");
    assert!(node.contains("leader"), "n2 leads after its election: {node}");
    let _ = std::fs::remove_file(log);
}
