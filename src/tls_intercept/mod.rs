//! Opt-in TLS interception ("bump") of CONNECT tunnels in forward mode, so a fleet's HTTPS
//! downloads (package registries, container layers) can be cached.
//!
//! Without `[tls_intercept]` nothing here runs and every tunnel is spliced, as before. With it,
//! each CONNECT is decided by [`rules`] (bump, splice or deny, over the `[acl]` table with the
//! `ssl::server_name` ACL, plus the built-in splice list); a bumped tunnel is answered with a
//! leaf for its name that [`mint`] signs with the local CA of [`ca`], and the requests inside
//! become ordinary `https://` forward requests (cache, `http_access`, access log, metrics),
//! sent to the origin over TLS verified strictly against the system roots or `tls_ca_file`.
//! Serving the bumped connection is `proxy::bump`'s job; this module never sees a socket.

pub mod ca;
pub mod mint;
pub mod rules;

use std::sync::Arc;

use crate::upstream::tls::ClientTls;

/// A configured `[tls_intercept]`, shared by the connections of one config generation.
#[derive(Debug)]
pub struct Intercept {
    /// Who is bumped, spliced or denied.
    pub rules: rules::Rules,
    /// Leaves for bumped names, signed by the local CA.
    pub minter: mint::Minter,
    /// Trust for the origins of bumped connections: always verified (no `tls_verify` here),
    /// against the system roots or `tls_ca_file`, so a client never gets, through cuttle, a
    /// site it would have refused itself.
    pub upstream_tls: Arc<ClientTls>,
}
