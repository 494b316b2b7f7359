//! The cache façade: find a stored response for a request and say what may be done with it.
//!
//! The cache never fetches; it answers [`Lookup`] and (through `decision`) a
//! [`Decision`](super::decision::Decision), and the proxy acts (pingora's split between
//! `HttpCache` and the proxy). Keys: a response without `Vary` is
//! stored under its primary key (the normalised URI); a response with `Vary` is stored under
//! `primary\nsecondary`, and a small *vary record* under the primary key names the fields, so a
//! hit on a plain URL is a single store lookup (RFC 9111 §4.1).

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::key::{secondary_keys, stored_secondary_key, vary_fields, VarySpec};
use super::meta::{Derived, Memo, StoredFields, StoredHead};
use super::policy::{
    self, current_age, effective_response_directives, evaluate_reuse, freshness_lifetime,
    AgeInputs, Heuristic, Lifetime, RequestDirectives, ResponseDirectives, Reuse, ReuseInput,
};
use super::store::{Hit, Store};
use super::{Behaviour, Config};
use crate::cache::collapse::Collapser;
use crate::cache::invalidate::bans::Ban;
use crate::out_of_line;

/// Marks a vary record (never sent to clients; stripped from upstream responses).
pub const VARY_RECORD: &str = "cuttle-vary-record";

/// Request fields the proxy adds or rewrites before forwarding.
const SYNTHESISED: [&str; 4] = ["via", "x-forwarded-for", "forwarded", "x-forwarded-proto"];

/// What the store holds for a request.
// Built once per request and matched at once; boxing the hit would cost every hit an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Lookup {
    /// A stored response selected for this request, under the primary key itself (`variant`
    /// `None`: no copy of the key is made for the usual response) or a variant's key.
    Found { hit: Hit, variant: Option<String> },
    /// Responses exist for the URI, but none for this request's Vary fields (§4.1).
    VaryMiss,
    /// Nothing stored for the URI.
    UriMiss,
}

/// A stored response evaluated against a request at `now`.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub response: ResponseDirectives,
    pub lifetime: Lifetime,
    pub age: u64,
    pub reuse: Reuse,
}

impl Evaluation {
    /// Seconds of freshness left; negative when stale (RFC 9211 `ttl`).
    pub fn ttl(&self) -> i64 {
        let lifetime = i64::try_from(self.lifetime.secs).unwrap_or(i64::MAX);
        let age = i64::try_from(self.age).unwrap_or(i64::MAX);
        lifetime.saturating_sub(age)
    }

    /// Seconds past expiry (0 when fresh).
    pub fn staleness(&self) -> u64 {
        self.age.saturating_sub(self.lifetime.secs)
    }
}

/// The cache: storage, collapsing, and behaviour settings.
#[derive(Debug, Clone)]
pub struct Cache {
    pub store: Store,
    pub collapser: Collapser,
    pub behaviour: Arc<Behaviour>,
    /// Prefix and regex bans (see `cache::invalidate::bans`).
    pub(crate) bans: Arc<crate::cache::invalidate::bans::Bans>,
    /// The pending bans on disk (with a disk tier only).
    pub(crate) ban_journal: Option<Arc<crate::cache::invalidate::ban_journal::Journal>>,
    /// A cluster member's copies of hot keys other members own (`cache::hot`); purges and
    /// invalidations reach them here.
    pub hot: Option<Arc<crate::cache::hot::HotCopies>>,
}

/// Taken when a fill starts; its commit is refused after a later invalidation of its URL, or
/// a later ban matching it.
pub type FillTicket = super::store::Epoch;

/// The moment a [`FillTicket`] stands for, as the two counters it compares (the invalidation
/// epoch and the ban index): taken before a request whose response may be stored, at the cost
/// of two loads, and made into the ticket only if a fill starts. Most misses store nothing,
/// and a ticket costs its key and its ban check three allocations.
#[derive(Debug, Clone, Copy)]
pub struct TicketStamp {
    index: u64,
    epoch: u64,
}

impl Cache {
    /// Opens the store described by `config`, with the bans a previous run left pending.
    pub async fn open(config: &Config) -> std::io::Result<Self> {
        use crate::cache::invalidate::ban_journal::Journal;
        let cache = Self {
            store: Store::open(config).await?,
            collapser: Collapser::default(),
            behaviour: Arc::new(config.behaviour.clone()),
            bans: crate::cache::invalidate::new_bans(),
            ban_journal: config
                .disk
                .as_ref()
                .map(|disk| Arc::new(Journal::in_dir(&disk.path))),
            hot: None,
        };
        cache.resume_bans().await;
        Ok(cache)
    }

    /// The same stores (with their invalidation epochs) and collapsing table with other `behaviour`
    /// settings: what a config reload keeps of the cache.
    pub fn with_behaviour(&self, behaviour: Behaviour) -> Self {
        Self {
            behaviour: Arc::new(behaviour),
            ..self.clone()
        }
    }

    /// The same cache with `hot` as its hot copies (`[cluster] hot_copy_ttl`).
    pub fn with_hot(self, hot: Option<Arc<crate::cache::hot::HotCopies>>) -> Self {
        Self { hot, ..self }
    }

    /// A ticket for a fill of `primary` starting now (see `store::epoch`).
    pub fn ticket(&self, primary: &str) -> FillTicket {
        self.ticket_at(primary, self.stamp())
    }

    /// Now, for a [`ticket_at`](Self::ticket_at) later.
    pub fn stamp(&self) -> TicketStamp {
        // Read in the order `ticket` always read them.
        let index = self.store.index().now();
        TicketStamp {
            index,
            epoch: self.store.epoch_now(),
        }
    }

    /// The ticket [`ticket`](Self::ticket) would have given at `stamp`.
    pub fn ticket_at(&self, primary: &str, stamp: TicketStamp) -> FillTicket {
        let bans = Arc::clone(&self.bans);
        let url = primary.to_owned();
        let seq = stamp.index;
        self.store
            .epoch_at(primary, stamp.epoch)
            .with_veto(Arc::new(move || bans.bans_fill(&url, seq)))
    }

    /// The key a request URI is stored under: its primary key (RFC 9110 §4.2.3 normalised)
    /// after the `store_id` rewrites; None when the URI is not absolute.
    pub fn primary_key(&self, uri: &http::Uri) -> Option<String> {
        super::key::primary_key(uri).map(|key| self.behaviour.store_id(key))
    }

    /// Stops fills of `primary` in progress from committing.
    pub(crate) async fn stop_fills(&self, primary: &str) {
        self.store.index().tick();
        drop(self.store.invalidating(primary).await);
    }

    /// Whether the entry found under `key` may be used: `false` when a hard ban removed it (a
    /// miss); a soft ban marks it stale. `bans_active` is `self.bans.any_active()` read before
    /// the entry was looked up. With no ban applying (nearly always) nothing waits, and the
    /// removal or marking, a future of its own, is started only when one does.
    pub(super) async fn passes_bans(
        &self,
        bans_active: bool,
        primary: &str,
        key: &str,
        hit: &mut Hit,
    ) -> bool {
        let index = self.store.index();
        match self
            .bans
            .applying(primary, || index.seq_of(key), bans_active)
        {
            None => true,
            Some(ban) => out_of_line::start(|| self.enforce_ban(&ban, key, hit)).await,
        }
    }

    /// What `ban` does to the entry under `key` (see [`passes_bans`](Self::passes_bans)); a
    /// rare branch, started out of line so its state widens no lookup's future.
    async fn enforce_ban(&self, ban: &Ban, key: &str, hit: &mut Hit) -> bool {
        if !ban.soft {
            self.store.remove(key).await;
            return false;
        }
        if !crate::cache::invalidate::soft::is_marked(&hit.head) {
            let marked = crate::cache::invalidate::soft::marked(&hit.head);
            self.store.replace_head(key, marked.clone(), true).await;
            hit.head = Arc::new(marked);
        }
        true
    }

    /// Finds the stored response for a request to `primary` with `headers`.
    pub async fn lookup(&self, primary: &str, headers: &HeaderMap) -> Lookup {
        let bans_active = self.bans.any_active();
        let Some(mut hit) = self.store.lookup(primary).await else {
            return Lookup::UriMiss;
        };
        if !hit.head.headers.contains_key(VARY_RECORD) {
            if !self
                .passes_bans(bans_active, primary, primary, &mut hit)
                .await
            {
                return Lookup::UriMiss;
            }
            return Lookup::Found { hit, variant: None };
        }
        let spec = vary_fields(&hit.head.headers.to_map());
        // One probe per stored coding the request accepts, in its order of preference
        // (§4.1: "that mechanism MAY be used to choose a preferred response"); one probe when
        // the response does not vary on Accept-Encoding.
        for secondary in secondary_keys(&spec, headers) {
            let key = variant_key(primary, &secondary);
            if let Some(mut hit) = self.store.lookup(&key).await {
                if !self.passes_bans(bans_active, primary, &key, &mut hit).await {
                    return Lookup::VaryMiss;
                }
                return Lookup::Found {
                    hit,
                    variant: Some(key),
                };
            }
        }
        Lookup::VaryMiss
    }

    /// Evaluates a stored response for a request (RFC 9111 §4, §4.2, RFC 5861).
    pub fn evaluate(
        &self,
        head: &StoredHead,
        request: &RequestDirectives,
        url: &str,
        now: SystemTime,
    ) -> Evaluation {
        let derived = head.derived.get_or_init(|| self.derive(head, url));
        let response = derived.response.clone();
        let lifetime = derived.lifetime;
        let age = current_age(&derived.age_inputs, now);
        let reuse = evaluate_reuse(&ReuseInput {
            request,
            response: &response,
            lifetime,
            current_age: age,
            strip_qualified_no_cache: false,
        });
        Evaluation {
            response,
            lifetime,
            age,
            reuse,
        }
    }

    /// What `evaluate` needs from `head` besides the request and the clock: the same for every
    /// hit on one stored head, so it is worked out once (see [`StoredHead::derived`]).
    fn derive(&self, head: &StoredHead, url: &str) -> Derived {
        let headers = head.headers.to_map();
        let response = effective_response_directives(&headers, &self.behaviour.targeted_fields);
        // Heuristics (§4.2.2) apply only without explicit freshness, so the refresh_pattern
        // regexes run only for such responses.
        let explicit = response.s_maxage.is_some()
            || response.max_age.is_some()
            || (!response.targeted && headers.contains_key(http::header::EXPIRES));
        let behaviour = &self.behaviour;
        let heuristic = if explicit {
            Heuristic::default()
        } else {
            behaviour.heuristic_for(url)
        };
        let mut lifetime = freshness_lifetime(
            head.status,
            &headers,
            &response,
            head.response_time,
            &heuristic,
        );
        if explicit {
            // Squid's `override-expire` (an admin's deliberate departure from §4.2.1): `min`
            // holds even over a shorter explicit lifetime.
            if behaviour.refresh_patterns.iter().any(|p| p.override_expire) {
                if let Some(p) = behaviour
                    .refresh_pattern_for(url)
                    .filter(|p| p.override_expire)
                {
                    lifetime.secs = lifetime.secs.max(p.heuristic.min_secs);
                }
            }
        } else if !behaviour.negative_ttl.is_zero() && policy::is_negatively_cacheable(head.status)
        {
            // Squid's `negative_ttl`: an error without explicit freshness is reused this long.
            lifetime = Lifetime {
                secs: behaviour.negative_ttl.as_secs(),
                heuristic: true,
            };
        }
        // A soft-purged entry is stale: the next request revalidates it.
        if crate::cache::invalidate::soft::is_marked(head) {
            lifetime.secs = 0;
        }
        Derived {
            response,
            lifetime,
            age_inputs: AgeInputs::from_headers(&headers, head.request_time, head.response_time),
            wire: Memo::default(),
        }
    }

    /// The key to store a response under, writing the vary record when it varies.
    /// `None` for `Vary: *` (never reusable) or a failed record write. `had_variants` says the
    /// URI held varying responses, which a plain response replaces.
    pub async fn key_for_response(
        &self,
        primary: &str,
        request_headers: &HeaderMap,
        response: &StoredHead,
        had_variants: bool,
    ) -> Option<String> {
        // Only the `Vary` lines are read (RFC 9111 §4.1), from the stored bytes: a map of every
        // stored field (~1.3 KB for nginx's fields) would be built and dropped on each store.
        let mut vary = HeaderMap::new();
        for (name, value) in response.headers.iter_bytes() {
            if name == http::header::VARY.as_str().as_bytes() {
                // The stored value was valid when stored; one that no longer is counts as `*`
                // (never reusable) rather than as no `Vary`.
                match HeaderValue::from_bytes(value) {
                    Ok(value) => {
                        vary.append(http::header::VARY, value);
                    }
                    Err(_) => return None,
                }
            }
        }
        match vary_fields(&vary) {
            VarySpec::Star => None,
            // The secondary key is built from the client's fields; fields the proxy writes
            // itself on the way up (Via, X-Forwarded-For, Forwarded, X-Forwarded-Proto) differ
            // per client without showing in them, so such a response could be served to the
            // wrong client. Treated like `Vary: *`.
            VarySpec::Fields(fields)
                if fields.iter().any(|f| SYNTHESISED.contains(&f.as_str())) =>
            {
                None
            }
            VarySpec::Fields(fields) if fields.is_empty() => {
                if had_variants {
                    for key in self.store.index().keys_of_url(primary) {
                        if key != primary {
                            self.store.remove(&key).await;
                        }
                    }
                }
                Some(primary.to_owned())
            }
            spec => {
                let secondary =
                    stored_secondary_key(&spec, request_headers, &response.headers.to_map())?;
                let mut fields = HeaderMap::new();
                for (name, value) in response.headers.iter() {
                    if name == http::header::VARY {
                        fields.append(name, value);
                    }
                }
                fields.insert(VARY_RECORD, HeaderValue::from_static("1"));
                let record = StoredHead {
                    status: StatusCode::OK,
                    headers: StoredFields::from_map(&fields),
                    request_time: response.request_time,
                    response_time: response.response_time,
                    url: response.url.clone(),
                    body_len: 0,
                    derived: Default::default(),
                };
                let writer = self.store.writer(primary, record, Some(0))?;
                writer.commit().await.ok()?;
                Some(variant_key(primary, &secondary))
            }
        }
    }

    /// Removes everything stored for `primary` (all variants), and stops fills in progress for
    /// it from committing; returns how many entries were removed. Only `primary`'s own keys
    /// are touched (the store's URL index lists them): a URL never cached costs a map probe.
    pub async fn invalidate(&self, primary: &str) -> usize {
        // Held while removing: no fill of `primary` can commit in between.
        let _gate = self.store.invalidating(primary).await;
        if let Some(hot) = &self.hot {
            hot.remove(primary);
        }
        // Entries the disk index has not loaded yet are not listed: the loader drops them.
        self.store.drop_unloaded(primary).await;
        let mut removed = 0;
        for key in self.store.index().keys_of_url(primary) {
            removed += usize::from(self.store.remove(&key).await);
        }
        removed
    }
}

/// Key of one variant.
pub fn variant_key(primary: &str, secondary: &str) -> String {
    format!("{}{secondary}", variant_prefix(primary))
}

fn variant_prefix(primary: &str) -> String {
    format!("{primary}\n")
}

/// Methods whose responses this cache looks up (RFC 9111 §2: GET, and HEAD served from GET).
pub fn is_cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

pub use policy::RevalidateReason;
