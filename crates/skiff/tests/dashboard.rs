//! The dashboard, end to end, on real processes on 127.0.0.1.
//!
//! - Every `skiff node` serves the page and an event stream whose samples carry every member's
//!   own status: one leader, the commit of a write, and a new leader after the old one is
//!   killed. (Plain HTTP: runs everywhere.)
//! - `skiff demo` cuts the leader off from both followers (both ends of each link, through its
//!   dashboard's link route and the nodes' fault injection): the followers elect a new leader
//!   and go on; healed, the old leader rejoins as a follower and catches up, and the write it
//!   took while cut off is gone. (Plain HTTP.)
//! - In a real browser (Debian's chromium, driven through chromedriver): `skiff demo`'s page
//!   shows three nodes and one leader; a key put from the page commits and shows in every
//!   node's commit index; a snapshot asked for from the page is taken and shown; a link cut
//!   from the page shows as cut at both ends, then healed; the leader stopped from the page is
//!   replaced on the page; restarted from the page, it rejoins, and leadership handed back to it
//!   from the page shows on the page; a membership change the leader refuses shows its error.
//!   A node's own page shows the same cluster.
//!
//! The browser test needs `chromium` and `chromium-driver` (`.ci/setup-browser` installs them
//! on Debian). Without them it is skipped with a message, except when `SKIFF_REQUIRE_BROWSER`
//! is set (`.ci/run` sets it once `.ci/setup-browser` has installed the browser), where a
//! missing browser is a failure.

#[path = "dashboard/http.rs"]
mod http;
#[path = "dashboard/webdriver.rs"]
mod webdriver;

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Free addresses on 127.0.0.1 (bound, then released for a node to take).
fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1"))
        .collect();
    listeners.iter().map(|listener| listener.local_addr().expect("a bound address")).collect()
}

/// Three `skiff node` processes, killed when dropped.
struct Cluster {
    /// Their data directories and logs.
    dir: tempfile::TempDir,
    /// Client addresses (index 0 is node 1).
    clients: Vec<SocketAddr>,
    /// The processes; `None` once killed.
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts three nodes with short timeouts.
    fn start() -> Cluster {
        let peers = free_addrs(3)
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clients = free_addrs(3);
        let children = (1..=3u64)
            .map(|id| {
                let log = std::fs::File::create(dir.path().join(format!("node-{id}.log")))
                    .expect("a log file");
                let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
                    .arg("node")
                    .args(["--id", &id.to_string()])
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("node-{id}")))
                    .args(["--client-addr", &clients[id as usize - 1].to_string()])
                    .args(["--peers", &peers])
                    .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
                    .env_remove("SKIFF_CONFIG_FILE")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("a log handle"))
                    .stderr(log)
                    .spawn()
                    .expect("the skiff binary starts");
                Some(child)
            })
            .collect();
        Cluster { dir, clients, children }
    }

    /// Kills node `id` with SIGKILL.
    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill().expect("the node can be killed");
            child.wait().expect("the killed node is reaped");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in 1..=3 {
                let log = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")));
                eprintln!("--- node {id} ---\n{}", log.unwrap_or_default());
            }
        }
    }
}

/// The nodes of a sample that report themselves leader.
fn leaders(sample: &Value) -> Vec<u64> {
    nodes(sample)
        .filter(|node| node["status"]["role"] == "leader")
        .filter_map(|node| node["id"].as_u64())
        .collect()
}

/// The nodes of a sample.
fn nodes(sample: &Value) -> impl Iterator<Item = &Value> {
    sample["nodes"].as_array().into_iter().flatten()
}

#[test]
fn every_node_serves_the_page_and_a_live_event_stream() {
    let mut cluster = Cluster::start();
    for &addr in &cluster.clients {
        let deadline = Instant::now() + PATIENCE;
        let page = loop {
            match http::get(addr, "/") {
                Ok(page) => break page,
                Err(error) => {
                    assert!(Instant::now() < deadline, "{addr} never served the page: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(page.body.contains("/dashboard/dashboard.js"), "{}", page.body);
        let policy = page.header("content-security-policy").expect("a content security policy");
        assert!(policy.contains("default-src 'none'"), "nothing from elsewhere: {policy}");
        let script = http::get(addr, "/dashboard/dashboard.js").expect("the script");
        assert_eq!(script.status, 200);
        assert!(script.body.contains("EventSource('/v1/events')"));
    }

    // Every member reports its own status; exactly one says it leads.
    let mut events = http::Events::open(cluster.clients[1], "/v1/events").expect("a stream");
    let settled = events.sample_where(PATIENCE, |sample| {
        nodes(sample).count() == 3
            && nodes(sample).all(|node| node["status"].is_object())
            && leaders(sample).len() == 1
    });
    let leader = leaders(&settled)[0];

    // A write shows in every member's commit index, and in the leader's write latencies.
    let put = http::request(cluster.clients[0], "PUT", "/v1/kv/seen", None, b"yes").expect("put");
    assert_eq!(put.status, 200, "{}", put.body);
    let revision = put.json()["revision"].as_u64().expect("a revision");
    events.sample_where(PATIENCE, |sample| {
        nodes(sample).count() == 3
            && nodes(sample).all(|node| node["status"]["commit"].as_u64() >= Some(revision))
    });
    // Exactly one node (the leader that proposed it, whichever that was) timed the write.
    let timed: Vec<u64> = cluster
        .clients
        .iter()
        .map(|&addr| {
            let metrics = http::get(addr, "/metrics").expect("metrics");
            let line = metrics
                .body
                .lines()
                .find_map(|line| line.strip_prefix("skiff_server_write_duration_seconds_count "));
            line.and_then(|count| count.trim().parse().ok()).expect("the write-latency count")
        })
        .collect();
    assert_eq!(timed.iter().sum::<u64>(), 1, "one write timed, by its proposer: {timed:?}");

    // The leader killed: it shows as unreachable, and another node leads.
    cluster.kill(leader);
    let serving = if leader == 1 { 2 } else { 1 };
    let mut events =
        http::Events::open(cluster.clients[serving as usize - 1], "/v1/events").expect("stream");
    let after = events.sample_where(PATIENCE, |sample| {
        let old = nodes(sample).find(|node| node["id"] == leader);
        let unreachable =
            old.is_some_and(|node| node["status"].is_null() && node["error"].is_string());
        unreachable && leaders(sample).len() == 1 && leaders(sample)[0] != leader
    });
    assert_ne!(leaders(&after)[0], leader);
}

/// `skiff demo`, stopped with SIGTERM (and killed if it does not stop) when dropped.
struct Demo {
    /// The process.
    child: Child,
    /// Its directory.
    dir: tempfile::TempDir,
    /// The dashboard's URL.
    url: String,
    /// The nodes' client addresses, by id.
    nodes: Vec<String>,
}

impl Demo {
    /// Starts the demo and reads its welcome for the addresses.
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("demo")
            .arg("--dir")
            .arg(dir.path())
            .env_remove("SKIFF_DEMO_DASHBOARD_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("skiff demo starts");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end even when nobody listens any more: a closed pipe would make
            // the demo's last messages fail.
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut demo = Demo { child, dir, url: String::new(), nodes: Vec::new() };
        let deadline = Instant::now() + PATIENCE;
        while demo.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).expect("skiff demo prints its dashboard URL");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["node", _, url, ..] => demo.nodes.push(url.to_string()),
                ["dashboard", url, ..] => demo.url = url.to_string(),
                _ => {}
            }
        }
        assert_eq!(demo.nodes.len(), 3, "three nodes listed");
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("sh").args(["-c", "kill -s TERM \"$0\"", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            for id in 1..=3 {
                let log = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")));
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- node {id} ---");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Node `id` of a sample.
fn node(sample: &Value, id: u64) -> &Value {
    nodes(sample).find(|node| node["id"] == id).unwrap_or_else(|| panic!("no node {id}: {sample}"))
}

/// The links node `id` reports cut, in its status of the sample (`None` if it did not answer).
fn cut_links(sample: &Value, id: u64) -> Option<Vec<u64>> {
    let links = node(sample, id)["status"]["cut_links"].as_array()?;
    Some(links.iter().filter_map(Value::as_u64).collect())
}

/// The address in an `http://host:port/` URL.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.trim_end_matches('/').parse().unwrap_or_else(|_| panic!("an address in {url:?}"))
}

#[test]
fn the_demo_cuts_the_leader_off_and_heals_it() {
    let demo = Demo::start();
    let dashboard = addr_of(&demo.url);
    let node_addr = |id: u64| addr_of(&demo.nodes[id as usize - 1]);
    let mut events = http::Events::open(dashboard, "/v1/events").expect("the demo's events");
    let settled = events.sample_where(PATIENCE, |sample| {
        nodes(sample).all(|node| node["status"].is_object()) && leaders(sample).len() == 1
    });
    let old = leaders(&settled)[0];
    let old_term = node(&settled, old)["status"]["term"].as_u64().expect("a term");
    let followers: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let put = http::request(dashboard, "PUT", "/v1/kv/before", None, b"whole").expect("a put");
    assert_eq!(put.status, 200, "{}", put.body);
    // Bad requests are refused with a reason, by the demo and by a node.
    for (addr, path, status, code) in [
        (dashboard, "/v1/demo/links/1/1/cut".to_string(), 400, "bad_request"),
        (dashboard, "/v1/demo/links/1/9/cut".to_string(), 404, "unknown_node"),
        (dashboard, "/v1/demo/links/1/2/snip".to_string(), 400, "bad_request"),
        (node_addr(old), format!("/v1/faults/links/{old}/cut"), 400, "bad_request"),
        (node_addr(old), "/v1/faults/links/9/cut".to_string(), 404, "unknown_node"),
        (node_addr(old), "/v1/faults/links/x/heal".to_string(), 400, "bad_request"),
    ] {
        let answer = http::request(addr, "POST", &path, None, b"").expect("an answer");
        assert_eq!((answer.status, answer.json()["code"].as_str()), (status, Some(code)), "{path}");
    }

    // Cut the leader off from both followers, as the page's buttons do.
    for follower in &followers {
        let path = format!("/v1/demo/links/{old}/{follower}/cut");
        let cut = http::request(dashboard, "POST", &path, None, b"").expect("an answer");
        assert_eq!(cut.status, 200, "{path}: {}", cut.body);
    }
    // Both ends of each link report it cut, and the two followers elect a leader among them.
    let parted = events.sample_where(PATIENCE, |sample| {
        let new_leader = leaders(sample).into_iter().find(|id| followers.contains(id));
        let newer_term = new_leader.and_then(|id| node(sample, id)["status"]["term"].as_u64());
        cut_links(sample, old).as_deref() == Some(&followers)
            && followers.iter().all(|id| cut_links(sample, *id).as_deref() == Some(&[old]))
            && newer_term > Some(old_term)
    });
    let new = leaders(&parted).into_iter().find(|id| followers.contains(id)).expect("a leader");

    // The old leader cannot commit: a write sent to it is not acknowledged (it times out
    // while it still believes it leads, or it knows no leader once it stepped down).
    let lost = http::request(node_addr(old), "PUT", "/v1/kv/lost", None, b"x").expect("an answer");
    assert_eq!(lost.status, 503, "{}", lost.body);
    // The majority goes on without it.
    let mut revision = 0;
    for i in 0..20 {
        let path = format!("/v1/kv/during-{i}");
        let put = http::request(node_addr(new), "PUT", &path, None, b"apart").expect("a put");
        assert_eq!(put.status, 200, "{path}: {}", put.body);
        revision = put.json()["revision"].as_u64().expect("a revision");
    }

    // Healed: the old leader rejoins as a follower of the new term and catches up.
    for follower in &followers {
        let path = format!("/v1/demo/links/{old}/{follower}/heal");
        let heal = http::request(dashboard, "POST", &path, None, b"").expect("an answer");
        assert_eq!(heal.status, 200, "{path}: {}", heal.body);
    }
    events.sample_where(PATIENCE, |sample| {
        let Some(leader) = leaders(sample).first().copied() else { return false };
        let leading = &node(sample, leader)["status"];
        let rejoined = &node(sample, old)["status"];
        (1..=3).all(|id| cut_links(sample, id).is_some_and(|cut| cut.is_empty()))
            && leader != old
            && rejoined["role"] == "follower"
            && rejoined["term"] == leading["term"]
            && rejoined["applied"].as_u64() >= Some(revision)
    });
    let caught_up = http::get(node_addr(old), "/v1/kv/during-19?consistency=stale").expect("get");
    assert_eq!((caught_up.status, caught_up.body.as_str()), (200, "apart"));
    // The write it took while cut off never committed: the new leader's log replaced it.
    for id in 1..=3 {
        let gone = http::get(node_addr(id), "/v1/kv/lost?consistency=stale").expect("a get");
        assert_eq!(gone.status, 404, "node {id}: {}", gone.body);
    }
}

/// The table of the page, as the browser renders it: per row, its node id, role and commit.
fn table(browser: &webdriver::Session) -> Vec<(u64, String, Option<u64>)> {
    let rows = browser.run(
        "return [...document.querySelectorAll('#node-rows tr')].map(row => [
            row.id, row.dataset.role, row.querySelector('td.commit').textContent]);",
    );
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let id = row[0].as_str().and_then(|id| id.strip_prefix("node-")).expect("a row id");
            let role = row[1].as_str().unwrap_or_default().to_string();
            (id.parse().expect("a node id"), role, row[2].as_str().and_then(|c| c.parse().ok()))
        })
        .collect()
}

/// The one node the page shows as leader, when it shows exactly one and all three rows.
fn one_leader(rows: &[(u64, String, Option<u64>)]) -> Option<u64> {
    let leaders: Vec<u64> =
        rows.iter().filter(|(_, role, _)| role == "leader").map(|(id, _, _)| *id).collect();
    (rows.len() == 3 && leaders.len() == 1).then(|| leaders[0])
}

#[test]
fn the_demo_dashboard_in_a_real_browser() {
    let browser = match webdriver::Browser::find() {
        Ok(browser) => browser,
        Err(why) if std::env::var_os("SKIFF_REQUIRE_BROWSER").is_some() => {
            panic!(
                "CI must run the browser test, but there is no browser: {why}; run .ci/setup-browser"
            )
        }
        Err(why) => {
            eprintln!(
                "SKIPPED the_demo_dashboard_in_a_real_browser: no browser ({why}). \
                 Install one with `bash .ci/setup-browser` (Debian, as root)."
            );
            return;
        }
    };
    let demo = Demo::start();
    let browser = browser.start(&demo.dir.path().join("chromedriver.log"));
    browser.open(&demo.url);

    // Three nodes, one leader, roles written out in words.
    let leader =
        browser.wait_for("three nodes and one leader", PATIENCE, |page| one_leader(&table(page)));
    let role = browser.text(&format!("#node-{leader} td.role"));
    assert!(role.contains("leader"), "the role is a word too: {role:?}");
    let connection = browser.text("#connection");
    assert!(connection.starts_with("Live"), "{connection:?}");

    // A put from the page commits, and every node's commit index reaches it.
    browser.type_into("#kv-key", "from-the-browser");
    browser.type_into("#kv-value", "hello");
    browser.click("#kv-put");
    let revision = browser.wait_for("the put to commit", PATIENCE, |page| {
        let result = page.text("#kv-result");
        result.split("revision ").nth(1).and_then(|number| number.trim().parse::<u64>().ok())
    });
    browser.wait_for("every node to commit the put", PATIENCE, |page| {
        let rows = table(page);
        (rows.len() == 3 && rows.iter().all(|(_, _, commit)| *commit >= Some(revision)))
            .then_some(())
    });
    browser.click("#kv-get");
    browser.wait_for("the get to answer", PATIENCE, |page| {
        page.text("#kv-result").contains("from-the-browser = hello").then_some(())
    });

    // A snapshot of the leader from the page: the answer, then the leader's snapshot index.
    browser.click(&format!("#snapshot-node option[value='{leader}']"));
    browser.click("#snapshot");
    let index = browser.wait_for("the snapshot to be taken", PATIENCE, |page| {
        let result = page.text("#snapshot-result");
        let index = result.split("snapshot at index ").nth(1)?.split_whitespace().next()?;
        index.parse::<u64>().ok()
    });
    assert!(index >= revision, "the snapshot holds the put at {revision}: {index}");
    browser.wait_for("the snapshot index in the table", PATIENCE, |page| {
        let shown = page.text(&format!("#node-{leader} td.snapshot"));
        (shown.parse::<u64>().ok() >= Some(index)).then_some(())
    });

    // The link between nodes 1 and 2 cut from the page shows as cut at both ends; healed,
    // as not cut.
    browser.click("#link-1-2 button");
    browser.wait_for("the link to show as cut", PATIENCE, |page| {
        page.text("#link-1-2 td.link-state").contains("cut by both nodes").then_some(())
    });
    browser.click("#link-1-2 button[data-action=heal]");
    browser.wait_for("the link to show as healed", PATIENCE, |page| {
        page.text("#link-1-2 td.link-state").contains("not cut").then_some(())
    });

    // The leader stopped from the page is replaced as leader on the page.
    browser.click(&format!("#node-{leader} button[data-action=stop]"));
    let successor = browser.wait_for("another node to lead", PATIENCE, |page| {
        let rows = table(page);
        let old = rows.iter().find(|(id, _, _)| *id == leader)?;
        let new = rows.iter().find(|(_, role, _)| role == "leader")?;
        (old.1 == "unreachable" && new.0 != leader).then_some(new.0)
    });
    assert_ne!(successor, leader);
    let process = browser.text(&format!("#node-{leader} td.process"));
    assert_eq!(process, "stopped");

    // Restarted from the page, it rejoins as a follower.
    browser.click(&format!("#node-{leader} button[data-action=restart]"));
    browser.wait_for("the restarted node to follow", PATIENCE, |page| {
        let rows = table(page);
        rows.iter().any(|(id, role, _)| *id == leader && role == "follower").then_some(())
    });

    // Leadership handed back to the restarted node from the page: the page shows it leading.
    let option = format!("#transfer-to option[value='{leader}']");
    browser.wait_for("the restarted node offered as a transfer target", PATIENCE, |page| {
        page.run(&format!("return document.querySelector(\"{option}\") !== null;"))
            .as_bool()
            .filter(|offered| *offered)
    });
    browser.click(&option);
    browser.click("#transfer");
    browser.wait_for("the transfer to complete", PATIENCE, |page| {
        let result = page.text("#transfer-result");
        result.contains(&format!("from node {successor} to node {leader}")).then_some(()).or_else(
            || {
                assert!(!result.contains("failed"), "{result}");
                None
            },
        )
    });
    browser.wait_for("the page to show the new leader", PATIENCE, |page| {
        (one_leader(&table(page)) == Some(leader)).then_some(())
    });

    // A membership change the leader refuses comes back as its error, in words.
    browser.click("#members-action option[value=promote]");
    browser.type_into("#members-id", &successor.to_string());
    browser.click("#members-apply");
    browser.wait_for("the refused promotion", PATIENCE, |page| {
        page.text("#members-result").contains("409 not_a_learner").then_some(())
    });

    // A node's own page shows the same cluster, served by that node.
    let node_url = format!("{}/", demo.nodes[(successor as usize) - 1]);
    browser.open(&node_url);
    let shown = browser.wait_for("a node's own page to show the cluster", PATIENCE, |page| {
        one_leader(&table(page))
    });
    assert_eq!(shown, leader, "the same leader on the node's own page");
    let title = browser.text("#title");
    assert_eq!(title, format!("dashboard, served by node {successor}"));
}
