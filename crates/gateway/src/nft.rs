//! veg's nftables tables through the `nftables` crate: the objects of a planned table, one batch
//! that replaces veg's tables (and nothing else) atomically, and the read-back in a form that
//! compares equal to the plan when the kernel holds what was planned.
//!
//! nft rewrites what it is given (adjacent prefixes of an anonymous set are merged, a one-element
//! flag set is printed as a string, counters carry values), so both sides go through
//! [`normalize`] before they are compared.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix,
    SetItem,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Counter, Mangle, Match, NAT, NATFlag, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::{Value, json};

use crate::plan::{Family, MARK, NFT_TABLE, NftTable};

/// The families veg may own a table in.
pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn nf_family(family: Family) -> NfFamily {
    match family {
        Family::V4 => NfFamily::IP,
        Family::V6 => NfFamily::IP6,
    }
}

/// The `nft` family keyword.
pub fn family_keyword(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

// ===== the planned objects =====

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn matches(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn set_mark(value: BinaryOperation<'static>) -> Statement<'static> {
    Statement::Mangle(Mangle {
        key: meta(MetaKey::Mark),
        value: Expression::BinaryOperation(Box::new(value)),
    })
}

fn prefix_set(nets: &[IpNet]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        nets.iter()
            .map(|net| {
                SetItem::Element(Expression::Named(NamedExpression::Prefix(Prefix {
                    addr: Box::new(Expression::String(Cow::Owned(net.network().to_string()))),
                    len: u32::from(net.prefix_len()),
                })))
            })
            .collect(),
    ))
}

fn address(family: Family, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(family_keyword(family)),
            field: Cow::Borrowed(field),
        },
    )))
}

/// The chain counting SNATed traffic leaving the external leg (after srcnat).
pub const COUNT_EGRESS: &str = "count-egress";
/// The chain counting SNATed traffic (replies) entering from the external leg.
pub const COUNT_INGRESS: &str = "count-ingress";
/// The chain whose counter counts new SNAT connections (the NAT hook sees first packets only).
pub const POSTROUTING: &str = "postrouting";
/// The chain that keeps the Pod's own listeners off the external leg.
pub const INPUT: &str = "input";

/// The Pod's own listeners (HTTP of the agent and bfdd, BFD): served on the internal leg only.
/// On the external leg anyone on that segment could read the metrics, flood the endpoints or
/// spoof BFD to take the instance out.
fn own_ports() -> [u16; 4] {
    [
        BFD_PORTS[0],
        BFD_PORTS[1],
        BFDD_HTTP_PORT,
        GATEWAY_HTTP_PORT,
    ]
}

/// `veg gateway run`'s `/metrics`, `/livez`, `/readyz` (TCP; the controller renders it).
pub const GATEWAY_HTTP_PORT: u16 = 10670;
/// `veg bfdd`'s `/metrics`, `/livez`, `/readyz` (TCP; the controller renders it).
pub const BFDD_HTTP_PORT: u16 = 10669;
/// BFD single-hop and multihop control (UDP, RFC 5881 and 5883).
pub const BFD_PORTS: [u16; 2] = [3784, 4784];

fn chain(
    family: Family,
    name: &'static str,
    kind: NfChainType,
    hook: NfHook,
    prio: i32,
) -> Chain<'static> {
    Chain {
        family: nf_family(family),
        table: Cow::Borrowed(NFT_TABLE),
        name: Cow::Borrowed(name),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(family: Family, chain: &'static str, expr: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: nf_family(family),
        table: Cow::Borrowed(NFT_TABLE),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: None,
    }
}

/// The table, its chains and rules, in the order they must be added.
pub fn objects(table: &NftTable) -> Vec<NfListObject<'static>> {
    let family = table.family;
    let mut objects = vec![
        NfListObject::Table(Table {
            family: nf_family(family),
            name: Cow::Borrowed(NFT_TABLE),
            handle: None,
        }),
        // dstnat (-100) and srcnat (100), as `nft` names them.
        NfListObject::Chain(chain(
            family,
            "prerouting",
            NfChainType::NAT,
            NfHook::Prerouting,
            -100,
        )),
        NfListObject::Chain(chain(
            family,
            POSTROUTING,
            NfChainType::NAT,
            NfHook::Postrouting,
            100,
        )),
        // Per-packet counters of SNATed traffic: after srcnat on the way out, at mangle
        // (after conntrack, before de-NAT) on the way in.
        NfListObject::Chain(chain(
            family,
            COUNT_EGRESS,
            NfChainType::Filter,
            NfHook::Postrouting,
            101,
        )),
        NfListObject::Chain(chain(
            family,
            COUNT_INGRESS,
            NfChainType::Filter,
            NfHook::Prerouting,
            -150,
        )),
        NfListObject::Chain(chain(family, INPUT, NfChainType::Filter, NfHook::Input, 0)),
        NfListObject::Rule(rule(
            family,
            INPUT,
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Expression::String(Cow::Owned(table.external_interface.clone())),
                ),
                matches(
                    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                        PayloadField {
                            protocol: Cow::Borrowed("th"),
                            field: Cow::Borrowed("dport"),
                        },
                    ))),
                    Expression::Named(NamedExpression::Set(
                        own_ports()
                            .into_iter()
                            .map(|port| SetItem::Element(Expression::Number(u32::from(port))))
                            .collect(),
                    )),
                ),
                Statement::Counter(Counter::Anonymous(None)),
                Statement::Drop(None),
            ],
        )),
        NfListObject::Rule(rule(
            family,
            "prerouting",
            vec![
                matches(
                    meta(MetaKey::Iifname),
                    Expression::String(Cow::Owned(table.internal_interface.clone())),
                ),
                set_mark(BinaryOperation::OR(vec![
                    meta(MetaKey::Mark),
                    Expression::Number(MARK),
                ])),
            ],
        )),
    ];
    if !table.forward_only.is_empty() {
        for field in ["daddr", "saddr"] {
            objects.push(NfListObject::Rule(rule(
                family,
                POSTROUTING,
                vec![
                    matches(address(family, field), prefix_set(&table.forward_only)),
                    Statement::Return(None),
                ],
            )));
        }
    }
    for (chain, direction) in [
        (COUNT_EGRESS, MetaKey::Oifname),
        (COUNT_INGRESS, MetaKey::Iifname),
    ] {
        objects.push(NfListObject::Rule(rule(
            family,
            chain,
            vec![
                matches(
                    meta(direction),
                    Expression::String(Cow::Owned(table.external_interface.clone())),
                ),
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::CT(CT {
                        key: Cow::Borrowed("status"),
                        family: None,
                        dir: None,
                    })),
                    right: Expression::String(Cow::Borrowed("snat")),
                    op: Operator::IN,
                }),
                Statement::Counter(Counter::Anonymous(None)),
            ],
        )));
    }
    objects.push(NfListObject::Rule(rule(
        family,
        POSTROUTING,
        vec![
            matches(
                Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                    meta(MetaKey::Mark),
                    Expression::Number(MARK),
                ))),
                Expression::Number(MARK),
            ),
            matches(
                meta(MetaKey::Oifname),
                Expression::String(Cow::Owned(table.external_interface.clone())),
            ),
            set_mark(BinaryOperation::AND(
                meta(MetaKey::Mark),
                Expression::Number(!MARK),
            )),
            Statement::Counter(Counter::Anonymous(None)),
            Statement::Masquerade(Some(NAT {
                addr: None,
                family: None,
                port: None,
                flags: Some([NATFlag::FullyRandom].into_iter().collect()),
            })),
        ],
    )));
    objects
}

/// One transaction that leaves exactly `desired` as veg's tables: for each family, make sure
/// the table exists, delete it, then add the planned one (if any). nft applies a batch
/// atomically, so a failure leaves the previous tables in place.
pub fn replace_batch(desired: &[NftTable]) -> Nftables<'static> {
    let mut batch = Batch::new();
    for family in FAMILIES {
        let table = Table {
            family: nf_family(family),
            name: Cow::Borrowed(NFT_TABLE),
            handle: None,
        };
        batch.add(NfListObject::Table(table.clone()));
        batch.delete(NfListObject::Table(table));
        if let Some(planned) = desired.iter().find(|planned| planned.family == family) {
            for object in objects(planned) {
                batch.add(object);
            }
        }
    }
    batch.to_nftables()
}

// ===== comparable form =====

/// A table as the comparison sees it: chains and rules with counters cleared and sets
/// canonical, plus the counters' values by chain (read back only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableShape {
    /// `{"chains": [...], "rules": [...]}`, normalized.
    pub shape: Value,
    /// (packets, bytes) counted in each chain.
    pub counters: BTreeMap<String, (u64, u64)>,
}

impl TableShape {
    /// The SNAT counters: new connections, (packets, bytes) out and in.
    pub fn snat(&self) -> SnatCounters {
        let get = |chain: &str| self.counters.get(chain).copied().unwrap_or_default();
        SnatCounters {
            connections: get(POSTROUTING).0,
            egress: get(COUNT_EGRESS),
            ingress: get(COUNT_INGRESS),
        }
    }
}

/// What the counters of a family's table say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnatCounters {
    /// Connections masqueraded (the NAT hook sees their first packet).
    pub connections: u64,
    /// (packets, bytes) masqueraded on the way out.
    pub egress: (u64, u64),
    /// (packets, bytes) of their replies on the way in.
    pub ingress: (u64, u64),
}

/// The shape the plan expects (counters zero).
pub fn planned_shape(table: &NftTable) -> TableShape {
    let objects: Vec<Value> = objects(table)
        .iter()
        .filter_map(|object| serde_json::to_value(object).ok())
        .collect();
    shape_of(&objects, family_keyword(table.family))
}

/// The shape of veg's table of `family` in `nft -j list ruleset <family>` output, or `None`
/// when the table is absent.
pub fn observed_shape(listing: &Value, family: Family) -> Option<TableShape> {
    let keyword = family_keyword(family);
    let objects: Vec<Value> = listing
        .get("nftables")
        .and_then(Value::as_array)
        .map(|items| items.to_vec())
        .unwrap_or_default();
    let present = objects.iter().any(|object| {
        object.get("table").is_some_and(|table| {
            table.get("name") == Some(&json!(NFT_TABLE))
                && table.get("family") == Some(&json!(keyword))
        })
    });
    present.then(|| shape_of(&objects, keyword))
}

fn shape_of(objects: &[Value], family: &str) -> TableShape {
    let ours = |body: &Value| {
        body.get("table") == Some(&json!(NFT_TABLE)) && body.get("family") == Some(&json!(family))
    };
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    let mut counters = BTreeMap::new();
    for object in objects {
        if let Some(body) = object.get("chain").filter(|body| ours(body)) {
            chains.push(json!({
                "name": body.get("name"),
                "type": body.get("type"),
                "hook": body.get("hook"),
                "prio": body.get("prio"),
                "policy": body.get("policy"),
            }));
        }
        if let Some(body) = object.get("rule").filter(|body| ours(body)) {
            let mut expr = body.get("expr").cloned().unwrap_or(Value::Null);
            let chain = body
                .get("chain")
                .and_then(Value::as_str)
                .unwrap_or_default();
            collect_counter(&expr, counters.entry(chain.to_owned()).or_default());
            normalize(&mut expr);
            rules.push(json!({"chain": body.get("chain"), "expr": expr}));
        }
    }
    chains.sort_by_key(|chain| chain.get("name").map(Value::to_string));
    // Order matters within a chain only; nft lists rules chain by chain.
    rules.sort_by_key(|rule| rule.get("chain").map(Value::to_string));
    counters.retain(|_, (packets, bytes)| *packets > 0 || *bytes > 0);
    TableShape {
        shape: json!({"chains": chains, "rules": rules}),
        counters,
    }
}

fn collect_counter(expr: &Value, counters: &mut (u64, u64)) {
    for statement in expr.as_array().into_iter().flatten() {
        if let Some(counter) = statement.get("counter") {
            counters.0 += counter.get("packets").and_then(Value::as_u64).unwrap_or(0);
            counters.1 += counter.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        }
    }
}

/// Rewrites an expression tree the way nft would print it, so that the plan and the
/// read-back compare equal: counters lose their values, NAT flags become a sorted list, set
/// elements become merged, sorted CIDRs.
pub fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(counter) = map.get_mut("counter") {
                *counter = Value::Null;
            }
            if let Some(flags) = map.get_mut("flags") {
                let mut list: Vec<String> = match flags {
                    Value::String(flag) => vec![flag.clone()],
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                list.sort();
                *flags = json!(list);
            }
            for child in map.values_mut() {
                normalize(child);
            }
            // nft prints a one-element set as the element itself, and a prefix as an object.
            if let Some(set) = map.get("set")
                && let Some(items) = set.as_array()
                && let Some(nets) = items.iter().map(set_element).collect::<Option<Vec<_>>>()
            {
                let merged: Vec<String> = IpNet::aggregate(&nets).iter().map(canonical).collect();
                *value = match merged.as_slice() {
                    [single] => json!(single),
                    _ => json!({ "set": merged }),
                };
            } else if map.len() == 1
                && map.contains_key("prefix")
                && let Some(net) = set_element(value)
            {
                *value = json!(canonical(&net));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// A network as nft prints it: a host prefix is the bare address.
fn canonical(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn set_element(item: &Value) -> Option<IpNet> {
    match item {
        Value::String(text) => text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from)),
        Value::Object(map) => {
            let prefix = map.get("prefix")?;
            let address: IpAddr = prefix.get("addr")?.as_str()?.parse().ok()?;
            let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
            IpNet::new(address, len).ok()
        }
        _ => None,
    }
}

// ===== I/O: the `nft` program =====

/// Why running `nft` failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// nft ran and refused; its stderr says why.
    #[error("nft refused the batch: {stderr}")]
    Refused {
        /// What nft printed, trimmed.
        stderr: String,
    },
    /// nft could not be run or its output read.
    #[error("cannot run {program}: {source}")]
    Run {
        program: String,
        source: std::io::Error,
    },
    /// nft did not finish in time; it was killed.
    #[error("{program} did not finish within {seconds} s; killed")]
    Timeout { program: String, seconds: u64 },
    /// nft printed something that is not JSON.
    #[error("nft printed invalid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// The batch did not encode as JSON (a bug).
    #[error("encoding the nft batch: {0}")]
    Encode(serde_json::Error),
}

/// How long one `nft` run may take: a hung one (a kernel lock, a stuck netlink socket) must
/// not hold the agent's loop, which also answers the kubelet's probes.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program -j ARGS` with `input` on stdin, within `limit` (killed after it), and
/// returns its stdout.
async fn run_nft(
    program: &str,
    args: &[&str],
    input: Option<&str>,
    limit: Duration,
) -> Result<String, NftError> {
    use tokio::io::AsyncWriteExt as _;
    let failed = |source| NftError::Run {
        program: program.to_owned(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .arg("-j")
        .args(args)
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A child left behind by the timeout is killed when its handle goes.
        .kill_on_drop(true)
        .spawn()
        .map_err(failed)?;
    let run = async {
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| NftError::Timeout {
            program: program.to_owned(),
            seconds: limit.as_secs(),
        })?
        .map_err(failed)?;
    if !output.status.success() {
        return Err(NftError::Refused {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `nft -j list ruleset <family>`, parsed.
pub async fn list(program: &str, family: Family) -> Result<Value, NftError> {
    list_within(program, family, NFT_TIMEOUT).await
}

async fn list_within(program: &str, family: Family, limit: Duration) -> Result<Value, NftError> {
    let raw = run_nft(
        program,
        &["list", "ruleset", family_keyword(family)],
        None,
        limit,
    )
    .await?;
    serde_json::from_str(&raw).map_err(NftError::InvalidJson)
}

/// Applies [`replace_batch`] in one `nft -j -f -` transaction.
pub async fn replace(program: &str, desired: &[NftTable]) -> Result<(), NftError> {
    let batch = serde_json::to_string(&replace_batch(desired)).map_err(NftError::Encode)?;
    run_nft(program, &["-f", "-"], Some(&batch), NFT_TIMEOUT).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hung `nft` is killed at the limit: the agent's loop goes on, and no process stays.
    #[tokio::test]
    async fn a_hung_nft_is_killed_at_the_limit() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("veg-nft-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let marker = format!("29.{}", std::process::id());
        let script = dir.join("nft");
        std::fs::write(&script, format!("#!/bin/sh\nexec sleep {marker}\n"))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let program = script.to_string_lossy().into_owned();
        let started = std::time::Instant::now();
        let result = list_within(&program, Family::V4, Duration::from_millis(300)).await;
        let took = started.elapsed();
        // The child is killed when its handle goes; give the kernel a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = std::fs::read_dir("/proc")?
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&marker));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(result, Err(NftError::Timeout { .. })),
            "{result:?}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(!alive, "the hung nft still runs");
        Ok(())
    }

    fn table(forward_only: &[&str]) -> NftTable {
        NftTable {
            family: Family::V4,
            internal_interface: "eth0".into(),
            external_interface: "net1".into(),
            forward_only: forward_only
                .iter()
                .filter_map(|net| net.parse().ok())
                .collect(),
        }
    }

    /// What nft 1.0.6 printed for the planned table (captured with `nft -j list table ip veg`
    /// after loading it), with its own handles, merged set and counter values.
    fn listing() -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "veg", "handle": 1}},
            {"chain": {"family": "ip", "table": "veg", "name": "prerouting", "handle": 1,
                "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "veg", "name": "postrouting", "handle": 2,
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "veg", "name": "count-egress", "handle": 3,
                "type": "filter", "hook": "postrouting", "prio": 101, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "veg", "name": "count-ingress", "handle": 4,
                "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}},
            // As nft 1.0.6 lists the input rule (read back from a namespace).
            {"chain": {"family": "ip", "table": "veg", "name": "input", "handle": 5,
                "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "veg", "chain": "input", "handle": 11, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "net1"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                    "right": {"set": [3784, 4784, 10669, 10670]}}},
                {"counter": {"packets": 3, "bytes": 180}},
                {"drop": null}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "prerouting", "handle": 3, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
                {"mangle": {"key": {"meta": {"key": "mark"}},
                    "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "count-egress", "handle": 9, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "net1"}},
                {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "snat"}},
                {"counter": {"packets": 70, "bytes": 9000}}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "count-ingress", "handle": 10, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "net1"}},
                {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "snat"}},
                {"counter": {"packets": 60, "bytes": 80000}}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "postrouting", "handle": 5, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": {"set": [{"prefix": {"addr": "198.20.0.0", "len": 15}}]}}},
                {"return": null}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "postrouting", "handle": 7, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"set": [{"prefix": {"addr": "198.20.0.0", "len": 15}}]}}},
                {"return": null}]}},
            {"rule": {"family": "ip", "table": "veg", "chain": "postrouting", "handle": 8, "expr": [
                {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]},
                    "right": 16384}},
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "net1"}},
                {"mangle": {"key": {"meta": {"key": "mark"}},
                    "value": {"&": [{"meta": {"key": "mark"}}, 4294950911u32]}}},
                {"counter": {"packets": 7, "bytes": 420}},
                {"masquerade": {"flags": "fully-random"}}]}}
        ]})
    }

    #[test]
    fn the_read_back_of_the_planned_table_compares_equal() {
        let planned = planned_shape(&table(&["198.20.0.0/16", "198.21.0.0/16"]));
        let observed = observed_shape(&listing(), Family::V4);
        assert_eq!(observed.as_ref().map(|o| &o.shape), Some(&planned.shape));
        assert_eq!(
            observed.map(|o| o.snat()),
            Some(SnatCounters {
                connections: 7,
                egress: (70, 9000),
                ingress: (60, 80000)
            })
        );
    }

    #[test]
    fn a_changed_rule_or_another_family_does_not_compare_equal() {
        let other_interface = NftTable {
            external_interface: "net2".into(),
            ..table(&["198.20.0.0/16", "198.21.0.0/16"])
        };
        let observed = observed_shape(&listing(), Family::V4).map(|o| o.shape);
        assert_ne!(observed, Some(planned_shape(&other_interface).shape));
        assert_ne!(
            observed,
            Some(planned_shape(&table(&["198.20.0.0/16"])).shape)
        );
        assert_eq!(observed_shape(&listing(), Family::V6), None);
    }

    /// nft prints a one-address set as the bare address (`ip daddr 198.18.16.30`).
    #[test]
    fn a_single_host_forward_only_source_compares_equal() {
        let planned = planned_shape(&table(&["198.18.16.30/32"]));
        let mut printed = planned.shape.clone();
        // What nft 1.0.6 prints for that rule's right-hand side.
        for rule in printed["rules"].as_array_mut().into_iter().flatten() {
            for statement in rule["expr"].as_array_mut().into_iter().flatten() {
                if let Some(right) = statement.pointer_mut("/match/right")
                    && right == "198.18.16.30"
                {
                    *right = json!("198.18.16.30");
                }
            }
        }
        let mut observed = printed.clone();
        normalize(&mut observed);
        assert_eq!(observed, planned.shape);
        assert!(
            planned.shape.to_string().contains("\"198.18.16.30\""),
            "{}",
            planned.shape
        );
    }

    #[test]
    fn the_batch_replaces_both_families_and_adds_only_planned_tables() -> serde_json::Result<()> {
        let batch = serde_json::to_value(replace_batch(&[table(&[])]))?;
        let commands: Vec<String> = batch["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|object| {
                let (command, body) = object.as_object()?.iter().next()?;
                let (kind, body) = body.as_object()?.iter().next()?;
                let family = body.get("family")?.as_str()?;
                Some(format!("{command} {kind} {family}"))
            })
            .collect();
        assert_eq!(
            commands,
            [
                "add table ip",
                "delete table ip",
                "add table ip",
                "add chain ip",
                "add chain ip",
                "add chain ip",
                "add chain ip",
                "add chain ip",
                "add rule ip",
                "add rule ip",
                "add rule ip",
                "add rule ip",
                "add rule ip",
                "add table ip6",
                "delete table ip6",
            ]
        );
        Ok(())
    }
}
