//! The start-up lines: what a validated [`Config`] will do, in words an admin reads at a glance
//! (which file, which ports, where the cache and the access log live, which peers and upstream
//! groups). A pure function of the config, so the wording is pinned by unit tests; `main`
//! prints it.

use std::net::SocketAddr;

use super::Config;
use crate::log::Target;
use crate::proxy::reverse::HostPattern;
use crate::upstream::hierarchy::PeerKind;

/// One line per fact, without a `cuttle: ` prefix. `source` names the config (a path or
/// [`super::DEFAULT_NAME`]); `bound` holds the listeners' bound addresses in config order, when
/// known, so a configured port 0 shows the port really in use.
pub fn summary(source: &str, config: &Config, bound: &[SocketAddr]) -> Vec<String> {
    let mut lines = Vec::new();
    if source == super::DEFAULT_NAME {
        lines.push(format!(
            "config {source} (cuttle --print-default-config shows it)"
        ));
    } else {
        lines.push(format!("config {source}"));
    }
    for (i, listener) in config.proxy.listeners.iter().enumerate() {
        let addr = bound.get(i).copied().unwrap_or(listener.addr);
        let tls = match &listener.tls {
            Some(tls) => format!(
                ", tls with {}{}",
                tls.cert_path().display(),
                if tls.offers_h2() { ", h2" } else { "" }
            ),
            None => String::new(),
        };
        lines.push(format!(
            "listening on {addr} ({}{tls})",
            listener.mode.as_str()
        ));
    }
    let memory = &config.cache.memory;
    lines.push(format!(
        "memory cache {}, objects up to {}",
        size(memory.max_size),
        size(memory.max_object_size)
    ));
    lines.push(match &config.cache.disk {
        Some(disk) => format!(
            "disk cache {}, {}, objects up to {}",
            disk.path.display(),
            size(disk.max_size),
            size(disk.max_object_size)
        ),
        None => "disk tier off".to_owned(),
    });
    let line_format = &config.log.access_log_format;
    let format = format!(
        "{} format{}",
        line_format.format.as_str(),
        if line_format.strip_query_terms {
            ""
        } else {
            ", query strings kept"
        }
    );
    lines.push(match &config.log.access_log {
        Target::Stdout => format!("access log to stdout, {format}"),
        Target::Stderr => format!("access log to stderr, {format}"),
        Target::File(path) => format!("access log {}, {format}", path.display()),
        Target::None => "access log off".to_owned(),
    });
    if let Some(auth) = &config.auth {
        let basic = auth.config();
        lines.push(format!(
            "proxy authentication: basic, {} user{} from {}, realm \"{}\"",
            basic.users.len(),
            if basic.users.len() == 1 { "" } else { "s" },
            basic.password_file.display(),
            basic.realm
        ));
    }
    if let Some(hierarchy) = &config.proxy.hierarchy {
        for peer in &hierarchy.peers {
            let kind = match peer.info.kind {
                PeerKind::Parent => "parent",
                PeerKind::Sibling => "sibling",
            };
            lines.push(format!(
                "peer {}: {kind} at {}:{}, weight {}{}",
                peer.info.name,
                peer.host,
                peer.port,
                peer.info.weight,
                tls_words(peer.tls.as_deref())
            ));
        }
        lines.push(format!("parent selection {}", hierarchy.selection.as_str()));
    }
    for group in &config.upstream_groups {
        let servers: Vec<String> = group
            .servers
            .iter()
            .map(|s| {
                let mut text = s.address.clone();
                for (flag, word) in [(s.backup, " (backup)"), (s.down, " (down)")] {
                    if flag {
                        text.push_str(word);
                    }
                }
                text
            })
            .collect();
        let tls = tls_words(group.tls.as_deref());
        lines.push(format!(
            "upstream {}: {} over {}{tls}",
            group.name,
            group.algorithm.as_str(),
            servers.join(", ")
        ));
    }
    for site in &config.proxy.reverse.sites {
        let hosts: Vec<String> = site
            .hosts
            .iter()
            .map(|h| match h {
                HostPattern::Any => "*".to_owned(),
                HostPattern::Exact(name) => name.clone(),
                HostPattern::Suffix(suffix) => format!("*{suffix}"),
            })
            .collect();
        lines.push(format!(
            "site {} {} -> upstream {}",
            hosts.join(" "),
            site.path_prefix,
            site.upstream
        ));
    }
    lines
}

/// How a group or peer is reached: `, tls`, `, tls NOT verified`, and the ALPN protocols when
/// they are not the default.
fn tls_words(tls: Option<&crate::upstream::tls::ClientTls>) -> String {
    let Some(tls) = tls else {
        return String::new();
    };
    let verified = if tls.verifies() {
        ", tls"
    } else {
        ", tls NOT verified"
    };
    let protocols = tls.protocols();
    if protocols == crate::upstream::tls::Protocols::default() {
        verified.to_owned()
    } else {
        format!("{verified} ({})", protocols.as_str())
    }
}

/// A byte count as a config would write it: `256 MiB`, `1 GiB`, `1.5 MiB`, `100 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, scale) in UNITS {
        if bytes >= scale {
            if bytes.is_multiple_of(scale) {
                return format!("{} {unit}", bytes / scale);
            }
            // One decimal is enough to recognise the configured value.
            let tenths = (u128::from(bytes) * 10 + u128::from(scale) / 2) / u128::from(scale);
            return format!("{}.{} {unit}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_written() {
        assert_eq!(size(256 << 20), "256 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(1536 << 10), "1.5 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size(100), "100 B");
        assert_eq!(size(0), "0 B");
    }

    #[test]
    fn the_embedded_default_names_itself_and_both_tiers() {
        let config = crate::config::load_default().unwrap();
        let lines = summary(crate::config::DEFAULT_NAME, &config, &[]);
        let disk = config.cache.disk.as_ref().unwrap();
        assert_eq!(
            lines,
            [
                "config <embedded default> (cuttle --print-default-config shows it)".to_owned(),
                "listening on 127.0.0.1:3128 (forward)".to_owned(),
                "memory cache 256 MiB, objects up to 1 MiB".to_owned(),
                format!(
                    "disk cache {}, 1 GiB, objects up to 128 MiB",
                    disk.path.display()
                ),
                "access log to stdout, squid format".to_owned(),
            ]
        );
    }

    #[test]
    fn a_reverse_config_lists_ports_groups_sites_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let text = format!(
            "[[http_port]]\nlisten = \"127.0.0.1:0\"\nmode = \"reverse\"\n\
             [[http_port]]\nlisten = \"127.0.0.1:3128\"\n\
             [[site]]\nhosts = [\"www.example.com\", \"*.example.org\"]\nupstream = \"app\"\n\
             [upstream.app]\nalgorithm = \"least_conn\"\nservers = [\n\
               {{ address = \"127.0.0.1:8001\" }},\n\
               {{ address = \"127.0.0.1:8002\", backup = true }},\n]\n\
             [[peer]]\nhost = \"127.0.0.1\"\nport = 3130\ntype = \"parent\"\nname = \"up1\"\nweight = 2\n\
             [[peer]]\nhost = \"127.0.0.1\"\nport = 3131\ntype = \"sibling\"\n\
             tls = true\ntls_verify = false\nprotocols = [\"h2\", \"http/1.1\"]\n\
             [hierarchy]\nparent_selection = \"carp\"\n\
             [cache.memory]\nmax_size = \"64 MiB\"\nmax_object_size = \"512 KiB\"\n\
             [cache.disk]\npath = \"\"\n\
             [log]\naccess_log = \"{}\"\naccess_log_format = \"json\"\nstrip_query_terms = false\n",
            log.display()
        );
        let config = crate::config::load_str("/etc/cuttle/cuttle.toml", &text).unwrap();
        let bound: [SocketAddr; 1] = ["127.0.0.1:40123".parse().unwrap()];
        let lines = summary("/etc/cuttle/cuttle.toml", &config, &bound);
        assert_eq!(
            lines,
            [
                "config /etc/cuttle/cuttle.toml".to_owned(),
                "listening on 127.0.0.1:40123 (reverse)".to_owned(),
                "listening on 127.0.0.1:3128 (forward)".to_owned(),
                "memory cache 64 MiB, objects up to 512 KiB".to_owned(),
                "disk tier off".to_owned(),
                format!(
                    "access log {}, json format, query strings kept",
                    log.display()
                ),
                "peer up1: parent at 127.0.0.1:3130, weight 2".to_owned(),
                "peer 127.0.0.1: sibling at 127.0.0.1:3131, weight 1, tls NOT verified (h2, http/1.1)"
                    .to_owned(),
                "parent selection carp".to_owned(),
                "upstream app: least_conn over 127.0.0.1:8001, 127.0.0.1:8002 (backup)".to_owned(),
                "site www.example.com *.example.org / -> upstream app".to_owned(),
            ]
        );
    }

    #[test]
    fn proxy_authentication_names_its_file_and_user_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, "bob:{SHA}VBPuJHI7uixaa6LQGWx4s+5GKNE=\n").unwrap();
        let text = format!(
            "[auth.basic]\npassword_file = \"{}\"\nrealm = \"Lab\"\n",
            file.display()
        );
        let config = super::super::load_str("a.toml", &text).unwrap();
        let lines = summary("a.toml", &config, &[]);
        let expected = format!(
            "proxy authentication: basic, 1 user from {}, realm \"Lab\"",
            file.display()
        );
        assert!(lines.contains(&expected), "{lines:?}");
    }
}
