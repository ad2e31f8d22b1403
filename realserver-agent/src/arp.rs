//! ARP suppression for the VIPs, three ways; each applies and reads back from the
//! kernel (status reports what is there, not what was meant), and writes only when
//! what it reads differs (so the agent's own writes do not wake its drift watch).
//!
//! - `nft`: one table `arp lvsdr` owned by the agent and replaced whole in one
//!   transaction: input drops ARP whose target is a VIP; output rewrites a VIP sender
//!   address to the real IP (the rule must match the *sender*: matching the target, as
//!   old arptables guides print it, never fires for the host's own requests).
//! - `sysctl`: `arp_ignore=1`, `arp_announce=2` on `all` and the real interface; the
//!   old values are saved and restored when no IPv4 VIP is left.
//! - `arptables`: the legacy tool, the same two rules per VIP; the agent deletes only
//!   the rules it added (recorded in the state file).
//!
//! `nft` and `arptables` run as child processes with a deadline, off the runtime
//! thread. IPv6 has no ARP: IPv6 VIPs need nothing here.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetType, SetTypeValue, Table};
use nftables::stmt::{Drop, Mangle, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tokio::io::AsyncWriteExt;

use crate::config::ArpMode;
use crate::state::State;

const TABLE: &str = "lvsdr";

fn v4(vips: &[IpAddr]) -> Vec<Ipv4Addr> {
    vips.iter()
        .filter_map(|v| match v {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect()
}

fn real_v4(real_ip: Option<IpAddr>) -> anyhow::Result<Ipv4Addr> {
    match real_ip {
        Some(IpAddr::V4(a)) => Ok(a),
        _ => bail!("the real IPv4 address is not known yet (set real_ip, or wait for a push)"),
    }
}

/// How long `nft` or `arptables` may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `cmd` with a deadline (killed when it passes), `stdin` written to it.
async fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .with_context(|| format!("writing to {cmd}"))?;
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!(
                "{cmd} {}: no answer within {DEADLINE:?}; killed",
                args.join(" ")
            )
        })?
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes ARP suppression match `vips`; `iface` is the real interface (sysctl mode).
pub async fn apply(
    mode: ArpMode,
    vips: &[IpAddr],
    real_ip: Option<IpAddr>,
    iface: Option<&str>,
    state: &mut State,
) -> anyhow::Result<()> {
    let vips = v4(vips);
    match mode {
        ArpMode::Nft => nft_apply(&vips, real_ip).await,
        ArpMode::Sysctl => sysctl_apply(!vips.is_empty(), iface, state),
        ArpMode::Arptables => arptables_apply(&vips, real_ip, state).await,
    }
}

/// Which of `vips` have ARP suppression in place, read back from the kernel.
pub async fn in_place(
    mode: ArpMode,
    vips: &[IpAddr],
    real_ip: Option<IpAddr>,
    iface: Option<&str>,
) -> anyhow::Result<Vec<bool>> {
    let suppressed: Box<dyn Fn(&Ipv4Addr) -> bool> = match mode {
        ArpMode::Nft => {
            let (elems, rules_ok) = nft_read(real_ip).await?;
            Box::new(move |v| rules_ok && elems.contains(v))
        }
        ArpMode::Sysctl => {
            let ok = sysctl_ok("all")? && iface.map_or(Ok(true), sysctl_ok)?;
            Box::new(move |_| ok)
        }
        ArpMode::Arptables => {
            let rules = arptables_rules().await?;
            let rip = real_ip.map(|r| r.to_string()).unwrap_or_default();
            Box::new(move |v| {
                let v = v.to_string();
                rules.contains(&ArpRule::Drop(v.clone()))
                    && rules.contains(&ArpRule::Mangle(v, rip.clone()))
            })
        }
    };
    Ok(vips
        .iter()
        .map(|v| match v {
            IpAddr::V4(a) => suppressed(a),
            IpAddr::V6(_) => true,
        })
        .collect())
}

// --- nft -------------------------------------------------------------------------

fn payload(field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed("arp"),
            field: Cow::Borrowed(field),
        },
    )))
}

fn chain(name: &'static str, hook: NfHook) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: NfFamily::ARP,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(0),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(chain: &'static str, expr: Vec<Statement<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::ARP,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        ..Rule::default()
    })
}

async fn nft_apply(vips: &[Ipv4Addr], real_ip: Option<IpAddr>) -> anyhow::Result<()> {
    let (mut have, rules_ok) = nft_read(real_ip).await?;
    have.sort();
    let mut want = vips.to_vec();
    want.sort();
    if (rules_ok || want.is_empty()) && have == want {
        return Ok(()); // already so: no write, no ruleset event
    }
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::ARP,
            name: TABLE.into(),
            ..Table::default()
        })
    };
    let mut batch = Batch::new();
    // add + delete: the delete cannot fail, and the whole table is replaced at once.
    batch.add(table());
    batch.delete(table());
    if !vips.is_empty() {
        let rip = real_v4(real_ip)?;
        let on_vips = |field| {
            Statement::Match(Match {
                left: payload(field),
                right: Expression::String("@vips".into()),
                op: Operator::EQ,
            })
        };
        batch.add(table());
        batch.add(NfListObject::Set(Box::new(Set {
            family: NfFamily::ARP,
            table: TABLE.into(),
            name: "vips".into(),
            set_type: SetTypeValue::Single(SetType::Ipv4Addr),
            elem: Some(
                vips.iter()
                    .map(|v| Expression::String(v.to_string().into()))
                    .collect(),
            ),
            ..Set::default()
        })));
        batch.add(chain("input", NfHook::Input));
        batch.add(chain("output", NfHook::Output));
        batch.add(rule(
            "input",
            vec![on_vips("daddr ip"), Statement::Drop(Some(Drop {}))],
        ));
        batch.add(rule(
            "output",
            vec![
                on_vips("saddr ip"),
                Statement::Mangle(Mangle {
                    key: payload("saddr ip"),
                    value: Expression::String(rip.to_string().into()),
                }),
            ],
        ));
    }
    let json = serde_json::to_string(&batch.to_nftables()).context("encoding the ruleset")?;
    run("nft", &["-j", "-f", "-"], Some(&json)).await?;
    Ok(())
}

/// The agent's nft table as the kernel has it.
#[derive(Debug, Default)]
struct NftTable {
    /// The `vips` set's elements.
    elems: Vec<Ipv4Addr>,
    /// The input rule drops ARP for `@vips`.
    drop_rule: bool,
    /// The output rule rewrites a `@vips` sender to this address.
    mangle_to: Option<String>,
}

async fn nft_table() -> anyhow::Result<Option<NftTable>> {
    // One listing of the arp family: no table of ours tells "absent" apart from
    // "nft failed" (an error), in one process.
    let out = run("nft", &["-j", "list", "ruleset", "arp"], None).await?;
    let v: serde_json::Value = serde_json::from_str(&out).context("nft's JSON")?;
    let objs: Vec<&serde_json::Value> = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["table"]["name"] == TABLE || in_table(o))
        .collect();
    if !objs.iter().any(|o| o["table"]["name"] == TABLE) {
        return Ok(None);
    }
    let mut t = NftTable::default();
    for o in objs {
        if o["set"]["name"] == "vips" {
            for e in o["set"]["elem"].as_array().into_iter().flatten() {
                if let Some(a) = e.as_str().and_then(|s| s.parse().ok()) {
                    t.elems.push(a);
                }
            }
        }
        let r = &o["rule"];
        let expr = r["expr"].as_array().cloned().unwrap_or_default();
        let matches = |field: &str| {
            expr.first().is_some_and(|m| {
                m["match"]["left"]["payload"]["field"] == field && m["match"]["right"] == "@vips"
            })
        };
        if r["chain"] == "input"
            && matches("daddr ip")
            && expr.get(1).is_some_and(|s| s.get("drop").is_some())
        {
            t.drop_rule = true;
        }
        if r["chain"] == "output" && matches("saddr ip") {
            let m = expr.get(1).map(|s| &s["mangle"]);
            if let Some(m) = m.filter(|m| m["key"]["payload"]["field"] == "saddr ip") {
                t.mangle_to = m["value"].as_str().map(str::to_string);
            }
        }
    }
    Ok(Some(t))
}

/// A set, chain or rule of the agent's table (`{"rule": {"table": "lvsdr", …}}`).
fn in_table(o: &serde_json::Value) -> bool {
    o.as_object()
        .and_then(|m| m.values().next())
        .is_some_and(|x| x["table"] == TABLE)
}

/// The table's VIP set, and whether both rules are there as the agent writes them.
async fn nft_read(real_ip: Option<IpAddr>) -> anyhow::Result<(Vec<Ipv4Addr>, bool)> {
    let Some(t) = nft_table().await? else {
        return Ok((Vec::new(), false));
    };
    let rip = real_ip.map(|r| r.to_string());
    let ok = t.drop_rule && t.mangle_to.is_some() && t.mangle_to == rip;
    Ok((t.elems, ok))
}

/// What a previous run left in the table: its VIPs and the real IP its output rule
/// rewrites to.
pub async fn nft_left_over() -> anyhow::Result<(Vec<Ipv4Addr>, Option<IpAddr>)> {
    Ok(nft_table().await?.map_or((Vec::new(), None), |t| {
        let rip = t.mangle_to.and_then(|m| m.parse().ok());
        (t.elems, rip)
    }))
}

// --- sysctl ----------------------------------------------------------------------

const SETTINGS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

fn sysctl_path(iface: &str, key: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{iface}/{key}")
}

fn sysctl_ok(iface: &str) -> anyhow::Result<bool> {
    for (key, want) in SETTINGS {
        let p = sysctl_path(iface, key);
        let got = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
        if got.trim() != want {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sysctl_apply(want: bool, iface: Option<&str>, state: &mut State) -> anyhow::Result<()> {
    if !want {
        for (path, old) in state.saved_sysctls.drain(..) {
            std::fs::write(&path, &old).with_context(|| format!("restoring {path}"))?;
        }
        return Ok(());
    }
    for dev in std::iter::once("all").chain(iface) {
        for (key, value) in SETTINGS {
            let p = sysctl_path(dev, key);
            if !state.saved_sysctls.iter().any(|(s, _)| *s == p) {
                let old = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
                state
                    .saved_sysctls
                    .push((p.clone(), old.trim().to_string()));
            }
            std::fs::write(&p, value).with_context(|| format!("writing {p}"))?;
        }
    }
    Ok(())
}

// --- arptables -------------------------------------------------------------------

/// One arptables rule of the two kinds the agent writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ArpRule {
    /// `-A INPUT -d VIP -j DROP`.
    Drop(String),
    /// `-A OUTPUT -s VIP -j mangle --mangle-ip-s RIP`.
    Mangle(String, String),
}

impl ArpRule {
    fn args(&self, op: &'static str) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            ArpRule::Drop(v) => s(&[op, "INPUT", "-d", v, "-j", "DROP"]),
            ArpRule::Mangle(v, to) => {
                s(&[op, "OUTPUT", "-s", v, "-j", "mangle", "--mangle-ip-s", to])
            }
        }
    }
}

async fn arptables_rules() -> anyhow::Result<Vec<ArpRule>> {
    let listing = run("arptables", &["-L", "-n"], None).await?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["-j", "DROP", "-d", vip] => Some(ArpRule::Drop(vip.to_string())),
                ["-j", "mangle", "-s", vip, "--mangle-ip-s", to] => {
                    Some(ArpRule::Mangle(vip.to_string(), to.to_string()))
                }
                _ => None,
            }
        })
        .collect())
}

async fn arptables_do(rule: &ArpRule, op: &'static str) -> anyhow::Result<()> {
    let args = rule.args(op);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("arptables", &args, None).await.map(drop)
}

/// Adds the rules for `vips` that are missing, then deletes the agent's own rules
/// (recorded in `state.owned_arptables`) for VIPs no longer wanted. Rules someone
/// else added are never deleted.
async fn arptables_apply(
    vips: &[Ipv4Addr],
    real_ip: Option<IpAddr>,
    state: &mut State,
) -> anyhow::Result<()> {
    let rules = arptables_rules().await?;
    if !vips.is_empty() {
        let rip = real_v4(real_ip)?.to_string();
        for v in vips {
            if !state.owned_arptables.contains(v) {
                state.owned_arptables.push(*v);
            }
            let vs = v.to_string();
            for r in [ArpRule::Drop(vs.clone()), ArpRule::Mangle(vs, rip.clone())] {
                if !rules.contains(&r) {
                    arptables_do(&r, "-A").await?;
                }
            }
        }
    }
    let rip = real_ip.map(|r| r.to_string());
    for v in state.owned_arptables.clone() {
        let vs = v.to_string();
        let wanted = vips.contains(&v);
        for r in &rules {
            let stale = match r {
                ArpRule::Drop(x) => *x == vs && !wanted,
                ArpRule::Mangle(x, to) => *x == vs && (!wanted || Some(to) != rip.as_ref()),
            };
            if stale {
                arptables_do(r, "-D").await?;
            }
        }
    }
    state.owned_arptables.retain(|v| vips.contains(v));
    Ok(())
}
