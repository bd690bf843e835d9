//! The flags every client command shares, as etcdctl spells them.
//!
//! `skiff kv`, `skiff cluster` and `skiff bench` all talk to a cluster, and all take the same
//! four flags: `--endpoints`, `-w/--write-out`, `--dial-timeout` and `--command-timeout`. Each
//! is also read from an environment variable (`SKIFF_ENDPOINTS`, `SKIFF_WRITE_OUT`,
//! `SKIFF_DIAL_TIMEOUT`, `SKIFF_COMMAND_TIMEOUT`); a flag given on the command line wins over
//! the variable. The flags are global within their command, so that both
//! `skiff kv --endpoints a:1 get k` and `skiff kv get k --endpoints a:1` work. They are not
//! flags of the root `skiff` command, because `skiff sim` (and the server's `skiff node`) have
//! no cluster to dial and should not list them in their help.
//!
//! Durations are written the way Go and etcdctl write them: a number and a unit (`ns`, `us`,
//! `ms`, `s`, `m`, `h`), such as `2s`, `500ms` or `1.5m`.

use std::time::Duration;

use clap::Args;

use crate::client::ClientOptions;
use crate::output::WriteOut;

/// The connection and output flags of every client command.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// The nodes to talk to, as comma-separated host:port. Tried in order: the next one is
    /// asked when a node cannot be reached or knows no leader.
    #[arg(
        long,
        global = true,
        env = "SKIFF_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// How to print results: simple, table (with an upper-case header row) or json (the API's
    /// JSON).
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "SKIFF_WRITE_OUT",
        value_enum,
        default_value_t = WriteOut::Simple
    )]
    pub write_out: WriteOut,
    /// How long to wait for a TCP connection to one node.
    #[arg(
        long,
        global = true,
        env = "SKIFF_DIAL_TIMEOUT",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub dial_timeout: Duration,
    /// How long one command (one request in `skiff bench`) may take, retries on other nodes
    /// included.
    #[arg(
        long,
        global = true,
        env = "SKIFF_COMMAND_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub command_timeout: Duration,
}

impl ConnectionArgs {
    /// The client configuration these flags describe.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            endpoints: self.endpoints.clone(),
            dial_timeout: self.dial_timeout,
            command_timeout: self.command_timeout,
        }
    }
}

/// Parses a duration such as `2s`, `500ms`, `1.5m` or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_start =
        text.find(|symbol: char| !(symbol.is_ascii_digit() || symbol == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_start);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 2s, 500ms or 1.5m"))?;
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" if number == 0.0 => 0.0,
        "" => return Err(format!("{text:?} has no unit: write {text}s or {text}ms")),
        _ => return Err(format!("{unit:?} in {text:?} is not a unit (ns, us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit)
        .map_err(|error| format!("{text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_etcdctl_writes_them() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_duration_needs_a_number_and_a_known_unit() {
        assert_eq!(parse_duration("5"), Err("\"5\" has no unit: write 5s or 5ms".to_string()));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }
}
