//! How the command line parses.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::bench::{BenchOp, Target};
use crate::client::Consistency;
use crate::kv::{CasArgs, KvCommand};
use crate::output::WriteOut;

/// Parses a command line that must be valid.
fn parse(line: &str) -> Command {
    match Cli::try_parse_from(line.split_whitespace()) {
        Ok(cli) => cli.command,
        Err(error) => panic!("{line:?} did not parse: {error}"),
    }
}

/// The error of a command line that must be invalid.
fn reject(line: &str) -> String {
    match Cli::try_parse_from(line.split_whitespace()) {
        Ok(cli) => panic!("{line:?} parsed as {cli:?}"),
        Err(error) => error.to_string(),
    }
}

/// The `kv` arguments of a command line.
fn kv(line: &str) -> kv::KvArgs {
    match parse(line) {
        Command::Kv(args) => args,
        other => panic!("{line:?} is not a kv command: {other:?}"),
    }
}

#[test]
fn kv_put_has_etcdctl_defaults() {
    let args = kv("skiff kv put greeting hello");
    assert_eq!(
        args.command,
        KvCommand::Put { key: "greeting".to_string(), value: "hello".to_string() }
    );
    assert_eq!(args.connection.endpoints, ["127.0.0.1:2379"]);
    assert_eq!(args.connection.write_out, WriteOut::Simple);
    assert_eq!(args.connection.dial_timeout, Duration::from_secs(2));
    assert_eq!(args.connection.command_timeout, Duration::from_secs(5));
}

#[test]
fn global_flags_go_before_or_after_the_verb() {
    let before = kv("skiff kv --endpoints a:1,b:2 -w json --command-timeout 1.5s get k");
    let after = kv("skiff kv get k --endpoints a:1,b:2 --write-out json --command-timeout 1500ms");
    for args in [before, after] {
        assert_eq!(args.connection.endpoints, ["a:1", "b:2"]);
        assert_eq!(args.connection.write_out, WriteOut::Json);
        assert_eq!(args.connection.command_timeout, Duration::from_millis(1500));
        assert_eq!(
            args.command,
            KvCommand::Get {
                key: "k".to_string(),
                consistency: Consistency::Linearizable,
                print_value_only: false
            }
        );
    }
}

#[test]
fn the_client_flags_belong_to_the_client_commands() {
    assert!(reject("skiff --endpoints a:1 kv get k").contains("--endpoints"));
    assert!(reject("skiff sim --endpoints a:1").contains("--endpoints"));
}

#[test]
fn get_and_scan_take_a_consistency() {
    let args = kv("skiff kv get k --consistency stale --print-value-only");
    assert_eq!(
        args.command,
        KvCommand::Get {
            key: "k".to_string(),
            consistency: Consistency::Stale,
            print_value_only: true
        }
    );
    assert_eq!(
        kv("skiff kv scan user/ --limit 10 --consistency stale").command,
        KvCommand::Scan {
            prefix: "user/".to_string(),
            limit: Some(10),
            consistency: Consistency::Stale
        }
    );
    assert_eq!(
        kv("skiff kv scan").command,
        KvCommand::Scan {
            prefix: String::new(),
            limit: None,
            consistency: Consistency::Linearizable
        }
    );
    assert_eq!(
        kv("skiff kv get k --consistency lease").command,
        KvCommand::Get {
            key: "k".to_string(),
            consistency: Consistency::Lease,
            print_value_only: false
        }
    );
    assert!(reject("skiff kv get k --consistency eventual").contains("eventual"));
}

#[test]
fn del_is_also_delete() {
    assert_eq!(kv("skiff kv del k").command, KvCommand::Del { key: "k".to_string() });
    assert_eq!(kv("skiff kv delete k").command, KvCommand::Del { key: "k".to_string() });
}

#[test]
fn cas_needs_one_expectation_and_one_outcome() {
    assert_eq!(
        kv("skiff kv cas k --expected old --value new").command,
        KvCommand::Cas(CasArgs {
            key: "k".to_string(),
            expected: Some("old".to_string()),
            absent: false,
            value: Some("new".to_string()),
            delete: false
        })
    );
    assert_eq!(
        kv("skiff kv cas k --absent --delete").command,
        KvCommand::Cas(CasArgs {
            key: "k".to_string(),
            expected: None,
            absent: true,
            value: None,
            delete: true
        })
    );
    reject("skiff kv cas k --value new");
    reject("skiff kv cas k --expected old");
    reject("skiff kv cas k --expected old --absent --value new");
    reject("skiff kv cas k --expected old --value new --delete");
}

#[test]
fn write_out_and_durations_are_checked() {
    assert!(reject("skiff kv get k -w yaml").contains("yaml"));
    assert!(reject("skiff kv get k --dial-timeout 5").contains("has no unit"));
    assert_eq!(kv("skiff kv get k -w table").connection.write_out, WriteOut::Table);
}

#[test]
fn cluster_status_parses() {
    match parse("skiff cluster status -w table --endpoints a:1") {
        Command::Cluster(args) => {
            assert_eq!(args.command, cluster::ClusterCommand::Status);
            assert_eq!(args.connection.write_out, WriteOut::Table);
        }
        other => panic!("not a cluster command: {other:?}"),
    }
}

#[test]
fn bench_has_etcd_like_defaults_and_takes_lists() {
    let Command::Bench(defaults) = parse("skiff bench") else { panic!("not a bench command") };
    assert_eq!(defaults.clients, [1, 16, 64, 256]);
    assert_eq!(defaults.duration, Duration::from_secs(10));
    assert_eq!(defaults.value_size, 256);
    assert_eq!(defaults.keys, 10_000);
    assert_eq!(defaults.op, BenchOp::Put);
    assert_eq!(defaults.target, Target::Leader);
    let Command::Bench(args) = parse(
        "skiff bench --endpoints a:1,b:2 --clients 2,8 --duration 500ms --value-size 16 \
         --keys 100 --op both --target all -w json",
    ) else {
        panic!("not a bench command")
    };
    assert_eq!(args.clients, [2, 8]);
    assert_eq!(args.duration, Duration::from_millis(500));
    assert_eq!(args.connection.endpoints, ["a:1", "b:2"]);
    assert_eq!(args.connection.write_out, WriteOut::Json);
    assert_eq!(
        (args.value_size, args.keys, args.op, args.target),
        (16, 100, BenchOp::Both, Target::All)
    );
    reject("skiff bench --clients 0");
    reject("skiff bench --keys 0");
}

#[test]
fn sim_is_unchanged() {
    let Command::Sim(_) = parse("skiff sim --seed 42 --trace --nodes 5") else {
        panic!("not a sim command")
    };
}

#[test]
fn a_sim_replay_command_parses_back_into_the_run_it_replays() {
    use skiff_sim::{Defect, Options, Time, replay_command};
    let shrunk = Options {
        defect: Some(Defect::ForgetVote),
        nodes: Some(5),
        fault_phase: Time::millis(2_500),
        keep_faults: Some([3, 7].into()),
        ..Options::new(205)
    };
    for options in [
        Options::new(1756),
        Options { reorder_sectors: false, ..Options::new(1756) },
        shrunk.clone(),
        Options { reorder_sectors: false, ..shrunk },
    ] {
        let command = replay_command(&options);
        assert_eq!(command.contains("--no-reorder-sectors"), !options.reorder_sectors, "{command}");
        let Command::Sim(args) = parse(&command) else { panic!("{command:?} is not sim") };
        assert_eq!(args.options(options.seed), options, "{command}");
    }
}

#[test]
fn cluster_membership_verbs_parse_and_members_render_as_a_table() {
    let Command::Cluster(args) = parse("skiff cluster add 4 127.0.0.1:32380 --learner") else {
        panic!("not a cluster command");
    };
    let expected = cluster::ClusterCommand::Add {
        id: 4,
        peer_addr: "127.0.0.1:32380".to_string(),
        learner: true,
    };
    assert_eq!(args.command, expected);
    let Command::Cluster(args) = parse("skiff cluster promote 4 -w json") else {
        panic!("not a cluster command");
    };
    assert_eq!(args.command, cluster::ClusterCommand::Promote { id: 4 });
    assert!(reject("skiff cluster add 4").contains("PEER_ADDR"));

    let members = crate::api::Members {
        voters: vec![1],
        learners: vec![4],
        outgoing: vec![],
        joint: false,
        leader: Some(1),
        members: vec![
            crate::api::Member {
                id: 1,
                role: "voter".to_string(),
                peer_addr: Some("127.0.0.1:2380".to_string()),
                client_addr: Some("127.0.0.1:2379".to_string()),
            },
            crate::api::Member {
                id: 4,
                role: "learner".to_string(),
                peer_addr: None,
                client_addr: None,
            },
        ],
    };
    let table = cluster::render_members(WriteOut::Table, &members, None);
    let text = String::from_utf8(table.stdout).expect("UTF-8");
    assert_eq!(
        text,
        "ID   ROLE      PEER ADDR        CLIENT ADDR\n\
         1    voter     127.0.0.1:2380   127.0.0.1:2379\n\
         4    learner   -                -\n"
    );
    let simple =
        cluster::render_members(WriteOut::Simple, &members, Some("Member 4 added as a learner"));
    let text = String::from_utf8(simple.stdout).expect("UTF-8");
    assert!(text.starts_with("Member 4 added as a learner\n1, voter, "), "{text}");
}

#[test]
fn cluster_transfer_parses_with_and_without_a_target_and_renders_the_new_leader() {
    let Command::Cluster(args) = parse("skiff cluster transfer --to 3") else {
        panic!("not a cluster command");
    };
    assert_eq!(args.command, cluster::ClusterCommand::Transfer { to: Some(3) });
    let Command::Cluster(args) = parse("skiff cluster transfer") else {
        panic!("not a cluster command");
    };
    assert_eq!(args.command, cluster::ClusterCommand::Transfer { to: None });
    assert!(reject("skiff cluster transfer --to x").contains("invalid value"));

    let answer = crate::api::TransferAnswer {
        leader: 3,
        term: 4,
        previous_leader: 1,
        target: 3,
        leader_client_addr: Some("127.0.0.1:22379".to_string()),
    };
    let simple = cluster::render_transfer(WriteOut::Simple, &answer);
    assert_eq!(
        String::from_utf8(simple.stdout).expect("UTF-8"),
        "Leadership transferred from 1 to 3 (term 4)\n"
    );
    let already = crate::api::TransferAnswer { previous_leader: 3, ..answer.clone() };
    let simple = cluster::render_transfer(WriteOut::Simple, &already);
    assert_eq!(String::from_utf8(simple.stdout).expect("UTF-8"), "Node 3 already leads (term 4)\n");
    let table = cluster::render_transfer(WriteOut::Table, &answer);
    assert_eq!(
        String::from_utf8(table.stdout).expect("UTF-8"),
        "LEADER   TERM   PREVIOUS LEADER   LEADER CLIENT ADDR\n\
         3        4      1                 127.0.0.1:22379\n"
    );
}
