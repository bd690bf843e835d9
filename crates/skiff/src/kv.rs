//! `skiff kv`: read and write keys, in etcdctl's noun-verb manner.
//!
//! ```text
//! skiff kv put KEY VALUE                       # OK
//! skiff kv get KEY [--consistency lease|stale] # KEY, then VALUE, on two lines
//! skiff kv del KEY                             # OK
//! skiff kv cas KEY --expected OLD --value NEW  # OK, or "compare failed: KEY holds ..."
//! skiff kv cas KEY --absent --value NEW        # create only if absent
//! skiff kv cas KEY --expected OLD --delete     # delete only if it still holds OLD
//! skiff kv scan PREFIX [--limit N]             # KEY, VALUE pairs in key order
//! ```
//!
//! Every verb maps to one request of docs/http-api.md. A key that does not exist is an error
//! for `get` and `del` alike (exit status 1, `key not found: KEY` on stderr), where etcdctl
//! would print nothing and succeed: a script should not have to parse output to learn that a
//! key was missing. Values are taken from the command line as UTF-8; a value read back is
//! printed raw in simple output, whatever its bytes.
//!
//! Output per verb and format (`-w`):
//!
//! | verb | simple | table | json |
//! |---|---|---|---|
//! | put, cas | `OK` | KEY, REVISION | `{"revision": R}` |
//! | del | `OK` | KEY, REVISION | `{"revision": R, "deleted": true}` |
//! | get | key line, value line (`--print-value-only`: the value line) | KEY, VALUE, REVISION | `{"key", "value" or "value_base64", "revision"}` |
//! | scan | key line, value line, per key | KEY, VALUE, REVISION | the API's scan answer |
//!
//! When a scan stops at its limit, simple and table output say so on stderr.

use clap::{ArgGroup, Args, Subcommand};
use hyper::body::Bytes;

use crate::api::{DeleteAnswer, KeyValue, ScanAnswer, WriteAnswer};
use crate::client::{Client, ClientError, Consistency, Value};
use crate::flags::ConnectionArgs;
use crate::output::{Output, WriteOut, cell, json, table};

/// Arguments of `skiff kv`.
#[derive(Args, Debug)]
pub struct KvArgs {
    /// Where to connect and how to print.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The verb.
    #[command(subcommand)]
    pub command: KvCommand,
}

/// The verbs of `skiff kv`.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum KvCommand {
    /// Store a value under a key.
    Put {
        /// The key.
        key: String,
        /// The value (UTF-8; use -- before a value that starts with a dash).
        value: String,
    },
    /// Read a key's value.
    Get {
        /// The key.
        key: String,
        /// linearizable: confirmed by the leader; stale: the answering node's own state.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
        /// Print only the value (simple output).
        #[arg(long)]
        print_value_only: bool,
    },
    /// Delete a key.
    #[command(alias = "delete")]
    Del {
        /// The key.
        key: String,
    },
    /// Compare and swap: change a key only if it holds the expected value.
    Cas(CasArgs),
    /// List the keys that start with a prefix, in key order.
    Scan {
        /// The prefix (all keys when left out).
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many keys (the node's default, 1,000, when left out; at most 10,000).
        #[arg(long)]
        limit: Option<u32>,
        /// linearizable: confirmed by the leader; stale: the answering node's own state.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
    },
}

/// Arguments of `skiff kv cas`: one expectation and one outcome.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(group(ArgGroup::new("expectation").required(true).args(["expected", "absent"])))]
#[command(group(ArgGroup::new("outcome").required(true).args(["value", "delete"])))]
pub struct CasArgs {
    /// The key.
    pub key: String,
    /// The value the key must hold.
    #[arg(long)]
    pub expected: Option<String>,
    /// The key must not exist.
    #[arg(long)]
    pub absent: bool,
    /// The new value.
    #[arg(long)]
    pub value: Option<String>,
    /// Delete the key instead of giving it a value.
    #[arg(long)]
    pub delete: bool,
}

/// Runs a `skiff kv` verb.
pub async fn execute(args: &KvArgs) -> Result<Output, ClientError> {
    let mut client = Client::new(args.connection.client_options())?;
    let format = args.connection.write_out;
    match &args.command {
        KvCommand::Put { key, value } => {
            let answer = client.put(key, Bytes::from(value.clone())).await?;
            Ok(render_write(format, key, &answer))
        }
        KvCommand::Get { key, consistency, print_value_only } => {
            let value = client.get(key, *consistency).await?;
            Ok(render_get(format, key, value, *print_value_only))
        }
        KvCommand::Del { key } => {
            let answer = client.delete(key).await?;
            Ok(render_delete(format, key, &answer))
        }
        KvCommand::Cas(cas) => {
            let value = if cas.delete { None } else { cas.value.as_deref() };
            let expected = if cas.absent { None } else { cas.expected.as_deref() };
            let answer = client.cas(&cas.key, expected, value).await?;
            Ok(render_write(format, &cas.key, &answer))
        }
        KvCommand::Scan { prefix, limit, consistency } => {
            let answer = client.scan(prefix, *limit, *consistency).await?;
            render_scan(format, &answer)
        }
    }
}

/// Renders the answer to a put or a CAS.
pub fn render_write(format: WriteOut, key: &str, answer: &WriteAnswer) -> Output {
    Output::text(match format {
        WriteOut::Simple => "OK\n".to_string(),
        WriteOut::Table => {
            table(&["key", "revision"], &[vec![cell(key.as_bytes()), answer.revision.to_string()]])
        }
        WriteOut::Json => json(answer),
    })
}

/// Renders the answer to a delete.
pub fn render_delete(format: WriteOut, key: &str, answer: &DeleteAnswer) -> Output {
    Output::text(match format {
        WriteOut::Simple => "OK\n".to_string(),
        WriteOut::Table => {
            table(&["key", "revision"], &[vec![cell(key.as_bytes()), answer.revision.to_string()]])
        }
        WriteOut::Json => json(answer),
    })
}

/// Renders a value read with get.
pub fn render_get(format: WriteOut, key: &str, read: Value, print_value_only: bool) -> Output {
    match format {
        WriteOut::Simple => {
            let mut stdout = Vec::new();
            if !print_value_only {
                stdout.extend_from_slice(key.as_bytes());
                stdout.push(b'\n');
            }
            stdout.extend_from_slice(&read.value);
            stdout.push(b'\n');
            Output { stdout, ..Output::default() }
        }
        WriteOut::Table => Output::text(table(
            &["key", "value", "revision"],
            &[vec![cell(key.as_bytes()), cell(&read.value), read.revision.to_string()]],
        )),
        WriteOut::Json => {
            Output::text(json(&KeyValue::new(key.to_string(), read.value, read.revision)))
        }
    }
}

/// Renders a scan; a scan cut short by its limit adds a note for stderr.
pub fn render_scan(format: WriteOut, answer: &ScanAnswer) -> Result<Output, ClientError> {
    let mut values = Vec::with_capacity(answer.kvs.len());
    for entry in &answer.kvs {
        values.push(entry.value_bytes().map_err(|reason| ClientError::Protocol {
            endpoint: "the node".to_string(),
            reason,
        })?);
    }
    let mut output = match format {
        WriteOut::Simple => {
            let mut stdout = Vec::new();
            for (entry, value) in answer.kvs.iter().zip(&values) {
                stdout.extend_from_slice(entry.key.as_bytes());
                stdout.push(b'\n');
                stdout.extend_from_slice(value);
                stdout.push(b'\n');
            }
            Output { stdout, ..Output::default() }
        }
        WriteOut::Table => {
            let rows: Vec<Vec<String>> = answer
                .kvs
                .iter()
                .zip(&values)
                .map(|(entry, value)| {
                    vec![cell(entry.key.as_bytes()), cell(value), entry.revision.to_string()]
                })
                .collect();
            Output::text(table(&["key", "value", "revision"], &rows))
        }
        WriteOut::Json => return Ok(Output::text(json(answer))),
    };
    if answer.more {
        output.stderr.push(format!(
            "(more keys match than the {} listed: raise --limit or narrow the prefix)",
            answer.kvs.len()
        ));
    }
    Ok(output)
}

#[cfg(test)]
mod tests;
