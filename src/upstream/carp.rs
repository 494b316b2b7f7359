//! CARP, the Cache Array Routing Protocol (draft-vinod-carp-v1), as Squid implements it: each
//! URL goes to exactly one parent of an array, in proportion to the parents' weights, and when
//! a parent dies only its own URLs move.
//!
//! The arithmetic follows the draft and Squid's `carp.cc` exactly, so cuttle and Squid given the
//! same peer names and weights pick the same parent for a URL. That includes two details of
//! Squid's code a reimplementation would otherwise "fix": the URL hash is *not* reset between
//! members (it keeps accumulating over the members in weight order), and bytes are added as C
//! `char`, i.e. sign-extended. Dead members are still scored (keeping the accumulation and every
//! other member's choice unchanged) and only skipped when choosing. Pure: no I/O.

use http::Uri;

/// One array member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarpPeer {
    /// The peer's name (Squid's `cache_peer` host or `name=`), hashed into its identity.
    pub name: String,
    /// Relative load; members with weight 0 are not in the array.
    pub weight: u32,
}

/// A member with its precomputed hash and load multiplier.
#[derive(Debug, Clone)]
struct Member {
    /// Index in the peer list given to [`Carp::new`].
    index: usize,
    hash: u32,
    multiplier: f64,
}

/// A CARP array.
#[derive(Debug, Clone, Default)]
pub struct Carp {
    /// In ascending weight order (Squid sorts with `qsort` on weight; equal weights keep their
    /// configuration order here, as glibc's merge sort does).
    members: Vec<Member>,
}

/// The draft's 32-bit hash step: `hash += rotl(hash, 19) + byte`, bytes as C `char`.
fn accumulate(mut hash: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        let signed = i32::from(b as i8) as u32;
        hash = hash.wrapping_add(hash.rotate_left(19).wrapping_add(signed));
    }
    hash
}

/// The draft's final mixing step: `h += h * 0x62531965; h = rotl(h, 21)`.
fn mix(hash: u32) -> u32 {
    hash.wrapping_add(hash.wrapping_mul(0x6253_1965))
        .rotate_left(21)
}

impl Carp {
    /// An array over `peers`.
    pub fn new(peers: &[CarpPeer]) -> Self {
        let total: u64 = peers.iter().map(|p| u64::from(p.weight)).sum();
        if total == 0 {
            return Self::default();
        }
        let mut members: Vec<(u32, f64, Member)> = peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.weight > 0)
            .map(|(index, p)| {
                let mut load_factor = f64::from(p.weight) / total as f64;
                if (load_factor * 1000.0).floor() == 0.0 {
                    load_factor = 0.0;
                }
                let member = Member {
                    index,
                    hash: mix(accumulate(0, p.name.as_bytes())),
                    multiplier: 0.0,
                };
                (p.weight, load_factor, member)
            })
            .collect();
        members.sort_by_key(|(weight, _, _)| *weight);
        // Load multipliers (draft §3.3): X_k from the sorted load factors P_k.
        let k_total = members.len();
        let (mut p_last, mut x_product, mut x_last) = (0.0_f64, 1.0_f64, 0.0_f64);
        for (k, (_, load_factor, member)) in members.iter_mut().enumerate() {
            let remaining = (k_total - k) as f64;
            let mut x = (remaining * (*load_factor - p_last)) / x_product;
            x += x_last.powf(remaining);
            x = x.powf(1.0 / remaining);
            member.multiplier = x;
            x_product *= x;
            x_last = x;
            p_last = *load_factor;
        }
        Self {
            members: members.into_iter().map(|(_, _, m)| m).collect(),
        }
    }

    /// Members ranked for `key`, best first, keeping only those `alive` says are usable. The
    /// first is Squid's choice; the rest are the failover order.
    pub fn ranked(&self, key: &str, alive: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut user_hash = 0u32;
        let mut scored: Vec<(f64, usize)> = Vec::with_capacity(self.members.len());
        for member in &self.members {
            // Squid's loop keeps accumulating the URL hash from one member to the next.
            user_hash = accumulate(user_hash, key.as_bytes());
            let combined = mix(user_hash ^ member.hash);
            let score = f64::from(combined) * member.multiplier;
            if alive(member.index) {
                scored.push((score, member.index));
            }
        }
        // Highest score first; on equal scores the earlier member wins, as Squid's `>` does.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, index)| index).collect()
    }

    /// Squid's choice for `key` among the `alive` members: the first of [`Carp::ranked`],
    /// found in one pass without ranking (or allocating for) the others.
    pub fn choose(&self, key: &str, alive: impl Fn(usize) -> bool) -> Option<usize> {
        let mut user_hash = 0u32;
        let mut best: Option<(f64, usize)> = None;
        for member in &self.members {
            user_hash = accumulate(user_hash, key.as_bytes());
            if !alive(member.index) {
                continue;
            }
            let score = f64::from(mix(user_hash ^ member.hash)) * member.multiplier;
            // Strictly higher: on equal scores the earlier member wins, as in `ranked`.
            if best.is_none_or(|(top, _)| score.total_cmp(&top).is_gt()) {
                best = Some((score, member.index));
            }
        }
        best.map(|(_, index)| index)
    }
}

/// The key CARP hashes: Squid's effective request URI (lower-case scheme and host, no default
/// port, path and query as sent).
pub fn url_key(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = match uri.port_u16() {
        Some(p) if p != default_port => format!(":{p}"),
        _ => String::new(),
    };
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{host}{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array() -> (Vec<CarpPeer>, Carp) {
        let peers: Vec<CarpPeer> = [
            ("parent1.example.net", 1),
            ("parent2.example.net", 2),
            ("parent3.example.net", 3),
        ]
        .iter()
        .map(|(name, weight)| CarpPeer {
            name: (*name).to_owned(),
            weight: *weight,
        })
        .collect();
        let carp = Carp::new(&peers);
        (peers, carp)
    }

    // Expected values were computed by a C transcription of Squid's carp.cc arithmetic
    // (compiled with gcc, `char` signed as on x86), not by this code.
    #[test]
    fn member_hashes_and_multipliers_match_squid() {
        let (_, carp) = array();
        let got: Vec<(usize, u32)> = carp.members.iter().map(|m| (m.index, m.hash)).collect();
        assert_eq!(
            got,
            vec![(0, 2_535_344_991), (1, 3_779_951_942), (2, 3_095_439_904)]
        );
        let multipliers: Vec<f64> = carp.members.iter().map(|m| m.multiplier).collect();
        let expected = [
            0.793_700_525_984_099_8,
            1.024_662_973_004_161_9,
            1.229_595_567_604_994_3,
        ];
        for (got, want) in multipliers.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn urls_go_where_squid_sends_them() {
        let (_, carp) = array();
        let all = |_| true;
        assert_eq!(carp.choose("http://www.example.com/", all), Some(2));
        assert_eq!(
            carp.choose("http://www.example.com/index.html", all),
            Some(2)
        );
        assert_eq!(
            carp.choose("http://cdn.example.org/img/a.png?x=1", all),
            Some(1)
        );
        // Non-ASCII bytes are sign-extended like C `char`.
        assert_eq!(carp.choose("http://h\u{e9}.example/", all), Some(1));
    }

    #[test]
    fn bytes_are_added_as_signed_chars() {
        // C: `h += ROTATE_LEFT(h, 19) + *c` over "h\xc3\xa9" with signed char gives 77076948
        // (unsigned bytes would give 211295188).
        assert_eq!(accumulate(0, "h\u{e9}".as_bytes()), 77_076_948);
    }

    #[test]
    fn shares_follow_weights_like_squid() {
        let (_, carp) = array();
        let mut counts = [0usize; 3];
        for n in 0..3000 {
            let key = format!("http://origin.example/object/{n}");
            if let Some(i) = carp.choose(&key, |_| true) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [521, 981, 1498], "exactly Squid's split");
        for (got, want) in counts.iter().zip([500.0, 1000.0, 1500.0]) {
            assert!((*got as f64 - want).abs() / want <= 0.05);
        }
    }

    #[test]
    fn a_dead_member_only_gives_up_its_own_urls() {
        let (_, carp) = array();
        let mut moved_from_others = 0;
        let mut moved = 0;
        for n in 0..3000 {
            let key = format!("http://origin.example/object/{n}");
            let before = carp.choose(&key, |_| true);
            let after = carp.choose(&key, |i| i != 1);
            if before != after {
                moved += 1;
                if before != Some(1) {
                    moved_from_others += 1;
                }
            }
            assert_ne!(after, Some(1));
        }
        assert_eq!(moved_from_others, 0);
        assert_eq!(moved, 981, "exactly the dead member's URLs moved");
    }

    #[test]
    fn url_key_is_the_effective_uri() {
        let uri: Uri = "HTTP://WWW.Example.COM:80/a?b=1".parse().unwrap();
        assert_eq!(url_key(&uri), "http://www.example.com/a?b=1");
        let uri: Uri = "http://h:8080".parse().unwrap();
        assert_eq!(url_key(&uri), "http://h:8080/");
    }

    #[test]
    fn zero_weight_members_are_not_in_the_array() {
        let carp = Carp::new(&[
            CarpPeer {
                name: "a".into(),
                weight: 0,
            },
            CarpPeer {
                name: "b".into(),
                weight: 1,
            },
        ]);
        assert_eq!(carp.choose("http://x/", |_| true), Some(1));
        assert_eq!(Carp::new(&[]).choose("http://x/", |_| true), None);
    }

    #[test]
    fn choose_is_the_first_of_the_ranking_without_ranking() {
        let peers: Vec<CarpPeer> = (0..7)
            .map(|i| CarpPeer {
                name: format!("member-{i}"),
                weight: 1 + i % 3,
            })
            .collect();
        let carp = Carp::new(&peers);
        for n in 0..2000 {
            let key = format!("http://origin.example/{n}");
            let alive = |i: usize| !(i + n).is_multiple_of(5);
            assert_eq!(
                carp.choose(&key, alive),
                carp.ranked(&key, alive).first().copied()
            );
        }
    }
}
