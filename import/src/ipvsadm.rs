//! `ipvsadm-save -n` (`ipvsadm -Sn`) output: `-A` lines add services, `-a` lines add
//! their real servers. A dump holds no health checks.

use std::net::IpAddr;

use super::draft::{At, Check, Draft, Key, Level, RealServer, Service};
use super::Source;

/// Imports a dump.
pub fn import(src: &Source) -> Draft {
    let mut d = Draft {
        header: vec![
            format!("Imported from the ipvsadm dump {}.", src.name),
            "A dump has no health checks: every service gets `type = \"none\"` (the weights".into(),
            "stay as they are). Add checks before relying on this config.".into(),
        ],
        ..Draft::default()
    };
    if super::template::refuse(&mut d, &src.text, &src.name) || listing(&mut d, src) {
        return d;
    }
    for (n, line) in src.text.lines().enumerate() {
        let at = At {
            file: src.name.clone(),
            line: n + 1,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let r = match words[0] {
            "-A" | "--add-service" => add_service(&mut d, &words[1..], &at),
            "-a" | "--add-server" => add_server(&mut d, &words[1..], &at),
            _ => Err(format!("not an -A or -a line: {line:?}")),
        };
        if let Err(e) = r {
            d.note(&at, Level::Review, e);
        }
    }
    d
}

/// The service key options (`-t ADDR:PORT`, `-u`, `--sctp-service`, `-f MARK`) and the
/// rest of the line.
fn key<'a>(words: &[&'a str]) -> Result<(Key, Vec<&'a str>), String> {
    let mut key = None;
    let mut ipv6 = false;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let arg = words.get(i + 1).copied();
        let protocol = match w {
            "-t" | "--tcp-service" => Some("tcp"),
            "-u" | "--udp-service" => Some("udp"),
            "--sctp-service" => Some("sctp"),
            _ => None,
        };
        if let Some(protocol) = protocol {
            let (vip, port) = addr_port(arg.ok_or(format!("{w} without an address"))?)?;
            key = Some(Key::Addr {
                protocol: protocol.into(),
                vip,
                port,
            });
            i += 2;
        } else if w == "-f" || w == "--fwmark-service" {
            let mark = arg
                .and_then(|a| a.parse().ok())
                .ok_or(format!("{w} without a mark"))?;
            key = Some(Key::Fwmark { mark, ipv6: false });
            i += 2;
        } else if w == "-6" || w == "--ipv6" {
            ipv6 = true;
            i += 1;
        } else {
            rest.push(w);
            i += 1;
        }
    }
    let mut key = key.ok_or("no service (-t, -u, --sctp-service or -f)")?;
    if let Key::Fwmark { ipv6: v6, .. } = &mut key {
        *v6 = ipv6;
    }
    Ok((key, rest))
}

/// `1.2.3.4:80`, `[2001:db8::1]:80`, `1.2.3.4:http` (a well-known name).
pub fn addr_port(s: &str) -> Result<(IpAddr, u16), String> {
    let (a, p) = s
        .rsplit_once(':')
        .ok_or(format!("{s:?} is not ADDRESS:PORT"))?;
    let a = a.trim_start_matches('[').trim_end_matches(']');
    let addr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IP address"))?;
    let port = super::ports::port(p).ok_or(format!(
        "{p:?} is neither a port number nor a well-known service name"
    ))?;
    Ok((addr, port))
}

/// A service's name from its key: `tcp-192.0.2.10-80`, `fwmark-1`.
pub fn service_name(key: &Key) -> String {
    match key {
        Key::Addr {
            protocol,
            vip,
            port,
        } => format!("{protocol}-{vip}-{port}"),
        Key::Fwmark { mark, ipv6: false } => format!("fwmark-{mark}"),
        Key::Fwmark { mark, ipv6: true } => format!("fwmark6-{mark}"),
    }
}

fn add_service(d: &mut Draft, words: &[&str], at: &At) -> Result<(), String> {
    let (key, rest) = key(words)?;
    let mut s = Service::new(service_name(&key), key, at.clone());
    s.check = Some(Check::of("none"));
    let mut i = 0;
    while i < rest.len() {
        let w = rest[i];
        let arg = rest.get(i + 1).copied();
        let need = || arg.ok_or(format!("{w} without a value"));
        match w {
            "-s" | "--scheduler" => {
                s.scheduler = need()?.into();
                i += 1;
            }
            "-b" | "--sched-flags" => {
                s.flags = need()?.split(',').map(str::to_string).collect();
                i += 1;
            }
            "-p" | "--persistent" => {
                // ipvsadm -S always prints the timeout after -p.
                let t = need()?;
                s.persistence = Some(t.parse().map_err(|_| format!("-p {t:?}"))?);
                i += 1;
            }
            "-M" | "--netmask" => {
                s.netmask = Some(need()?.into());
                i += 1;
            }
            "--pe" => {
                s.persistence_engine = Some(need()?.into());
                i += 1;
            }
            "-o" | "--ops" => s.one_packet = true,
            _ => d.note(at, Level::Review, format!("option {w:?} not translated")),
        }
        i += 1;
    }
    // A netmask matters only with persistence, and ipvsadm prints it only then.
    if s.persistence.is_none() {
        s.netmask = None;
    }
    d.services.push(s);
    Ok(())
}

/// An `ipvsadm -Ln` listing or a `/proc/net/ip_vs` dump in place of `-Sn` output: one
/// line that says what to give instead (not one line per line of it).
fn listing(d: &mut Draft, src: &Source) -> bool {
    let Some(n) = src.text.lines().position(|l| {
        l.starts_with("IP Virtual Server version") || l.starts_with("Prot LocalAddress")
    }) else {
        return false;
    };
    let at = At {
        file: src.name.clone(),
        line: n + 1,
    };
    d.note(
        &at,
        Level::Review,
        "this is a listing (ipvsadm -Ln or /proc/net/ip_vs), which leaves settings out; give \
         `ipvsadm -Sn` output instead; nothing was imported",
    );
    true
}

fn add_server(d: &mut Draft, words: &[&str], at: &At) -> Result<(), String> {
    let (key, rest) = key(words)?;
    // `ipvsadm -Sn` may leave `-6` off a fwmark service's `-a` lines: the mark and
    // the real server's family find the service.
    let v6 = rest
        .iter()
        .position(|w| *w == "-r" || *w == "--real-server")
        .and_then(|i| rest.get(i + 1))
        .is_some_and(|a| a.starts_with('[') || a.matches(':').count() > 1);
    let same = |k: &Key| match (k, &key) {
        (Key::Fwmark { mark: a, ipv6 }, Key::Fwmark { mark: b, .. }) => a == b && *ipv6 == v6,
        _ => *k == key,
    };
    let Some(s) = d.services.iter_mut().rev().find(|s| same(&s.key)) else {
        return Err(format!(
            "a real server for {} before its -A",
            service_name(&key)
        ));
    };
    let mut rs = None;
    let mut forwarding = "dr";
    let mut i = 0;
    let mut notes = Vec::new();
    while i < rest.len() {
        let w = rest[i];
        let arg = rest.get(i + 1).copied();
        let need = || arg.ok_or(format!("{w} without a value"));
        match w {
            "-r" | "--real-server" => {
                let a = need()?;
                // A fwmark service's real servers have no port of their own.
                let (addr, port) = match addr_port(a) {
                    Ok(ap) => ap,
                    Err(_) => (
                        a.parse().map_err(|_| format!("{a:?} is not an address"))?,
                        0,
                    ),
                };
                let mut r = RealServer::new(addr, at.clone());
                if port != s.port() && port != 0 {
                    r.port = Some(port);
                }
                rs = Some(r);
                i += 1;
            }
            "-g" | "--gatewaying" => forwarding = "dr",
            "-m" | "--masquerading" => forwarding = "nat",
            "-i" | "--ipip" => forwarding = "tun",
            // ipvsadm prints a forwarding method it has no name for (FULLNAT, from a
            // patched kernel) as "(null)".
            "(null)" => forwarding = "(null)",
            "-w" | "--weight" | "-x" | "--u-threshold" | "-y" | "--l-threshold" => {
                let v = need()?;
                let n: u32 = v.parse().map_err(|_| format!("{w} {v:?}"))?;
                let r = rs.as_mut().ok_or(format!("{w} before -r"))?;
                match w {
                    "-w" | "--weight" => r.weight = n,
                    "-x" | "--u-threshold" => r.upper_threshold = n,
                    _ => r.lower_threshold = n,
                }
                i += 1;
            }
            _ => notes.push(format!("option {w:?} not translated")),
        }
        i += 1;
    }
    let r = rs.ok_or("no -r")?;
    if forwarding == "(null)" {
        return Err(format!(
            "real server {}: forwarding \"(null)\" is a method ipvsadm has no name for, such \
             as FULLNAT from a patched kernel; lvsdr forwards by DR, NAT or tunnel, so this \
             real server is left out",
            r.address
        ));
    }
    if s.real_servers.is_empty() {
        s.forwarding = forwarding.into();
    } else if s.forwarding != forwarding {
        notes.push(format!(
            "real server {} is forwarded by {forwarding}, the service's others by {}: lvsdr \
             forwards a service's real servers one way",
            r.address, s.forwarding
        ));
    }
    s.real_servers.push(r);
    for n in notes {
        d.note(at, Level::Review, n);
    }
    Ok(())
}
