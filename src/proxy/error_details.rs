//! How much an error response tells the client (`error_details`): a setting of each port,
//! read by `respond` when it writes an error page and carried by the `Transaction`. A leaf, so
//! the transaction need not import the responder, which imports the body, which carries the
//! transaction.

/// How much an error response tells the client (`error_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDetails {
    /// The cause (which may name an upstream address), the URL, the proxy's name and version.
    Full,
    /// The status and its reason phrase only; `Proxy-Status` carries the RFC 9209 error type
    /// but no `details`.
    Minimal,
}

impl ErrorDetails {
    /// The default for a port: `minimal` on reverse ports (public clients), `full` on forward
    /// ports.
    pub fn default_for(mode: super::Mode) -> Self {
        match mode {
            super::Mode::Forward => Self::Full,
            super::Mode::Reverse => Self::Minimal,
        }
    }
}
