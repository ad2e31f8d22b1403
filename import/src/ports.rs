//! Port names as old configs write them (`ldirectord.cf`'s `:www`, `ipvsadm -S`
//! without `-n`'s `:http`), from a built-in table of well-known services: the
//! import must mean the same on every host, not whatever this host's
//! `/etc/services` says.

/// The port `s` names: a number, or a well-known service name.
pub fn port(s: &str) -> Option<u16> {
    s.parse().ok().or_else(|| by_name(s))
}

fn by_name(name: &str) -> Option<u16> {
    Some(match name.to_ascii_lowercase().as_str() {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" | "dns" => 53,
        "http" | "www" | "www-http" => 80,
        "kerberos" => 88,
        "pop3" | "pop-3" => 110,
        "nntp" => 119,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "smtps" | "submissions" => 465,
        "syslog" => 514,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" => 995,
        "ms-sql-s" => 1433,
        "radius" => 1812,
        "nfs" => 2049,
        "mysql" => 3306,
        "ms-wbt-server" | "rdp" => 3389,
        "sip" => 5060,
        "postgresql" | "postgres" => 5432,
        "redis" => 6379,
        "http-alt" | "webcache" => 8080,
        "memcache" => 11211,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_numbers() {
        assert_eq!(super::port("8443"), Some(8443));
        assert_eq!(super::port("www"), Some(80));
        assert_eq!(super::port("HTTPS"), Some(443));
        assert_eq!(super::port("domain"), Some(53));
        assert_eq!(super::port("mysql"), Some(3306));
        assert_eq!(super::port("gopher-ish"), None);
        assert_eq!(super::port("70000"), None);
    }
}
