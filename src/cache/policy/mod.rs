//! HTTP caching policy for cuttle: pure, synchronous decisions with no I/O.
//!
//! Each submodule owns one part of RFC 9111 (plus RFC 5861, RFC 9213 and
//! RFC 9110 §13–§14); the proxy feeds in parsed messages and clock values and
//! acts on the typed answers. `now` is always a parameter, never read here.

pub mod cache_control;
pub mod date;
pub mod fields;
pub mod freshness;
pub mod invalidation;
pub mod key;
pub mod partial;
pub mod range;
pub mod reuse;
pub mod storable;
pub mod targeted;
pub mod validation;

pub use cache_control::{Delta, FieldNames, MaxStale, RequestDirectives, ResponseDirectives};
pub use freshness::{
    current_age, freshness_lifetime, is_heuristically_cacheable, is_negatively_cacheable,
    parse_age_header, AgeInputs, Heuristic, Lifetime,
};
pub use invalidation::invalidation_targets;
pub use range::{evaluate_if_range, plan_range, MultipartLayout, Part, RangePlan};
pub use reuse::{
    evaluate_reuse, may_serve_stale_on_error, OriginFailure, Reuse, ReuseInput, RevalidateReason,
};
pub use storable::{check_storable, fields_to_strip, NotStorable, StoreInput};
pub use targeted::effective_response_directives;
pub use validation::{
    conditional_request_headers, evaluate_client_conditional, freshen_headers, head_may_freshen,
    select_stored_for_304, ConditionalOutcome, EntityTag, EtagList,
};
