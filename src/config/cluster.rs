//! `[cluster]` as written to `upstream::cluster::ClusterConfig`: member names unique and
//! non-empty, addresses `host:port`, `self` one of the members (or left to `--cluster-self`).

use std::time::Duration;

use super::error::ConfigError;
use super::file;
use super::locate::{line_of, render, Seg};
use crate::cache::hot::HotCopyConfig;
use crate::upstream::cluster::{ClusterConfig, MemberConfig};

/// Validates `[cluster]` from `src` (named `file` in errors).
pub fn build(
    file: &str,
    src: &str,
    raw: Option<&file::Cluster>,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let err = |path: &[Seg<'_>], reason: String| ConfigError {
        file: file.to_owned(),
        line: line_of(src, path),
        key: render(path),
        reason,
    };
    if raw.member.is_empty() {
        return Err(err(
            &[Seg::Key("cluster")],
            "a cluster needs its members, like [[cluster.member]] name = \"a\" address = \"10.0.0.1:3128\""
                .to_owned(),
        ));
    }
    let mut members = Vec::with_capacity(raw.member.len());
    for (i, m) in raw.member.iter().enumerate() {
        let at = |key| {
            [
                Seg::Key("cluster"),
                Seg::Key("member"),
                Seg::Index(i),
                Seg::Key(key),
            ]
        };
        let name_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if m.name.is_empty() || !m.name.chars().all(name_chars) {
            return Err(err(
                &at("name"),
                format!(
                    "`{}` is not a member name (letters, digits, `-`, `_`), like name = \"a\"",
                    m.name
                ),
            ));
        }
        if let Some(j) = raw.member[..i].iter().position(|o| o.name == m.name) {
            return Err(err(
                &at("name"),
                format!(
                    "`{}` is already the name of member {j}; member names must be unique, like name = \"{}-2\"",
                    m.name, m.name
                ),
            ));
        }
        let (host, port) = split_address(&m.address).ok_or_else(|| {
            err(
                &at("address"),
                format!(
                    "`{}` is not host:port, like address = \"10.0.0.1:3128\"",
                    m.address
                ),
            )
        })?;
        if m.weight == 0 {
            return Err(err(
                &at("weight"),
                "must be at least 1, like weight = 1".to_owned(),
            ));
        }
        if let Some(admin) = &m.admin {
            if split_address(admin).is_none() {
                return Err(err(
                    &at("admin"),
                    format!("`{admin}` is not host:port, like admin = \"10.0.0.1:3180\""),
                ));
            }
        }
        members.push(MemberConfig {
            name: m.name.clone(),
            host,
            port,
            weight: m.weight,
            admin: m.admin.clone(),
        });
    }
    if let Some(name) = &raw.self_name {
        check_self(&members, name)
            .map_err(|reason| err(&[Seg::Key("cluster"), Seg::Key("self")], reason))?;
    }
    let duration = |value: Option<&file::HumanDuration>, default: u64, key: &'static str| {
        let d = value.map_or(Duration::from_secs(default), |d| d.0);
        if d.is_zero() {
            Err(err(
                &[Seg::Key("cluster"), Seg::Key(key)],
                format!("must be greater than zero, like {key} = \"{default}s\""),
            ))
        } else {
            Ok(d)
        }
    };
    Ok(Some(ClusterConfig {
        self_name: raw.self_name.clone(),
        members,
        probe_interval: duration(raw.probe_interval.as_ref(), 2, "probe_interval")?,
        probe_timeout: duration(raw.probe_timeout.as_ref(), 1, "probe_timeout")?,
        dead_time: duration(raw.dead_peer_timeout.as_ref(), 10, "dead_peer_timeout")?,
        hot_copy: hot_copy(raw, &err)?,
    }))
}

/// `hot_copy_*`: `None` unless `hot_copy_ttl` is set (see `cache::hot`).
fn hot_copy(
    raw: &file::Cluster,
    err: &dyn Fn(&[Seg<'_>], String) -> ConfigError,
) -> Result<Option<HotCopyConfig>, ConfigError> {
    let at = |key| [Seg::Key("cluster"), Seg::Key(key)];
    let Some(ttl) = &raw.hot_copy_ttl else {
        for (set, key) in [
            (raw.hot_copy_max_size.is_some(), "hot_copy_max_size"),
            (raw.hot_copy_threshold.is_some(), "hot_copy_threshold"),
            (raw.hot_copy_memory.is_some(), "hot_copy_memory"),
        ] {
            if set {
                return Err(err(
                    &at(key),
                    "applies only with hot copies on: set hot_copy_ttl too, like hot_copy_ttl = \"5s\"".to_owned(),
                ));
            }
        }
        return Ok(None);
    };
    if ttl.0.is_zero() {
        return Err(err(
            &at("hot_copy_ttl"),
            "must be greater than zero (leave it out for no hot copies), like hot_copy_ttl = \"5s\"".to_owned(),
        ));
    }
    let max_size = raw.hot_copy_max_size.map_or(64 * 1024, |s| s.as_u64());
    if max_size == 0 {
        return Err(err(
            &at("hot_copy_max_size"),
            "must be greater than zero, like hot_copy_max_size = \"64 KiB\"".to_owned(),
        ));
    }
    let threshold = raw.hot_copy_threshold.unwrap_or(10);
    if threshold == 0 {
        return Err(err(
            &at("hot_copy_threshold"),
            "must be at least 1, like hot_copy_threshold = 10".to_owned(),
        ));
    }
    let memory = raw.hot_copy_memory.map_or(16 << 20, |s| s.as_u64());
    if memory < max_size {
        return Err(err(
            &at("hot_copy_memory"),
            format!("must hold at least one copy of hot_copy_max_size ({max_size} bytes), like hot_copy_memory = \"16 MiB\""),
        ));
    }
    Ok(Some(HotCopyConfig {
        ttl: ttl.0,
        max_size,
        threshold,
        memory,
    }))
}

/// `Ok` when `name` is one of `members`; else why not, naming them.
pub fn check_self(members: &[MemberConfig], name: &str) -> Result<(), String> {
    if members.iter().any(|m| m.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    Err(format!(
        "`{name}` is not a member; self must name one of {}, like self = \"{}\"",
        names.join(", "),
        names.first().copied().unwrap_or("a")
    ))
}

/// `host:port` (IPv6 in brackets) into its parts.
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<ClusterConfig>, ConfigError> {
        crate::config::load_str("c.toml", text).map(|c| c.proxy.cluster)
    }

    const MEMBERS: &str = "[[cluster.member]]\nname = \"a\"\naddress = \"10.0.0.1:3128\"\n\
                           [[cluster.member]]\nname = \"b\"\naddress = \"[::1]:3129\"\nweight = 2\n";

    #[test]
    fn the_issue_interface_loads() {
        let c = load(&format!("[cluster]\nself = \"a\"\n{MEMBERS}"))
            .unwrap()
            .unwrap();
        assert_eq!(c.self_name.as_deref(), Some("a"));
        assert_eq!(c.members.len(), 2);
        assert_eq!(
            (
                c.members[1].host.as_str(),
                c.members[1].port,
                c.members[1].weight
            ),
            ("::1", 3129, 2)
        );
        assert_eq!(c.members[0].weight, 1);
        assert_eq!(c.dead_time, Duration::from_secs(10));
    }

    #[test]
    fn bad_clusters_name_the_line_and_key() {
        let e = load(&format!("[cluster]\nself = \"z\"\n{MEMBERS}")).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("cluster.self"), "{e}");
        assert!(e.to_string().contains("one of a, b"), "{e}");
        let e = load("[cluster]\n[[cluster.member]]\nname = \"a\"\naddress = \"nowhere\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("cluster.member[0].address"), "{e}");
        assert_eq!(e.line, Some(4));
        let dup = "[cluster]\n[[cluster.member]]\nname = \"a\"\naddress = \"h:1\"\n\
                   [[cluster.member]]\nname = \"a\"\naddress = \"h:2\"\n";
        let e = load(dup).unwrap_err();
        assert!(
            e.to_string().contains("already the name of member 0"),
            "{e}"
        );
        assert!(load("[cluster]\nself = \"a\"\n").is_err());
    }

    #[test]
    fn hot_copies_are_off_unless_a_ttl_is_set() {
        let c = load(&format!("[cluster]\nself = \"a\"\n{MEMBERS}"))
            .unwrap()
            .unwrap();
        assert_eq!(c.hot_copy, None);
        let c = load(&format!(
            "[cluster]\nself = \"a\"\nhot_copy_ttl = \"5s\"\n{MEMBERS}"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.hot_copy,
            Some(HotCopyConfig {
                ttl: Duration::from_secs(5),
                max_size: 64 * 1024,
                threshold: 10,
                memory: 16 << 20,
            })
        );
        let e = load(&format!(
            "[cluster]\nself = \"a\"\nhot_copy_threshold = 3\n{MEMBERS}"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("cluster.hot_copy_threshold"), "{e}");
        assert!(e.to_string().contains("hot_copy_ttl = \"5s\""), "{e}");
        let e = load(&format!(
            "[cluster]\nself = \"a\"\nhot_copy_ttl = \"5s\"\nhot_copy_memory = \"1 KiB\"\n{MEMBERS}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("cluster.hot_copy_memory"), "{e}");
        let e =
            load("[cluster]\n[[cluster.member]]\nname = \"a\"\naddress = \"h:1\"\nadmin = \"h\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("cluster.member[0].admin"), "{e}");
    }
}
