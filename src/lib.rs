//! cuttle: a caching forward and reverse HTTP proxy in the Squid tradition.
//!
//! # Layout
//! ```text
//! main ─▶ config (file ▶ build) ─▶ app (wiring, reload, shutdown)
//!                                   └▶ proxy (listener [tls] ▶ h1 (own HTTP/1) | hyper h2
//!                                         ▶ service ▶ forward | reverse | tunnel)
//!                                         ├▶ access   (pure: http_access over ACLs)
//!                                         ├▶ auth     (proxy_auth users: htpasswd, Basic)
//!                                         ├▶ upstream (connect [tls], a pool on our own h1
//!                                         │            codec (hyper for upgrades), h2
//!                                         │            sessions; next hops: groups, peers,
//!                                         │            cluster members, each with one
//!                                         │            liveness tracker; one retry rule
//!                                         │            (Error::nothing_sent ▶ retry); one
//!                                         │            hierarchy walk for requests and
//!                                         │            CONNECT; pure select/hierarchy/carp)
//!                                         ├▶ log      (access log writer, tracing)
//!                                         ├▶ metrics  (per-thread counter shards, top URLs)
//!                                         ├▶ cache    (RFC 9111 policy, moka + cacache tiers,
//!                                         │            collapsing with read-while-writer taps,
//!                                         │            parts and slices, invalidation index;
//!                                         │            result: the one CacheResult enum)
//!                                         └▶ tls_intercept (bump/splice rules, local CA,
//!                                                      minted leaves; proxy::bump serves)
//!                                   └▶ admin (own listener: /metrics, /status, /cache inspector,
//!                                         dashboard, /reload) reads metrics + narrow handles
//!                                   └▶ icp (UDP: RFC 2186 codec, query client, server loop;
//!                                         answers decided by proxy::icp_answer)
//! leaves: error (kinds ▶ one status mapping in proxy::respond), clock (wall time for tests,
//!         one reading of each clock per poll of a connection),
//!         cli (the clap definition main parses; man page and completions come from it),
//!         chunked (RFC 9112 §7.1 decoder, no I/O: proxy::h1 and upstream::h1 both use it),
//!         field_names (a connection's field names memoised by position: both HTTP/1 codecs),
//!         pass (each message written at the end of the runtime's pass: both HTTP/1 codecs),
//!         out_of_line (rare branches' futures boxed apart, so they size no request's futures)
//! ```
//! Dependencies point down: pure modules (`access`, `proxy::headers`, `log::format`) use no
//! sockets or clocks; only `proxy` sees access, upstream and log together; each module owns its
//! `Config` and only `config` reads the file format. `admin` never sees `proxy`: `app` hands it
//! the handles it reads, so the request path cannot depend on it.

pub mod access;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cache;
pub mod chunked;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod field_names;
pub mod icp;
pub mod log;
pub mod metrics;
pub mod out_of_line;
pub mod pass;
pub mod proxy;
pub mod tls_intercept;
pub mod upstream;
